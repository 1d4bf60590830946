"""Under torchrun: `python -m hyperclova.eval --adapter DIR ... parallel.tp=2` for each adapter
(the engine built with the adapter's inference transforms: LoRA factors loaded into their tensor-
parallel shards, P-tuning's stored table); writes OUT/<i>.json and OUT/<i>_pred.jsonl.

    torchrun --nproc_per_node 2 tests/tune/tp_eval_worker.py OUT TEST_FILE ADAPTER...
"""
import sys
from pathlib import Path

from hyperclova.eval.api import run_evaluation


def main() -> None:
    out, data, adapters = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    for i, adapter in enumerate(adapters):
        run_evaluation(None, "nsmc", data=[data], adapter=adapter, overrides=["parallel.tp=2"],
                       output=str(out / f"{i}.json"), predictions=str(out / f"{i}_pred.jsonl"),
                       log=lambda *a, **k: None)


if __name__ == "__main__":
    main()
