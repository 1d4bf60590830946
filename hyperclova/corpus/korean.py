"""Small Korean grammar helpers: particle (josa) allomorphs chosen by the preceding sound.

Korean particles change form depending on whether the word before them ends in a consonant
(batchim): 책은 / 사과는, 책이 / 사과가, 책을 / 사과를, 서울로 / 부산으로 (ㄹ takes 로).
Getting these right is most of what makes template text read as Korean.
"""
from __future__ import annotations

import re

_HANGUL_FIRST, _HANGUL_LAST = 0xAC00, 0xD7A3
_RIEUL = 8  # index of ㄹ among the 28 final-consonant slots (0 = none)

# How the last character of a non-Hangul token is read aloud: True = ends in a consonant.
# Digits: 영 일 이 삼 사 오 육 칠 팔 구; ㄹ-final digits (1, 7, 8) also count as ㄹ for 으로/로.
_DIGIT_FINAL = {"0": 21, "1": _RIEUL, "2": 0, "3": 16, "4": 0, "5": 0, "6": 1, "7": _RIEUL,
                "8": _RIEUL, "9": 0}
# Latin letters read as Korean syllables (a=에이, b=비, ..., l=엘, m=엠, n=엔, r=알).
_LATIN_FINAL = {"l": _RIEUL, "m": 16, "n": 4, "r": _RIEUL}

# particle key (consonant form) -> (after consonant, after vowel)
_PAIRS = {
    "은": ("은", "는"), "는": ("은", "는"),
    "이": ("이", "가"), "가": ("이", "가"),
    "을": ("을", "를"), "를": ("을", "를"),
    "과": ("과", "와"), "와": ("과", "와"),
    "이랑": ("이랑", "랑"), "이나": ("이나", "나"), "이라": ("이라", "라"),
    "이에요": ("이에요", "예요"), "이다": ("이다", "다"), "이고": ("이고", "고"),
    "으로": ("으로", "로"), "로": ("으로", "로"),
    "입니다": ("입니다", "입니다"), "의": ("의", "의"), "에": ("에", "에"), "도": ("도", "도"),
    "에서": ("에서", "에서"), "만": ("만", "만"),
}

_TRAILING_JUNK = " \t)]}\"'.,!?~%"


def final_consonant(word: str) -> int:
    """Index (0-27) of the final consonant of the last readable character; 0 means a vowel."""
    for ch in reversed(word.rstrip(_TRAILING_JUNK)):
        code = ord(ch)
        if _HANGUL_FIRST <= code <= _HANGUL_LAST:
            return (code - _HANGUL_FIRST) % 28
        if ch in _DIGIT_FINAL:
            return _DIGIT_FINAL[ch]
        if ch.isascii() and ch.isalpha():
            return _LATIN_FINAL.get(ch.lower(), 0)
    return 0


def josa(word: str, particle: str) -> str:
    """`word` followed by the right form of `particle` (given in either form): josa('책', '는') -> '책은'."""
    if particle not in _PAIRS:
        raise ValueError(f"unknown particle {particle!r}")
    after_consonant, after_vowel = _PAIRS[particle]
    fc = final_consonant(word)
    if after_consonant == "으로":
        return word + ("으로" if fc not in (0, _RIEUL) else "로")
    return word + (after_consonant if fc else after_vowel)


_SLOT = re.compile(r"\{(\w+)(?:\|(\w+))?\}")


def fill(template: str, lookup) -> str:
    """Replace `{slot}` and `{slot|particle}` in `template` with `lookup(slot)` (+ particle)."""

    def sub(m: re.Match) -> str:
        word = lookup(m.group(1))
        return josa(word, m.group(2)) if m.group(2) else word

    return _SLOT.sub(sub, template)


def slots_in(template: str) -> list[str]:
    return [m.group(1) for m in _SLOT.finditer(template)]
