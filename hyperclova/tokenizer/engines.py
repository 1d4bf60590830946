"""Encoding engines behind `Tokenizer`: HF `tokenizers` (the reference), tiktoken (the fast path for
byte-level types) and SentencePiece. Each takes pre-marked text and returns ids with markers left in;
`Tokenizer` drops the marker id.

tiktoken is loaded with the same byte-level vocabulary (rank == id) and the same regex. Its merge
rule (lowest-ranked concatenation) equals HF's (lowest-ranked merge) when ids follow merge order,
which is how `tokenizers` trains; `train.py` checks this on the training sample and on every vocab
entry, and records `fast_engine: false` in the tokenizer directory if any id differs.
"""
from __future__ import annotations

import os
from functools import lru_cache

from hyperclova.tokenizer.pretokenize import PATTERN

THREADS_ENV = "HYPERCLOVA_TOKENIZER_THREADS"


def default_threads() -> int:
    """Threads one encode_batch call may use: 1 unless the env var says otherwise, because the
    serializer already runs one process per core."""
    return max(1, int(os.environ.get(THREADS_ENV, "1")))


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    from tokenizers.pre_tokenizers import ByteLevel

    # GPT-2's byte <-> printable-character table, as used by tokenizers' ByteLevel.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = {chr(c): b for b, c in zip(bs, cs)}
    assert set(table) == set(ByteLevel.alphabet())
    return table


def token_bytes(token: str) -> bytes:
    """Bytes of a byte-level BPE token string."""
    table = _byte_decoder()
    return bytes(table[c] for c in token)


class HFEngine:
    def __init__(self, hf, threads: int = 1) -> None:
        self.hf = hf
        # Text is data: a literal "<|endoftext|>" in a document must not become the EOD id.
        self.hf.encode_special_tokens = True
        self.threads = threads

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        if self.threads > 1:  # encode_batch runs on tokenizers' own (rayon) thread pool
            return [e.ids for e in self.hf.encode_batch_fast(texts, add_special_tokens=False)]
        enc = self.hf.encode
        return [enc(t, add_special_tokens=False).ids for t in texts]

    def encode_pretokenized(self, segments: list[str]) -> list[int]:
        return self.hf.encode(segments, is_pretokenized=True, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.hf.decode(ids, skip_special_tokens=False)


class TiktokenEngine:
    def __init__(self, hf, specials: dict[str, int], threads: int) -> None:
        import tiktoken

        vocab = hf.get_vocab()
        ranks = {token_bytes(tok): i for tok, i in vocab.items() if tok not in specials}
        self.enc = tiktoken.Encoding(
            name="hyperclova", pat_str=PATTERN, mergeable_ranks=ranks, special_tokens=specials
        )
        self.threads = threads

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        for t in texts:
            # tiktoken silently turns lone surrogates into U+FFFD; the check makes that an error.
            t.encode("utf-8")
        if self.threads > 1 and len(texts) > 1:
            return self.enc.encode_ordinary_batch(texts, num_threads=self.threads)
        enc = self.enc.encode_ordinary
        return [enc(t) for t in texts]

    def encode_pretokenized(self, segments: list[str]) -> list[int]:
        out: list[int] = []
        for seg in segments:
            out.extend(self.enc.encode_ordinary(seg))
        return out

    def decode(self, ids: list[int]) -> str:
        return self.enc.decode(ids, errors="replace")


class SpmEngine:
    """SentencePiece with identity normalisation and byte fallback. SentencePiece writes spaces as
    U+2581, so a literal U+2581 in the text is encoded through its byte-fallback pieces instead."""

    META = "\u2581"

    def __init__(self, model: bytes, specials: dict[str, int]) -> None:
        import sentencepiece as spm

        self._special_text = {i: tok for tok, i in specials.items()}

        self.sp = spm.SentencePieceProcessor(model_proto=model)
        self._meta_ids = [self.sp.piece_to_id(f"<0x{b:02X}>") for b in self.META.encode()]

    def _encode_one(self, text: str) -> list[int]:
        if self.META not in text:
            return self.sp.encode(text) if text else []
        out: list[int] = []
        for i, part in enumerate(text.split(self.META)):
            if i:
                out.extend(self._meta_ids)
            if part:
                out.extend(self.sp.encode(part))
        return out

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self._encode_one(t) for t in texts]

    def encode_pretokenized(self, segments: list[str]) -> list[int]:
        return self._encode_one("".join(segments))

    def piece_bytes(self, token_id: int) -> bytes:
        if token_id in self._special_text:
            return self._special_text[token_id].encode()
        piece = self.sp.id_to_piece(token_id)
        if self.sp.is_byte(token_id):  # "<0xAB>"
            return bytes([int(piece[3:5], 16)])
        return piece.replace(self.META, " ").encode()

    def decode(self, ids: list[int]) -> str:
        # SentencePiece renders control symbols as "", so special ids are spelled out here.
        out, run = [], []
        for i in ids:
            if i in self._special_text:
                out.append(self.sp.decode(run))
                out.append(self._special_text[i])
                run = []
            else:
                run.append(i)
        out.append(self.sp.decode(run))
        return "".join(out)
