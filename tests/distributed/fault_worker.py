"""Run the real training CLI under torchrun, with one rank made to fail at step 2 (for the
failure-behaviour tests):

    torchrun --nproc_per_node 2 tests/distributed/fault_worker.py raise|kill|hang RANK overrides...
"""
import os
import signal
import sys
import time

from hyperclova.train.engine import Engine
from hyperclova.train.__main__ import main


def inject(mode: str, rank: int) -> None:
    original = Engine.forward_backward
    calls = {"n": 0}

    def forward_backward(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2 and int(os.environ["RANK"]) == rank:
            if mode == "raise":
                raise RuntimeError(f"injected failure on rank {rank}")
            if mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if mode == "hang":
                time.sleep(3600)  # alive but silent: the others must time out, not wait forever
        return original(self, *args, **kwargs)

    Engine.forward_backward = forward_backward


if __name__ == "__main__":
    mode, rank, *overrides = sys.argv[1:]
    inject(mode, int(rank))
    main(overrides)
