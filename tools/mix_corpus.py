"""`python tools/mix_corpus.py` = `hyperclova-mix-corpus` (console script) = `python -m hyperclova.cli.mix_corpus`."""
from hyperclova.cli.mix_corpus import main

if __name__ == "__main__":
    main()
