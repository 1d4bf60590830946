"""One eojeol's MeCab-ko lattice, analysed once: the cheapest internal path and its segmentation
for every (first-morpheme left id, last-morpheme right id) pair, and the facts about the installed
dictionary that make such an analysis valid wherever the eojeol occurs. The morpheme cache
(hyperclova/tokenizer/morpheme_cache.py, whose docstring gives the proof) builds on it.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

# Characters an eojeol split may cut at: those MeCab skips as SPACE (verified in DictionaryFacts).
SPLIT_CHARS = " \t\n\r\x0b"
MAX_EOJEOL_CHARS = 63  # a segmentation is a bit mask of character positions in one uint64
_INF = np.int64(1) << 50  # the cost of an unreachable morpheme
REACHABLE = np.int64(1) << 49  # anything below is a real path cost (real costs are < 2**40)
_ALL_BITS = np.uint64(np.iinfo(np.uint64).max)
_NO_BITS = np.uint64(0)
_TIE_BIT = np.uint64(1)
BOS_EOS_ID = 0  # MeCab's sentence start/end node has left and right id 0


# --- facts about the installed dictionary --------------------------------------------------------


@dataclass(frozen=True)
class DictionaryFacts:
    matrix: np.ndarray  # int16 [left id of the right node, right id of the left node]
    penalty_by_posid: np.ndarray  # left-space penalty of each part-of-speech id
    space_key_prefixes: tuple  # texts that a dictionary key continues with a space after
    problem: str = ""  # why the cache must not be used with this dictionary ("" when fine)


@functools.lru_cache(maxsize=4)
def dictionary_facts(dicdir: str) -> DictionaryFacts:
    """Read and check the dictionary facts the proof needs (see the module docstring, point 1)."""
    try:
        return _read_dictionary_facts(dicdir)
    except (OSError, ValueError, IndexError) as e:  # an unexpected dictionary: no cache
        return DictionaryFacts(np.zeros((1, 1), np.int16), np.zeros(1, np.int64), (),
                                f"{dicdir}: {e}")


def _read_dictionary_facts(dicdir: str) -> DictionaryFacts:
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
    problem = check_space_category(dicdir)
    prefixes: tuple = ()
    if not problem:
        try:
            prefixes = _keys_with_split_chars(os.path.join(dicdir, "sys.dic"))
        except ValueError as e:
            problem = str(e)
    table = np.zeros(max([1024, *penalties]) + 1, dtype=np.int64)
    for posid, cost in penalties.items():
        table[posid] = cost
    return DictionaryFacts(matrix, table, prefixes, problem)


def check_space_category(dicdir: str) -> str:
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


class Analysis:
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


class Bounds:
    """What a not-yet-analysed eojeol tells its neighbours: the left ids it can start with and the
    right ids it can end with (interned sets). It is never certified itself."""

    __slots__ = ("lset", "rset")

    def __init__(self, lset: int, rset: int) -> None:
        self.lset, self.rset = lset, rset


def parse_lattice(eojeol: str, parse_all: Callable[[str], str]):
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
    that reach it (a path's mask includes the tie bit; see `analyse_many`)."""
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
    a_grp, a_rid = grp[a_starts], e_rid[a_starts]
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
    reach = c_low[c] < REACHABLE
    best[dst] = np.where(reach, c_low[c] + cost[node], _INF)
    mask[dst] = (c_lo[c] | bits[node]) & ~_TIE_BIT | np.where(tied[c] & reach, _TIE_BIT, _NO_BITS)


def analyse_many(eojeols: list, parse_all: Callable[[str], str],
                  facts: DictionaryFacts) -> list:
    """The Analysis of each eojeol (None where refused), computed for all of them at once.

    The same dynamic programme as one eojeol at a time (see `Analysis`), run level by level over
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
        return [analyse_many([w], parse_all, facts)[0] for w in eojeols]
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
    total = matrix[g_lid, BOS_EOS_ID] + g_cost + matrix[BOS_EOS_ID, g_rid]
    word_first = np.searchsorted(g_word, np.arange(nw))
    has = np.diff(np.append(word_first, len(g_word))) > 0
    best_total = np.full(nw, _INF, dtype=np.int64)
    best_total[has] = np.minimum.reduceat(total, word_first[has])
    refused |= ~has | (best_total != np.array(eos, dtype=np.int64))
    # Segmentations per eojeol: the distinct masks of its untied reachable pairs, numbered.
    reachable = g_cost < REACHABLE
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
            out[keep_idx[k]] = Analysis(row_lid[row_start[k]:row_start[k] + nr], rids,
                                         g_cost[lo_k:hi_k].reshape(nr, -1),
                                         seg[lo_k:hi_k].reshape(nr, -1), segmentations)
    return out
