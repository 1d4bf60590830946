"""Tiny tokenizers of every type, trained once per session on one small synthetic Korean corpus."""
from __future__ import annotations

import json

import pytest

from hyperclova.corpus.synthetic import generate_corpus

from hyperclova.tokenizer import train_tokenizer

from tokenizer_testdata import MIXED, TYPES, VOCAB


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    generate_corpus(path, n_docs=1200, seed=7)
    with open(path, "a", encoding="utf-8") as f:  # so every character class is seen in training
        for text in MIXED:
            f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    return str(path)


@pytest.fixture(scope="session")
def docs(corpus) -> list[str]:
    with open(corpus, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


@pytest.fixture(scope="session")
def tokenizer_dirs(corpus, tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tokenizers")
    out = {}
    for kind in TYPES:
        out[kind] = str(root / kind)
        train_tokenizer([corpus], out[kind], type=kind, vocab_size=VOCAB, workers=1,
                        show_progress=False, verify_docs=300)
    return out


@pytest.fixture(scope="session")
def toks(tokenizer_dirs):
    from hyperclova.tokenizer import load_tokenizer

    return {kind: load_tokenizer(d) for kind, d in tokenizer_dirs.items()}
