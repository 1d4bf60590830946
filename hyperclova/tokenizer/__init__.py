"""Tokenizers: morpheme-aware byte-level BPE (the default) and the Table 6 baselines."""
from hyperclova.tokenizer.load import Tokenizer, load_tokenizer
from hyperclova.tokenizer.train import train_tokenizer

__all__ = ["Tokenizer", "load_tokenizer", "train_tokenizer"]
