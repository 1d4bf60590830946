"""Pre-tokenization shared by every tokenizer type: the split regex, the morpheme marker, specials.

One regex serves all types so the comparison in docs/tokenizers.md isolates the effect of the
morpheme split. It is GPT-2's pattern with three changes, each for a reason:
- whitespace is an explicit character class (Unicode White_Space), not `\\s`, because the Oniguruma
  engine inside HF `tokenizers` and the Rust `regex` engine inside `tiktoken` disagree on `\\s`;
- runs are capped (32 letters/symbols/spaces, 3 digits) so a 10 MB line without spaces becomes many
  short pre-tokens: BPE memory and time stay bounded;
- the morpheme marker (U+001F) is always a pre-token of its own, so a marker placed between two
  morphemes is a wall no merge can cross. The marker's id is dropped after encoding.
"""
from __future__ import annotations

from hyperclova.corpus.pii import PLACEHOLDER_TYPES

# Unicode White_Space, written out so both regex engines see the same set.
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
MARKER = "\x1f"  # ASCII unit separator: a control character real text almost never contains
MAX_RUN = 32

_LETTER = r"[\p{L}\p{M}]"
_OTHER = "[^" + WHITESPACE + r"\p{L}\p{M}\p{N}" + MARKER + "]"
_WS = "[" + WHITESPACE + "]"
_NON_WS = "[^" + WHITESPACE + "]"

PATTERN = "|".join(
    [
        f" ?{_LETTER}{{1,{MAX_RUN}}}",
        r" ?\p{N}{1,3}",
        f" ?{_OTHER}{{1,{MAX_RUN}}}",
        f"{_WS}{{1,{MAX_RUN}}}(?!{_NON_WS})",
        f"{_WS}{{1,{MAX_RUN}}}",
        MARKER,
    ]
)

EOD = "<|endoftext|>"
PAD = "<|pad|>"
UNK = "<|unk|>"
# Placeholders the corpus cleaner substitutes for personal data (hyperclova/corpus/pii.py), one
# special token each; the list only grows at its end, so ids stay stable across retraining.
PII_TOKENS = tuple(f"<|{kind}|>" for kind in PLACEHOLDER_TYPES)
DEFAULT_RESERVED = 8


def special_tokens(n_reserved: int = DEFAULT_RESERVED) -> list[str]:
    """Special tokens in id order: end-of-document is 0, padding 1, unknown 2, then PII, reserved."""
    return [EOD, PAD, UNK, *PII_TOKENS, *(f"<|reserved_{i}|>" for i in range(n_reserved))]
