"""P-tuning (Liu et al. 2021, "GPT Understands, Too"): continuous prompt tokens around the input.

A template `[a, b]` reads `[P]*a input [P]*b answer`: a + b virtual tokens whose embeddings come
from a prompt encoder — a bidirectional LSTM followed by a two-layer MLP (the paper's default), or
the MLP alone — and are placed at the input embedding layer of the frozen language model.

In a token sequence, virtual token j is the id `vocab_size + j` (past every real id). The model's
input adapter (`GPT.input_adapter`, an instance of `PromptInput`) embeds real ids with the model's
own embedding and virtual ids with the prompt table. In training the table is the live encoder's
output; for inference it is computed once and stored (`stored_table`), a `[virtual tokens,
d_model]` tensor, so a tuned model costs nothing extra to run.

Text goes through the ordinary tokenizer: `PromptTokenizer` wraps it so that private-use
characters (`marker(j)`) in a string become virtual ids. Templates are applied to a task's prompt
text (`wrap_template`), so evaluation, generation and tuning all build the same sequences.
"""
from __future__ import annotations

import math
import re
from typing import Iterable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from hyperclova.config import PTuningConfig
from hyperclova.model.gpt import GPT

MARKER_BASE = 0x100000  # Supplementary Private Use Area-B: virtual token j <-> chr(MARKER_BASE + j)


def marker(j: int) -> str:
    return chr(MARKER_BASE + j)


def n_virtual(cfg: PTuningConfig) -> int:
    return sum(cfg.template)


def wrap_template(text: str, cfg: PTuningConfig) -> str:
    """`[P]*a text [P]*b`, the virtual tokens spelled as markers."""
    a, b = cfg.template
    return "".join(marker(j) for j in range(a)) + text + "".join(marker(a + j) for j in range(b))


# --- the prompt encoder ------------------------------------------------------------------------

class _Linear(nn.Linear):
    out_std: Optional[float] = None  # the output layer: N(0, std) weights, zero bias

    def param_init(self, name: str, t: torch.Tensor, generator: torch.Generator) -> None:
        if self.out_std is not None:
            nn.init.normal_(t, 0.0, self.out_std, generator=generator) if name == "weight" \
                else nn.init.zeros_(t)
            return
        bound = 1 / math.sqrt(self.in_features)  # nn.Linear's default initialisation
        if name == "weight":
            nn.init.kaiming_uniform_(t, a=math.sqrt(5), generator=generator)
        else:
            nn.init.uniform_(t, -bound, bound, generator=generator)


class _LSTM(nn.LSTM):
    def param_init(self, name: str, t: torch.Tensor, generator: torch.Generator) -> None:
        bound = 1 / math.sqrt(self.hidden_size)  # nn.LSTM's default initialisation
        nn.init.uniform_(t, -bound, bound, generator=generator)


class PromptEncoder(nn.Module):
    """Virtual-token embeddings (n, d_model): an input table (n, hidden) through a bidirectional
    two-layer LSTM (kind `lstm`) and a two-layer MLP, or through the MLP alone (kind `mlp`)."""

    def __init__(self, n: int, d_model: int, kind: str = "lstm", hidden: Optional[int] = None,
                 out_std: Optional[float] = None):
        super().__init__()
        hidden = hidden or d_model
        self.kind = kind
        self.embedding = nn.Parameter(torch.empty(n, hidden))
        self.lstm = (_LSTM(hidden, hidden // 2, num_layers=2, bidirectional=True, batch_first=True)
                     if kind == "lstm" else None)
        width = 2 * (hidden // 2) if kind == "lstm" else hidden
        self.mlp = nn.Sequential(_Linear(width, hidden), nn.ReLU(), _Linear(hidden, d_model))
        # Prompt embeddings start at the scale of the model's token embeddings (its init_std):
        # much larger ones would drown, in the residual stream, what the model reads from the input.
        self.mlp[2].out_std = out_std

    def param_init(self, name: str, t: torch.Tensor, generator: torch.Generator) -> None:
        nn.init.normal_(t, 0.0, 1.0, generator=generator)  # nn.Embedding's default

    def forward(self) -> torch.Tensor:
        x = self.embedding
        if self.lstm is not None:
            x = self.lstm(x[None])[0][0]
        return self.mlp(x)


class PromptInput(nn.Module):
    """GPT's input adapter: ids >= `vocab_size` take rows of the prompt table, the others the
    model's token embedding. The table is the encoder's output, or a stored tensor."""

    def __init__(self, vocab_size: int, encoder: Optional[PromptEncoder] = None,
                 stored: Optional[torch.Tensor] = None):
        super().__init__()
        self.vocab_size = vocab_size
        self.encoder = encoder
        self.stored = None
        if stored is not None:
            self._stored_value = stored.detach().float().cpu()
            self.stored = nn.Parameter(stored.detach().float().clone(), requires_grad=False)

    def param_init(self, name: str, t: torch.Tensor, generator: torch.Generator) -> None:
        # `stored` after the engine materialised the model: the table the trained encoder gave
        t.copy_(self._stored_value)

    def table(self) -> torch.Tensor:
        return self.encoder() if self.encoder is not None else self.stored

    def forward(self, ids: torch.Tensor, tok_emb: nn.Module) -> torch.Tensor:
        virtual = ids >= self.vocab_size
        h = tok_emb(ids.masked_fill(virtual, 0))
        table = self.table()
        rows = F.embedding((ids - self.vocab_size).clamp(0, table.size(0) - 1), table.to(h.dtype))
        return torch.where(virtual[..., None], rows, h)


def add_ptuning(model: GPT, cfg: PTuningConfig) -> None:
    """Give `model` (meta) a trainable prompt encoder at its input."""
    mc = model.cfg
    model.input_adapter = PromptInput(
        mc.vocab_size, PromptEncoder(n_virtual(cfg), mc.d_model, cfg.encoder, cfg.hidden,
                                     mc.init_std))


def add_stored_prompts(model: GPT, table: torch.Tensor) -> None:
    """Give `model` a fixed prompt table, the trained encoder's output (inference). Several
    adapters' tables can share one model stacked (serving): adapter k's virtual token j is then
    `vocab_size + (rows before k) + j` (PromptTokenizer with that offset)."""
    model.input_adapter = PromptInput(model.cfg.vocab_size, stored=table)


# --- text with virtual tokens ------------------------------------------------------------------

class PromptTokenizer:
    """A tokenizer that reads `marker(j)` characters as virtual token ids `vocab_size + j`.
    Text between markers is encoded on its own, so a sequence is the same whether it is built
    from pieces (tuning) or from one string (evaluation, generation). Everything else is the
    wrapped tokenizer's."""

    def __init__(self, tok, vocab_size: int, n: int, offset: int = 0):
        """Markers 0..n-1 become ids vocab_size + offset + j (`offset`: rows of the prompt
        table before this adapter's, when several share a model)."""
        self._tok, self._vocab, self._n = tok, vocab_size + offset, n
        self._split = re.compile("([" + re.escape("".join(marker(j) for j in range(n))) + "])")

    def __getattr__(self, name):
        return getattr(self._tok, name)

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for piece in self._split.split(text):
            if len(piece) == 1 and 0 <= ord(piece) - MARKER_BASE < self._n:
                ids.append(self._vocab + ord(piece) - MARKER_BASE)
            elif piece:
                ids.extend(self._tok.encode(piece))
        return ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def segments(self, text: str) -> list[str]:
        """Pre-tokenization segments: each marker is one, the text between them is split as
        the wrapped tokenizer splits it."""
        out: list[str] = []
        for piece in self._split.split(text):
            if len(piece) == 1 and 0 <= ord(piece) - MARKER_BASE < self._n:
                out.append(piece)
            elif piece:
                out.extend(self._tok.segments(piece))
        return out

    def id_to_bytes(self, token_id: int) -> bytes:
        if token_id >= self._vocab:
            return marker(token_id - self._vocab).encode("utf-8")
        return self._tok.id_to_bytes(token_id)

    def decode(self, ids: Iterable[int]) -> str:
        out, run = [], []
        for i in (ids.tolist() if hasattr(ids, "tolist") else ids):
            if i >= self._vocab:
                out.append(self._tok.decode(run) + marker(i - self._vocab))
                run = []
            else:
                run.append(i)
        return "".join(out) + self._tok.decode(run)
