"""One torchrun launch (2 processes, gloo) for the tuning tests' multi-process checks:

1. `python -m hyperclova.eval --adapter DIR ... parallel.tp=2` for each adapter (the engine built
   with the adapter's inference transforms: LoRA factors loaded into their tensor-parallel shards,
   P-tuning's stored table); writes OUT/<i>.json and OUT/<i>_pred.jsonl;
2. `python -m hyperclova.tune ... parallel.pp=2`: P-tuning through the tuner itself (its data,
   its checkpoint of the trained parameters only, an optimizer on the first stage only: the second
   stage has nothing to train) into OUT/pp2, with the overrides in OUT/tune_args.json. Last: the
   run ends the process group (a second one would not start under this launch).

    torchrun --nproc_per_node 2 tests/tune/torchrun_worker.py OUT TEST_FILE ADAPTER...
"""
import json
import sys
from pathlib import Path

from hyperclova.eval.api import run_evaluation
from hyperclova.tune.__main__ import main as tune


def main() -> None:
    out, data, adapters = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    for i, adapter in enumerate(adapters):
        run_evaluation(None, "nsmc", data=[data], adapter=adapter, overrides=["parallel.tp=2"],
                       output=str(out / f"{i}.json"), predictions=str(out / f"{i}_pred.jsonl"),
                       log=lambda *a, **k: None)
    tune(json.loads((out / "tune_args.json").read_text(encoding="utf-8")))


if __name__ == "__main__":
    main()
