#!/usr/bin/env bash
# Launch hyperclova training with MPI (Open MPI, MPICH/Hydra or Intel MPI). Each MPI rank is one
# training process; hyperclova.launch reads rank, local rank (shared-memory split) and the
# rendezvous address through mpi4py (pip install 'hyperclova[mpi]'). NCCL/gloo do the training
# traffic, MPI is used only at start-up.
#
#   launch/mpirun.sh CONFIG [section.key=value ...]
#   NODES=2 GPUS_PER_NODE=8 HOSTFILE=hosts.txt launch/mpirun.sh configs/6.9b.yaml parallel.tp=2 parallel.dp_shard=8
#
# Environment (defaults in brackets):
#   NODES [1]  GPUS_PER_NODE [GPUs on this node, else 1]: NODES*GPUS_PER_NODE ranks in all
#   HOSTFILE [none: all ranks on this host]  MPIEXEC [mpiexec]  PYTHON [python]
#   MASTER_PORT [a free port chosen by rank 0]
set -euo pipefail

# shellcheck source=launch/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
require_config 15 "$@"
shift

NODES=${NODES:-1}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(gpu_count)}
NP=$((NODES * GPUS_PER_NODE))
MPIEXEC=${MPIEXEC:-mpiexec}
PYTHON=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export HYPERCLOVA_LAUNCHER=mpi

# The flags that place GPUS_PER_NODE ranks on each host and forward the environment differ.
if "$MPIEXEC" --version 2>&1 | grep -qi "open mpi"; then
    ARGS=(-np "$NP" --map-by "ppr:${GPUS_PER_NODE}:node" --bind-to none
          -x OMP_NUM_THREADS -x HYPERCLOVA_LAUNCHER -x PATH -x LD_LIBRARY_PATH)
    [[ -n "${MASTER_PORT:-}" ]] && ARGS+=(-x MASTER_PORT)
    [[ -n "${HOSTFILE:-}" ]] && ARGS+=(--hostfile "$HOSTFILE")
else  # MPICH Hydra and Intel MPI
    ARGS=(-n "$NP" -ppn "$GPUS_PER_NODE" -genvall)
    [[ -n "${HOSTFILE:-}" ]] && ARGS+=(-f "$HOSTFILE")
fi

echo "mpirun: $NODES node(s) x $GPUS_PER_NODE rank(s), config $CONFIG" >&2
exec "$MPIEXEC" "${ARGS[@]}" "$PYTHON" -m hyperclova.train --config "$CONFIG" "$@"
