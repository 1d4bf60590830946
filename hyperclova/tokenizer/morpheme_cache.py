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


@dataclass
class CacheStats:
    """What the cache did (counts since it was created)."""

    eojeols: int = 0  # occurrences seen in analysed chunks
    certified: int = 0  # occurrences encoded from the cache
    windowed: int = 0  # occurrences encoded from a MeCab window
    windows: int = 0
    reference_chunks: int = 0  # chunks sent to MeCab whole
    analysed: int = 0  # distinct eojeols analysed
    unanalysable: int = 0  # distinct eojeols whose analysis was refused (see _analyse)
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
    real transition has check != 0. The trie (tens of MB) is scanned in slices to keep memory low.
    """
    head = np.fromfile(sys_dic, dtype=np.uint32, count=10)
    units = np.memmap(sys_dic, dtype=np.dtype([("base", "<i4"), ("check", "<u4")]), mode="r",
                      offset=72, shape=(int(head[6]) // 8,))
    root = int(units["base"][0])
    split_bytes = np.array([ord(c) for c in SPLIT_CHARS], dtype=np.int64)

    def slices():
        for lo in range(0, len(units), 1 << 19):
            part = units[lo:lo + (1 << 19)]
            check = part["check"].astype(np.int64)
            yield lo, part["base"].astype(np.int64), check, check != 0

    hits = []  # units reached on a split byte
    for lo, base, check, used in slices():
        if ((base == 0) & used).any():
            raise ValueError(f"{sys_dic}: a trie state has base 0; cannot list keys with spaces")
        label = np.arange(lo, lo + len(check), dtype=np.int64) - check - 1
        hits += (np.flatnonzero(used & np.isin(label, split_bytes)) + lo).tolist()
    if root == 0:
        raise ValueError(f"{sys_dic}: the trie root has base 0")
    # Walk every hit up to the root, one level per scan for all of them at once.
    paths = {u: [] for u in hits}
    state = {u: int(units["check"][u]) for u in hits}
    for _ in range(256):
        pending = {s for s in state.values() if s != root}
        if not pending:
            break
        wanted = np.array(sorted(pending), dtype=np.int64)
        parent_of = {}
        for lo, base, check, used in slices():
            for i in np.flatnonzero(used & np.isin(base, wanted)).tolist():
                if int(base[i]) in parent_of:
                    raise ValueError(f"{sys_dic}: two trie units share a base")
                parent_of[int(base[i])] = (lo + i, int(check[i]))
        for u in hits:
            if state[u] == root:
                continue
            if state[u] not in parent_of:
                raise ValueError(f"{sys_dic}: cannot walk the trie to the root")
            unit, up = parent_of[state[u]]
            paths[u].append(unit - up - 1)
            state[u] = up
    else:
        raise ValueError(f"{sys_dic}: a key deeper than 256 bytes")
    prefixes = []
    for u in hits:
        words = bytes(reversed(paths[u])).decode("utf-8", errors="replace").split()
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


def _analyse(eojeol: str, parse_all: Callable[[str], str], facts: _DictionaryFacts) -> Optional[_Analysis]:
    """Build the _Analysis of `eojeol` from MeCab's full lattice, or None if refused."""
    if len(eojeol) > MAX_EOJEOL_CHARS or eojeol[-1].isspace():
        # (an eojeol ending in whitespace MeCab does not skip, e.g. U+3000, would be split by the
        # pre-tokenization regex differently at the end of the text than before a marker)
        return None
    lattice = _parse_lattice(eojeol, parse_all)
    if lattice is None:
        return None
    arr, eos_cost = lattice
    data = eojeol.encode("utf-8")
    n_bytes = len(data)
    # byte offset -> character offset; -1 inside a character
    char_at = np.full(n_bytes + 1, -1, dtype=np.int64)
    starts_char = (np.frombuffer(data, dtype=np.uint8) & 0xC0) != 0x80
    char_at[np.append(np.flatnonzero(starts_char), n_bytes)] = np.arange(len(eojeol) + 1)
    start, end, rlen, lid, rid, posid, wcost = arr.T
    begin = end - rlen
    if (char_at[end] < 0).any() or (char_at[begin] < 0).any():
        return None  # a morpheme boundary inside a character: leave it to MeCab
    pen = facts.penalty_by_posid[np.minimum(posid, len(facts.penalty_by_posid) - 1)]
    cost = wcost + np.where(start != begin, pen, 0)
    # Nodes sorted by begin; morphemes that differ only in features are the same to us, keep the
    # cheapest of each (begin, end, lid, rid).
    order = np.lexsort((cost, rid, lid, end, begin))
    begin, end, lid, rid, cost = begin[order], end[order], lid[order], rid[order], cost[order]
    keep = np.ones(len(begin), dtype=bool)
    keep[1:] = (begin[1:] != begin[:-1]) | (end[1:] != end[:-1]) | (lid[1:] != lid[:-1]) | \
        (rid[1:] != rid[:-1])
    begin, end, lid, rid, cost = begin[keep], end[keep], lid[keep], rid[keep], cost[keep]
    n = len(begin)
    nf = int(np.searchsorted(begin, 0, side="right"))  # first morphemes: begin == 0
    last = np.flatnonzero(end == n_bytes)
    if nf == 0 or len(last) == 0:
        return None
    # One DP row per left id of a first morpheme: the cheapest path from any first morpheme with
    # that id to every node and its segmentation, a bit per character where a morpheme ends. Bit 0
    # (no morpheme ends at character 0) flags a tie between paths of different segmentations.
    lids, row_of = np.unique(lid[:nf], return_inverse=True)
    rows = len(lids)
    bits = np.left_shift(np.uint64(1), char_at[end].astype(np.uint64))
    best = np.full((rows, n), _INF, dtype=np.int64)
    mask = np.zeros((rows, n), dtype=np.uint64)
    best[row_of, np.arange(nf)] = cost[:nf]
    mask[row_of, np.arange(nf)] = bits[:nf]
    matrix = facts.matrix
    by_end = np.argsort(end, kind="stable")
    end_sorted = end[by_end]
    cuts = np.flatnonzero(np.diff(begin)) + 1  # nodes grouped by begin
    for lo, hi in zip(cuts.tolist(), np.append(cuts[1:], n).tolist()):
        p = begin[lo]
        e_lo, e_hi = np.searchsorted(end_sorted, [p, p + 1])
        if e_lo == e_hi:
            continue  # nothing ends here: these morphemes are unreachable
        ends_here = by_end[e_lo:e_hi]
        cand = best[:, ends_here, None] + matrix[lid[None, lo:hi], rid[ends_here][:, None]][None]
        low = cand.min(axis=1)
        at_min = cand == low[:, None, :]
        m = mask[:, ends_here, None]
        m_lo = np.where(at_min, m, _ALL_BITS).min(axis=1)
        tied = (m_lo != np.where(at_min, m, _NO_BITS).max(axis=1)) | (m_lo & _TIE_BIT).astype(bool)
        reach = low < _REACHABLE
        best[:, lo:hi] = np.where(reach, low + cost[lo:hi], _INF)  # (clamped: INF stays INF)
        mask[:, lo:hi] = (m_lo | bits[lo:hi]) & ~_TIE_BIT | np.where(tied & reach, _TIE_BIT, _NO_BITS)
    # Group the last morphemes by right id: keep the cheapest, note segmentation ties.
    last = last[np.argsort(rid[last], kind="stable")]
    rids, first_of = np.unique(rid[last], return_index=True)
    c, mk = best[:, last], mask[:, last]
    g_cost = np.minimum.reduceat(c, first_of, axis=1)
    at_min = c == np.repeat(g_cost, np.diff(np.append(first_of, len(last))), axis=1)
    g_lo = np.minimum.reduceat(np.where(at_min, mk, _ALL_BITS), first_of, axis=1)
    g_hi = np.maximum.reduceat(np.where(at_min, mk, _NO_BITS), first_of, axis=1)
    g_tie = (g_lo != g_hi) | (g_lo & _TIE_BIT).astype(bool)
    reachable = g_cost < _REACHABLE
    clear = reachable & ~g_tie
    masks, seg_ids = np.unique(g_lo[clear], return_inverse=True)
    seg = np.where(reachable, -1, -2)
    seg[clear] = seg_ids
    # MeCab's own answer (sentence start and end as context) must be what this model computes.
    total = matrix[lids, _BOS_EOS_ID][:, None] + g_cost + matrix[_BOS_EOS_ID, rids][None, :]
    if int(total.min()) != eos_cost:
        return None
    segmentations = []
    for m in masks.tolist():
        cuts_at = [i for i in range(1, len(eojeol) + 1) if m >> i & 1]
        if cuts_at[-1] != len(eojeol):
            return None
        segmentations.append(tuple(eojeol[i:j] for i, j in zip([0] + cuts_at[:-1], cuts_at)))
    return _Analysis(lids, rids, g_cost, seg, segmentations)


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
        if self._facts is not None and self._facts.problem:
            return self.encode_marked(self.splitter.mark(text))
        if len(text) <= CHUNK_CHARS and not _SPECIAL_RUN.search(text):
            return self._encode_chunk(text, followed=False)
        pieces = list(_chunks(text))
        out: list = []
        for i, (chunk, analyse) in enumerate(pieces):
            followed = i + 1 < len(pieces)
            if analyse:
                out += self._encode_chunk(chunk, followed)
            else:
                out += self.encode_marked(chunk + MARKER if followed else chunk)
        return out

    def _encode_chunk(self, chunk: str, followed: bool) -> list:
        words = _EOJEOL.findall(chunk)
        if not words:
            return self.encode_marked(chunk + MARKER if followed else chunk) if chunk else []
        if self._space_key is not None and self._space_key.search(chunk):
            words = self._merge_space_keys(words)
        # Start over only between chunks: ids (eojeol numbers, sets) of two generations never meet.
        if len(self._analyses) + len(self._refused) >= self.max_eojeols or \
                len(self._set_arrays) >= _MAX_SETS // 2:
            self._reset()
            self.stats.resets += 1
        get = self._analyses.get
        infos = [get(w) for w in words]
        if None in infos:
            infos = self._with_unanalysed(words, infos)
        ids = self._encode_words(words, infos) if infos is not None else None
        if ids is None:
            self.stats.reference_chunks += 1
            marked = self.splitter._chunk_marked(chunk)
            return self.encode_marked(marked + MARKER if followed else marked)
        if chunk[-1] in SPLIT_CHARS:
            ids += self._tail_ids(chunk[len(chunk.rstrip(SPLIT_CHARS)):], followed)
        return ids

    def _with_unanalysed(self, words: list, infos: list) -> Optional[list]:
        """Count a sighting of each eojeol not analysed yet, analyse those seen `min_count` times,
        and give the rarer ones (and refused ones) their _Bounds. None: send the chunk to MeCab
        whole -- mostly unseen text (the start of a corpus, a one-off prompt), where bounds and
        windows for every eojeol would cost more than the plain analysis, or nothing to go on."""
        infos = list(infos)
        seen, analyses, refused = self._seen, self._analyses, self._refused
        ready, pending = [], []
        for k, word in enumerate(words):
            if infos[k] is not None:
                continue
            found = refused.get(word)
            if found is not None:
                infos[k] = found
                continue
            record = seen.get(word)
            if record is None:
                if len(seen) >= self.max_eojeols:
                    seen.clear()
                record = seen[word] = [0, None]
            record[0] += 1
            (ready if record[0] >= self.min_count else pending).append(k)
        if len(pending) > self.max_unseen_share * len(words):
            return None
        if self._facts is None:  # the dictionary is read only once the cache is of use
            self._setup()
            if self._space_key is not None and self._space_key.search("".join(words)):
                return None  # (split before the dictionary was read)
        if self._facts.problem:
            return None
        for k in ready + pending:
            word = words[k]
            info = analyses.get(word) or refused.get(word)  # (a repeated eojeol: done already)
            if info is None:
                info = self._analyse_word(word) if k in ready else self._rare_bounds(word)
                if info is None:
                    return None
            infos[k] = info
        return infos

    def _analyse_word(self, word: str):
        """The _Analysis of `word` (or its _Bounds when the analysis is refused; None when MeCab
        gives no lattice at all)."""
        record = self._seen.pop(word, None)
        info = _analyse(word, self._parse_all, self._facts)
        if info is None:
            self.stats.unanalysable += 1
            bounds = record[1] if record and record[1] is not None else self._bounds(word)
            if bounds:
                self._refused[word] = bounds
            return bounds or None
        self.stats.analysed += 1
        info.lset = self._intern(info.lids)
        info.rset = self._intern(info.rids)
        info.ukey = self._next_uid << _UID_SHIFT
        self._next_uid += 1
        self._analyses[word] = info
        return info

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
