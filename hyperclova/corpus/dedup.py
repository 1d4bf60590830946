"""Exact and near-duplicate detection across all shards, holding signatures only, never texts.

Per task (parallel): every kept document gets a 64-bit hash of its normalised text and a MinHash
signature over character (or MeCab-ko morpheme) n-grams; both are written as .npy files.
Global stage (one process): exact duplicates share a hash; near duplicates share at least one LSH
band and, when `verify` is on, agree on >= `threshold` of their signature. Connected documents form
a cluster and the one that comes first in input order (task, then line) is kept; the rest are
dropped with the reason `exact_dup` or `near_dup` and the key of the document they duplicate.

With b bands of r rows, a pair with Jaccard similarity s becomes a candidate with probability
1 - (1 - s^r)^b, which rises steeply around s* = (1/b)^(1/r), the threshold stated in the report.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from typing import Literal
from pathlib import Path

import numpy as np

_MASK32 = np.uint64(0xFFFFFFFF)
_PRIME = np.uint64(0x9E3779B97F4A7C15)
_WS = re.compile(r"\s+")


@dataclass
class MinHashConfig:
    unit: Literal["char", "morpheme"] = "char"  # morpheme: MeCab-ko
    ngram: int = 5
    bands: int = 16
    rows: int = 8
    threshold: float | None = None  # verification threshold; None = the LSH threshold (1/b)^(1/r)
    verify: bool = True
    seed: int = 1

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows

    @property
    def lsh_threshold(self) -> float:
        return (1 / self.bands) ** (1 / self.rows)

    @property
    def effective_threshold(self) -> float:
        return self.threshold if self.threshold is not None else self.lsh_threshold


def exact_hash(text: str) -> int:
    """64-bit hash of the text with whitespace collapsed and case folded."""
    key = _WS.sub(" ", text).strip().casefold().encode("utf-8")
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


class MinHasher:
    """MinHash signatures with numpy: rolling n-gram hashes, then multiply-shift permutations."""

    def __init__(self, cfg: MinHashConfig):
        self.cfg = cfg
        rng = np.random.default_rng(cfg.seed)
        self.a = (rng.integers(1, 2**63, cfg.num_perm, dtype=np.uint64) << np.uint64(1)) | np.uint64(1)
        self.b = rng.integers(0, 2**63, cfg.num_perm, dtype=np.uint64)
        self._tagger = None

    def _units(self, text: str) -> np.ndarray:
        """One uint64 per character, or per morpheme (a stable hash of its surface)."""
        if self.cfg.unit == "char":
            return np.frombuffer(_WS.sub(" ", text).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        if self._tagger is None:
            import mecab_ko

            self._tagger = mecab_ko.Tagger("-Owakati")
        morphs = self._tagger.parse(text).split()
        return np.array([int.from_bytes(hashlib.blake2b(m.encode(), digest_size=8).digest(), "little")
                         for m in morphs], dtype=np.uint64)

    def shingles(self, text: str) -> np.ndarray:
        units = self._units(text)
        n = min(self.cfg.ngram, len(units))
        if n == 0:
            return np.zeros(1, dtype=np.uint64)
        count = len(units) - n + 1
        h = np.zeros(count, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for j in range(n):
                h = h * _PRIME + units[j:j + count]
        return h  # repeated shingles are harmless: a minimum does not care

    def signature(self, text: str) -> np.ndarray:
        return self.signatures([text])[0]

    def signatures(self, texts: list[str]) -> np.ndarray:
        """(len(texts), num_perm) uint32 signatures, computed for the batch at once: one
        (perms x all shingles) product per block of permutations, then a per-document minimum."""
        shingles = [self.shingles(t) for t in texts]
        out = np.empty((len(texts), self.cfg.num_perm), dtype=np.uint32)
        if not texts:
            return out
        flat = np.concatenate(shingles)
        starts = np.cumsum([0] + [len(x) for x in shingles[:-1]])
        perms = max(1, min(self.cfg.num_perm, (1 << 21) // max(len(flat), 1)))  # block <= ~16 MB
        with np.errstate(over="ignore"):
            for p in range(0, self.cfg.num_perm, perms):
                block = (self.a[p:p + perms, None] * flat[None, :] + self.b[p:p + perms, None]) >> np.uint64(32)
                out[:, p:p + perms] = np.minimum.reduceat(block, starts, axis=1).T
        return out


def band_keys(sigs: np.ndarray, cfg: MinHashConfig) -> np.ndarray:
    """(bands, n) uint64 LSH bucket keys of (n, num_perm) signatures, band-major on purpose: the
    global stage then reads one band of every task at a time, as one contiguous slice."""
    mult = np.random.default_rng(cfg.seed + 7).integers(1, 2**63, cfg.rows, dtype=np.uint64) | np.uint64(1)
    keys = np.empty((cfg.bands, len(sigs)), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for band in range(cfg.bands):
            cols = sigs[:, band * cfg.rows:(band + 1) * cfg.rows].astype(np.uint64)
            keys[band] = (cols * mult).sum(axis=1)
    return keys


def _band_from_signatures(reader: "_RowReader", band: int, cfg: MinHashConfig) -> np.ndarray:
    """Band keys straight from a signature file (when no band file was written)."""
    sigs = np.load(reader.f.name, mmap_mode="r")
    keys = band_keys(np.asarray(sigs[:, band * cfg.rows:(band + 1) * cfg.rows]),
                     MinHashConfig(bands=1, rows=cfg.rows, seed=cfg.seed))[0]
    del sigs
    return keys


def _read_band(path: Path, band: int) -> np.ndarray:
    """One band row of a (bands, n) .npy, copied out so the mapping is released at once."""
    m = np.load(path, mmap_mode="r")
    row = np.array(m[band])
    del m
    return row


class _RowReader:
    """Reads single rows of a 2-D .npy with pread: unlike a memory map, the pages read (and the
    kernel's read-ahead around them) stay in the page cache and are not charged to this process."""

    def __init__(self, path: Path):
        self.f = open(path, "rb")
        fmt = np.lib.format
        version = fmt.read_magic(self.f)
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = read_header(self.f)
        assert len(shape) == 2 and not fortran, f"{path}: expected a C-ordered 2-D signature array"
        self.offset, self.dtype, self.shape = self.f.tell(), dtype, shape
        self.row_bytes = shape[1] * dtype.itemsize

    def __getitem__(self, i: int) -> np.ndarray:
        data = os.pread(self.f.fileno(), self.row_bytes, self.offset + int(i) * self.row_bytes)
        return np.frombuffer(data, dtype=self.dtype)

    def close(self) -> None:
        self.f.close()


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class _UnionFind:
    def __init__(self, n: int):
        self.parent = np.arange(n, dtype=np.int64)

    def find(self, x: int) -> int:
        p = self.parent
        root = x
        while p[root] != root:
            root = p[root]
        while p[x] != root:
            p[x], x = root, p[x]
        return int(root)

    def union(self, x: int, y: int) -> None:
        rx, ry = self.find(x), self.find(y)
        if rx != ry:  # the smaller index (earlier in input order) becomes the root
            self.parent[max(rx, ry)] = min(rx, ry)


def find_duplicates(hash_files: list[Path], sig_files: list[Path] | None, cfg: MinHashConfig | None,
                    exact: bool = True, band_files: list[Path] | None = None
                    ) -> tuple[list[np.ndarray], list[np.ndarray], dict]:
    """Global dedup over per-task files, in task order.

    Returns, per task, an int8 array of verdicts (0 keep, 1 exact_dup, 2 near_dup) and an int64
    array with the global index of the kept document each dropped one duplicates (-1 if kept),
    plus statistics. Reads hashes, one LSH band at a time (`band_files`, computed from the
    signatures when not given) and the signature rows of candidate pairs; never the texts.
    """
    hashes = [np.load(f) for f in hash_files]
    sizes = [len(h) for h in hashes]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    n = int(offsets[-1])
    verdict = np.zeros(n, dtype=np.int8)
    dup_of = np.full(n, -1, dtype=np.int64)
    stats = {"documents": n, "exact_dup": 0, "near_dup": 0, "candidate_pairs": 0, "verified_pairs": 0}
    if exact and n:
        allh = np.concatenate(hashes)
        _, first, inverse = np.unique(allh, return_index=True, return_inverse=True)
        rep = first[inverse]
        is_dup = rep != np.arange(n)
        verdict[is_dup], dup_of[is_dup] = 1, rep[is_dup]
        stats["exact_dup"] = int(is_dup.sum())
        del allh, first, inverse, rep
    if cfg is not None and n:
        _near_duplicates(sig_files, band_files, offsets, cfg, verdict, dup_of, stats)
    per_task_verdict = [verdict[offsets[i]:offsets[i + 1]] for i in range(len(sizes))]
    per_task_dup = [dup_of[offsets[i]:offsets[i + 1]] for i in range(len(sizes))]
    return per_task_verdict, per_task_dup, stats


def _near_duplicates(sig_files, band_files, offsets, cfg: MinHashConfig, verdict, dup_of, stats) -> None:
    sigs = [_RowReader(f) for f in sig_files]
    n = int(offsets[-1])
    task_of = lambda g: int(np.searchsorted(offsets, g, side="right") - 1)  # noqa: E731
    row = lambda g: sigs[task_of(g)][g - offsets[task_of(g)]]  # noqa: E731
    alive = np.flatnonzero(verdict == 0)  # exact duplicates take no part
    uf = _UnionFind(n)
    threshold = cfg.effective_threshold
    for band in range(cfg.bands):
        keys = np.empty(n, dtype=np.uint64)
        for t, s in enumerate(sigs):
            part = _read_band(band_files[t], band) if band_files else _band_from_signatures(s, band, cfg)
            keys[offsets[t]:offsets[t + 1]] = part
        keys = keys[alive]
        order = np.argsort(keys, kind="stable")
        sk = keys[order]
        starts = np.flatnonzero(np.concatenate([[True], sk[1:] != sk[:-1]]))
        ends = np.concatenate([starts[1:], [len(sk)]])
        for s, e in zip(starts[ends - starts > 1], ends[ends - starts > 1]):
            members = np.sort(alive[order[s:e]])
            for prev, m in zip(members[:-1].tolist(), members[1:].tolist()):
                head = int(members[0])
                if uf.find(m) == uf.find(head):
                    continue
                stats["candidate_pairs"] += 1
                if cfg.verify:  # similar to the bucket's first document, or else to its neighbour
                    sig = row(m)
                    if np.mean(row(head) == sig) >= threshold:
                        pass
                    elif prev != head and np.mean(row(prev) == sig) >= threshold:
                        head = prev
                    else:
                        continue
                stats["verified_pairs"] += 1
                uf.union(head, m)
    for s in sigs:
        s.close()
    for g in np.flatnonzero(uf.parent != np.arange(n)):  # only documents that were joined
        root = uf.find(int(g))
        if root != g:
            verdict[g], dup_of[g] = 2, root
            stats["near_dup"] += 1
