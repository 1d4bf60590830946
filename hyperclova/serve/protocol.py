"""Request bodies of the OpenAI-compatible API (validated strictly: a wrong type is a 400 naming
the field) and OpenAI's error object."""
from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

Prompt = Union[str, list[str], list[int], list[list[int]]]


class _Body(BaseModel):
    # Unknown fields are ignored, as OpenAI-compatible servers do; known ones are type-checked
    # without coercion ("5" is not an integer).
    model_config = ConfigDict(extra="ignore", strict=True)


class StreamOptions(_Body):
    include_usage: bool = False


class SamplingFields(_Body):
    model: Optional[str] = None
    max_tokens: Optional[int] = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # extension (vLLM's); -1 also means off
    n: int = 1
    stop: Union[str, list[str], None] = None
    seed: Optional[int] = None
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0  # extension (vLLM's, CTRL-style)
    ignore_eos: bool = False  # extension (vLLM's): never end at end-of-document (benchmarks)
    retrieve: int = 0  # extension: inject this many knowledge passages (needs --knowledge)
    retrieve_tokens: int = 512  # extension: token budget of the injected passages
    logit_bias: Optional[dict] = None  # refused when non-empty: not implemented
    user: Optional[str] = None


class CompletionRequest(SamplingFields):
    prompt: Prompt
    echo: bool = False
    logprobs: Optional[int] = None
    suffix: Optional[str] = None  # refused when given: not implemented
    best_of: Optional[int] = None  # accepted only when equal to n


class ChatMessage(_Body):
    role: Literal["system", "user", "assistant"]
    content: str
    name: Optional[str] = None


class ChatRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: Optional[int] = None
    logprobs: bool = False
    top_logprobs: Optional[int] = None


class TokenizeRequest(_Body):
    model: Optional[str] = None
    prompt: Optional[str] = None
    messages: Optional[list[ChatMessage]] = None
    add_special_tokens: bool = False  # accepted for vLLM compatibility; there is no BOS token


class DetokenizeRequest(_Body):
    model: Optional[str] = None
    tokens: list[int]


class ApiError(Exception):
    """An error answered in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
             413: "invalid_request_error", 429: "rate_limit_error", 500: "server_error",
             503: "server_error"}

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.TYPES.get(self.status, "server_error"),
                          "param": self.param, "code": self.code}}
