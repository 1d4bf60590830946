import pytest


def pytest_collection_modifyitems(config, items):
    """The longer parallel matrix runs only when asked for: `pytest -m slow tests/distributed`."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="longer parallel matrix; run with -m slow")
    for item in items:
        if "slow" in item.keywords and "distributed" in str(item.path):
            item.add_marker(skip)
