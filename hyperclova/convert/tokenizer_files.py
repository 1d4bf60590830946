"""Put a hyperclova tokenizer directory into an exported Hugging Face directory.

The tokenizer files are copied as they are and a `tokenizer_config.json` is added so that
`AutoTokenizer.from_pretrained(out_dir)` works. `bbpe` and `char-bpe` load as a plain
`PreTrainedTokenizerFast` (their tokenizer.json is complete, NFC included); `morpheme-bbpe`, which
pre-splits MeCab-ko morphemes, also gets `tokenization_hyperclova.py`, a small wrapper loaded with
`trust_remote_code=True` that runs that split first (as hyperclova.tokenizer.hf does in-process). Like hyperclova itself, a literal
"<|endoftext|>" in text stays text (`split_special_tokens`); special ids come from the caller.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from hyperclova.convert.hf import ConversionError
from hyperclova.errors import UserError

WRAPPER = "tokenization_hyperclova.py"


@dataclass
class TokenizerInfo:
    bos_token_id: int | None
    eos_token_id: int | None
    notes: list[str] = field(default_factory=list)


def copy_tokenizer(src: Path, out: Path, model_vocab: int, seq_len: int | None = None) -> TokenizerInfo:
    from hyperclova.tokenizer.load import HF_FILE, META_FILE, SPM_FILE, load_tokenizer
    from hyperclova.tokenizer.pretokenize import EOD, PAD, UNK

    if not src.is_dir():
        raise UserError(f"--tokenizer {src}: no such directory")
    tok = load_tokenizer(src, engine="hf")  # validates the directory; raises UserError naming the file
    if tok.vocab_size > model_vocab:
        raise ConversionError(f"{src / META_FILE}: tokenizer vocab_size {tok.vocab_size} is larger than the "
                              f"model's vocab_size {model_vocab} (tok_emb.weight has {model_vocab} rows)")
    shutil.copy2(src / META_FILE, out / META_FILE)
    eod = tok.eod_id
    notes = []
    if tok.type == "spm":
        shutil.copy2(src / SPM_FILE, out / SPM_FILE)
        notes.append(f"tokenizer type 'spm': {SPM_FILE} copied, but transformers cannot load it as a "
                     "tokenizer; encode with hyperclova.tokenizer.load_tokenizer(out_dir)")
        return TokenizerInfo(eod, eod, notes)
    shutil.copy2(src / HF_FILE, out / HF_FILE)
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOD,
        "eos_token": EOD,
        "pad_token": PAD,
        "unk_token": UNK,
        "split_special_tokens": True,
        "clean_up_tokenization_spaces": False,
        "model_max_length": seq_len or 1_000_000_000,
    }
    pretok, norm = tok.meta["pretokenization"], tok.meta.get("normalization", "none")
    if pretok != "none":  # (NFC alone is inside tokenizer.json already)
        shutil.copy2(Path(__file__).with_name(WRAPPER), out / WRAPPER)
        config["tokenizer_class"] = "HyperclovaTokenizer"
        config["auto_map"] = {"AutoTokenizer": [None, "tokenization_hyperclova.HyperclovaTokenizer"]}
        config["pretokenization"], config["normalization"] = pretok, norm
        notes.append(f"tokenizer '{tok.type}' pre-tokenizes with {pretok}: load it "
                     f"with AutoTokenizer.from_pretrained(dir, trust_remote_code=True); {WRAPPER} needs "
                     "hyperclova installed")
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                                               encoding="utf-8")
    return TokenizerInfo(eod, eod, notes)
