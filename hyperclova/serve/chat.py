"""The chat template: how /v1/chat/completions turns messages into one prompt.

The models this project trains are base models, not chat-tuned: a chat is continued as a dialogue
transcript, which works only as well as a few-shot prompt does (docs/serve.md). The template is
Jinja (as Hugging Face chat templates are), rendered in a sandbox, with `messages` (role, content)
and `add_generation_prompt`; `--chat-template FILE` replaces it. Generation stops at the next
turn's marker (`--chat-stop`, default below).
"""
from __future__ import annotations

from pathlib import Path

from hyperclova.errors import UserError

DEFAULT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m.role == 'system' %}{{ m.content }}\n\n"
    "{% elif m.role == 'user' %}사용자: {{ m.content }}\n"
    "{% else %}AI: {{ m.content }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}AI:{% endif %}"
)
DEFAULT_STOP = ("\n사용자:",)
ROLES = ("system", "user", "assistant")


class ChatTemplate:
    def __init__(self, source: str = DEFAULT_TEMPLATE, stop: tuple[str, ...] = DEFAULT_STOP):
        from jinja2 import TemplateSyntaxError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        self.source, self.stop = source, tuple(stop)
        try:
            self._t = ImmutableSandboxedEnvironment(keep_trailing_newline=True).from_string(source)
        except TemplateSyntaxError as e:
            raise UserError(f"--chat-template: line {e.lineno}: {e.message}") from None

    @classmethod
    def from_file(cls, path: str | None, stop: list[str] | None) -> "ChatTemplate":
        source = DEFAULT_TEMPLATE
        if path:
            try:
                source = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise UserError(f"--chat-template {path}: cannot read it ({e})") from None
        return cls(source, tuple(stop) if stop else DEFAULT_STOP)

    def render(self, messages: list[dict]) -> str:
        from jinja2 import TemplateError

        try:
            return self._t.render(messages=messages, add_generation_prompt=True)
        except TemplateError as e:
            raise ValueError(f"the chat template failed on these messages: {e}") from None
