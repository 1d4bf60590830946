"""Hugging Face `transformers` interop (issue 4 §6).

The `tokenizer.json` of `bbpe` and `char-bpe` is a complete HF tokenizer: `to_transformers(dir)`
loads it as a `PreTrainedTokenizerFast` that encodes exactly like `Tokenizer`. `morpheme-bbpe` needs
MeCab-ko to run first, which `tokenizer.json` cannot express; `MorphemeHFTokenizer` is the small
wrapper that does that and then calls the same `PreTrainedTokenizerFast`.

One convention differs from `transformers`' default: a literal "<|endoftext|>" in text stays text
(`split_special_tokens=True`), as in `Tokenizer.encode`.
"""
from __future__ import annotations

import os
from pathlib import Path

from hyperclova.errors import UserError
from hyperclova.tokenizer.load import HF_FILE, load_tokenizer
from hyperclova.tokenizer.morphemes import MorphemeSplitter
from hyperclova.tokenizer.pretokenize import EOD, PAD, UNK


def to_transformers(directory: str | os.PathLike, split_special_tokens: bool = True):
    """A `transformers.PreTrainedTokenizerFast` over the directory's `tokenizer.json`."""
    from transformers import PreTrainedTokenizerFast

    meta = load_tokenizer(directory).meta  # validates the directory
    if meta["type"] == "spm":
        raise UserError(f"{directory}: type 'spm' has no tokenizer.json; load spm.model with "
                        f"sentencepiece")
    return PreTrainedTokenizerFast(
        tokenizer_file=str(Path(directory) / HF_FILE), eos_token=EOD, pad_token=PAD,
        unk_token=UNK, split_special_tokens=split_special_tokens, clean_up_tokenization_spaces=False,
    )


class MorphemeHFTokenizer:
    """`PreTrainedTokenizerFast` preceded by the MeCab-ko split, for `morpheme-bbpe` directories.

        tok = MorphemeHFTokenizer("tok/")
        tok("안녕하세요")["input_ids"]; tok.encode(text); tok.decode(ids)
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.hf = to_transformers(directory)
        self.splitter = MorphemeSplitter()

    def __call__(self, text: str | list[str], **kwargs):
        # Segments are walls: each is pre-tokenized and merged on its own, as in training.
        if isinstance(text, str):
            return self.hf(self.splitter.segments(text) or [""], is_split_into_words=True,
                           add_special_tokens=False, **kwargs)
        return self.hf([self.splitter.segments(t) or [""] for t in text],
                       is_split_into_words=True, add_special_tokens=False, **kwargs)

    def encode(self, text: str) -> list[int]:
        return self(text)["input_ids"]

    def decode(self, ids, **kwargs) -> str:
        return self.hf.decode(ids, clean_up_tokenization_spaces=False, **kwargs)

    @property
    def vocab_size(self) -> int:
        return len(self.hf)
