"""Tensor (+sequence), pipeline and data parallelism for the plain GPT, on one DeviceMesh.

`layout.py` is the one layout type and its checks, `build.py` the one build path (every layout,
one device included); `hyperclova.train.engine.build_engine` is the entry point. See
docs/parallel.md.
"""
