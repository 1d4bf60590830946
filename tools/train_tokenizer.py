"""`python tools/train_tokenizer.py` = `hyperclova-train-tokenizer` (console script) = `python -m hyperclova.cli.train_tokenizer`."""
from hyperclova.cli.train_tokenizer import main

if __name__ == "__main__":
    main()
