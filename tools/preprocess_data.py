"""`python tools/preprocess_data.py` = `hyperclova-preprocess-data` (console script) = `python -m hyperclova.cli.preprocess_data`."""
from hyperclova.cli.preprocess_data import main

if __name__ == "__main__":
    main()
