"""One spelling of each flag across the tools, and the same input flags in every tool that reads a
corpus (they come from one place: hyperclova.data.reader.add_input_args)."""
from __future__ import annotations

import importlib
import pkgutil
import re

import pytest

import hyperclova.cli

TOOLS = sorted(m.name for m in pkgutil.iter_modules(hyperclova.cli.__path__))
READERS = ["clean_corpus", "preprocess_data", "tokenizer_report", "train_tokenizer"]
WRITERS = ["clean_corpus", "merge_datasets", "preprocess_data", "tokenizer_report", "train_tokenizer"]
# Retired spellings, each of a flag that has one name everywhere now.
RETIRED = {"--out-dir", "--output-dir", "--outdir", "--out", "--json-key", "--jsonl-keys", "--inputs", "--in"}


@pytest.fixture(scope="module")
def flags() -> dict[str, set[str]]:
    import contextlib
    import io

    out = {}
    for tool in TOOLS:
        text = io.StringIO()
        with contextlib.redirect_stdout(text), pytest.raises(SystemExit) as e:
            importlib.import_module(f"hyperclova.cli.{tool}").main(["--help"])
        assert e.value.code == 0, tool
        out[tool] = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text.getvalue()))
    return out


def test_one_spelling_per_flag(flags):
    assert set(READERS) | set(WRITERS) <= set(TOOLS)
    for tool, names in flags.items():
        assert not names & RETIRED, (tool, names & RETIRED)
    for tool in READERS:
        assert {"--input", "--json-keys", "--input-format", "--strict"} <= flags[tool], tool
    for tool in WRITERS:
        assert "--overwrite" in flags[tool], tool
    assert "--output-prefix" in flags["preprocess_data"] and "--output-prefix" in flags["merge_datasets"]
