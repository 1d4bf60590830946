"""Exact MeCab-ko morpheme segmentation without running MeCab on every eojeol.

Korean text repeats its eojeols (whitespace-separated words) heavily, yet MeCab's analysis of an
eojeol may depend on its neighbours: Viterbi picks the cheapest path through the whole sentence,
and the connection cost between two morphemes applies across a space. This module caches the
analysis of each eojeol and proves, for every occurrence, that the cached segmentation is the one
MeCab would produce in that very sentence; where it cannot prove it, MeCab runs on a window of the
sentence that provably gives the same result as the whole. The ids are therefore identical to the
reference encoding (`MorphemeSplitter.mark` + BPE; see docs/tokenizers.md, "Fast morpheme
encoding").

Why the proof works (MeCab's cost model, `connector.cpp` of mecab-ko): a path costs the sum of
word costs, a left-space penalty for listed parts of speech preceded by whitespace, and
`matrix[right id of the left morpheme, left id of the right morpheme]` for each adjacent pair.

1. Whitespace cuts the lattice. MeCab skips the characters of the SPACE category before each
   lookup, unknown words never group across a category change, and no dictionary key contains such
   a character -- except a handful of keys with an ASCII space ("영치기 영차"), which we read from
   the dictionary's trie and handle by never cutting after their first part. `_DictionaryFacts`
   checks all of this on the installed dictionary files and turns the cache off if any fails.
   So every path passes every cut, and an eojeol (its leading whitespace included) has the same
   lattice wherever it occurs.
2. An eojeol talks to its neighbours only through the right id `r` of the morpheme before it and the
   left id `o` of the morpheme after it. For each eojeol we compute once, over its own lattice, the
   cheapest internal path for every (first-morpheme left id, last-morpheme right id) pair and its
   segmentation (`_Analysis`); the total for a context (r, o) is then a small min-plus product.
3. The candidate contexts of an eojeol are sets: the right ids its left neighbour can end with, the
   left ids its right neighbour can start with. A backward then a forward pass over the sentence
   shrink these sets to the ids some optimal path can actually use (every eojeol on an optimal path
   is optimal for its own context). If every optimal pair of an eojeol, over all remaining
   contexts, has one segmentation (ties included), MeCab's path has that segmentation: certified.
4. An eojeol that is not certified is analysed by MeCab together with its neighbours, in a window
   bounded by *separators*: eojeols whose optimal path has one (left id, right id, segmentation)
   for every context the window's edge can give them (sentence start/end included). Inside such a
   window MeCab makes the same choices as on the whole sentence, tie-breaking included, because
   every candidate it compares reaches the window through the separator's one path.

Each analysis is checked against MeCab itself (the cheapest path with sentence start and end as
context must cost exactly what MeCab reports). An eojeol seen only once, or whose analysis is
refused (longer than 63 characters, ...), is never certified and ends up in a window; a chunk of
mostly unseen eojeols, or whose MeCab output does not align, goes to MeCab whole, which is the
reference itself.
"""
from __future__ import annotations

import functools
import logging
import os
import re
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from hyperclova.tokenizer.morphemes import CHUNK_CHARS, MorphemeSplitter, _chunks, _SPECIAL_RUN
from hyperclova.tokenizer.pretokenize import MARKER

log = logging.getLogger(__name__)

# Characters an eojeol split may cut at: those MeCab skips as SPACE (verified in _DictionaryFacts).
SPLIT_CHARS = " \t\n\r\x0b"
_EOJEOL = re.compile(r"[ \t\n\r\x0b]*[^ \t\n\r\x0b]+")
MAX_EOJEOL_CHARS = 63  # a segmentation is a bit mask of character positions in one uint64
_INF = np.int64(1) << 50  # the cost of an unreachable morpheme
_REACHABLE = np.int64(1) << 49  # anything below is a real path cost (real costs are < 2**40)
_ALL_BITS = np.uint64(np.iinfo(np.uint64).max)
_NO_BITS = np.uint64(0)
_TIE_BIT = np.uint64(1)
_BOS_EOS_ID = 0  # MeCab's sentence start/end node has left and right id 0
_ALL_NODES_FORMAT = "%ps,%pe,%pL,%phl,%phr,%h,%c;"
DEFAULT_MAX_EOJEOLS = 300_000
DEFAULT_MIN_COUNT = 2  # analyse an eojeol when seen this often; rarer ones go to MeCab windows
DEFAULT_MAX_UNSEEN_SHARE = 0.25  # chunks with more unanalysed eojeols go to MeCab whole
_QUEUED = -(1 << 40)  # the sighting count of an eojeol already handed to the analysis
_ANALYSE_BATCH = 256  # eojeols analysed together: long numpy arrays, a few MB of memory


@dataclass
class CacheStats:
    """What the cache did (counts since it was created)."""

    eojeols: int = 0  # occurrences seen in analysed chunks
    certified: int = 0  # occurrences encoded from the cache
    windowed: int = 0  # occurrences encoded from a MeCab window
    windows: int = 0
    reference_chunks: int = 0  # chunks sent to MeCab whole
    analysed: int = 0  # distinct eojeols analysed
    unanalysable: int = 0  # distinct eojeols whose analysis was refused (see _analyse_many)
    resets: int = 0  # times the cache was emptied because it was full

    def as_dict(self) -> dict:
        return dict(self.__dict__)


# --- facts about the installed dictionary --------------------------------------------------------


@dataclass(frozen=True)
class _DictionaryFacts:
    matrix: np.ndarray  # int16 [left id of the right node, right id of the left node]
    penalty_by_posid: np.ndarray  # left-space penalty of each part-of-speech id
    space_key_prefixes: tuple  # texts that a dictionary key continues with a space after
    problem: str = ""  # why the cache must not be used with this dictionary ("" when fine)


@functools.lru_cache(maxsize=4)
def _dictionary_facts(dicdir: str) -> _DictionaryFacts:
    """Read and check the dictionary facts the proof needs (see the module docstring, point 1)."""
    try:
        return _read_dictionary_facts(dicdir)
    except (OSError, ValueError, IndexError) as e:  # an unexpected dictionary: no cache
        return _DictionaryFacts(np.zeros((1, 1), np.int16), np.zeros(1, np.int64), (),
                                f"{dicdir}: {e}")


def _read_dictionary_facts(dicdir: str) -> _DictionaryFacts:
    raw = np.memmap(os.path.join(dicdir, "matrix.bin"), dtype=np.int16, mode="r")
    n_right, n_left = int(raw[0]), int(raw[1])
    matrix = np.asarray(raw[2:]).reshape(n_left, n_right)  # a plain view: memmap indexing is slow
    penalties = {}
    with open(os.path.join(dicdir, "dicrc"), encoding="utf-8") as f:
        for line in f:
            key, _, value = line.partition("=")
            if key.strip() == "left-space-penalty-factor":
                vals = [int(v) for v in value.split(",") if v.strip()]
                penalties = dict(zip(vals[0::2], vals[1::2]))
    problem = _check_space_category(dicdir)
    prefixes: tuple = ()
    if not problem:
        try:
            prefixes = _keys_with_split_chars(os.path.join(dicdir, "sys.dic"))
        except ValueError as e:
            problem = str(e)
    table = np.zeros(max([1024, *penalties]) + 1, dtype=np.int64)
    for posid, cost in penalties.items():
        table[posid] = cost
    return _DictionaryFacts(matrix, table, prefixes, problem)


def _check_space_category(dicdir: str) -> str:
    """Every split character must be skipped by MeCab (share the category bits of U+0020) and
    never join an unknown word (have no other bits)."""
    path = os.path.join(dicdir, "char.bin")
    n_cat = int(np.fromfile(path, dtype=np.uint32, count=1)[0])
    info = np.fromfile(path, dtype=np.uint32, offset=4 + 32 * n_cat)
    space = int(info[0x20]) & 0x3FFFF
    for ch in SPLIT_CHARS:
        bits = int(info[ord(ch)]) & 0x3FFFF
        if not bits & space or bits & ~space:
            return f"{path}: U+{ord(ch):04X} is not in MeCab's SPACE category alone"
    return ""


def _keys_with_split_chars(sys_dic: str) -> tuple:
    """Texts before a split character inside a dictionary key, read from the double-array trie.

    A transition from state b on byte c lands on unit p = b + c + 1 with check[p] == b. Units with
    check 0 are unused or the root; no state other than the root has base 0 (checked), so every
    real transition has check != 0.
    """
    head = np.fromfile(sys_dic, dtype=np.uint32, count=10)
    units = np.memmap(sys_dic, dtype=np.uint32, mode="r", offset=72, shape=(int(head[6]) // 4,))
    base = np.ascontiguousarray(units[0::2]).view(np.int32)  # 4 bytes per unit, kept for the walk
    check = units[1::2]
    root = int(base[0])
    hits: list = []  # units reached on a split byte
    step = 1 << 18
    for lo in range(0, len(base), step):  # (in slices: a few MB at a time)
        chk = np.asarray(check[lo:lo + step])
        used = chk != 0
        if root == 0 or (used & (base[lo:lo + step] == 0)).any():
            raise ValueError(f"{sys_dic}: a trie state has base 0; cannot list keys with spaces")
        position = np.arange(lo, lo + len(chk), dtype=np.uint32)
        for ch in SPLIT_CHARS:  # (position - c - 1 wraps around below c + 1: never a check value)
            hits += (np.flatnonzero(used & (chk == position - np.uint32(ord(ch) + 1))) + lo).tolist()
    prefixes = []
    for unit in hits:
        path, state = [], int(check[unit])
        while state != root:
            parent = np.flatnonzero(base == state)
            parent = parent[np.asarray(check[parent]) != 0]
            if len(parent) != 1 or len(path) > 256:
                raise ValueError(f"{sys_dic}: cannot walk the trie to the root")
            path.append(int(parent[0]) - int(check[parent[0]]) - 1)
            state = int(check[parent[0]])
        words = bytes(reversed(path)).decode("utf-8", errors="replace").split()
        if words:
            prefixes.append(words[-1])
    return tuple(sorted(set(prefixes)))


# --- one eojeol's lattice ------------------------------------------------------------------------


class _Analysis:
    """The cheapest internal path of one eojeol for each (first left id, last right id) pair.

    cost[i, j]: cheapest path from a first morpheme with left id lids[i] to a last morpheme with
    right id rids[j]; seg[i, j]: the id of its segmentation (index into `segmentations`), -1 when
    two paths of different segmentations tie, -2 when no path exists.
    """

    __slots__ = ("lids", "rids", "cost", "seg", "segmentations", "lset", "rset", "ids", "ukey")

    def __init__(self, lids, rids, cost, seg, segmentations):
        self.lids, self.rids, self.cost, self.seg = lids, rids, cost, seg
        self.segmentations = segmentations  # list of tuples of segment strings
        self.lset = self.rset = 0  # interned id sets, set by the cache
        self.ukey = 0  # the cache's number for this eojeol, shifted into place in context keys
        self.ids: dict = {}  # segmentation id -> token ids


class _Bounds:
    """What a not-yet-analysed eojeol tells its neighbours: the left ids it can start with and the
    right ids it can end with (interned sets). It is never certified itself."""

    __slots__ = ("lset", "rset")

    def __init__(self, lset: int, rset: int) -> None:
        self.lset, self.rset = lset, rset


def _parse_lattice(eojeol: str, parse_all: Callable[[str], str]):
    """MeCab's full lattice of `eojeol`: an int64 array of (start, end, rlength, lid, rid, posid,
    wcost) rows and the cost of its best path, or None."""
    out = parse_all(eojeol)
    cut = out.rfind(";E")
    if cut < 0:
        return None
    arr = np.fromstring(out[:cut].replace(";", ","), dtype=np.int64, sep=",")
    if arr.size == 0 or arr.size % 7:
        return None
    return arr.reshape(-1, 7), int(out[cut + 2:])


def _segments_ranges(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For groups of the given sizes laid end to end: the group of each element and its index
    inside the group."""
    group = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return group, np.arange(int(counts.sum())) - starts[group]


def _runs(new_run: np.ndarray) -> np.ndarray:
    """Start indices of the runs that `new_run` (True where one starts) marks."""
    return np.flatnonzero(new_run)


def _min_runs(cost: np.ndarray, lo: np.ndarray, hi: np.ndarray, starts: np.ndarray):
    """Per run: the cheapest cost, and the lowest/highest segmentation masks among the entries
    that reach it (a path's mask includes the tie bit; see `_analyse_many`)."""
    low = np.minimum.reduceat(cost, starts)
    at_min = cost == np.repeat(low, np.diff(np.append(starts, len(cost))))
    return (low, np.minimum.reduceat(np.where(at_min, lo, _ALL_BITS), starts),
            np.maximum.reduceat(np.where(at_min, hi, _NO_BITS), starts))


def _relax(sel, g_word, b_start, b_count, e_start, e_count, by_end, rows_of, n_of, node_start,
           state_start, lid, rid, cost, bits, best, mask, matrix) -> None:
    """One level of the dynamic programme: for every group `sel` (an eojeol and a position), every
    row, and every morpheme starting there, the cheapest path from the row's first morphemes,
    over the morphemes ending there. Done in three steps so the arrays stay small: the ending
    morphemes are first reduced per right id, the starting ones are handled per left id, then
    spread to the morphemes."""
    gw, rows = g_word[sel], rows_of[g_word[sel]]
    bs, bc, es, ec = b_start[sel], b_count[sel], e_start[sel], e_count[sel]
    # A: per (group, row, right id of an ending morpheme)
    grp, i = _segments_ranges(rows * ec)
    r, k = i // ec[grp], i % ec[grp]
    w = gw[grp]
    base = state_start[w] + r * n_of[w] - node_start[w]
    e_node = by_end[es[grp] + k]
    e_rid = rid[e_node]
    new = np.ones(len(i), dtype=bool)
    new[1:] = (k[1:] == 0) | (e_rid[1:] != e_rid[:-1])
    a_starts = _runs(new)
    m = mask[base + e_node]
    a_low, a_lo, a_hi = _min_runs(best[base + e_node], m, m, a_starts)
    a_grp, a_row, a_rid = grp[a_starts], r[a_starts], e_rid[a_starts]
    # distinct right ids per group (the same for every row) and where each row's runs begin
    rid_runs = np.bincount(a_grp, minlength=len(sel)) // rows
    a_first = np.cumsum(rows * rid_runs) - rows * rid_runs
    # B: per (group, row, distinct left id of a starting morpheme), over the right-id runs
    b_nodes_grp, bk = _segments_ranges(bc)
    b_node = bs[b_nodes_grp] + bk
    lid_key = b_nodes_grp * (1 << 20) + lid[b_node]
    uniq, b_lidx = np.unique(lid_key, return_inverse=True)
    u_grp, u_lid = uniq >> 20, uniq & ((1 << 20) - 1)
    lids_of = np.bincount(u_grp, minlength=len(sel))
    u_first = np.cumsum(lids_of) - lids_of
    grp2, i2 = _segments_ranges(rows * lids_of * rid_runs)
    per_row = lids_of[grp2] * rid_runs[grp2]
    r2 = i2 // per_row
    j2 = (i2 % per_row) // rid_runs[grp2]
    k2 = i2 % rid_runs[grp2]
    run = a_first[grp2] + r2 * rid_runs[grp2] + k2
    cand = a_low[run] + matrix[u_lid[u_first[grp2] + j2], a_rid[run]]
    c_starts = _runs(k2 == 0)
    c_low, c_lo, c_hi = _min_runs(cand, a_lo[run], a_hi[run], c_starts)
    tied = (c_lo != c_hi) | (c_lo & _TIE_BIT).astype(bool)
    # C: spread to every (row, starting morpheme)
    grp3, i3 = _segments_ranges(rows * bc)
    r3, k3 = i3 // bc[grp3], i3 % bc[grp3]
    node = bs[grp3] + k3
    b_at = np.cumsum(bc) - bc
    j3 = b_lidx[b_at[grp3] + k3] - u_first[grp3]
    c = (np.cumsum(rows * lids_of) - rows * lids_of)[grp3] + r3 * lids_of[grp3] + j3
    w3 = gw[grp3]
    dst = state_start[w3] + r3 * n_of[w3] + node - node_start[w3]
    reach = c_low[c] < _REACHABLE
    best[dst] = np.where(reach, c_low[c] + cost[node], _INF)
    mask[dst] = (c_lo[c] | bits[node]) & ~_TIE_BIT | np.where(tied[c] & reach, _TIE_BIT, _NO_BITS)


def _analyse_many(eojeols: list, parse_all: Callable[[str], str],
                  facts: _DictionaryFacts) -> list:
    """The _Analysis of each eojeol (None where refused), computed for all of them at once.

    The same dynamic programme as one eojeol at a time (see `_Analysis`), run level by level over
    every lattice together so that numpy works on long arrays: level L relaxes, for each eojeol,
    the morphemes starting at its L-th start position.
    """
    out: list = [None] * len(eojeols)
    texts, eos, rows_text, keep_idx = [], [], [], []
    for i, w in enumerate(eojeols):
        if len(w) > MAX_EOJEOL_CHARS or w[-1].isspace():
            # (an eojeol ending in whitespace MeCab does not skip, e.g. U+3000, would be split by
            # the pre-tokenization regex differently at the end of the text than before a marker)
            continue
        parsed = parse_all(w)
        cut = parsed.rfind(";E")
        if cut <= 0:
            continue
        keep_idx.append(i)
        texts.append(w)
        rows_text.append(parsed[:cut])
        eos.append(int(parsed[cut + 2:]))
    if not texts:
        return out
    nw = len(texts)
    n_nodes = np.array([t.count(";") + 1 for t in rows_text], dtype=np.int64)
    arr = np.fromstring(";".join(rows_text).replace(";", ","), dtype=np.int64, sep=",")
    if arr.size != 7 * int(n_nodes.sum()):
        if nw == 1:
            return out  # (output in an unexpected format: refused)
        return [_analyse_many([w], parse_all, facts)[0] for w in eojeols]
    arr = arr.reshape(-1, 7)
    word = np.repeat(np.arange(nw), n_nodes)
    start, end, rlen, lid, rid, posid, wcost = arr.T
    begin = end - rlen
    # byte offset -> character offset, per eojeol, through one concatenation of their bytes
    data = [t.encode("utf-8") for t in texts]
    n_bytes = np.array([len(d) for d in data], dtype=np.int64)
    byte_at = np.cumsum(n_bytes + 1) - (n_bytes + 1)  # where each eojeol's byte positions start
    is_start = np.ones(int((n_bytes + 1).sum()), dtype=bool)
    flat = np.frombuffer(b"\x00".join(data) + b"\x00", dtype=np.uint8)  # one spacer byte each
    is_start[:] = (flat & 0xC0) != 0x80
    chars_before = np.cumsum(is_start) - is_start
    char_at = chars_before - chars_before[byte_at][np.repeat(np.arange(nw), n_bytes + 1)]
    bad = ~is_start[byte_at[word] + end] | ~is_start[byte_at[word] + begin]
    refused = np.zeros(nw, dtype=bool)
    refused[word[bad]] = True
    pen = facts.penalty_by_posid[np.minimum(posid, len(facts.penalty_by_posid) - 1)]
    cost = wcost + np.where(start != begin, pen, 0)
    # Sort by (eojeol, begin) and keep the cheapest of each (eojeol, begin, end, lid, rid).
    order = np.lexsort((cost, rid, lid, end, begin, word))
    word, begin, end, lid, rid, cost = (x[order] for x in (word, begin, end, lid, rid, cost))
    keep = np.ones(len(word), dtype=bool)
    keep[1:] = ((word[1:] != word[:-1]) | (begin[1:] != begin[:-1]) | (end[1:] != end[:-1])
                | (lid[1:] != lid[:-1]) | (rid[1:] != rid[:-1]))
    word, begin, end, lid, rid, cost = (x[keep] for x in (word, begin, end, lid, rid, cost))
    n = len(word)
    node_start = np.searchsorted(word, np.arange(nw))
    n_of = np.diff(np.append(node_start, n))
    bits = np.left_shift(np.uint64(1), char_at[byte_at[word] + end].astype(np.uint64))
    # Rows: the distinct left ids of each eojeol's first morphemes (begin == 0).
    first = np.flatnonzero(begin == 0)
    row_key, row_of_first = np.unique(word[first] * (1 << 20) + lid[first], return_inverse=True)
    row_word = row_key >> 20
    row_lid = row_key & ((1 << 20) - 1)
    rows_of = np.bincount(row_word, minlength=nw)
    row_start = np.cumsum(rows_of) - rows_of
    refused |= rows_of == 0
    state_of = rows_of * n_of
    state_start = np.cumsum(state_of) - state_of
    best = np.full(int(state_of.sum()), _INF, dtype=np.int64)
    mask = np.zeros(len(best), dtype=np.uint64)
    fw = word[first]
    init = state_start[fw] + (row_of_first - row_start[fw]) * n_of[fw] + (first - node_start[fw])
    best[init] = cost[first]
    mask[init] = bits[first]
    # Groups of morphemes starting at one position (nodes are sorted by eojeol, then begin), and
    # of morphemes ending at one position (sorted by right id inside).
    b_key = word * (1 << 20) + begin
    b_first = np.append(0, np.flatnonzero(np.diff(b_key)) + 1)
    b_count = np.diff(np.append(b_first, n))
    by_end = np.lexsort((rid, end, word))
    e_key = (word * (1 << 20) + end)[by_end]
    e_first = np.append(0, np.flatnonzero(np.diff(e_key)) + 1)
    e_count = np.diff(np.append(e_first, n))
    both, bi, ei = np.intersect1d(b_key[b_first], e_key[e_first], assume_unique=True,
                                  return_indices=True)
    g_word = both >> 20
    g_level = bi - np.searchsorted(b_key[b_first] >> 20, g_word)  # rank of the position in its eojeol
    matrix = facts.matrix
    for level in range(1, int(g_level.max()) + 1 if len(g_level) else 1):
        sel = np.flatnonzero(g_level == level)
        if len(sel) == 0:
            continue
        _relax(sel, g_word, b_first[bi], b_count[bi], e_first[ei], e_count[ei], by_end, rows_of,
               n_of, node_start, state_start, lid, rid, cost, bits, best, mask, matrix)
    # Group each eojeol's last morphemes by right id (cheapest, segmentation ties), all at once:
    # entries (eojeol, row, last morpheme) ordered so that each (eojeol, row, right id) is a run.
    last = np.flatnonzero(end == n_bytes[word])
    last = last[np.lexsort((rid[last], word[last]))]
    lw = word[last]
    last_of = np.bincount(lw, minlength=nw)
    last_start = np.cumsum(last_of) - last_of
    grp, i = _segments_ranges(rows_of * last_of)
    r, j = i // last_of[grp], i % last_of[grp]
    node = last[last_start[grp] + j]
    states = state_start[grp] + r * n_of[grp] + node - node_start[grp]
    c, mk = best[states], mask[states]
    node_rid = rid[node]
    new_run = np.ones(len(c), dtype=bool)
    new_run[1:] = (j[1:] == 0) | (node_rid[1:] != node_rid[:-1])
    starts = np.flatnonzero(new_run)
    g_cost = np.minimum.reduceat(c, starts)
    at_min = c == np.repeat(g_cost, np.diff(np.append(starts, len(c))))
    g_lo = np.minimum.reduceat(np.where(at_min, mk, _ALL_BITS), starts)
    g_hi = np.maximum.reduceat(np.where(at_min, mk, _NO_BITS), starts)
    g_tie = (g_lo != g_hi) | (g_lo & _TIE_BIT).astype(bool)
    g_word, g_row, g_rid = grp[starts], r[starts], node_rid[starts]
    g_lid = row_lid[row_start[g_word] + g_row]
    # MeCab's own answer (sentence start and end as context) must be what this model computes.
    total = matrix[g_lid, _BOS_EOS_ID] + g_cost + matrix[_BOS_EOS_ID, g_rid]
    word_first = np.searchsorted(g_word, np.arange(nw))
    has = np.diff(np.append(word_first, len(g_word))) > 0
    best_total = np.full(nw, _INF, dtype=np.int64)
    best_total[has] = np.minimum.reduceat(total, word_first[has])
    refused |= ~has | (best_total != np.array(eos, dtype=np.int64))
    # Segmentations per eojeol: the distinct masks of its untied reachable pairs, numbered.
    reachable = g_cost < _REACHABLE
    clear = reachable & ~g_tie
    seg = np.where(reachable, -1, -2)
    ci = np.flatnonzero(clear)
    uniq, inverse = np.unique(np.stack([g_word[ci], g_lo[ci].view(np.int64)]), axis=1,
                              return_inverse=True)
    inverse = inverse.reshape(-1)
    first_seg = np.searchsorted(uniq[0], np.arange(nw))
    seg[ci] = inverse - first_seg[g_word[ci]]
    masks_of = uniq[1].view(np.uint64)
    bounds = np.append(word_first, len(g_word))
    for k in np.flatnonzero(~refused).tolist():
        lo_k, hi_k = bounds[k], bounds[k + 1]
        nr = rows_of[k]
        rids = g_rid[lo_k:hi_k][: (hi_k - lo_k) // nr]
        eojeol = texts[k]
        segmentations = []
        for mbits in masks_of[first_seg[k]:first_seg[k + 1] if k + 1 < nw else len(masks_of)].tolist():
            cuts_at = [b for b in range(1, len(eojeol) + 1) if mbits >> b & 1]
            if cuts_at[-1] != len(eojeol):
                break
            segmentations.append(tuple(eojeol[a:b] for a, b in zip([0] + cuts_at[:-1], cuts_at)))
        else:
            out[keep_idx[k]] = _Analysis(row_lid[row_start[k]:row_start[k] + nr], rids,
                                         g_cost[lo_k:hi_k].reshape(nr, -1),
                                         seg[lo_k:hi_k].reshape(nr, -1), segmentations)
    return out


# --- the cache -----------------------------------------------------------------------------------


# A solved context, a list for speed: [segmentation id of every optimal path or None when they
# differ, interned left ids of the optimal first morphemes, interned right ids of the optimal last
# morphemes, True when one (left id, right id, segmentation) is optimal for every context, the
# token ids of that segmentation once computed].
_SEG, _LSET, _RSET, _SINGLE, _IDS = range(5)
# A context key packs (right-id set, eojeol uid, left-id set) into one int: int keys hash fastest.
_UID_SHIFT, _R_SHIFT = 20, 44
_O_MASK = (1 << _UID_SHIFT) - 1
_MAX_SETS = 1 << _UID_SHIFT


class MorphemeCache:
    """Encodes text like `encode_marked(splitter.mark(text))`, exactly, with far fewer MeCab calls.

    `encode_marked(s)` must return the ids of `s` (morpheme segments joined by MARKER) with the
    marker ids dropped; `MorphemeSplitter` supplies MeCab. Memory is bounded by `max_eojeols`
    (the cache starts over when full). Not thread-safe.
    """

    def __init__(self, splitter: MorphemeSplitter, encode_marked: Callable[[str], list],
                 max_eojeols: int = DEFAULT_MAX_EOJEOLS, min_count: int = DEFAULT_MIN_COUNT,
                 max_unseen_share: float = DEFAULT_MAX_UNSEEN_SHARE) -> None:
        self.splitter = splitter
        self.encode_marked = encode_marked
        self.max_eojeols = max_eojeols
        self.min_count = min_count
        self.max_unseen_share = max_unseen_share
        self.stats = CacheStats()
        self._facts: Optional[_DictionaryFacts] = None
        self._parse_all = None
        self._space_key: Optional[re.Pattern] = None
        self._reset()

    def _reset(self) -> None:
        self._analyses: dict = {}  # eojeol -> _Analysis
        self._refused: dict = {}  # eojeol -> _Bounds, for eojeols whose analysis was refused
        self._next_uid = 0
        self._seen: dict = {}  # eojeol -> [sightings, _Bounds or None], until it is analysed
        self._solved: dict = {}  # context key -> solved list
        self._sets: dict = {}  # sorted id tuple -> interned set id
        self._set_arrays: list = []
        self._bos = self._intern((_BOS_EOS_ID,))
        self._with_bos: dict = {}  # set id -> id of the set plus sentence start/end
        self._tails: dict = {}
        self._windows: dict = {}  # window text -> segments per eojeol (or None)

    @property
    def available(self) -> bool:
        """False when the installed dictionary breaks an assumption of the proof."""
        self._setup()
        return not self._facts.problem

    def _setup(self) -> None:
        if self._facts is not None:
            return
        import mecab_ko

        tagger = self.splitter._get_tagger()
        dicdir = os.path.dirname(tagger.dictionary_info().filename)
        self._facts = _dictionary_facts(dicdir)
        if self._facts.problem:
            log.warning("morpheme cache off, MeCab-ko runs on every text: %s", self._facts.problem)
        all_nodes = mecab_ko.Tagger(f"-a --node-format={_ALL_NODES_FORMAT} "
                                    f"--unk-format={_ALL_NODES_FORMAT} --bos-format= --eos-format=E%pc")
        self._parse_all = all_nodes.parse
        if self._facts.space_key_prefixes:
            alts = "|".join(re.escape(p) for p in self._facts.space_key_prefixes)
            self._space_key = re.compile(f"(?:{alts})(?=[{re.escape(SPLIT_CHARS)}])")

    def _intern(self, ids) -> int:
        key = tuple(sorted(set(np.asarray(ids).tolist())))
        found = self._sets.get(key)
        if found is None:
            found = self._sets[key] = len(self._set_arrays)
            self._set_arrays.append(np.array(key, dtype=np.int64))
        return found

    def _plus_bos(self, set_id: int) -> int:
        found = self._with_bos.get(set_id)
        if found is None:
            found = self._with_bos[set_id] = self._intern(
                np.append(self._set_arrays[set_id], _BOS_EOS_ID))
        return found

    # -- encoding ----------------------------------------------------------------------------
    def encode(self, text: str) -> list:
        """Token ids of `text` (which must not contain MARKER)."""
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: list) -> list:
        """Token ids of each text (none may contain MARKER).

        The eojeols a batch makes frequent enough are analysed together first (numpy works on
        long arrays, `_analyse_many`), then each text is encoded.
        """
        if self._facts is not None and self._facts.problem:
            return [self.encode_marked(self.splitter.mark(t)) for t in texts]
        # Start over only between batches: ids (eojeol numbers, sets) of two generations never meet.
        if len(self._analyses) + len(self._refused) >= self.max_eojeols or \
                len(self._set_arrays) >= _MAX_SETS // 2:
            self._reset()
            self.stats.resets += 1
        get = self._analyses.get
        words, infos, unknown = [], [], []
        for t in texts:
            if len(t) <= CHUNK_CHARS and not _SPECIAL_RUN.search(t):
                ws = _EOJEOL.findall(t)
                found = [get(w) for w in ws]
                if None in found:
                    unknown += [w for w, i in zip(ws, found) if i is None]
            else:
                ws = found = None  # several chunks: encoded one chunk at a time below
            words.append(ws)
            infos.append(found)
        if unknown:
            self._count_and_analyse(unknown, counted=False)
        out = []
        for text, ws, found in zip(texts, words, infos):
            if ws is not None:
                out.append(self._encode_chunk(text, False, ws, found, counted=True))
                continue
            pieces = list(_chunks(text))
            ids: list = []
            for i, (chunk, analyse) in enumerate(pieces):
                followed = i + 1 < len(pieces)
                if analyse:
                    ws = _EOJEOL.findall(chunk)
                    ids += self._encode_chunk(chunk, followed, ws, [get(w) for w in ws], counted=False)
                else:
                    ids += self.encode_marked(chunk + MARKER if followed else chunk)
            out.append(ids)
        return out

    def _count_and_analyse(self, words: list, counted: bool) -> None:
        """Count a sighting of every word not analysed yet (unless `counted`) and analyse, in one
        batch, those seen `min_count` times."""
        analyses, refused, seen = self._analyses, self._refused, self._seen
        ready = []
        for word in words:
            if word in analyses or word in refused:
                continue
            record = seen.get(word)
            if record is None:
                if len(seen) >= self.max_eojeols:
                    seen.clear()
                record = seen[word] = [0, None]
            if not counted:
                record[0] += 1
            if record[0] >= self.min_count:
                record[0] = _QUEUED  # (once)
                ready.append(word)
        if not ready:
            return
        self._setup()
        if self._facts.problem:
            return
        analysed: list = []
        for i in range(0, len(ready), _ANALYSE_BATCH):
            analysed += _analyse_many(ready[i:i + _ANALYSE_BATCH], self._parse_all, self._facts)
        for word, info in zip(ready, analysed):
            record = seen.pop(word)
            if info is None:
                self.stats.unanalysable += 1
                bounds = record[1] if record[1] is not None else self._bounds(word)
                if bounds:
                    refused[word] = bounds
                else:
                    seen[word] = [_QUEUED, False]  # no lattice: chunks holding it go to MeCab whole
                continue
            self.stats.analysed += 1
            info.lset = self._intern(info.lids)
            info.rset = self._intern(info.rids)
            info.ukey = self._next_uid << _UID_SHIFT
            self._next_uid += 1
            analyses[word] = info

    def _encode_chunk(self, chunk: str, followed: bool, words: list, infos: list,
                      counted: bool) -> list:
        """Ids of one chunk; `infos` are the analyses of `words` found so far (None: not yet)."""
        if not words:
            return self.encode_marked(chunk + MARKER if followed else chunk) if chunk else []
        if self._space_key is not None and self._space_key.search(chunk):
            words = self._merge_space_keys(words)
            infos = [self._analyses.get(w) for w in words]
            counted = False  # (merged eojeols are new words)
        if None in infos:  # (including eojeols analysed since `infos` was looked up)
            infos = self._with_unanalysed(words, infos, counted)
        ids = self._encode_words(words, infos) if infos is not None else None
        if ids is None:
            self.stats.reference_chunks += 1
            marked = self.splitter._chunk_marked(chunk)
            return self.encode_marked(marked + MARKER if followed else marked)
        if chunk[-1] in SPLIT_CHARS:
            ids += self._tail_ids(chunk[len(chunk.rstrip(SPLIT_CHARS)):], followed)
        return ids

    def _with_unanalysed(self, words: list, infos: list, counted: bool) -> Optional[list]:
        """Fill in the eojeols not analysed: analysed now if seen `min_count` times, else (and
        when refused) their _Bounds. None: send the chunk to MeCab whole -- mostly unseen text
        (the start of a corpus, a one-off prompt), where bounds and windows for every eojeol would
        cost more than the plain analysis, or nothing to go on."""
        self._count_and_analyse([w for w, i in zip(words, infos) if i is None], counted)
        infos = list(infos)
        pending = []
        for k, word in enumerate(words):
            if infos[k] is None:
                infos[k] = self._analyses.get(word) or self._refused.get(word)
                if infos[k] is None:
                    pending.append(k)
        if len(pending) > self.max_unseen_share * len(words):
            return None
        if self._facts is None:  # the dictionary is read only once the cache is of use
            self._setup()
            if self._space_key is not None and self._space_key.search("".join(words)):
                return None  # (split before the dictionary was read)
        if self._facts.problem:
            return None
        for k in pending:
            infos[k] = self._rare_bounds(words[k])
            if infos[k] is None:
                return None
        return infos

    def _rare_bounds(self, word: str) -> Optional[_Bounds]:
        record = self._seen.get(word)
        if record is None:  # (the count was cleared meanwhile)
            return self._bounds(word)
        if record[1] is None:
            record[1] = self._bounds(word) or False
        return record[1] or None

    def _tail_ids(self, tail: str, followed: bool) -> list:
        # Trailing whitespace joins the chunk's last segment; what follows it (a marker before the
        # next chunk, or the end of the text) decides how the regex splits it.
        key = (tail, followed)
        ids = self._tails.get(key)
        if ids is None:
            ids = self._tails[key] = self.encode_marked(tail + MARKER if followed else tail)
        return ids

    def _merge_space_keys(self, words: list) -> list:
        """Join an eojeol with the next where a dictionary key may continue over the space."""
        out: list = []
        pending = ""
        for w in words:
            pending += w
            if self._space_key.search(pending + " "):
                continue
            out.append(pending)
            pending = ""
        if pending:
            out.append(pending)
        return out

    def _bounds(self, word: str) -> Optional[_Bounds]:
        lattice = _parse_lattice(word, self._parse_all)
        if lattice is None:
            return None
        arr = lattice[0]
        n_bytes = len(word.encode("utf-8"))
        first = arr[:, 1] - arr[:, 2] == 0
        last = arr[:, 1] == n_bytes
        if not first.any() or not last.any():
            return None
        return _Bounds(self._intern(arr[first, 3]), self._intern(arr[last, 4]))

    def _solve(self, key: int, info: _Analysis) -> list:
        """Which (first lid, last rid) pairs of `info` are optimal for some context in key's sets."""
        m = self._facts.matrix
        r, o = self._set_arrays[key >> _R_SHIFT], self._set_arrays[key & _O_MASK]
        # cost[r, f, l] of entering with right id r; best first morpheme for each (r, l)
        entry = m[info.lids[None, :], r[:, None]].astype(np.int64)  # [context r, first lid]
        via = entry[:, :, None] + info.cost[None]
        best = via.min(axis=1)
        f_opt = via == best[:, None, :]
        leave = m[o[:, None], info.rids[None, :]].astype(np.int64)  # [context o, last rid]
        total = best[:, None, :] + leave[None]  # [r, o, last rid]
        low = total.min(axis=2, keepdims=True)
        l_opt = ((total == low) & (low < _REACHABLE)).any(axis=1)  # [r, l]: optimal for some o
        optimal = (f_opt & l_opt[:, None, :]).any(axis=0)  # pairs optimal in some context
        fi, li = np.nonzero(optimal)
        segs = set(info.seg[fi, li].tolist())
        seg = segs.pop() if len(segs) == 1 else None
        if seg is not None and seg < 0:
            seg = None
        found = [seg, self._intern(info.lids[fi]), self._intern(info.rids[li]),
                 seg is not None and len(fi) == 1, None]
        self._solved[key] = found
        return found

    def _encode_words(self, words: list, infos: list) -> Optional[list]:
        """Ids of a chunk's eojeols (None: MeCab's output did not align; use the reference).

        infos[k] is an _Analysis, or the _Bounds of an eojeol not analysed (seen too rarely, or
        refused): such an eojeol is never certified and always ends up inside a MeCab window.
        """
        n = len(words)
        get, solve, bos = self._solved.get, self._solve, self._bos
        # Backward: the left ids each eojeol's optimal paths can start with, with the left context
        # unrefined (every right id the left neighbour's lattice allows). lsets[n]: sentence end.
        lsets = [bos] * (n + 1)
        back: list = [None] * n
        before = [bos << _R_SHIFT]  # unrefined left context of each eojeol, shifted into place
        before += [i.rset << _R_SHIFT for i in infos[:-1]]
        nxt = bos
        k = n
        for info in reversed(infos):
            k -= 1
            if info.__class__ is _Bounds:
                nxt = lsets[k] = info.lset
                continue
            key = before[k] | info.ukey | nxt
            s = get(key) or solve(key, info)
            back[k] = s
            nxt = lsets[k] = s[_LSET]
        # Forward: the right ids before each eojeol, refined where that helps, and its segmentation
        # when certified. A certified backward result holds for the refined context too (a subset),
        # and its right ids (optimal for some context of the superset) are a sound left context
        # for the next eojeol; only uncertified ones are solved again with the refined context.
        rsets = [bos] * (n + 1)
        out: list = []
        k = windowed = 0
        r = bos
        while k < n:
            s = back[k]
            if s is not None:  # (None: not analysed)
                if s[_SEG] is None and r << _R_SHIFT != before[k]:
                    info = infos[k]
                    key = r << _R_SHIFT | info.ukey | lsets[k + 1]
                    s = get(key) or solve(key, info)
                if s[_SEG] is not None:
                    ids = s[_IDS]
                    out += ids if ids is not None else self._certified_ids(s, infos[k])
                    r = rsets[k + 1] = s[_RSET]
                    k += 1
                    continue
            window = self._window(k, words, infos, lsets, rsets)
            if window is None:
                return None
            a, b, segments, after = window
            for j in range(k, b + 1):
                out += self._word_ids(infos[j], segments[j - a])
            self.stats.windows += 1
            windowed += b + 1 - k
            if b + 1 < n:
                r = rsets[b + 1] = after
            k = b + 1
        self.stats.eojeols += n
        self.stats.windowed += windowed
        self.stats.certified += n - windowed
        return out

    def _certified_ids(self, solved: list, info: _Analysis) -> list:
        seg = solved[_SEG]
        ids = info.ids.get(seg)
        if ids is None:
            ids = info.ids[seg] = self.encode_marked(MARKER.join(info.segmentations[seg]))
        solved[_IDS] = ids
        return ids

    def _window(self, k: int, words: list, infos: list, lsets: list, rsets: list):
        """MeCab on eojeols [a, b] around the uncertified k: (a, b, segments per eojeol, the right
        ids after b), or None when MeCab's output does not align.

        a and b are separators (or the chunk's edges): one path for every context, including the
        sentence start/end they meet inside the window (module docstring, point 4). A separator's
        outer context is its refined one, its inner context all that its inner neighbour's lattice
        allows.
        """
        solved, solve = self._solved, self._solve
        n = len(words)
        a = k - 1
        while a > 0:
            info = infos[a]
            if info.__class__ is _Analysis:
                key = self._plus_bos(rsets[a]) << _R_SHIFT | info.ukey | infos[a + 1].lset
                if (solved.get(key) or solve(key, info))[_SINGLE]:
                    break
            a -= 1
        a = max(a, 0)
        b, after = k + 1, None
        while b < n - 1:
            info = infos[b]
            if info.__class__ is _Analysis:
                key = infos[b - 1].rset << _R_SHIFT | info.ukey | self._plus_bos(lsets[b + 1])
                s = solved.get(key) or solve(key, info)
                if s[_SINGLE]:
                    after = s[_RSET]
                    break
            b += 1
        b = min(b, n - 1)
        text = "".join(words[a:b + 1])
        segments = self._windows.get(text, False)
        if segments is False:
            if len(self._windows) >= self.max_eojeols:
                self._windows.clear()
            segments = self._windows[text] = self._window_segments(words[a:b + 1])
        if segments is None:
            return None
        return a, b, segments, after

    def _window_segments(self, words: list) -> Optional[list]:
        """MeCab's segments of the window text, grouped per eojeol (None if they do not align)."""
        marked = self.splitter._get_tagger().parse("".join(words))
        if marked.endswith(MARKER):
            marked = marked[:-1]
        segs = marked.split(MARKER)
        out, i = [], 0
        for word in words:
            group, got = [], 0
            while got < len(word) and i < len(segs):
                group.append(segs[i])
                got += len(segs[i])
                i += 1
            if "".join(group) != word:
                return None
            out.append(tuple(group))
        return out if i == len(segs) else None

    def _word_ids(self, info, segments: tuple) -> list:
        if info.__class__ is not _Analysis:
            return self.encode_marked(MARKER.join(segments))
        try:
            seg = info.segmentations.index(segments)
        except ValueError:
            return self.encode_marked(MARKER.join(segments))
        ids = info.ids.get(seg)
        if ids is None:
            ids = info.ids[seg] = self.encode_marked(MARKER.join(segments))
        return ids
