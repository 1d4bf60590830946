"""`python tools/tokenizer_report.py` = `hyperclova-tokenizer-report` (console script) = `python -m hyperclova.cli.tokenizer_report`."""
from hyperclova.cli.tokenizer_report import main

if __name__ == "__main__":
    main()
