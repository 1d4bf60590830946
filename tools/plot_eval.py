"""`python tools/plot_eval.py` = `hyperclova-plot-eval` (console script) = `python -m hyperclova.cli.plot_eval`."""
from hyperclova.cli.plot_eval import main

if __name__ == "__main__":
    main()
