"""Training every tokenizer type on a reproducible sample of JSONL/text corpora.

Memory stays bounded at corpus scale: documents stream from disk (sampled by `--sample-ratio` or
`--sample-bytes`), the pre-tokenization regex caps pre-token length, and the trainers keep only
pre-token counts (HF) or a bounded sentence sample (SentencePiece `input_sentence_size`). MeCab-ko
analysis runs in `workers` processes.
"""
from __future__ import annotations

import contextlib
import functools
import io
import itertools
import multiprocessing as mp
import os
import shutil
import time
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from hyperclova.data.reader import (InputFile, ReadStats, check_json_keys, expand_inputs, iter_records,
                                    text_bytes)
from hyperclova.errors import UserError
from hyperclova.paths import make_dir
from hyperclova.tokenizer.load import (BYTE_LEVEL_TYPES, FORMAT_VERSION, NORMALIZATIONS, TYPES,
                                       Tokenizer)
from hyperclova.tokenizer.morphemes import MorphemeSplitter
from hyperclova.tokenizer.pretokenize import (DEFAULT_RESERVED, MARKER, PATTERN, UNK,
                                              special_tokens)

_BATCH_DOCS = 256
_SPM_MAX_SENTENCE_CHARS = 4096


def train_tokenizer(files, output_dir: str, type: str = "morpheme-bbpe",
                    vocab_size: int = 64000, json_keys: Sequence[str] = ("text",),
                    sample_ratio: float | None = None, sample_bytes: int | None = None,
                    workers: int = 1, seed: int = 0, n_reserved: int = DEFAULT_RESERVED,
                    normalization: str = "none", min_frequency: int = 2,
                    spm_model_type: str = "bpe", verify_docs: int = 2000, show_progress: bool = True,
                    input_format: str = "auto", strict: bool = False, overwrite: bool = False) -> Tokenizer:
    """Train a tokenizer of `type` on `files` (read by hyperclova.data.reader: each json key's
    text is a training document) and save it to `output_dir`, which must not hold one already
    unless `overwrite`."""
    _check_args(type, vocab_size, n_reserved, normalization, workers, spm_model_type)
    if not overwrite and Path(output_dir).is_dir() and any(Path(output_dir).iterdir()):
        raise UserError(f"--output {output_dir} is not empty (an earlier tokenizer?); pass --overwrite to "
                        "replace it, then re-serialize: shards made with the old one do not fit the new one")
    make_dir(output_dir, "--output")
    inputs = expand_inputs(files, input_format)
    keys = check_json_keys(json_keys, inputs)
    ratio = sample_ratio_for(inputs, sample_ratio, sample_bytes)
    stats, used = ReadStats(), {"docs": 0, "bytes": 0}
    specials = special_tokens(n_reserved)
    docs = _documents(inputs, keys, ratio, seed, sample_bytes, strict, stats, used)
    if normalization == "nfc":
        import unicodedata

        docs = (unicodedata.normalize("NFC", d) for d in docs)
    held_out: list[str] = []  # the first documents, kept to verify the fast engine
    docs = _tee_head(docs, held_out, verify_docs)
    if show_progress:
        from tqdm import tqdm

        docs = tqdm(docs, desc=f"train {type}", unit=" docs", mininterval=1.0)
    start = time.perf_counter()
    if type == "spm":
        hf, spm_model = None, _train_spm(docs, vocab_size, specials, spm_model_type, workers)
    elif type == "morpheme-bbpe":
        # The pool forks before the trainer starts its threads.
        with _pool(workers) as pool:
            hf = _train_hf(_marked(docs, pool), type, vocab_size, specials, min_frequency,
                           show_progress)
    else:
        hf = _train_hf(docs, type, vocab_size, specials, min_frequency, show_progress)
    if hf is not None:
        spm_model = None
        if normalization == "nfc":  # so tokenizer.json alone gives the same ids
            from tokenizers import normalizers

            hf.normalizer = normalizers.NFC()
    seconds = time.perf_counter() - start
    if used["docs"] == 0:
        raise UserError(f"no documents to train on (keys {list(keys)}, sample ratio {ratio:g}):\n"
                        f"{stats.summary()}")
    meta = {
        "format_version": FORMAT_VERSION,
        "type": type,
        "pretokenization": "mecab-ko" if type == "morpheme-bbpe" else "none",
        "pattern": PATTERN,
        "marker": MARKER,
        "normalization": normalization,
        "special_tokens": {tok: i for i, tok in enumerate(specials)},
        "vocab_size": hf.get_vocab_size() if hf is not None else _spm_vocab_size(spm_model),
        "fast_engine": False,
        "training": {
            "files": [f.path for f in inputs], "json_keys": list(keys), "sample_ratio": ratio, "seed": seed,
            "docs_seen": stats.lines, "docs": used["docs"], "bytes": used["bytes"], "read": stats.to_json(),
            "requested_vocab_size": vocab_size, "seconds": round(seconds, 2),
            **({"spm_model_type": spm_model_type} if type == "spm" else {}),
        },
    }
    tok = Tokenizer(meta, hf, spm_model, engine="hf", segment_cache=False)
    _check_special_ids(tok, specials)
    if type in BYTE_LEVEL_TYPES:
        meta["fast_engine"] = fast_engine_matches(tok, held_out) == 0
    _save_replacing(tok, Path(output_dir))
    return Tokenizer.load(output_dir)


def sample_ratio_for(files: Sequence[InputFile], sample_ratio: float | None, sample_bytes: int | None) -> float:
    """The Bernoulli keep-probability per line; with a byte budget it is budget / input text size."""
    if sample_ratio is not None and sample_bytes is not None:
        raise UserError("give --sample-ratio or --sample-bytes, not both")
    if sample_ratio is not None:
        if not 0 < sample_ratio <= 1:
            raise UserError(f"--sample-ratio must be in (0, 1], got {sample_ratio}")
        return sample_ratio
    if sample_bytes is not None:
        if sample_bytes <= 0:
            raise UserError(f"--sample-bytes must be positive, got {sample_bytes}")
        total = sum(text_bytes(f) for f in files)
        return min(1.0, sample_bytes / max(total, 1))
    return 1.0


def _documents(inputs, keys, ratio: float, seed: int, max_bytes: int | None, strict: bool,
               stats: ReadStats, used: dict) -> Iterator[str]:
    """Training documents: every key's text of each sampled line, until `max_bytes` of lines."""
    for rec in iter_records(inputs, keys, strict=strict, stats=stats, sample_ratio=ratio, seed=seed):
        used["docs"] += len(rec.texts)
        used["bytes"] += rec.nbytes
        yield from rec.texts
        if max_bytes is not None and used["bytes"] >= max_bytes:
            return


def _save_replacing(tok: Tokenizer, out: Path) -> None:
    """Save into a fresh directory, then swap it in: no file of an older tokenizer survives."""
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tok.save(tmp)
    if out.exists():
        old = out.with_name(f"{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)


def _check_args(type: str, vocab_size: int, n_reserved: int, normalization: str, workers: int,
                spm_model_type: str) -> None:
    if type not in TYPES:
        raise UserError(f"--type must be one of {TYPES}, got {type!r}")
    if n_reserved < 0:
        raise UserError(f"n_reserved must be >= 0, got {n_reserved}")
    minimum = 256 + len(special_tokens(n_reserved)) + 1
    if vocab_size < minimum:
        raise UserError(f"--vocab-size {vocab_size} is too small: the 256 byte tokens and "
                        f"{len(special_tokens(n_reserved))} special tokens need at least {minimum}")
    if vocab_size > 2**31 - 1:
        raise UserError(f"--vocab-size {vocab_size} is too large")
    if normalization not in NORMALIZATIONS:
        raise UserError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    if spm_model_type not in ("bpe", "unigram"):
        raise UserError(f"spm model type must be 'bpe' or 'unigram', got {spm_model_type!r}")


def _tee_head(docs: Iterable[str], head: list[str], n: int) -> Iterator[str]:
    for d in docs:
        if len(head) < n:
            head.append(d)
        yield d


def _batches(it: Iterable[str], n: int) -> Iterator[list[str]]:
    it = iter(it)
    while batch := list(itertools.islice(it, n)):
        yield batch


def _mark_batch(splitter: MorphemeSplitter, batch: list[str]) -> list[str]:
    # A real MARKER in training text just adds a wall there; training needs no exactness.
    return [splitter.mark(t) for t in batch]


def _pool(workers: int):
    """A process pool for MeCab-ko, or a null context for one worker."""
    if workers == 1:
        return contextlib.nullcontext(None)
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    return ctx.Pool(workers)


def _marked(docs: Iterable[str], pool) -> Iterator[str]:
    """Documents with MARKER between morphemes; MeCab runs in `pool` when there is one."""
    splitter = MorphemeSplitter()
    if pool is None:
        for batch in _batches(docs, _BATCH_DOCS):
            yield from _mark_batch(splitter, batch)
        return
    fn = functools.partial(_mark_batch, splitter)
    for marked in pool.imap(fn, _batches(docs, _BATCH_DOCS), chunksize=1):
        yield from marked


def _train_hf(texts: Iterable[str], type: str, vocab_size: int, specials: list[str],
              min_frequency: int, show_progress: bool):
    from tokenizers import Regex, Tokenizer as HFTokenizer, decoders, models, pre_tokenizers, trainers

    split = pre_tokenizers.Split(Regex(PATTERN), behavior="isolated")
    if type in BYTE_LEVEL_TYPES:
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.Sequence(
            [split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        hf.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=specials, initial_alphabet=alphabet,
                                      show_progress=show_progress)
    else:  # char-bpe: BPE over Unicode characters; rare characters become <|unk|>
        hf = HFTokenizer(models.BPE(unk_token=UNK))
        hf.pre_tokenizer = split
        hf.decoder = decoders.Fuse()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=specials, limit_alphabet=vocab_size // 2,
                                      show_progress=show_progress)
    hf.train_from_iterator(texts, trainer=trainer)
    return hf


def _spm_sentences(docs: Iterable[str]) -> Iterator[str]:
    # SentencePiece trains on lines; long lines are cut so none is silently skipped.
    for d in docs:
        for line in d.split("\n"):
            for i in range(0, len(line), _SPM_MAX_SENTENCE_CHARS):
                yield line[i:i + _SPM_MAX_SENTENCE_CHARS]


def _train_spm(docs: Iterable[str], vocab_size: int, specials: list[str], model_type: str,
               workers: int) -> bytes:
    import sentencepiece as spm

    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=_spm_sentences(docs), model_writer=model, vocab_size=vocab_size,
            model_type=model_type, character_coverage=0.9995, byte_fallback=True,
            normalization_rule_name="identity", remove_extra_whitespaces=False,
            add_dummy_prefix=False, split_digits=True, allow_whitespace_only_pieces=True,
            max_sentence_length=4 * _SPM_MAX_SENTENCE_CHARS + 16,
            input_sentence_size=2_000_000, shuffle_input_sentence=True, num_threads=workers,
            eos_id=0, eos_piece=specials[0], pad_id=1, pad_piece=specials[1],
            unk_id=2, unk_piece=specials[2], bos_id=-1,
            control_symbols=",".join(specials[3:]), hard_vocab_limit=False,
            minloglevel=2,
        )
    except RuntimeError as e:
        raise UserError(f"SentencePiece training failed: {e}") from e
    return model.getvalue()


def _spm_vocab_size(model: bytes) -> int:
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_proto=model).get_piece_size()


def _check_special_ids(tok: Tokenizer, specials: list[str]) -> None:
    for i, s in enumerate(specials):
        got = tok.hf_tokenizer.token_to_id(s) if tok.hf_tokenizer else tok._engine.sp.piece_to_id(s)
        if got != i:
            raise RuntimeError(f"special token {s!r} got id {got}, expected {i}")


def fast_engine_matches(tok: Tokenizer, docs: list[str]) -> int:
    """Number of mismatches between the HF reference and the tiktoken engine on `docs` and on the
    text of every vocabulary entry (0 means the fast engine may be used)."""
    fast = Tokenizer(tok.meta, tok.hf_tokenizer, engine="tiktoken", segment_cache=False)
    vocab_texts = []
    for i in range(len(tok.special_tokens), tok.vocab_size):
        try:
            vocab_texts.append(tok.id_to_bytes(i).decode("utf-8"))
        except UnicodeDecodeError:
            continue  # a token that is part of a character cannot be a whole input
    samples = list(docs) + vocab_texts
    ref = tok.encode_batch(samples)
    got = fast.encode_batch(samples)
    return sum(a != b for a, b in zip(ref, got))
