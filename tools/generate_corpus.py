"""`python tools/generate_corpus.py` = `hyperclova-generate-corpus` (console script) = `python -m hyperclova.cli.generate_corpus`."""
from hyperclova.cli.generate_corpus import main

if __name__ == "__main__":
    main()
