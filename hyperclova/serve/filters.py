"""Input and output filters (HyperCLOVA §5.3): banned words, PII, a maximum output length.

The rules reuse the corpus pipeline: the banned-word list is the corpus profanity list
(`hyperclova/corpus/data/badwords_ko.txt`, matched as a substring the same way) and PII is found
and masked by `hyperclova.corpus.pii.mask_text` with its typed placeholders (`<|phone|>`, ...).
A filter config is a small YAML file (docs/serve.md):

    banned_words:
      file: null          # null: the corpus pipeline's Korean list
      words: []           # added to the file's words
      input: reject       # reject | off
      output: stop        # stop | mask | off
    pii:
      types: [email, rrn, card, brn, driver_license, health_insurance, passport, vehicle_plate,
              account, phone, ip]
      input: off          # reject | mask | off
      output: mask        # mask | stop | off
    max_output_chars: 0   # 0: no limit; longer output stops with finish_reason content_filter
"""
from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import regex

from hyperclova.corpus.filters import alternation, load_words
from hyperclova.corpus.pii import CONTEXT_CHARS, PII_TYPES, RULES, PiiConfig, mask_text
from hyperclova.errors import UserError, read_yaml_mapping

BANNED_INPUT = ("reject", "off")
BANNED_OUTPUT = ("stop", "mask", "off")
PII_INPUT = ("reject", "mask", "off")
PII_OUTPUT = ("mask", "stop", "off")
# While PII rules are on, a stream holds back the tail of its text that could be the start of a PII
# item (at most PII_HOLD_CHARS), so that an item arriving over several tokens is masked before any
# of it is sent. "Could be the start" is asked of the PII rules themselves: each rule's pattern is
# matched with the `regex` module's partial matching, which also reports a match cut off by the
# end of the text ("서울 12", "12가 3" of a vehicle plate, "서울 12-3456" of a licence), plus the
# trailing run of characters a Latin/digit item is made of. Plain Korean text matches no rule's
# start (except a region name's first syllable, held for one token), so it streams without delay.
PII_HOLD_CHARS = 64
PII_CONTEXT_CHARS = CONTEXT_CHARS  # sent text re-read for context ("계좌 ..." before an account number)
_PII_TAIL = re.compile(r"[A-Za-z0-9@._%+\-() ]*\Z")


class FilterTripped(Exception):
    """An input broke a rule whose action is `reject` (the server answers 400)."""

    def __init__(self, rule: str, detail: str):
        super().__init__(f"input filter '{rule}' rejected the prompt: {detail}")
        self.rule = rule


@dataclass
class FilterConfig:
    banned_file: str | None = None
    banned_extra: list[str] = field(default_factory=list)
    banned_input: str = "reject"
    banned_output: str = "stop"
    pii_types: list[str] = field(default_factory=lambda: [t for t in PII_TYPES if t != "user"])
    pii_input: str = "off"
    pii_output: str = "mask"
    max_output_chars: int = 0

    @classmethod
    def off(cls) -> "FilterConfig":
        return cls(banned_input="off", banned_output="off", pii_input="off", pii_output="off")

    @classmethod
    def load(cls, path: str | Path) -> "FilterConfig":
        data = read_yaml_mapping(path, "filter config")
        cfg = cls()
        _only(data, {"banned_words", "pii", "max_output_chars"}, str(path))
        bw = _section(data, "banned_words", path)
        _only(bw, {"file", "words", "input", "output"}, f"{path}: banned_words")
        cfg.banned_file = bw.get("file", cfg.banned_file)
        cfg.banned_extra = _str_list(bw.get("words", []), f"{path}: banned_words.words")
        cfg.banned_input = _choice(bw.get("input", cfg.banned_input), BANNED_INPUT,
                                   f"{path}: banned_words.input")
        cfg.banned_output = _choice(bw.get("output", cfg.banned_output), BANNED_OUTPUT,
                                    f"{path}: banned_words.output")
        pii = _section(data, "pii", path)
        _only(pii, {"types", "input", "output"}, f"{path}: pii")
        cfg.pii_types = _str_list(pii.get("types", cfg.pii_types), f"{path}: pii.types")
        known = [t for t in PII_TYPES if t != "user"]
        bad = sorted(set(cfg.pii_types) - set(known))
        if bad:
            raise UserError(f"{path}: pii.types has unknown type(s) {bad}; known: {known}")
        cfg.pii_input = _choice(pii.get("input", cfg.pii_input), PII_INPUT, f"{path}: pii.input")
        cfg.pii_output = _choice(pii.get("output", cfg.pii_output), PII_OUTPUT, f"{path}: pii.output")
        n = data.get("max_output_chars", 0)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise UserError(f"{path}: max_output_chars must be an integer >= 0, got {n!r}")
        cfg.max_output_chars = n
        return cfg


def _only(d: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _section(data: dict, key: str, path) -> dict:
    v = data.get(key) or {}
    if not isinstance(v, dict):
        raise UserError(f"{path}: {key} must be a mapping")
    return v


def _str_list(v, where: str) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise UserError(f"{where} must be a list of strings")
    return list(v)


def _choice(v, allowed: tuple[str, ...], where: str) -> str:
    if v is False:  # YAML reads a bare `off` as false
        v = "off"
    if v not in allowed:
        raise UserError(f"{where} must be one of {list(allowed)}, got {v!r}")
    return v


class Filters:
    """The compiled rules of one FilterConfig, shared by every request."""

    def __init__(self, cfg: FilterConfig):
        self.cfg = cfg
        uses_words = cfg.banned_input != "off" or cfg.banned_output != "off"
        words = (load_words(cfg.banned_file, "badwords_ko.txt") if uses_words else []) + cfg.banned_extra
        self.words = words
        self._banned: re.Pattern = alternation(words)
        self._max_word = max((len(w) for w in words), default=0)
        self._pii = PiiConfig(types=list(cfg.pii_types))
        # The same patterns, for partial matching (see PII_HOLD_CHARS)
        self._pii_starts = [regex.compile(r.pattern.pattern, regex.V0 | (r.pattern.flags & re.IGNORECASE))
                            for r in RULES if r.type in cfg.pii_types]

    def describe(self) -> dict:
        c = self.cfg
        return {"banned_words": {"count": len(self.words), "input": c.banned_input, "output": c.banned_output},
                "pii": {"types": c.pii_types, "input": c.pii_input, "output": c.pii_output},
                "max_output_chars": c.max_output_chars}

    # -- input ----------------------------------------------------------------------------------
    def check_input(self, text: str) -> str:
        """The prompt to use (PII masked if so configured); FilterTripped when a rule rejects it."""
        c = self.cfg
        if c.banned_input == "reject" and self.words:
            m = self._banned.search(text)
            if m:
                raise FilterTripped("banned_words", f"a listed word at character {m.start()}")
        if c.pii_input != "off":
            counts: Counter = Counter()
            masked = mask_text(text, self._pii, counts)
            if counts and c.pii_input == "reject":
                kinds = ", ".join(sorted(counts))
                raise FilterTripped("pii", f"personal data ({kinds})")
            text = masked
        return text

    # -- output ---------------------------------------------------------------------------------
    @property
    def masks_output(self) -> bool:
        return self.cfg.banned_output == "mask" or self.cfg.pii_output == "mask"

    def hold_chars(self, text: str) -> int:
        """How much of the end of `text` a stream keeps back, so that no rule sees only part of
        what it must catch."""
        hold = 0
        if self.cfg.banned_output != "off":
            hold = min(len(text), self._max_word - 1)
        if self.cfg.pii_output != "off":
            hold = max(hold, self._pii_hold(text))
        return hold

    def _pii_hold(self, text: str) -> int:
        lo = max(0, len(text) - PII_HOLD_CHARS)
        start = _PII_TAIL.search(text, lo).start()
        for p in self._pii_starts:
            for m in p.finditer(text, lo, partial=True):
                if m.end() == len(text) and m.start() < start:  # cut off (or complete) at the end
                    start = m.start()
        return len(text) - start

    def find_stop(self, text: str, start: int) -> tuple[int, str] | None:
        """(index, rule) of the first output-stopping match that ends after `start`, or None."""
        c = self.cfg
        hits = []
        if c.banned_output == "stop" and self.words:
            m = self._banned.search(text, max(0, start - self._max_word + 1))
            if m:
                hits.append((m.start(), "banned_words"))
        if c.pii_output == "stop":
            lo = max(0, start - PII_HOLD_CHARS)
            seg, counts = text[lo:], Counter()
            masked = mask_text(seg, self._pii, counts)
            if counts:  # the first item starts where the masked text first differs
                hits.append((lo + len(os.path.commonprefix([seg, masked])), "pii"))
        if c.max_output_chars and len(text) > c.max_output_chars:
            hits.append((c.max_output_chars, "max_output_chars"))
        return min(hits) if hits else None

    def mask(self, text: str, counts: Counter) -> str:
        """Masked output text; `counts` gains hits per rule (banned_words, pii types)."""
        if self.cfg.banned_output == "mask" and self.words:
            def star(m: re.Match) -> str:
                counts["banned_words"] += 1
                return "*" * len(m.group(0))
            text = self._banned.sub(star, text)
        if self.cfg.pii_output == "mask":
            text = mask_text(text, self._pii, counts)
        return text
