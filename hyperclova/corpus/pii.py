"""De-identification of Korean personal data: typed placeholders in text, salted hashes in metadata.

Each detector is a pattern plus, where a format has one, a validity check (card Luhn digit, business
number check digit, a real date inside a resident registration number), and where a bare number is
ambiguous, a required context word (계좌/입금 near an account number, 여권 near a passport number).
That is what keeps dates, prices, years and product codes unmasked.
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field

from hyperclova.corpus.noise import brn_check_digit, rrn_check_digit

_ND = r"(?<![\d-])"  # not preceded by a digit or hyphen
_NA = r"(?![\d-]*\d)"  # not followed by more digits (a hyphen then digits counts as more)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _date_ok(yymmdd: str) -> bool:
    mm, dd = int(yymmdd[2:4]), int(yymmdd[4:6])
    return 1 <= mm <= 12 and 1 <= dd <= 31


def _rrn_ok(m: re.Match) -> bool:
    front, sep, back = m.group("f"), m.group("sep"), m.group("b")
    if not _date_ok(front):
        return False
    # Without a hyphen a 13-digit number could be anything: also require the (pre-2020) check digit.
    return bool(sep) or rrn_check_digit(front + back[:6]) == back[6]


def _card_ok(m: re.Match) -> bool:
    digits = re.sub(r"\D", "", m.group(0))
    return 13 <= len(digits) <= 19 and _luhn_ok(digits)


def _brn_ok(m: re.Match) -> bool:
    digits = re.sub(r"\D", "", m.group(0))
    return brn_check_digit(digits[:9]) == digits[9]


def _ip_ok(m: re.Match) -> bool:
    return all(int(p) <= 255 for p in m.group(0).split("."))


_ACCOUNT_WORDS = r"(?:계좌|입금|송금|이체|예금주|은행|뱅크|농협|신협|새마을금고|우체국)"

# (type, pattern, validator); order matters: earlier types claim their text first.
DETECTORS: list[tuple[str, re.Pattern, object]] = [
    ("email", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"), None),
    ("rrn", re.compile(_ND + r"(?P<f>\d{2}[01]\d[0-3]\d)(?P<sep>\s?-\s?|)(?P<b>[1-8]\d{6})" + _NA), _rrn_ok),
    ("card", re.compile(_ND + r"\d{4}(?:[- ]?\d{4}){2}[- ]?\d{1,7}" + _NA), _card_ok),
    ("brn", re.compile(_ND + r"\d{3}-\d{2}-\d{5}" + _NA), _brn_ok),
    ("account", re.compile(_ACCOUNT_WORDS + r"[^\d\n]{0,15}?(?P<num>\d{2,6}(?:-\d{2,6}){1,3}|\d{10,14})" + _NA),
     None),
    ("phone", re.compile(_ND + r"(?:01[016789]|0(?:2|[3-6][1-5]|70))[-. )]\s?\d{3,4}[-. ]\d{4}" + _NA
                         + r"|" + _ND + r"01[016789]\d{7,8}" + _NA), None),
    ("passport", re.compile(r"여권[^\n\d]{0,10}?(?P<num>[MSRODG]\d{8}|[MSRODG]\d{3}[A-Z]\d{4})(?![A-Za-z0-9])"), None),
    ("ip", re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]*\d)"), _ip_ok),
]
PII_TYPES = [name for name, _, _ in DETECTORS] + ["user"]


@dataclass
class PiiConfig:
    types: list[str] = field(default_factory=lambda: list(PII_TYPES))
    salt: str = ""  # salt for user id hashes; set per corpus and keep it secret
    hash_keys: list[str] = field(default_factory=lambda: ["user_id"])  # metadata kept only as a hash
    handle_keys: list[str] = field(default_factory=lambda: ["user_id", "author", "nickname"])
    placeholder: str = "<|{type}|>"


def hash_id(value: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}\x00{value}".encode("utf-8")).hexdigest()[:16]


def mask_text(text: str, cfg: PiiConfig, counts: Counter, handles: list[str] = ()) -> str:
    """Replace each detected item with its typed placeholder; add per-type counts to `counts`."""
    for name, pattern, valid in DETECTORS:
        if name not in cfg.types:
            continue
        placeholder = cfg.placeholder.format(type=name)

        def sub(m: re.Match, name=name, placeholder=placeholder, valid=valid) -> str:
            if valid is not None and not valid(m):
                return m.group(0)
            counts[name] += 1
            if "num" in pattern.groupindex:  # keep the context word, mask only the number
                return m.group(0)[: m.start("num") - m.start()] + placeholder
            return placeholder

        text = pattern.sub(sub, text)
    if "user" in cfg.types:
        for h in handles:
            if len(h) >= 3 and h in text:
                counts["user"] += text.count(h)
                text = text.replace(h, cfg.placeholder.format(type="user"))
    return text


def deidentify(rec: dict, cfg: PiiConfig, counts: Counter) -> dict:
    """Mask PII in `rec["text"]` and replace `hash_keys` metadata by salted hashes (new dict)."""
    handles = [str(rec[k]) for k in cfg.handle_keys if rec.get(k)]
    out = dict(rec)
    out["text"] = mask_text(rec["text"], cfg, counts, handles)
    for k in cfg.hash_keys:
        if rec.get(k) is not None:
            out[k] = hash_id(str(rec[k]), cfg.salt)
    return out
