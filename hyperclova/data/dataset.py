"""GPT training datasets: megatron-core's GPTDataset over our shards, blended by weight and split.

`data.blend` is the corpus mixer: `[0.3, data/news_text_document, 0.7, data/blog_text_document]`
draws 30% of samples from news and 70% from blogs (BlendedMegatronDatasetBuilder), `[prefix]` reads
one shard, and a list of bare prefixes mixes them in proportion to their token counts. `data.split`
("98,2,0") cuts every shard into train/valid/test by document, as Megatron does.

Sample order is a pure function of (shards, seq_len, seed, split, sample counts): megatron-core
shuffles with numpy's RandomState(seed) and caches the index arrays under `data.cache_dir`, in a
subdirectory keyed by the shards' content so a rewritten shard never meets a stale cache.

megatron-core opens those `.npy` files with `allow_pickle=True`, so a file planted in a shared data
directory would run code in every rank. Before megatron-core opens anything, every cached array is
read back as a plain `.npy` header (never unpickled) and must hold integers of the expected shape
and size; anything else (a pickle, another dtype, a truncated file) is removed with a warning and
rebuilt.
"""
from __future__ import annotations

import glob
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from hyperclova.config import DataConfig
from hyperclova.data.indexed import ShardInfo, check_shard, fingerprint, sequence_lengths, strip_shard_suffix
from hyperclova.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenIds:
    """The part of a tokenizer that megatron-core's GPTDataset reads."""

    vocab_size: Optional[int]
    eod: int
    pad: int

    @property
    def unique_identifiers(self) -> dict:  # goes into megatron's cache key
        return {"class": "hyperclova.TokenIds", "vocab_size": self.vocab_size, "eod": self.eod, "pad": self.pad}


def parse_blend(blend: list, where: str = "data.blend") -> tuple[list[str], Optional[list[float]]]:
    """`[w1, p1, w2, p2, ...]` -> (prefixes, weights); `[p1, p2, ...]` -> (prefixes, None)."""
    if not blend:
        raise UserError(f"{where} is empty: give [prefix] or [weight, prefix, weight, prefix, ...]")
    items = [str(x) if not isinstance(x, (int, float)) or isinstance(x, bool) else x for x in blend]
    if not isinstance(items[0], (int, float)) and not _is_number(items[0]):
        bad = [x for x in items if isinstance(x, (int, float))]
        if bad:
            raise UserError(f"{where}: mixes weights and bare prefixes ({bad[0]!r}); use pairs")
        return [strip_shard_suffix(x) for x in items], None
    if len(items) % 2:
        raise UserError(f"{where}: {len(items)} entries; weights and prefixes must come in pairs")
    prefixes, weights = [], []
    for i in range(0, len(items), 2):
        w, p = items[i], items[i + 1]
        if not _is_number(w) or float(w) <= 0 or not math.isfinite(float(w)):
            raise UserError(f"{where}[{i}]: weight must be a positive number, got {w!r}")
        if isinstance(p, (int, float)) or _is_number(p):
            raise UserError(f"{where}[{i + 1}]: expected a shard prefix, got {p!r}")
        weights.append(float(w))
        prefixes.append(strip_shard_suffix(p))
    return prefixes, weights


def _is_number(x) -> bool:
    try:
        float(x)
        return True
    except (TypeError, ValueError):
        return False


def parse_split(split: str, where: str = "data.split") -> list[float]:
    parts = [p for p in re.split(r"[,/ ]+", str(split).strip()) if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise UserError(f"{where}: {split!r} is not like '98,2,0'") from None
    if not 1 <= len(values) <= 3 or any(v < 0 or not math.isfinite(v) for v in values) or values[0] <= 0:
        raise UserError(f"{where}: {split!r} needs 1-3 non-negative numbers and a positive train share")
    values += [0.0] * (3 - len(values))
    return [v / sum(values) for v in values]


def _check_split_coverage(info: ShardInfo, split: list[float]) -> None:
    """megatron-core loops forever on a split that holds no tokens: refuse it here instead."""
    lengths = sequence_lengths(info.prefix, info.sequences)
    bounds = np.cumsum([0.0] + split)
    for name, lo, hi, share in zip(("train", "valid", "test"), bounds[:-1], bounds[1:], split):
        if share == 0:
            continue
        beg, end = int(round(lo * info.sequences)), int(round(hi * info.sequences))
        if int(lengths[beg:end].sum(dtype=np.int64)) == 0:
            raise UserError(
                f"{info.prefix}: data.split gives the {name} split {end - beg} of its {info.sequences} "
                f"documents, with no tokens; use a larger shard or a split with a 0 {name} share"
            )


def _token_ids(tokenizer_dir: Optional[str]) -> TokenIds:
    if tokenizer_dir is None:
        log.warning("data.tokenizer is not set: shard dtype and vocabulary are not checked")
        # Neither id is read with our flags (no EOD resets or masks); -2 keeps them distinct.
        return TokenIds(vocab_size=None, eod=-2, pad=-1)
    if not Path(tokenizer_dir).is_dir():
        raise UserError(f"data.tokenizer: {tokenizer_dir} is not a directory")
    from hyperclova.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    eod = tok.eod_id if tok.eod_id is not None else -2  # never a real id, distinct from pad
    pad = tok.pad_id if tok.pad_id is not None else -1  # -1: megatron's "no pad" id
    return TokenIds(vocab_size=int(tok.vocab_size), eod=int(eod), pad=int(pad))


def check_blend(cfg: DataConfig, model_vocab_size: Optional[int] = None
                ) -> tuple[list[ShardInfo], Optional[list[float]], TokenIds]:
    """Check every shard of `cfg.blend` against `cfg.tokenizer` (dtype, ids, and the tokenizer
    fingerprint its sidecar records), and the tokenizer against the model's vocabulary when given;
    UserError names the bad file."""
    prefixes, weights = parse_blend(cfg.blend)
    split = parse_split(cfg.split)
    ids = _token_ids(cfg.tokenizer)
    if model_vocab_size is not None and ids.vocab_size is not None and ids.vocab_size > model_vocab_size:
        raise UserError(f"tokenizer {cfg.tokenizer} has {ids.vocab_size} tokens but "
                        f"model.vocab_size={model_vocab_size}; set model.vocab_size to at least "
                        f"{ids.vocab_size} (a multiple of 128 keeps the output matmul fast)")
    made_by = None
    if cfg.tokenizer is not None:
        from hyperclova.tokenizer.load import tokenizer_fingerprint

        made_by = (cfg.tokenizer, tokenizer_fingerprint(cfg.tokenizer))
    infos = [check_shard(p, ids.vocab_size, made_by) for p in prefixes]
    for info in infos:
        if model_vocab_size is not None and info.max_token_id >= model_vocab_size:
            # (the embedding would fail with an IndexError mid-step; data.tokenizer is not always set)
            raise UserError(f"{info.prefix}.bin contains token id {info.max_token_id}, outside "
                            f"model.vocab_size={model_vocab_size}: the shard was made with a larger "
                            f"tokenizer; set model.vocab_size to at least {info.max_token_id + 1} "
                            f"or re-run tools/preprocess_data.py with the model's tokenizer")
        _check_split_coverage(info, split)
    return infos, weights, ids


# The index arrays megatron-core caches, by file-name suffix: (dimensions, columns of a 2-D one).
_INDEX_SHAPES = {"document_index": (1, None), "sample_index": (2, 2), "shuffle_index": (1, None),
                 "dataset_index": (1, None), "dataset_sample_index": (1, None)}


def index_cache_problem(path: Path) -> Optional[str]:
    """Why `path` is not a cached index array megatron-core may open, or None if it is one.

    Reads only the `.npy` header (a Python literal, never unpickled) and the file size.
    """
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                return f"unsupported .npy version {version}"
            offset = f.tell()
    except (OSError, ValueError, SyntaxError) as e:
        return f"not a .npy array file ({e})"
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "iu":
        return f"holds {dtype}, not integers"
    suffix = next((k for k in sorted(_INDEX_SHAPES, key=len, reverse=True)
                   if path.stem.endswith(k)), None)
    if suffix is not None:
        ndim, cols = _INDEX_SHAPES[suffix]
        if len(shape) != ndim or (cols is not None and shape[1] != cols):
            return f"has shape {shape}, expected {ndim} dimension(s)" + (f" x {cols}" if cols else "")
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = path.stat().st_size
    if size != expected:
        return f"{'truncated' if size < expected else 'oversized'}: {size} bytes, the header promises {expected}"
    return None


def remove_invalid_index_cache(cache_dir: Path) -> list[str]:
    """Remove every cached index array megatron-core must not open (see `index_cache_problem`),
    with its companions so that the dataset is rebuilt; returns the warnings given."""
    if not cache_dir.is_dir():
        return []
    warnings_given = []
    for path in sorted(cache_dir.glob("*.npy")):
        if not path.exists():  # (a companion of one removed before)
            continue
        problem = index_cache_problem(path)
        if problem is None:
            continue
        # files of one dataset share the "<hash>-<class>-<split>-" prefix
        stem = path.name
        for suffix in _INDEX_SHAPES:
            stem = stem.replace(f"-{suffix}.npy", "-")
        for other in cache_dir.glob(f"{glob.escape(stem)}*"):
            other.unlink(missing_ok=True)
        message = f"index cache {path}: {problem}; removed it, the dataset index will be rebuilt"
        log.warning(message)
        warnings_given.append(message)
    return warnings_given


def build_datasets(
    cfg: DataConfig, seq_len: int, seed: int, train_samples: int, valid_samples: int,
    model_vocab_size: Optional[int] = None,
) -> tuple[Dataset, Optional[Dataset]]:
    """GPTDataset(s) blended by cfg.blend and split by cfg.split; every rank must call this.

    Items are dicts of "tokens", "labels" (tokens shifted by one), "loss_mask", "position_ids"
    (and "dataset_id", the blend entry, when several shards are mixed). The valid dataset is None
    when the split or `valid_samples` gives it nothing.
    """
    if not torch.distributed.is_initialized():
        raise RuntimeError(
            "build_datasets needs torch.distributed initialised (a gloo group of world size 1 is "
            "enough for one process): megatron-core's dataset builder calls get_rank()/barrier()"
        )
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    if seq_len <= 0 or train_samples <= 0 or valid_samples < 0:
        raise ValueError(f"bad sizes: seq_len={seq_len} train_samples={train_samples} valid_samples={valid_samples}")
    infos, weights, ids = check_blend(cfg, model_vocab_size)
    prefixes = [i.prefix for i in infos]
    if weights is None and len(prefixes) > 1:
        weights = [float(i.tokens) for i in infos]  # a natural mix, which still honours the sizes
    cache_root = Path(cfg.cache_dir) if cfg.cache_dir else Path(prefixes[0]).parent / "index_cache"
    remove_invalid_index_cache(cache_root / fingerprint(prefixes))
    torch.distributed.barrier()  # no rank reads the cache while another may still be cleaning it
    config = GPTDatasetConfig(
        random_seed=seed,
        sequence_length=seq_len,
        blend=(prefixes, weights),
        split=cfg.split,
        path_to_cache=str(cache_root / fingerprint(prefixes)),
        tokenizer=ids,
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        create_attention_mask=False,  # causal attention needs no (seq, seq) mask per sample
    )
    sizes = [train_samples, valid_samples, 0]
    train, valid, _ = BlendedMegatronDatasetBuilder(GPTDataset, sizes, lambda: True, config).build()
    if valid is not None and (valid_samples == 0 or len(valid) == 0):
        valid = None
    if len(train) < train_samples:
        raise UserError(f"data.blend gives {len(train)} training samples, fewer than the {train_samples} asked")
    return train, valid
