import os

# One thread per process: tests launch several processes on a 2-core machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
