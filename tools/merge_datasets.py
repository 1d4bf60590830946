"""`python tools/merge_datasets.py` = `hyperclova-merge-datasets` (console script) = `python -m hyperclova.cli.merge_datasets`."""
from hyperclova.cli.merge_datasets import main

if __name__ == "__main__":
    main()
