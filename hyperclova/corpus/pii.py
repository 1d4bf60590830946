"""De-identification of Korean personal data: typed placeholders in text, salted hashes in metadata.

    counts = Counter()
    mask_text("연락처 +82 10-1234-5678, 차량번호 12가 3456", PiiConfig(salt="..."), counts)
    # -> "연락처 <|phone|>, 차량번호 <|vehicle_plate|>"; counts == {"phone": 1, "vehicle_plate": 1}

Each rule is a pattern for the number itself plus what makes it personal data rather than a
look-alike: a check digit where the format has one (checkdigits.py: Luhn for cards, the resident
and business registration check digits), a real calendar date inside a resident registration
number, and a context word before the number where the bare format is ambiguous (계좌 before an
account, 여권 before a passport, 운전면허 before a licence, 건강보험 before an insurance number,
차량/번호판 before a plate, 전화/연락처 before a landline written without separators). A label
that names a non-personal number (주문번호, 송장, 모델, SKU, ...) directly before it vetoes the
number-like rules. What stays untouched is listed in tests/corpus/data/pii_lookalikes.txt.

Resident registration numbers (RRN, 주민등록번호) and foreigners' registration numbers
(외국인등록번호) share one format: YYMMDD, then a digit for sex and century (1-4 Korean, 5-8
foreigner, 9/0 born in the 1800s), then six more. Numbers issued since October 2020 end in random
digits and have no check digit, so a valid check digit cannot be required: the rule masks a real
date plus a sex digit 1-8 when written with the hyphen (the form that is an RRN in practice), and
without the hyphen only with a valid pre-2020 check digit or an RRN context word.
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Literal, Optional

from hyperclova.corpus.checkdigits import brn_valid, luhn_valid, rrn_check_valid

# The placeholder types in the order the tokenizer reserves them as special tokens
# (tokenizer/pretokenize.py): append, never reorder, so ids stay stable across retraining.
PLACEHOLDER_TYPES = ("rrn", "phone", "email", "card", "account", "url", "brn", "passport", "ip",
                     "user", "driver_license", "health_insurance", "vehicle_plate")

_LEFT = r"(?<![0-9A-Za-z+\-])"  # not glued to a longer code on the left
_RIGHT = r"(?![0-9A-Za-z]|[-.][0-9A-Za-z])"  # nor on the right ("-1", ".5", "A")
CONTEXT_CHARS = 24  # how far before a number its context word may stand (same line)

# A label naming a number that is not personal data, directly before it.
_NOT_PERSONAL = re.compile(
    r"(?:주문|송장|운송장|배송|택배|접수|예약|발주|거래|승인|영수증|상품|모델|제품|품번|부품|일련|"
    r"시리얼|serial|sku|p/?n|isbn|코드|code|버전|version|ver|build|빌드|좌표|우편)"
    r"\s*(?:번호|명|no\.?|#)?\s*[:#=]?\s*$", re.IGNORECASE)
_RRN_WORDS = re.compile(r"주민|외국인\s*등록|등록\s*번호|생년월일|rrn", re.IGNORECASE)
_BRN_WORDS = re.compile(r"사업자|법인\s*번호|등록\s*번호", re.IGNORECASE)
_ACCOUNT_WORDS = re.compile(r"계좌|입금|송금|이체|예금주|은행|뱅크|농협|신협|새마을금고|우체국|"
                            r"account", re.IGNORECASE)
_PHONE_WORDS = re.compile(r"전화|연락|문의|휴대|핸드폰|폰|tel|phone|mobile|팩스|fax|☎|📞|번호",
                          re.IGNORECASE)
_PASSPORT_WORDS = re.compile(r"여권|passport", re.IGNORECASE)
_LICENSE_WORDS = re.compile(r"운전\s*면허|면허\s*번호|면허증|driver'?s?\s*licen[cs]e", re.IGNORECASE)
_INSURANCE_WORDS = re.compile(r"건강\s*보험|보험증|건보|의료\s*보험|health\s*insurance", re.IGNORECASE)
_PLATE_WORDS = re.compile(r"차량|자동차|번호판|차\s*번호|차번|plate", re.IGNORECASE)
_VERSION_WORDS = re.compile(r"버전|version|ver\.?|v\s*$", re.IGNORECASE)
_DATE = re.compile(r"(?:19|20)\d{2}[-./](?:0?[1-9]|1[0-2])[-./](?:0?[1-9]|[12]\d|3[01])$")

_REGIONS = "서울|부산|대구|인천|광주|대전|울산|세종|경기|강원|충북|충남|전북|전남|경북|경남|제주"
_PLATE_LETTERS = "가나다라마거너더러머버서어저고노도로모보소오조구누두루무부수우주아바사자배하허호"
_AREA = r"0(?:2|3[1-3]|4[1-4]|5[1-5]|6[1-4]|70|50[2-8])"  # landline, internet and safe numbers
_MOBILE = r"01[016789]"
_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _before(text: str, pos: int, chars: int = CONTEXT_CHARS) -> str:
    """Up to `chars` characters before `pos`, on the same line."""
    window = text[max(0, pos - chars):pos]
    return window[window.rfind("\n") + 1:]


def _said(words: re.Pattern, text: str, m: re.Match) -> bool:
    return words.search(_before(text, m.start())) is not None


def _vetoed(text: str, m: re.Match) -> bool:
    return _NOT_PERSONAL.search(_before(text, m.start(), 16)) is not None


def _real_date(yymmdd: str) -> bool:
    mm, dd = int(yymmdd[2:4]), int(yymmdd[4:6])
    return 1 <= mm <= 12 and 1 <= dd <= _DAYS[mm - 1]


def _rrn_ok(m: re.Match, text: str) -> bool:
    front, sep, back = m.group("f"), m.group("sep"), m.group("b")
    if not _real_date(front) or _vetoed(text, m):
        return False
    if not back[1:].isdigit():  # "900101-1******": hidden by its writer, still birth date and sex
        return back[0] in "12345678"
    if rrn_check_valid(front + back) or _said(_RRN_WORDS, text, m):
        return True
    return "-" in sep and back[0] in "12345678"


def _card_ok(m: re.Match, text: str) -> bool:
    digits = re.sub(r"\D", "", m.group(0))
    return 13 <= len(digits) <= 19 and luhn_valid(digits) and not _vetoed(text, m)


def _brn_ok(m: re.Match, text: str) -> bool:
    digits = re.sub(r"\D", "", m.group(0))
    if not brn_valid(digits) or _vetoed(text, m):
        return False
    return "-" in m.group(0) or _said(_BRN_WORDS, text, m)


def _account_ok(m: re.Match, text: str) -> bool:
    return (_said(_ACCOUNT_WORDS, text, m) and not _DATE.match(m.group(0))
            and not _vetoed(text, m))


def _phone_ok(m: re.Match, text: str) -> bool:
    if _vetoed(text, m):
        return False
    number = m.group(0)
    if re.fullmatch(_AREA + r"\d{7,8}", number):  # a landline without separators: say so
        return _said(_PHONE_WORDS, text, m)
    return True


def _ip_ok(m: re.Match, text: str) -> bool:
    if any(int(p) > 255 for p in m.group(0).split(".")):
        return False
    return not _vetoed(text, m) and not _VERSION_WORDS.search(_before(text, m.start(), 12))


def _context(words: re.Pattern) -> Callable[[re.Match, str], bool]:
    return lambda m, text: _said(words, text, m) and not _vetoed(text, m)


def _licence_ok(m: re.Match, text: str) -> bool:
    return _said(_LICENSE_WORDS, text, m)


def _insurance_ok(m: re.Match, text: str) -> bool:
    # (a mobile number after "건강보험 문의" is a phone number: left to the phone rule)
    return _said(_INSURANCE_WORDS, text, m) and not re.match(_MOBILE, m.group(0))


@dataclass(frozen=True)
class Rule:
    type: str
    pattern: re.Pattern
    check: Optional[Callable[[re.Match, str], bool]]  # (match, whole text) -> is personal data


# Order matters: earlier rules claim their text first.
RULES: list[Rule] = [
    Rule("email", re.compile(
        r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"), None),
    Rule("rrn", re.compile(
        _LEFT + r"(?P<f>\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]))(?P<sep> ?[-–] ?| ?)"
        r"(?P<b>\d{7}|[0-9][*xX●○]{6})(?![0-9A-Za-z*●○]|[-.]\d)"), _rrn_ok),
    Rule("card", re.compile(_LEFT + r"\d{4}(?:[- ]?\d{4}){2}[- ]?\d{1,7}" + _RIGHT), _card_ok),
    Rule("brn", re.compile(_LEFT + r"\d{3}(?:-\d{2}-|\d{2})\d{5}" + _RIGHT), _brn_ok),
    Rule("driver_license", re.compile(
        _LEFT + rf"(?:(?:{_REGIONS}) ?|(?:1[1-9]|2[0-8])[- ]?)\d{{2}}[- ]?\d{{6}}[- ]?\d{{2}}" + _RIGHT),
        _licence_ok),
    Rule("health_insurance", re.compile(_LEFT + r"(?:\d{1,2}[- ]?\d{8,10}|\d{11})" + _RIGHT),
         _insurance_ok),
    Rule("passport", re.compile(
        r"(?<![0-9A-Za-z])(?:[MSRODG]\d{8}|[MSRODG]\d{3}[A-Z]\d{4})(?![0-9A-Za-z])"),
        _context(_PASSPORT_WORDS)),
    Rule("vehicle_plate", re.compile(
        rf"(?<![0-9A-Za-z])(?:(?:{_REGIONS}) ?)?\d{{2,3}} ?[{_PLATE_LETTERS}] ?\d{{4}}(?![0-9])"),
        _context(_PLATE_WORDS)),
    Rule("account", re.compile(_LEFT + r"(?:\d{2,6}(?:[-–]\d{2,6}){1,4}|\d{10,14})" + _RIGHT),
         _account_ok),
    Rule("phone", re.compile(
        r"(?<![0-9A-Za-z])(?:\+|00)82[- ]?(?:\(0\)[- ]?)?(?:1[016789]|2|3[1-3]|4[1-4]|5[1-5]|6[1-4]|70)"
        r"[-. ]?\d{3,4}[-. ]?\d{4}" + _RIGHT
        + "|" + _LEFT + rf"(?:\({_AREA}\) ?|(?:{_MOBILE}|{_AREA})(?:[-.]|\) ?| ))\d{{3,4}}[-. ]\d{{4}}" + _RIGHT
        + "|" + _LEFT + rf"(?:{_MOBILE}\d{{7,8}}|{_AREA}\d{{7,8}})" + _RIGHT), _phone_ok),
    Rule("ip", re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]*\d)"), _ip_ok),
]
PII_TYPES = [rule.type for rule in RULES] + ["user"]
assert set(PII_TYPES) <= set(PLACEHOLDER_TYPES)
PiiType = Literal[tuple(PII_TYPES)]  # (checked when a recipe is loaded)


@dataclass
class PiiConfig:
    types: list[PiiType] = field(default_factory=lambda: list(PII_TYPES))
    salt: str = ""  # salt for user id hashes; set per corpus and keep it secret
    hash_keys: list[str] = field(default_factory=lambda: ["user_id"])  # metadata kept only as a hash
    handle_keys: list[str] = field(default_factory=lambda: ["user_id", "author", "nickname"])
    placeholder: str = "<|{type}|>"


def hash_id(value: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}\x00{value}".encode("utf-8")).hexdigest()[:16]


def mask_text(text: str, cfg: PiiConfig, counts: Counter, handles: list[str] = ()) -> str:
    """Replace each detected item with its typed placeholder; add per-type counts to `counts`."""
    for rule in RULES:
        if rule.type not in cfg.types:
            continue
        placeholder = cfg.placeholder.format(type=rule.type)

        def sub(m: re.Match, rule=rule, placeholder=placeholder, text=text) -> str:
            if rule.check is not None and not rule.check(m, text):
                return m.group(0)
            counts[rule.type] += 1
            return placeholder

        text = rule.pattern.sub(sub, text)
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
