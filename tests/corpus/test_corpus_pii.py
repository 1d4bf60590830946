"""De-identification: every planted type masked, look-alikes untouched, user ids hashed."""
from __future__ import annotations

import random
from collections import Counter

import pytest

from hyperclova.corpus import noise as nz
from hyperclova.corpus.pii import PII_TYPES, PiiConfig, deidentify, hash_id, mask_text

CFG = PiiConfig(salt="test-salt")

PLANTED = [  # (text, type, the personal data itself)
    ("주민등록번호는 900101-1234568 입니다", "rrn", "900101-1234568"),
    ("주민번호 8507302345671로 조회", "rrn", "8507302345671"),
    ("연락처 010-1234-5678 로 주세요", "phone", "010-1234-5678"),
    ("휴대폰 01098765432 입니다", "phone", "01098765432"),
    ("010.2345.6789로 문자 주세요", "phone", "010.2345.6789"),
    ("사무실 02-123-4567 입니다", "phone", "02-123-4567"),
    ("부산 지점 051)987-6543", "phone", "051)987-6543"),
    ("메일은 hong.gildong+kr@example.co.kr 로", "email", "hong.gildong+kr@example.co.kr"),
    ("카드번호 4111-1111-1111-1111 결제", "card", "4111-1111-1111-1111"),
    ("카드 5500 0000 0000 0004 입니다", "card", "5500 0000 0000 0004"),
    ("입금 계좌: 국민은행 123456-01-234567 (홍길동)", "account", "123456-01-234567"),
    ("신한은행 110-123-456789로 송금해 주세요", "account", "110-123-456789"),
    ("여권번호 M12345678로 예약", "passport", "M12345678"),
    ("여권 번호는 M123A4567 입니다", "passport", "M123A4567"),
    ("사업자등록번호 220-81-62517", "brn", "220-81-62517"),
    ("접속 IP 192.168.0.17 에서 로그인", "ip", "192.168.0.17"),
]

LOOKALIKES = [
    "2024-01-15에 만나요", "2024.01.15 기준 집계", "2024년 1월 15일", "가격은 12,900원입니다",
    "총 1,234,567원 결제", "2023년에 출시된 모델", "상품코드 SKU-2024-0012", "모델명 AB-1234",
    "버전 v2.3.1로 업데이트", "오전 10:30에 시작", "주문번호 2024011512345", "고객센터 1588-1234",
    "우편번호 06236", "제품 코드 M12345678 재입고", "할인율 3.5%", "좌표 37.5665, 126.9780",
    "ISBN 978-89-1234-567-8", "1.2.3 버전", "잘못된 카드 4111-1111-1111-1112", "사업자 220-81-62518",
    "회원 수 120-45-67890명", "시속 120킬로미터", "2024-01-15-001 접수", "IP 대역 300.1.2.3은 없음",
    "계좌 개설은 2024년부터", "A4 용지 500매",
]


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
