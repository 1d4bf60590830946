"""`python tools/eval_report.py` = `hyperclova-eval-report` (console script) = `python -m hyperclova.cli.eval_report`."""
from hyperclova.cli.eval_report import main

if __name__ == "__main__":
    main()
