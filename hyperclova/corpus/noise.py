"""Realistic noise for the synthetic corpus: fake-but-valid-format personal data, ads, junk, dups.

Every generator takes a `random.Random` so the noisy corpus is reproducible from its seed. The PII
generators produce numbers that pass the same format checks (RRN check digit, Luhn, business
number check digit) that `hyperclova.corpus.pii` applies, so the cleaner can be tested on them.
None of these numbers belongs to anybody: they are drawn at random.
"""
from __future__ import annotations

import random

_EMAIL_DOMAINS = ["example.com", "example.co.kr", "mail.example.net", "test.example.org"]
_AREA_CODES = ["02", "031", "032", "051", "053", "062", "042", "064"]
_BANKS = ["국민은행", "신한은행", "우리은행", "하나은행", "농협", "카카오뱅크"]
_NAMES = ["sunny", "haneul", "minji", "jun", "bora", "dami", "hoya", "gaon", "narae", "seri"]


def luhn_check_digit(digits: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:  # these positions are doubled once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def rrn_check_digit(first12: str) -> str:
    weights = [2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5]
    s = sum(int(c) * w for c, w in zip(first12, weights))
    return str((11 - s % 11) % 10)


def brn_check_digit(first9: str) -> str:
    weights = [1, 3, 7, 1, 3, 7, 1, 3, 5]
    s = sum(int(c) * w for c, w in zip(first9, weights))
    s += int(first9[8]) * 5 // 10
    return str((10 - s % 10) % 10)


def _digits(rng: random.Random, n: int) -> str:
    return "".join(str(rng.randrange(10)) for _ in range(n))


def fake_rrn(rng: random.Random) -> str:
    yy, mm, dd = rng.randrange(100), rng.randint(1, 12), rng.randint(1, 28)
    first12 = f"{yy:02d}{mm:02d}{dd:02d}{rng.randint(1, 4)}{_digits(rng, 5)}"
    return f"{first12[:6]}-{first12[6:]}{rrn_check_digit(first12)}"


def fake_mobile(rng: random.Random) -> str:
    sep = rng.choice(["-", "-", " ", "."])
    return f"010{sep}{rng.randint(2000, 9999)}{sep}{_digits(rng, 4)}"


def fake_landline(rng: random.Random) -> str:
    return f"{rng.choice(_AREA_CODES)}-{rng.randint(200, 9999)}-{_digits(rng, 4)}"


def fake_email(rng: random.Random) -> str:
    return f"{rng.choice(_NAMES)}{rng.randint(1, 999)}@{rng.choice(_EMAIL_DOMAINS)}"


def fake_card(rng: random.Random) -> str:
    first15 = rng.choice(["4", "5", "9"]) + _digits(rng, 14)
    n = first15 + luhn_check_digit(first15)
    return "-".join(n[i:i + 4] for i in range(0, 16, 4))


def fake_account(rng: random.Random) -> str:
    return f"{_digits(rng, 3)}-{_digits(rng, 2)}-{_digits(rng, 6)}"


def fake_passport(rng: random.Random) -> str:
    return rng.choice("MSRO") + _digits(rng, 8)


def fake_brn(rng: random.Random) -> str:
    first9 = f"{rng.randint(101, 899)}{rng.randint(1, 99):02d}{_digits(rng, 4)}"
    n = first9 + brn_check_digit(first9)
    return f"{n[:3]}-{n[3:5]}-{n[5:]}"


def fake_ip(rng: random.Random) -> str:
    return ".".join(str(rng.randint(1, 254)) for _ in range(4))


def pii_sentence(rng: random.Random) -> tuple[str, str]:
    """A sentence carrying one piece of personal data, and the PII type it carries."""
    kind = rng.choice(["phone", "phone", "email", "email", "rrn", "card", "account", "passport",
                       "brn", "ip"])
    if kind == "phone":
        s = rng.choice(["궁금한 점은 {}로 연락 주세요.", "문의는 {} 번호로 부탁드려요.",
                        "사무실 번호는 {}입니다."])
        return s.format(fake_mobile(rng) if rng.random() < 0.7 else fake_landline(rng)), kind
    if kind == "email":
        return rng.choice(["자세한 내용은 {} 로 메일 주세요.", "제보: {}"]).format(fake_email(rng)), kind
    if kind == "rrn":
        return f"신청서에 주민등록번호 {fake_rrn(rng)}를 적어 냈어요.", kind
    if kind == "card":
        return f"결제한 카드 번호가 {fake_card(rng)}인데 확인 부탁드립니다.", kind
    if kind == "account":
        return f"입금 계좌는 {rng.choice(_BANKS)} {fake_account(rng)}입니다.", kind
    if kind == "passport":
        return f"여권번호 {fake_passport(rng)}로 예약했어요.", kind
    if kind == "brn":
        return f"사업자등록번호: {fake_brn(rng)}", kind
    return f"접속 기록을 보니 IP {fake_ip(rng)}에서 로그인했더라고요.", kind


_SPAM_LINES = [
    "★★ 오늘만 특가 ★★ {product} 최대 90% 할인!!",
    "지금 바로 클릭 ▶ http://promo.example.com/{code}",
    "무료 상담 문의 {phone} (24시간)",
    "카톡 친구 추가하면 쿠폰 100% 증정!!!",
    "선착순 {n}명 한정 이벤트 놓치지 마세요 ~~",
    "대출 당일 승인 가능 ☎ {phone}",
    "초특가 세일 http://bit.example.kr/{code} 지금 구매하세요",
]


def spam_text(rng: random.Random, product: str) -> str:
    lines = rng.sample(_SPAM_LINES, k=rng.randint(3, 5))
    fill = dict(product=product, phone=fake_mobile(rng), n=rng.randint(10, 100),
                code="".join(rng.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(6)))
    return "\n".join(line.format(**fill) for line in lines)


def laugh_run(rng: random.Random) -> str:
    return rng.choice("ㅋㅎㅠ") * rng.randint(8, 30)


def junk_text(rng: random.Random, words: list[str]) -> str:
    """Meaningless word sequences: one phrase repeated, or a salad of random syllables."""
    if rng.random() < 0.5:
        phrase = " ".join(rng.sample(words, k=min(2, len(words))))
        return " ".join([phrase] * rng.randint(15, 40))
    syllables = [chr(0xAC00 + rng.randrange(11172)) for _ in range(rng.randint(80, 200))]
    return " ".join("".join(syllables[i:i + rng.randint(1, 4)]) for i in range(0, len(syllables), 3))


def near_duplicate(rng: random.Random, text: str, n_edits: int = 2) -> str:
    """A light edit of `text`: swap or drop a few words, append a short tail (Jaccard ~0.7-0.95)."""
    words = text.split(" ")
    for _ in range(n_edits):
        op = rng.random()
        i = rng.randrange(len(words))
        if op < 0.4 and len(words) > 3:
            del words[i]
        elif op < 0.8:
            j = rng.randrange(len(words))
            words[i], words[j] = words[j], words[i]
        else:
            words.insert(i, rng.choice(["정말", "진짜", "너무", "참", "좀"]))
    tail = rng.choice(["", "", " ㅎㅎ", " (수정됨)", " 감사합니다."])
    return " ".join(words) + tail
