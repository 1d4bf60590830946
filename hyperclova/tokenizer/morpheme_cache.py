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
   the dictionary's trie and handle by never cutting after their first part. `DictionaryFacts`
   checks all of this on the installed dictionary files and turns the cache off if any fails.
   So every path passes every cut, and an eojeol (its leading whitespace included) has the same
   lattice wherever it occurs.
2. An eojeol talks to its neighbours only through the right id `r` of the morpheme before it and the
   left id `o` of the morpheme after it. For each eojeol we compute once, over its own lattice, the
   cheapest internal path for every (first-morpheme left id, last-morpheme right id) pair and its
   segmentation (`Analysis`); the total for a context (r, o) is then a small min-plus product.
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

import logging
import os
import re
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from hyperclova.tokenizer.eojeol_lattice import (
    BOS_EOS_ID,
    REACHABLE,
    SPLIT_CHARS,
    Analysis,
    Bounds,
    DictionaryFacts,
    analyse_many,
    dictionary_facts,
    parse_lattice,
)
from hyperclova.tokenizer.morphemes import CHUNK_CHARS, MorphemeSplitter, _chunks, _SPECIAL_RUN
from hyperclova.tokenizer.pretokenize import MARKER

log = logging.getLogger(__name__)

_EOJEOL = re.compile(r"[ \t\n\r\x0b]*[^ \t\n\r\x0b]+")
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
    unanalysable: int = 0  # distinct eojeols whose analysis was refused (see analyse_many)
    resets: int = 0  # times the cache was emptied because it was full

    def as_dict(self) -> dict:
        return dict(self.__dict__)


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
        self._facts: Optional[DictionaryFacts] = None
        self._parse_all = None
        self._space_key: Optional[re.Pattern] = None
        self._reset()

    def _reset(self) -> None:
        self._analyses: dict = {}  # eojeol -> Analysis
        self._refused: dict = {}  # eojeol -> Bounds, for eojeols whose analysis was refused
        self._next_uid = 0
        self._seen: dict = {}  # eojeol -> [sightings, Bounds or None], until it is analysed
        self._solved: dict = {}  # context key -> solved list
        self._sets: dict = {}  # sorted id tuple -> interned set id
        self._set_arrays: list = []
        self._bos = self._intern((BOS_EOS_ID,))
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
        self._facts = dictionary_facts(dicdir)
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
                np.append(self._set_arrays[set_id], BOS_EOS_ID))
        return found

    # -- encoding ----------------------------------------------------------------------------
    def encode(self, text: str) -> list:
        """Token ids of `text` (which must not contain MARKER)."""
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: list) -> list:
        """Token ids of each text (none may contain MARKER).

        The eojeols a batch makes frequent enough are analysed together first (numpy works on
        long arrays, `analyse_many`), then each text is encoded.
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
            analysed += analyse_many(ready[i:i + _ANALYSE_BATCH], self._parse_all, self._facts)
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
        when refused) their Bounds. None: send the chunk to MeCab whole -- mostly unseen text
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

    def _rare_bounds(self, word: str) -> Optional[Bounds]:
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

    def _bounds(self, word: str) -> Optional[Bounds]:
        lattice = parse_lattice(word, self._parse_all)
        if lattice is None:
            return None
        arr = lattice[0]
        n_bytes = len(word.encode("utf-8"))
        first = arr[:, 1] - arr[:, 2] == 0
        last = arr[:, 1] == n_bytes
        if not first.any() or not last.any():
            return None
        return Bounds(self._intern(arr[first, 3]), self._intern(arr[last, 4]))

    def _solve(self, key: int, info: Analysis) -> list:
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
        l_opt = ((total == low) & (low < REACHABLE)).any(axis=1)  # [r, l]: optimal for some o
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

        infos[k] is an Analysis, or the Bounds of an eojeol not analysed (seen too rarely, or
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
            if info.__class__ is Bounds:
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

    def _certified_ids(self, solved: list, info: Analysis) -> list:
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
            if info.__class__ is Analysis:
                key = self._plus_bos(rsets[a]) << _R_SHIFT | info.ukey | infos[a + 1].lset
                if (solved.get(key) or solve(key, info))[_SINGLE]:
                    break
            a -= 1
        a = max(a, 0)
        b, after = k + 1, None
        while b < n - 1:
            info = infos[b]
            if info.__class__ is Analysis:
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
        if info.__class__ is not Analysis:
            return self.encode_marked(MARKER.join(segments))
        try:
            seg = info.segmentations.index(segments)
        except ValueError:
            return self.encode_marked(MARKER.join(segments))
        ids = info.ids.get(seg)
        if ids is None:
            ids = info.ids[seg] = self.encode_marked(MARKER.join(segments))
        return ids
