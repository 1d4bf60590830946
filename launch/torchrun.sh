#!/usr/bin/env bash
# Launch hyperclova training with torchrun, on one node or many (c10d rendezvous).
#
#   launch/torchrun.sh CONFIG [section.key=value ...]
#
# One node (GPUs counted with nvidia-smi, or 1 process on a CPU machine):
#   launch/torchrun.sh configs/1.3b.yaml parallel.dp_shard=8
# Several nodes: run the same command on every node with the same MASTER_ADDR (a host of the job
# that every node can reach) and NNODES; the c10d rendezvous assigns node ranks itself.
#   NNODES=4 MASTER_ADDR=node01 launch/torchrun.sh configs/13b.yaml parallel.tp=8 parallel.dp_shard=4
#
# Environment (defaults in brackets):
#   NNODES [1]  NPROC_PER_NODE [GPUs on this node, else 1]  MASTER_ADDR [required when NNODES > 1]
#   MASTER_PORT [29500]  RUN_ID [hyperclova-$USER]: nodes with the same RUN_ID form one job
#   PYTHON [python]  MAX_RESTARTS [0]: torchrun restarts all workers this often after a failure
# The layout's tp*pp*dp_replicate*dp_shard must equal NNODES*NPROC_PER_NODE; the trainer checks.
set -euo pipefail

# shellcheck source=launch/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
require_config 19 "$@"
shift

NNODES=${NNODES:-1}
NPROC_PER_NODE=${NPROC_PER_NODE:-$(gpu_count)}
MASTER_PORT=${MASTER_PORT:-29500}
RUN_ID=${RUN_ID:-hyperclova-${USER:-user}}
PYTHON=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}   # per rank; more threads per rank oversubscribe CPUs

if [[ "$NNODES" == 1 ]]; then
    RDZV=(--standalone)
else
    if [[ -z "${MASTER_ADDR:-}" ]]; then
        echo "error: NNODES=$NNODES needs MASTER_ADDR (a host every node can reach)" >&2
        exit 2
    fi
    RDZV=(--rdzv-backend=c10d --rdzv-endpoint="$MASTER_ADDR:$MASTER_PORT" --rdzv-id="$RUN_ID")
fi

echo "torchrun: $NNODES node(s) x $NPROC_PER_NODE process(es), config $CONFIG" >&2
exec "$PYTHON" -m torch.distributed.run --nnodes="$NNODES" --nproc-per-node="$NPROC_PER_NODE" \
    "${RDZV[@]}" --max-restarts="${MAX_RESTARTS:-0}" \
    -m hyperclova.train --config "$CONFIG" "$@"
