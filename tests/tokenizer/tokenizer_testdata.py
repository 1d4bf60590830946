"""Constants shared by the tokenizer tests (a uniquely named module: every test directory has a
conftest.py, so `from conftest import ...` would be ambiguous)."""
from __future__ import annotations

TYPES = ("morpheme-bbpe", "bbpe", "char-bpe", "spm")
VOCAB = 1200

# Text that stresses pre-tokenization; used by several test modules.
MIXED = [
    "안녕하세요, 저는 학생입니다.  URL https://example.com/a?b=1&c=2 입니다.",
    "漢字 日本語です 😀 👨‍👩‍👧‍👦 ZWJ\n다음 줄\t탭  \r\nCRLF 끝  ",
    "def f(x):\n    return x ** 2  # 코드\n\n\n",
    "가" * 300 + " " + "ㅋ" * 200 + "!!!!" * 50,
    "숫자 1234567890 그리고 3.14159, 전각\u3000공백\u00a0NBSP",
    "\u1100\u1161\u11a8 NFD 한글: " + "\u1112\u1161\u11ab\u1100\u1173\u11af",
]
