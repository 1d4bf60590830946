"""Run under torchrun: the evaluation command line for several tasks, in several layouts one
after the other in one process group (one launch: each costs seconds of imports).

    torchrun --nproc_per_node 2 tests/eval/dp_worker.py OUT_DIR CHECKPOINT NAME[:override,...]...

writes OUT_DIR/NAME/{nsmc.json, nsmc_pred.jsonl, korquad.json, korquad_pred.json} per layout
(NAME alone: the overrides' defaults, data parallelism over every process).
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
    out, ckpt = Path(sys.argv[1]), sys.argv[2]
    for layout in sys.argv[3:]:
        name, _, overrides = layout.partition(":")
        run(out / name, ckpt, [o for o in overrides.split(",") if o])
