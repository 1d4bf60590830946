"""torchrun --nproc_per_node 3 tests/distributed/print_ranks_worker.py: the console helpers of
hyperclova.train.metrics on a real process group."""
import torch.distributed as dist

from hyperclova.train.metrics import print0, print_ranks

if __name__ == "__main__":
    dist.init_process_group("gloo")
    print_ranks(f"parity {dist.get_rank() % 2}")
    print0("said once")
    dist.destroy_process_group()
