"""`python tools/plot_metrics.py` = `hyperclova-plot-metrics` (console script) = `python -m hyperclova.cli.plot_metrics`."""
from hyperclova.cli.plot_metrics import main

if __name__ == "__main__":
    main()
