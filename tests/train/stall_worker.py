"""The training CLI with one checkpoint write made to stall, so a test can kill the process for
real while that save is in flight:

    python tests/train/stall_worker.py STEP --config run.yaml

The save of step STEP writes its data files, then its writer never returns (a disk that stopped
answering); `<logging.run_dir>/stalled` appears when that point is reached. Training goes on (with
checkpoint.async_save) until the run's last save waits for the stalled one.
"""
import sys
import time
from pathlib import Path

from hyperclova.config import load_config
from hyperclova.train import checkpoint
from hyperclova.train.__main__ import main


def stall_at(step: int, marker: Path) -> None:
    original = checkpoint._DigestingWriter.write_data

    def write_data(self, plan, planner):
        written = original(self, plan, planner)
        if self.dir.name == f"{checkpoint.step_dir_name(step)}.tmp":
            marker.write_text("stalled")
            time.sleep(3600)
        return written

    checkpoint._DigestingWriter.write_data = write_data


if __name__ == "__main__":
    step, *args = sys.argv[1:]
    cfg = load_config(args[1], args[2:])
    stall_at(int(step), Path(cfg.logging.run_dir) / "stalled")
    main(args)
