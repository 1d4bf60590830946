"""Train a tokenizer (morpheme-aware byte-level BPE by default) on JSONL or text files.

    python tools/train_tokenizer.py --input data/clean/ --output tok/ --vocab-size 64000 \
        --sample-bytes 2000000000 --workers 16

Inputs are read like every tool reads them (docs/data.md): bad lines are skipped and counted by
reason with their file:line (--strict stops at the first). An existing --output is replaced only
with --overwrite.
"""
from __future__ import annotations

import argparse

from hyperclova.data.reader import ReadStats, add_input_args
from hyperclova.errors import cli_main
from hyperclova.processes import clamp_workers
from hyperclova.tokenizer.load import TYPES
from hyperclova.tokenizer.pretokenize import DEFAULT_RESERVED
from hyperclova.tokenizer.train import train_tokenizer


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_input_args(p)
    p.add_argument("--output", required=True, help="tokenizer directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace a tokenizer already in --output")
    p.add_argument("--type", default="morpheme-bbpe", choices=TYPES)
    p.add_argument("--vocab-size", type=int, default=64000)
    sample = p.add_mutually_exclusive_group()
    sample.add_argument("--sample-ratio", type=float, help="keep each line with this probability")
    sample.add_argument("--sample-bytes", type=int, help="sample about this many bytes, spread evenly")
    p.add_argument("--workers", type=int, default=1, help="processes for MeCab-ko / SentencePiece")
    p.add_argument("--seed", type=int, default=0, help="seed of the document sample")
    p.add_argument("--reserved", type=int, default=DEFAULT_RESERVED,
                   help="number of <|reserved_i|> special tokens after the fixed ones")
    p.add_argument("--normalize", default="none", choices=["none", "nfc"],
                   help="'nfc' composes decomposed Hangul before training and encoding "
                        "(decode then returns NFC text); 'none' keeps text byte for byte")
    p.add_argument("--min-frequency", type=int, default=2)
    p.add_argument("--spm-model-type", default="bpe", choices=["bpe", "unigram"])
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


@cli_main
def main(argv=None) -> None:
    a = parse_args(argv)
    tok = train_tokenizer(
        a.input, a.output, type=a.type, vocab_size=a.vocab_size, json_keys=a.json_keys,
        sample_ratio=a.sample_ratio, sample_bytes=a.sample_bytes, workers=clamp_workers(a.workers),
        seed=a.seed, n_reserved=a.reserved, normalization=a.normalize, min_frequency=a.min_frequency,
        spm_model_type=a.spm_model_type, show_progress=not a.no_progress, input_format=a.input_format,
        strict=a.strict, overwrite=a.overwrite,
    )
    t = tok.meta["training"]
    print(ReadStats.from_json(t["read"]).summary())
    print(f"trained {tok.type} tokenizer: vocab {tok.vocab_size} (eod={tok.eod_id}, pad={tok.pad_id}), "
          f"engine {tok.engine_name}")
    print(f"  on {t['docs']:,} documents, {t['bytes']:,} bytes (sample ratio {t['sample_ratio']:.4g}, "
          f"seed {t['seed']}) in {t['seconds']:.1f} s")
    print(f"  saved to {a.output}")


if __name__ == "__main__":
    main()
