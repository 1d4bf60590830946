"""Tensor (+sequence), pipeline and data parallelism for the plain GPT, on one DeviceMesh.

`build_parallel_engine(cfg, device)` (engine.py) is the entry point; `train/engine.py`'s
`build_engine` calls it when any degree in `cfg.parallel` is above 1. See docs/parallel.md.
"""
