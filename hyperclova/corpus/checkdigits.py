"""Check digits of Korean identifiers and payment cards: the one implementation of each, used by
the PII detector (pii.py) and by the synthetic-data generator (noise.py) alike.

Every function takes and returns digit strings (no separators).
"""
from __future__ import annotations

_RRN_WEIGHTS = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)
_BRN_WEIGHTS = (1, 3, 7, 1, 3, 7, 1, 3, 5)


def luhn_check_digit(payload: str) -> str:
    """The digit that makes `payload + digit` pass the Luhn test (payment cards)."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:  # doubled once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str(-total % 10)


def luhn_valid(number: str) -> bool:
    return len(number) > 1 and luhn_check_digit(number[:-1]) == number[-1]


def _rrn_sum(first12: str) -> int:
    return sum(int(c) * w for c, w in zip(first12, _RRN_WEIGHTS))


def rrn_check_digit(first12: str) -> str:
    """Resident registration number (주민등록번호) check digit, as issued until October 2020
    (numbers issued since then end in random digits and have none)."""
    return str((11 - _rrn_sum(first12) % 11) % 10)


def foreigner_check_digit(first12: str) -> str:
    """The variant some foreigner registration numbers (외국인등록번호, 7th digit 5-8) were issued
    with: 13 instead of 11. Others use `rrn_check_digit`; a detector accepts either."""
    return str((13 - _rrn_sum(first12) % 11) % 10)


def rrn_check_valid(number: str) -> bool:
    """True if the 13-digit `number` carries a check digit of its kind (Korean or foreigner)."""
    if len(number) != 13 or not number.isdigit():
        return False
    if number[-1] == rrn_check_digit(number[:12]):
        return True
    return number[6] in "5678" and number[-1] == foreigner_check_digit(number[:12])


def brn_check_digit(first9: str) -> str:
    """Business registration number (사업자등록번호) check digit."""
    total = sum(int(c) * w for c, w in zip(first9, _BRN_WEIGHTS))
    total += int(first9[8]) * 5 // 10
    return str(-total % 10)


def brn_valid(number: str) -> bool:
    return len(number) == 10 and number.isdigit() and brn_check_digit(number[:9]) == number[9]
