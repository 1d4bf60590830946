"""`python tools/plan.py` = `hyperclova-plan` (console script) = `python -m hyperclova.cli.plan`."""
from hyperclova.cli.plan import main

if __name__ == "__main__":
    main()
