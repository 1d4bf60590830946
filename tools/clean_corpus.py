"""`python tools/clean_corpus.py` = `hyperclova-clean-corpus` (console script) = `python -m hyperclova.cli.clean_corpus`."""
from hyperclova.cli.clean_corpus import main

if __name__ == "__main__":
    main()
