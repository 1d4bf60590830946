"""Corpus preparation: the embedded synthetic corpus, cleaning, de-identification, dedup, mixing."""
