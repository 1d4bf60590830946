"""The one `Tokenizer` interface (serializer, trainer, generation) and `load_tokenizer`.

A tokenizer directory (docs/tokenizers.md) holds the model file of its engine (`tokenizer.json`
for the BPE types, `spm.model` for SentencePiece) and `hyperclova_tokenizer.json`, which says which
pre-tokenization runs first (MeCab-ko morphemes for `morpheme-bbpe`). The morpheme analysis happens
inside `Tokenizer`, so a caller that only knows the directory gets the right pre-tokenization.
"""
from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from pathlib import Path
from typing import Any, Iterable

from hyperclova.errors import UserError
from hyperclova.tokenizer import engines
from hyperclova.tokenizer.morphemes import MorphemeSplitter
from hyperclova.tokenizer.pretokenize import EOD, MARKER, PAD, PATTERN, UNK

META_FILE = "hyperclova_tokenizer.json"
HF_FILE = "tokenizer.json"
SPM_FILE = "spm.model"
FORMAT_VERSION = 1
TYPES = ("morpheme-bbpe", "bbpe", "char-bpe", "spm")
BYTE_LEVEL_TYPES = ("morpheme-bbpe", "bbpe")
NORMALIZATIONS = ("none", "nfc")


class Tokenizer:
    """Encode/decode with the pre-tokenization its directory asks for.

    `encode` never turns text into special ids: a literal "<|endoftext|>" in a document is text.
    Special ids come only from callers (e.g. the serializer appending `eod_id`).
    """

    def __init__(self, meta: dict[str, Any], hf=None, spm_model: bytes | None = None,
                 engine: str = "auto", threads: int | None = None,
                 segment_cache: bool = True) -> None:
        self.meta = meta
        self._hf = hf
        self._spm_model = spm_model
        self._engine_choice = engine
        self._threads = threads or engines.default_threads()
        self._specials: dict[str, int] = dict(meta["special_tokens"])
        self._splitter = MorphemeSplitter() if meta["pretokenization"] == "mecab-ko" else None
        self._engine = self._make_engine()
        self._marker_id = self._find_marker_id()
        # MeCab-ko analyses of repeated eojeols, reused when provably what MeCab would output in
        # context (morpheme_cache.py); segment_cache=False runs MeCab on every text (the reference).
        self._segment_cache = segment_cache
        self._cache = None
        if self._splitter is not None and segment_cache:
            from hyperclova.tokenizer.morpheme_cache import MorphemeCache

            self._cache = MorphemeCache(self._splitter, self._encode_marked)

    # -- construction ---------------------------------------------------------------------------
    def _make_engine(self):
        kind = self.meta["type"]
        if kind == "spm":
            return engines.SpmEngine(self._spm_model, self._specials)
        use_fast = self._engine_choice == "tiktoken" or (
            self._engine_choice == "auto" and self.meta.get("fast_engine", False)
        )
        if use_fast and kind not in BYTE_LEVEL_TYPES:
            raise UserError(f"engine 'tiktoken' only serves byte-level types, not {kind!r}")
        if use_fast:
            return engines.TiktokenEngine(self._hf, self._specials, self._threads)
        return engines.HFEngine(self._hf, self._threads)

    def _find_marker_id(self) -> int | None:
        if self._splitter is None:
            return None
        from tokenizers.pre_tokenizers import ByteLevel

        byte_char = [c for c in ByteLevel.alphabet() if engines.token_bytes(c) == MARKER.encode()]
        return self._hf.token_to_id(byte_char[0])

    def __getstate__(self) -> dict:
        # Worker processes rebuild engines from the serialised model, never share a Rust object.
        return {"meta": self.meta, "hf_json": self._hf.to_str() if self._hf else None,
                "spm_model": self._spm_model, "engine": self._engine_choice,
                "threads": self._threads, "segment_cache": self._segment_cache}

    def __setstate__(self, state: dict) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        hf = HFTokenizer.from_str(state["hf_json"]) if state["hf_json"] else None
        self.__init__(state["meta"], hf, state["spm_model"], state["engine"], state["threads"],
                      state.get("segment_cache", True))

    # -- properties -----------------------------------------------------------------------------
    @property
    def type(self) -> str:
        return self.meta["type"]

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._specials)

    @property
    def eod_id(self) -> int:
        return self._specials[EOD]

    @property
    def pad_id(self) -> int:
        return self._specials[PAD]

    @property
    def unk_id(self) -> int:
        return self._specials[UNK]

    @property
    def marker_id(self) -> int | None:
        """The id of the morpheme marker (dropped after encoding; never generated), or None."""
        return self._marker_id

    @property
    def hf_tokenizer(self):
        """The underlying `tokenizers.Tokenizer` (None for spm)."""
        return self._hf

    @property
    def engine_name(self) -> str:
        return type(self._engine).__name__

    @property
    def segment_cache_stats(self) -> dict | None:
        """What the morpheme cache did so far (None without one): eojeols certified from the
        cache, encoded from MeCab windows, chunks sent to MeCab whole, eojeols analysed."""
        return self._cache.stats.as_dict() if self._cache is not None else None

    # -- encoding -------------------------------------------------------------------------------
    def normalize(self, text: str) -> str:
        if self.meta.get("normalization", "none") == "nfc":
            return unicodedata.normalize("NFC", text)
        return text

    def segments(self, text: str) -> list[str]:
        """The pre-tokenization segments BPE sees as walls (morphemes, or the whole text)."""
        text = self.normalize(text)
        return self._splitter.segments(text) if self._splitter else [text]

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """The bulk path. Single-threaded unless HYPERCLOVA_TOKENIZER_THREADS (or `threads`) says
        otherwise, so N serializer workers use N cores."""
        try:
            return self._encode_batch(texts)
        except (UnicodeError, TypeError, ValueError, AttributeError) as e:
            _raise_for_bad_text(texts, e)
            raise

    def _encode_batch(self, texts: list[str]) -> list[list[int]]:
        if self.meta.get("normalization", "none") != "none":
            texts = [self.normalize(t) for t in texts]
        if self._splitter is None:
            return self._engine.encode_batch(texts)
        # MeCab writes MARKER between segments, the engine isolates MARKER as its own pre-token,
        # and its id is dropped. Texts containing MARKER themselves go segment by segment.
        out: list[list[int] | None] = [None] * len(texts)
        fast_idx = [i for i, t in enumerate(texts) if MARKER not in t]
        if self._cache is not None:
            for i, ids in zip(fast_idx, self._cache.encode_batch([texts[i] for i in fast_idx])):
                out[i] = ids
        else:
            marked = [self._splitter.mark(texts[i]) for i in fast_idx]
            mid = self._marker_id
            for i, ids in zip(fast_idx, self._engine.encode_batch(marked)):
                out[i] = [t for t in ids if t != mid]
        for i, t in enumerate(texts):
            if out[i] is None:
                out[i] = self._engine.encode_pretokenized(self._splitter.segments(t))
        return out  # type: ignore[return-value]

    def _encode_marked(self, marked: str) -> list[int]:
        """Ids of morpheme segments joined by MARKER, the marker ids dropped."""
        mid = self._marker_id
        return [t for t in self._engine.encode_batch([marked])[0] if t != mid]

    def decode(self, ids: Iterable[int]) -> str:
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        return self._engine.decode(list(ids))

    def id_to_bytes(self, token_id: int) -> bytes:
        """The bytes a single id decodes to (a special token gives its own name)."""
        if self.type in BYTE_LEVEL_TYPES:
            tok = self._hf.id_to_token(token_id)
            if tok in self._specials:
                return tok.encode()
            return engines.token_bytes(tok)
        if self.type == "spm":
            return self._engine.piece_bytes(token_id)
        tok = self._hf.id_to_token(token_id)
        return tok.encode()  # char-bpe: the token is its characters (<|unk|> spells its name)

    # -- persistence ----------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        if self._hf is not None:
            self._hf.save(str(d / HF_FILE))
        if self._spm_model is not None:
            (d / SPM_FILE).write_bytes(self._spm_model)
        (d / META_FILE).write_text(json.dumps(self.meta, indent=2, ensure_ascii=False) + "\n",
                                   encoding="utf-8")

    @classmethod
    def load(cls, directory: str | os.PathLike, engine: str = "auto",
             threads: int | None = None, segment_cache: bool = True) -> "Tokenizer":
        return load_tokenizer(directory, engine=engine, threads=threads,
                              segment_cache=segment_cache)


def _raise_for_bad_text(texts: list[str], err: Exception) -> None:
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise UserError(f"document {i} of the batch is {type(t).__name__}, not str") from err
        try:
            t.encode("utf-8")
        except UnicodeEncodeError as e:
            raise UserError(
                f"document {i} of the batch is not valid Unicode: lone surrogate "
                f"U+{ord(t[e.start]):04X} at character {e.start} (decode input bytes as UTF-8 "
                f"with errors='strict' or 'replace' before tokenizing)"
            ) from err


def load_tokenizer(directory: str | os.PathLike, engine: str = "auto",
                   threads: int | None = None, segment_cache: bool = True) -> Tokenizer:
    """Load a tokenizer directory. engine: 'auto' (fast when verified), 'hf' or 'tiktoken'.
    segment_cache=False runs MeCab-ko on every text instead of reusing proven eojeol analyses
    (same ids, slower on a corpus; the reference the cache is tested against)."""
    d = Path(directory)
    if not d.is_dir():
        raise UserError(f"tokenizer directory {str(d)!r} does not exist")
    meta_path = d / META_FILE
    if not meta_path.is_file():
        raise UserError(f"{meta_path}: missing; not a hyperclova tokenizer directory "
                        f"(train one with tools/train_tokenizer.py)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{meta_path}: not valid JSON ({e})") from e
    _check_meta(meta, meta_path)
    if engine not in ("auto", "hf", "tiktoken"):
        raise UserError(f"engine must be 'auto', 'hf' or 'tiktoken', got {engine!r}")
    hf = spm_model = None
    if meta["type"] == "spm":
        path = d / SPM_FILE
        if not path.is_file():
            raise UserError(f"{path}: missing (type 'spm' needs it)")
        spm_model = path.read_bytes()
    else:
        from tokenizers import Tokenizer as HFTokenizer

        path = d / HF_FILE
        if not path.is_file():
            raise UserError(f"{path}: missing (type {meta['type']!r} needs it)")
        try:
            hf = HFTokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises a bare Exception on bad JSON
            raise UserError(f"{path}: not a valid HF tokenizers file ({e})") from e
    try:
        return Tokenizer(meta, hf, spm_model, engine, threads, segment_cache)
    except RuntimeError as e:
        raise UserError(f"{d}: could not build the tokenizer ({e})") from e


def tokenizer_fingerprint(directory: str | os.PathLike) -> str:
    """Content hash of the files that decide a tokenizer's ids (its model file and
    `hyperclova_tokenizer.json`), not of anything else in the directory (an export directory also
    holds weights). Recorded in every shard's sidecar; training compares it (data/indexed.py)."""
    d = Path(directory)
    h = hashlib.sha256()
    for name in (META_FILE, HF_FILE, SPM_FILE):
        path = d / name
        if path.is_file():
            h.update(name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def _check_meta(meta: Any, path: Path) -> None:
    if not isinstance(meta, dict):
        raise UserError(f"{path}: expected a JSON object")
    for key in ("format_version", "type", "pretokenization", "special_tokens", "vocab_size"):
        if key not in meta:
            raise UserError(f"{path}: missing key {key!r}")
    if meta["format_version"] > FORMAT_VERSION:
        raise UserError(f"{path}: format_version {meta['format_version']} is newer than this "
                        f"code understands ({FORMAT_VERSION}); upgrade hyperclova")
    if meta["type"] not in TYPES:
        raise UserError(f"{path}: key 'type' is {meta['type']!r}; expected one of {TYPES}")
    if meta["pretokenization"] not in ("mecab-ko", "none"):
        raise UserError(f"{path}: key 'pretokenization' is {meta['pretokenization']!r}; "
                        f"expected 'mecab-ko' or 'none'")
    if meta.get("normalization", "none") not in NORMALIZATIONS:
        raise UserError(f"{path}: key 'normalization' must be one of {NORMALIZATIONS}")
    if meta.get("pattern", PATTERN) != PATTERN:
        raise UserError(f"{path}: key 'pattern' differs from this code's pre-tokenization regex; "
                        f"the tokenizer was trained by an incompatible version")
    for tok in (EOD, PAD, UNK):
        if tok not in meta["special_tokens"]:
            raise UserError(f"{path}: key 'special_tokens' lacks {tok!r}")
