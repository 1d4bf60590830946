"""`python tools/convert_checkpoint.py` = `hyperclova-convert-checkpoint` (console script) = `python -m hyperclova.cli.convert_checkpoint`."""
from hyperclova.cli.convert_checkpoint import main

if __name__ == "__main__":
    main()
