"""Generated token ids -> text deltas that are safe to send as they come.

Byte-level BPE can cut a Hangul syllable (3 bytes), an emoji (4) or a Hanja character across
tokens. Each token's bytes go through an incremental UTF-8 decoder, which keeps an incomplete
character back until its last byte arrives, so a stream never shows U+FFFD for a split character
(an invalid byte sequence the model really produced still decodes to U+FFFD, as `decode` would).

On that text the stream applies, in order: stop strings (checked on decoded text, not on ids;
the text from the stop string on is dropped), the output filters (hyperclova/serve/filters.py:
stop or mask), and holds back the tail that a stop string or a filter might still claim.
"""
from __future__ import annotations

import codecs
from collections import Counter
from typing import Sequence

from hyperclova.serve.filters import PII_CONTEXT_CHARS


class TextStream:
    def __init__(self, tok, stop: Sequence[str] = (), filters=None):
        self._tok = tok
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self._stop = [s for s in stop if s]
        self._filters = filters
        self.raw = ""  # decoded text (after stops/filter truncation)
        self._sent_raw = 0  # raw characters already turned into sent text
        self.text = ""  # what was sent (masked where the filters mask)
        self.finish_reason: str | None = None
        self.filter_counts: Counter = Counter()  # rule -> hits (mask) or 1 (stop)

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def push(self, token_id: int) -> str:
        """Add one generated token; returns the text that may be sent now. After a stop string or
        a stopping filter, `finish_reason` is set and the remaining text has been released."""
        piece = self._utf8.decode(self._tok.id_to_bytes(token_id))
        return self._advance(piece, final=False)

    def close(self) -> str:
        """The end of generation (length or end-of-document): release everything held back."""
        if self.done:
            return ""
        return self._advance(self._utf8.decode(b"", final=True), final=True)

    def _advance(self, piece: str, final: bool) -> str:
        if self.done:
            return ""
        self.raw += piece
        if self._stop:
            hit = min((i for i in (self.raw.find(s, self._sent_raw) for s in self._stop) if i >= 0),
                      default=-1)
            if hit >= 0:
                self.raw, final, self.finish_reason = self.raw[:hit], True, "stop"
        if self._filters is not None:
            tripped = self._filters.find_stop(self.raw, self._sent_raw)
            if tripped is not None:
                at, rule = tripped
                self.raw, final = self.raw[:max(at, self._sent_raw)], True
                self.finish_reason = "content_filter"
                self.filter_counts[rule] += 1
        end = len(self.raw) if final else len(self.raw) - self._hold()
        return self._release(max(end, self._sent_raw), final)

    def _hold(self) -> int:
        """Tail length that must wait: a possible start of a stop string, or the filter window."""
        hold = self._filters.hold_chars(self.raw) if self._filters is not None else 0
        for s in self._stop:
            for n in range(min(len(s) - 1, len(self.raw)), hold, -1):
                if self.raw.endswith(s[:n]):
                    hold = n
                    break
        return hold

    def _masked(self, end: int, final: bool) -> str | None:
        """The masked text of raw[sent:end], read with some sent text before it as context; None
        while an item may straddle `end` (masking up to `end` disagrees with masking it all)."""
        ctx = max(0, self._sent_raw - PII_CONTEXT_CHARS)
        counts: Counter = Counter()
        out = _masked_tail(self._filters, self.raw[ctx:end], self._sent_raw - ctx, counts)
        if not final:
            whole = _masked_tail(self._filters, self.raw[ctx:], self._sent_raw - ctx, Counter())
            if not whole.startswith(out):
                return None
        self.filter_counts.update(+counts)
        return out

    def _release(self, end: int, final: bool) -> str:
        seg = self.raw[self._sent_raw:end]
        if not seg:
            return ""
        if self._filters is not None and self._filters.masks_output:
            out = self._masked(end, final)
            if out is None:
                return ""
            seg = out
        self._sent_raw = end
        self.text += seg
        return seg


def _masked_tail(filters, text: str, start: int, counts: Counter) -> str:
    """mask(text)[after what mask(text[:start]) gives]: masks text[start:] with `text[:start]`
    as context, counting only the new hits."""
    before: Counter = Counter()
    head = filters.mask(text[:start], before)
    full = filters.mask(text, counts)
    counts.subtract(before)
    if full.startswith(head):
        return full[len(head):]
    counts.clear()  # an item reaches back into sent text: mask what is new on its own
    return filters.mask(text[start:], counts)


def token_pieces(tok, ids) -> list[str]:
    """The text each token completes: a character cut across tokens belongs to the token with its
    last byte (the others get ""), so "".join(pieces) is the decoded text."""
    utf8 = codecs.getincrementaldecoder("utf-8")("replace")
    pieces = [utf8.decode(tok.id_to_bytes(i)) for i in ids]
    if pieces:
        pieces[-1] += utf8.decode(b"", final=True)
    return pieces


def token_text(tok, token_id: int) -> str:
    """One token as text for logprobs and the playground (a partial character shows as U+FFFD)."""
    return tok.id_to_bytes(token_id).decode("utf-8", errors="replace")
