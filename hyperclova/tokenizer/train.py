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
import time
from typing import Iterable, Iterator

from hyperclova.errors import UserError
from hyperclova.tokenizer.inputs import ReadStats, check_files, iter_documents, sample_ratio_for
from hyperclova.tokenizer.load import (BYTE_LEVEL_TYPES, FORMAT_VERSION, NORMALIZATIONS, TYPES,
                                       Tokenizer)
from hyperclova.tokenizer.morphemes import MorphemeSplitter
from hyperclova.tokenizer.pretokenize import (DEFAULT_RESERVED, MARKER, PATTERN, UNK,
                                              special_tokens)

_BATCH_DOCS = 256
_SPM_MAX_SENTENCE_CHARS = 4096


def train_tokenizer(files: list[str], output_dir: str, type: str = "morpheme-bbpe",
                    vocab_size: int = 64000, json_key: str = "text",
                    sample_ratio: float | None = None, sample_bytes: int | None = None,
                    workers: int = 1, seed: int = 0, n_reserved: int = DEFAULT_RESERVED,
                    normalization: str = "none", min_frequency: int = 2,
                    on_invalid_utf8: str = "error", spm_model_type: str = "bpe",
                    verify_docs: int = 2000, show_progress: bool = True) -> Tokenizer:
    """Train a tokenizer of `type` on `files` and save it to `output_dir` (created)."""
    _check_args(type, vocab_size, n_reserved, normalization, workers, spm_model_type)
    files = [str(f) for f in files]
    check_files(files)
    ratio = sample_ratio_for(files, sample_ratio, sample_bytes)
    stats = ReadStats()
    specials = special_tokens(n_reserved)
    docs = iter_documents(files, json_key, ratio, seed, sample_bytes, on_invalid_utf8, stats)
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
    if stats.docs_kept == 0:
        raise UserError(f"no documents to train on in {files} (key {json_key!r}, "
                        f"sample ratio {ratio:g}); skipped: {stats.skipped}")
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
            "files": files, "json_key": json_key, "sample_ratio": ratio, "seed": seed,
            "docs_seen": stats.docs_seen, "docs": stats.docs_kept, "bytes": stats.bytes_kept,
            "replaced_lines": stats.replaced_lines, "skipped": stats.skipped,
            "requested_vocab_size": vocab_size, "seconds": round(seconds, 2),
            **({"spm_model_type": spm_model_type} if type == "spm" else {}),
        },
    }
    tok = Tokenizer(meta, hf, spm_model, engine="hf", segment_cache=False)
    _check_special_ids(tok, specials)
    if type in BYTE_LEVEL_TYPES:
        meta["fast_engine"] = fast_engine_matches(tok, held_out) == 0
    tok.save(output_dir)
    return Tokenizer.load(output_dir)


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
