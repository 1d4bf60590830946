"""Realistic noise for the synthetic corpus: fake-but-valid-format personal data, ads, junk, dups.

Every generator takes a `random.Random` so the noisy corpus is reproducible from its seed. The PII
generators produce numbers in every form `hyperclova.corpus.pii` masks, with check digits from the
same implementation it validates with (checkdigits.py), so the cleaner can be tested on them.
None of these numbers belongs to anybody: they are drawn at random.
"""
from __future__ import annotations

import random

from hyperclova.corpus.checkdigits import brn_check_digit, luhn_check_digit, rrn_check_digit

_EMAIL_DOMAINS = ["example.com", "example.co.kr", "mail.example.net", "test.example.org"]
_AREA_CODES = ["02", "031", "032", "051", "053", "062", "042", "064"]
_BANKS = ["국민은행", "신한은행", "우리은행", "하나은행", "농협", "카카오뱅크"]
_NAMES = ["sunny", "haneul", "minji", "jun", "bora", "dami", "hoya", "gaon", "narae", "seri"]


def _digits(rng: random.Random, n: int) -> str:
    return "".join(str(rng.randrange(10)) for _ in range(n))


def _birth_date(rng: random.Random) -> str:
    return f"{rng.randrange(100):02d}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"


def fake_rrn(rng: random.Random, sex_digits: str = "1234", checked: bool = True) -> str:
    """YYMMDD-SNNNNNC; `checked`: with the check digit issued until October 2020, else the
    random tail of numbers issued since (foreigners: sex_digits="5678")."""
    first12 = _birth_date(rng) + rng.choice(sex_digits) + _digits(rng, 5)
    last = rrn_check_digit(first12) if checked else str(rng.randrange(10))
    return f"{first12[:6]}-{first12[6:]}{last}"


def fake_mobile(rng: random.Random) -> str:
    sep = rng.choice(["-", "-", " ", ".", ""])
    return f"010{sep}{rng.randint(2000, 9999)}{sep}{_digits(rng, 4)}"


def fake_international(rng: random.Random) -> str:
    if rng.random() < 0.7:
        return f"+82{rng.choice(['-', ' ', ''])}10-{rng.randint(2000, 9999)}-{_digits(rng, 4)}"
    return f"+82 {rng.choice(['2', '31', '51'])}-{rng.randint(200, 999)}-{_digits(rng, 4)}"


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
    if rng.random() < 0.5:  # the format issued since 2020: a letter among the digits
        return f"M{_digits(rng, 3)}{rng.choice('ABCDEFGHJKLMNPQRSTUVWXYZ')}{_digits(rng, 4)}"
    return rng.choice("MSRO") + _digits(rng, 8)


def fake_brn(rng: random.Random, hyphens: bool = True) -> str:
    first9 = f"{rng.randint(101, 899)}{rng.randint(1, 99):02d}{_digits(rng, 4)}"
    n = first9 + brn_check_digit(first9)
    return f"{n[:3]}-{n[3:5]}-{n[5:]}" if hyphens else n


def fake_driver_license(rng: random.Random) -> str:
    return f"{rng.randint(11, 26)}-{_digits(rng, 2)}-{_digits(rng, 6)}-{_digits(rng, 2)}"


def fake_health_insurance(rng: random.Random) -> str:
    return f"{rng.randint(1, 9)}-{_digits(rng, 10)}"


def fake_plate(rng: random.Random) -> str:
    return f"{rng.randint(10, 399)}{rng.choice('가나다라마거너더러머버서어저고노도로모보소오조구누두루무부수우주하허호')} {_digits(rng, 4)}"


def fake_ip(rng: random.Random) -> str:
    return ".".join(str(rng.randint(1, 254)) for _ in range(4))


def pii_sentence(rng: random.Random) -> tuple[str, str]:
    """A sentence carrying one piece of personal data, and the PII type it carries."""
    kind = rng.choice(["phone", "phone", "email", "email", "rrn", "rrn", "card", "account",
                       "passport", "brn", "ip", "driver_license", "health_insurance",
                       "vehicle_plate"])
    if kind == "phone":
        s = rng.choice(["궁금한 점은 {}로 연락 주세요.", "문의는 {} 번호로 부탁드려요.",
                        "사무실 번호는 {}입니다."])
        x = rng.random()
        return s.format(fake_mobile(rng) if x < 0.6 else fake_international(rng) if x < 0.8
                        else fake_landline(rng)), kind
    if kind == "email":
        return rng.choice(["자세한 내용은 {} 로 메일 주세요.", "제보: {}"]).format(fake_email(rng)), kind
    if kind == "rrn":
        x = rng.random()
        if x < 0.4:
            return f"신청서에 주민등록번호 {fake_rrn(rng)}를 적어 냈어요.", kind
        if x < 0.6:
            return f"외국인등록번호: {fake_rrn(rng, '5678')}", kind
        if x < 0.8:  # issued since October 2020: no check digit, the context word decides
            return f"주민번호 {fake_rrn(rng, checked=False).replace('-', '')} 확인 부탁드립니다.", kind
        return f"신청인 {fake_rrn(rng, checked=False)} (2021년 출생 신고)", kind
    if kind == "card":
        return f"결제한 카드 번호가 {fake_card(rng)}인데 확인 부탁드립니다.", kind
    if kind == "account":
        return f"입금 계좌는 {rng.choice(_BANKS)} {fake_account(rng)}입니다.", kind
    if kind == "passport":
        return f"여권번호 {fake_passport(rng)}로 예약했어요.", kind
    if kind == "brn":
        if rng.random() < 0.5:
            return f"사업자등록번호: {fake_brn(rng)}", kind
        return f"사업자 번호 {fake_brn(rng, hyphens=False)} 로 세금계산서 발행", kind
    if kind == "driver_license":
        return f"운전면허 번호는 {fake_driver_license(rng)}입니다.", kind
    if kind == "health_insurance":
        return f"건강보험증 번호 {fake_health_insurance(rng)} 를 가져오세요.", kind
    if kind == "vehicle_plate":
        return f"주차 등록한 차량번호 {fake_plate(rng)} 입니다.", kind
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
