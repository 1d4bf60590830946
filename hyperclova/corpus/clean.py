"""Text normalisation: Unicode NFC, control characters, whitespace runs, repeated characters, HTML.

Korean web text arrives in mixed normal forms (decomposed jamo from macOS, composed elsewhere), with
zero-width characters, `&nbsp;` and `<br>` from editors, and laughter runs like ㅋㅋㅋㅋㅋㅋㅋㅋ that
carry no more meaning at length 30 than at length 4. Normalising first makes the later hashing,
dedup and filters see one spelling of each text.
"""
from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

# C0/C1 controls except tab and newline, plus zero-width and bidi marks and the BOM.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_SPACES = re.compile(r"[^\S\n]+")  # any whitespace but newline (includes nbsp, ideographic space)
_NEWLINES = re.compile(r"\n\s*\n(\s*\n)+")
_TAG_BREAK = re.compile(r"(?i)<\s*(br|/p|/div|/li|/h[1-6]|/tr)\b[^>]*>")
_TAG = re.compile(r"<[^<>]{1,300}>")
_SCRIPT = re.compile(r"(?is)<(script|style)\b.*?</\1\s*>")


@dataclass
class NormalizeConfig:
    form: Literal["NFC", "NFKC", "NFD", "NFKD"] = "NFC"
    strip_html: bool = False
    max_char_repeat: int = 5  # ㅋㅋㅋㅋㅋㅋㅋ -> ㅋㅋㅋㅋㅋ (5 keeps ★★★★★); 0 disables
    max_blank_lines: int = 1


def strip_html(text: str) -> str:
    text = _SCRIPT.sub(" ", text)
    text = _TAG_BREAK.sub("\n", text)
    text = _TAG.sub("", text)
    return html.unescape(text)


def cap_repeats(text: str, n: int) -> str:
    """Cap any run of one character (not a digit) at `n` characters."""
    if n <= 0:
        return text
    return re.sub(r"(\D)\1{%d,}" % n, lambda m: m.group(1) * n, text)


def normalize(text: str, cfg: NormalizeConfig) -> str:
    if cfg.strip_html:
        text = strip_html(text)
    text = unicodedata.normalize(cfg.form, text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    if cfg.max_blank_lines >= 0:
        text = _NEWLINES.sub("\n" * (cfg.max_blank_lines + 1), text)
    text = cap_repeats(text, cfg.max_char_repeat)
    return text.strip()
