"""torchrun --nproc_per_node N tests/distributed/print_ranks_worker.py [trainer overrides...]:
the console helpers of hyperclova.train.metrics on a real process group, then the training CLI
on that same group (one launch serves both checks)."""
import sys

import torch.distributed as dist

from hyperclova.train.__main__ import main
from hyperclova.train.metrics import print0, print_ranks

if __name__ == "__main__":
    dist.init_process_group("gloo")
    print_ranks(f"parity {dist.get_rank() % 2}")
    print0("said once")
    main(sys.argv[1:])
