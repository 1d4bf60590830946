"""The command-line tools, one module each, each with a `main(argv=None)`.

Installed as console scripts (`hyperclova-preprocess-data`, `hyperclova-clean-corpus`, ... see
setup.py) and runnable as `python -m hyperclova.cli.<tool>`; `tools/<tool>.py` in a checkout are
thin shims over these modules.
"""
