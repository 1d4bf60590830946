"""Hugging Face `transformers` interop (docs/tokenizers.md).

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


def MorphemeHFTokenizer(directory: str | os.PathLike):  # noqa: N802 (reads as a class)
    """The `PreTrainedTokenizerFast` subclass that `to-hf` exports for `morpheme-bbpe`
    (hyperclova/convert/tokenization_hyperclova.py): NFC when the directory says so, then the
    MeCab-ko split, then the same fast tokenizer — one implementation for both uses.

        tok = MorphemeHFTokenizer("tok/")
        tok("안녕하세요")["input_ids"]; tok.encode(text); tok.decode(ids)
    """
    from hyperclova.convert.tokenization_hyperclova import HyperclovaTokenizer

    meta = load_tokenizer(directory).meta  # validates the directory
    return HyperclovaTokenizer(
        tokenizer_file=str(Path(directory) / HF_FILE), eos_token=EOD, pad_token=PAD, unk_token=UNK,
        split_special_tokens=True, clean_up_tokenization_spaces=False,
        normalization=meta.get("normalization", "none"), pretokenization=meta["pretokenization"])
