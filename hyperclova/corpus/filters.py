"""Quality filters. Each returns None to keep a document or (reason, detail) to explain a drop.

Reasons are stable names (`too_short`, `low_hangul`, `repetitive_ngrams`, `duplicate_lines`,
`symbols`, `meaningless_words`, `profanity`, `spam`) so a report can say why every document left.
Thresholds come from the recipe; the word lists are plain text files that users replace.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hyperclova.errors import UserError

DATA_DIR = Path(__file__).parent / "data"

_HANGUL = re.compile(r"[\uac00-\ud7a3\u3131-\u318e\u1100-\u11ff]")
_LETTER = re.compile(r"[^\W\d_]")
_SYMBOL = re.compile(r"[^\w\s.,!?'\"()\[\]<>|~:;·…-]")  # ordinary punctuation is not a symbol
_URL = re.compile(r"(?i)\b(?:https?://|www\.)\S+")
_PHONE = re.compile(r"<\|phone\|>|\b01[016789][-. ]?\d{3,4}[-. ]?\d{4}\b")
# Last syllables that mark a Korean word as carrying a particle or an ending; real sentences are
# full of them, random syllable strings almost never end in them.
_FUNCTION_FINALS = set("은는이가을를에의도로과와만요다고서며면지게죠네까데니해한할된던은음임요")


def load_words(path: str | Path | None, default: str) -> list[str]:
    p = Path(path) if path else DATA_DIR / default
    if not p.is_file():
        raise UserError(f"word list {p} does not exist")
    lines = p.read_text(encoding="utf-8").splitlines()
    return [w.strip() for w in lines if w.strip() and not w.lstrip().startswith("#")]


def alternation(words: list[str]) -> re.Pattern:
    """One regex matching any listed entry (longest first), so a text is scanned once."""
    if not words:
        return re.compile(r"(?!)")  # an empty list matches nothing
    return re.compile("|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True)))


@dataclass
class Length:
    min_chars: int = 20
    max_chars: int = 200_000
    action: Literal["drop", "flag"] = "drop"

    def __call__(self, text: str):
        n = len(text)
        if n < self.min_chars:
            return "too_short", f"{n} chars < {self.min_chars}"
        if n > self.max_chars:
            return "too_long", f"{n} chars > {self.max_chars}"
        return None


@dataclass
class HangulRatio:
    min_ratio: float = 0.4  # share of Hangul among letters
    action: Literal["drop", "flag"] = "drop"

    def __call__(self, text: str):
        letters = len(_LETTER.findall(text))
        ratio = len(_HANGUL.findall(text)) / letters if letters else 0.0
        return ("low_hangul", f"hangul ratio {ratio:.2f} < {self.min_ratio}") if ratio < self.min_ratio else None


@dataclass
class Repetition:
    """Meaningless word sequences: repeated n-grams, repeated lines and symbol soup."""

    ngram: int = 3
    max_dup_ngram_ratio: float = 0.3
    max_dup_line_ratio: float = 0.3
    max_symbol_word_ratio: float = 0.5
    min_function_word_ratio: float = 0.15  # checked on texts with >= 20 Hangul words
    action: Literal["drop", "flag"] = "drop"

    def __call__(self, text: str):
        lines = [ln for ln in text.split("\n") if ln.strip()]
        if len(lines) >= 3:
            dup = 1 - len(set(lines)) / len(lines)
            if dup > self.max_dup_line_ratio:
                return "duplicate_lines", f"{dup:.2f} of lines repeated"
        words = text.split()
        grams = [tuple(words[i:i + self.ngram]) for i in range(len(words) - self.ngram + 1)]
        if len(grams) >= 4:
            dup = 1 - len(set(grams)) / len(grams)
            if dup > self.max_dup_ngram_ratio:
                return "repetitive_ngrams", f"{dup:.2f} of {self.ngram}-grams repeated"
        if words:
            ratio = len(_SYMBOL.findall(text)) / len(words)
            if ratio > self.max_symbol_word_ratio:
                return "symbols", f"{ratio:.2f} symbols per word"
        hangul_words = [w.rstrip(".,!?~\"')") for w in words if _HANGUL.match(w)]
        if len(hangul_words) >= 20:
            ratio = sum(bool(w) and w[-1] in _FUNCTION_FINALS for w in hangul_words) / len(hangul_words)
            if ratio < self.min_function_word_ratio:
                return "meaningless_words", f"{ratio:.2f} of words end in a particle or ending"
        return None


@dataclass
class Profanity:
    max_density: float = 0.02  # listed-word occurrences per word
    words_file: str | None = None
    action: Literal["drop", "flag"] = "drop"
    words: list[str] = field(default_factory=list, repr=False, metadata={"config": False})

    def __post_init__(self):
        self.words = load_words(self.words_file, "badwords_ko.txt")
        self._pattern = alternation(self.words)

    def __call__(self, text: str):
        hits = len(self._pattern.findall(text))
        density = hits / max(len(text.split()), 1)
        return ("profanity", f"{hits} hits, density {density:.3f}") if density > self.max_density else None


@dataclass
class Spam:
    max_density: float = 0.2  # (URLs + phone numbers + promo phrases) per word
    max_urls: int = 5
    phrases_file: str | None = None
    action: Literal["drop", "flag"] = "drop"
    phrases: list[str] = field(default_factory=list, repr=False, metadata={"config": False})

    def __post_init__(self):
        self.phrases = load_words(self.phrases_file, "promo_ko.txt")
        self._pattern = alternation(self.phrases)

    def __call__(self, text: str):
        words = text.split()
        urls = len(_URL.findall(text))
        phones = len(_PHONE.findall(text))
        promo = len(self._pattern.findall(text))
        density = (urls + phones + promo) / max(len(words), 1)
        if urls > self.max_urls or density > self.max_density:
            return "spam", f"{urls} urls, {phones} phones, {promo} promo words, density {density:.2f}"
        return None


FILTERS = {"length": Length, "hangul": HangulRatio, "repetition": Repetition,
           "profanity": Profanity, "spam": Spam}
