"""A stand-in `sbatch` for testing launch scripts: it runs each submitted --wrap command at once, once
per array index with the SLURM_ARRAY_* variables set. Scripts submit jobs in dependency order, so
running them immediately respects afterok."""
from __future__ import annotations

from pathlib import Path

FAKE_SBATCH = r"""#!/bin/bash
array=""; wrap=""
while [ $# -gt 0 ]; do
  case "$1" in
    --array=*) array="${1#--array=}";;
    --wrap) wrap="$2"; shift;;
  esac
  shift
done
echo "$wrap" >> "$FAKE_SBATCH_LOG"
if [ -n "$array" ]; then
  lo=${array%-*}; hi=${array#*-}
  for k in $(seq "$lo" "$hi"); do
    SLURM_ARRAY_TASK_ID=$k SLURM_ARRAY_TASK_MIN=$lo SLURM_ARRAY_TASK_COUNT=$((hi - lo + 1)) bash -c "$wrap" >/dev/null || exit 1
  done
else
  bash -c "$wrap" >/dev/null || exit 1
fi
echo $RANDOM
"""


def install(bindir: Path) -> Path:
    """Write the stand-in as `bindir/sbatch`; put `bindir` first on PATH and set FAKE_SBATCH_LOG."""
    bindir.mkdir(parents=True, exist_ok=True)
    (bindir / "sbatch").write_text(FAKE_SBATCH)
    (bindir / "sbatch").chmod(0o755)
    return bindir
