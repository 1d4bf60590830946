"""De-identification: every planted type masked, look-alikes untouched, user ids hashed."""
from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from hyperclova.corpus import noise as nz
from hyperclova.corpus.pii import PII_TYPES, PiiConfig, deidentify, hash_id, mask_text

CFG = PiiConfig(salt="test-salt")

PLANTED = [  # (text, type, the personal data itself)
    ("주민등록번호는 900101-1234568 입니다", "rrn", "900101-1234568"),
    ("주민번호 8507302345671로 조회", "rrn", "8507302345671"),
    ("신청인 210305-4837261 (2021년 출생)", "rrn", "210305-4837261"),  # since 2020: no check digit
    ("주민번호 2103054837261 확인", "rrn", "2103054837261"),  # no hyphen, no check digit: context
    ("외국인등록번호 850730-5234567", "rrn", "850730-5234567"),
    ("등록증 뒷면 8507306234564 참고", "rrn", "8507306234564"),  # foreigner: the 13 variant
    ("생년월일 900101-1****** 로 가입", "rrn", "900101-1******"),
    ("1899년생 991231-9123451 기록", "rrn", "991231-9123451"),  # 9/0: born in the 1800s
    ("오래된 호적 9912319123451", "rrn", "9912319123451"),  # no hyphen, no context: the check digit
    ("2005년생 050505-3123453 등록", "rrn", "050505-3123453"),  # 3/4: born since 2000
    ("외국인 등록 번호 020202 7123457", "rrn", "020202 7123457"),
    ("연락처 010-1234-5678 로 주세요", "phone", "010-1234-5678"),
    ("휴대폰 01098765432 입니다", "phone", "01098765432"),
    ("010.2345.6789로 문자 주세요", "phone", "010.2345.6789"),
    ("010 2345 6789로 문자 주세요", "phone", "010 2345 6789"),
    ("사무실 02-123-4567 입니다", "phone", "02-123-4567"),
    ("부산 지점 051)987-6543", "phone", "051)987-6543"),
    ("대표 (02) 1234-5678", "phone", "(02) 1234-5678"),
    ("Tel.031-123-4567", "phone", "031-123-4567"),
    ("해외에서는 +82-10-1234-5678 로", "phone", "+82-10-1234-5678"),
    ("해외에서는 +82 10 1234 5678 로", "phone", "+82 10 1234 5678"),
    ("Call +821012345678 now", "phone", "+821012345678"),
    ("본사 +82 (0)2-123-4567", "phone", "+82 (0)2-123-4567"),
    ("국제전화 0082-2-1234-5678", "phone", "0082-2-1234-5678"),
    ("전화 0212345678 로 주세요", "phone", "0212345678"),  # no separators: context word
    ("인터넷전화 07012345678", "phone", "07012345678"),
    ("메일은 hong.gildong+kr@example.co.kr 로", "email", "hong.gildong+kr@example.co.kr"),
    ("카드번호 4111-1111-1111-1111 결제", "card", "4111-1111-1111-1111"),
    ("카드 5500 0000 0000 0004 입니다", "card", "5500 0000 0000 0004"),
    ("입금 계좌: 국민은행 123456-01-234567 (홍길동)", "account", "123456-01-234567"),
    ("신한은행 110-123-456789로 송금해 주세요", "account", "110-123-456789"),
    ("카카오뱅크 계좌번호 3333012345678", "account", "3333012345678"),
    ("여권번호 M12345678로 예약", "passport", "M12345678"),
    ("여권 번호는 M123A4567 입니다", "passport", "M123A4567"),
    ("Passport No. S98765432", "passport", "S98765432"),
    ("사업자등록번호 220-81-62517", "brn", "220-81-62517"),
    ("사업자 번호 2208162517 로 발행", "brn", "2208162517"),
    ("운전면허 번호 11-23-456789-01", "driver_license", "11-23-456789-01"),
    ("운전면허증: 서울 12-345678-90", "driver_license", "서울 12-345678-90"),
    ("면허번호 112345678901 조회", "driver_license", "112345678901"),
    ("건강보험증 번호 1-2345678901 지참", "health_insurance", "1-2345678901"),
    ("건강보험 번호는 12345678901", "health_insurance", "12345678901"),
    ("차량번호 12가 3456 주차", "vehicle_plate", "12가 3456"),
    ("차량 번호: 123나4567", "vehicle_plate", "123나4567"),
    ("번호판이 서울12가3456 인 차", "vehicle_plate", "서울12가3456"),
    ("접속 IP 192.168.0.17 에서 로그인", "ip", "192.168.0.17"),
]

LOOKALIKES = [line for line in
              (Path(__file__).parent / "data" / "pii_lookalikes.txt").read_text(encoding="utf-8").splitlines()
              if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("text,kind,value", PLANTED)
def test_planted_pii_is_masked_with_its_type(text, kind, value):
    counts = Counter()
    out = mask_text(text, CFG, counts)
    assert value not in out and f"<|{kind}|>" in out
    assert counts == Counter({kind: 1})


@pytest.mark.parametrize("text", LOOKALIKES)
def test_lookalikes_are_not_masked(text):
    counts = Counter()
    assert mask_text(text, CFG, counts) == text and not counts


def test_lookalike_file_covers_every_rule():
    assert len(LOOKALIKES) >= 60
    assert {kind for _, kind, _ in PLANTED} == set(PII_TYPES) - {"user"}


def test_every_type_is_a_reserved_placeholder_token():
    from hyperclova.tokenizer.pretokenize import PII_TOKENS

    assert {f"<|{t}|>" for t in PII_TYPES} <= set(PII_TOKENS)
    assert PII_TOKENS[:6] == ("<|rrn|>", "<|phone|>", "<|email|>", "<|card|>", "<|account|>", "<|url|>")


def test_context_word_keeps_the_word_and_masks_only_the_number():
    counts = Counter()
    assert mask_text("운전면허 번호 11-23-456789-01입니다", CFG, counts) == "운전면허 번호 <|driver_license|>입니다"
    assert mask_text("차량번호 12가 3456", CFG, counts) == "차량번호 <|vehicle_plate|>"


def test_generated_pii_of_every_type_is_masked():
    rng = random.Random(0)
    seen = Counter()
    for _ in range(3000):
        sentence, kind = nz.pii_sentence(rng)
        counts = Counter()
        mask_text(sentence, CFG, counts)
        assert counts == Counter({kind: 1}), (sentence, counts)
        seen[kind] += 1
    assert set(seen) == set(PII_TYPES) - {"user"}


def test_metadata_handles_and_user_id_hashing():
    rec = {"text": "sunny_cat12 님 글 잘 봤어요. @sunny_cat12 감사!", "user_id": "sunny_cat12",
           "author": "김철수", "source": "cafe"}
    counts = Counter()
    out = deidentify(rec, CFG, counts)
    assert "sunny_cat12" not in out["text"] and out["text"].count("<|user|>") == 2
    assert out["user_id"] == hash_id("sunny_cat12", "test-salt") != hash_id("sunny_cat12", "other")
    assert out["source"] == "cafe" and rec["user_id"] == "sunny_cat12"  # input untouched
    assert counts["user"] == 2


def test_types_can_be_switched_off():
    counts = Counter()
    cfg = PiiConfig(salt="s", types=["email"])
    assert mask_text("010-1234-5678 a@example.com", cfg, counts) == "010-1234-5678 <|email|>"
