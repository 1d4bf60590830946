"""Run under torchrun: the evaluation command line for several tasks in one process group.

    torchrun --nproc_per_node 2 tests/eval/dp_worker.py OUT_DIR CHECKPOINT [overrides...]
"""
import sys
from pathlib import Path

from hyperclova.eval.__main__ import main

FIX = Path(__file__).parent / "fixtures"


def run(out, ckpt, overrides=()):
    main(["--checkpoint", ckpt, "--task", "nsmc", "--data", str(FIX / "ratings_test.txt"),
          "--train", str(FIX / "ratings_train.txt"), "--shots", "3", "--runs", "2", "--batch-size", "3",
          "--output", f"{out}/nsmc.json", "--predictions", f"{out}/nsmc_pred.jsonl", *overrides])
    main(["--checkpoint", ckpt, "--task", "korquad", "--data", str(FIX / "korquad_dev.json"),
          "--batch-size", "2", "--output", f"{out}/korquad.json",
          "--predictions", f"{out}/korquad_pred.json", *overrides])


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], sys.argv[3:])
