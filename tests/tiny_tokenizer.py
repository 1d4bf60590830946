"""A small morpheme-BBPE tokenizer trained on the synthetic corpus, shared by the use-half tests
(eval, tune): one builder, parameterised by the corpus size and seed each suite pins."""
from __future__ import annotations

from pathlib import Path


def make_tokenizer(root: Path, *, n_docs: int, seed: int, verify_docs: int, vocab_size: int = 640) -> str:
    from hyperclova.corpus.synthetic import generate_corpus
    from hyperclova.tokenizer import train_tokenizer

    corpus = root / "corpus.jsonl"
    generate_corpus(corpus, n_docs=n_docs, seed=seed)
    out = root / "tok"
    train_tokenizer([str(corpus)], str(out), type="morpheme-bbpe", vocab_size=vocab_size, workers=1,
                    show_progress=False, verify_docs=verify_docs)
    return str(out)
