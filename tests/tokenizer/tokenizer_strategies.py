"""Hypothesis strategies for text that stresses tokenizers: every script and whitespace we care
about, glued together in random order."""
from __future__ import annotations

import unicodedata

from hypothesis import strategies as st

FRAGMENTS = [
    "한국어", "형태소 분석기", "먹었습니다", "학교에서는", " ", "  ", "\t", "\n", "\r\n", "\u3000",
    "\u00a0", "漢字", "日本語です", "カタカナ", "Latin", "café", "123", "3.14", "😀", "👨‍👩‍👧‍👦",
    "🇰🇷", "https://example.com/a?b=1&c=%20", "def f(x):\n    return x", "<|endoftext|>",
    "\x1f", "\x00", "▁", "ㅋㅋㅋㅋ", "ㅎ", "\u200d", "\ufeff", "\U0010ffff",
    unicodedata.normalize("NFD", "한글 자모"), "가" * 40,
]

utf8_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
korean_text = st.text(alphabet=st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3), max_size=20)

mixed_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), utf8_text, korean_text),
                      max_size=12).map("".join)
