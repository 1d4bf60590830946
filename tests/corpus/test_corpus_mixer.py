"""Corpus mixer: token counts from .idx, capped shares reported, blend list for the trainer."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from hyperclova.corpus.mixer import idx_token_count, load_mix, plan_mix
from hyperclova.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Three real Megatron shards written by megatron-core: 600, 300 and 60 documents."""
    torch = pytest.importorskip("torch")
    from megatron.core.datasets.indexed_dataset import IndexedDataset, IndexedDatasetBuilder

    d = tmp_path_factory.mktemp("mix")
    rng = np.random.default_rng(0)
    prefixes, truth = {}, {}
    for name, n_docs in [("blog", 600), ("news", 300), ("kin", 60)]:
        prefix = d / f"{name}_text_document"
        builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=np.uint16)
        for _ in range(n_docs):
            builder.add_item(torch.from_numpy(rng.integers(0, 4096, rng.integers(5, 50)).astype(np.int64)))
            builder.end_document()
        builder.finalize(f"{prefix}.idx")
        ds = IndexedDataset(str(prefix))
        truth[name] = (int(ds.sequence_lengths.sum()), len(ds.document_indices) - 1)
        prefixes[name] = str(prefix)
    return prefixes, truth


def test_idx_token_count_matches_megatron(shards):
    prefixes, truth = shards
    for name, prefix in prefixes.items():
        assert idx_token_count(prefix) == truth[name]


def test_shares_met_and_blend(shards):
    prefixes, truth = shards
    sources = [{"name": n, "prefix": prefixes[n], "share": s} for n, s in [("blog", 5), ("news", 3), ("kin", 2)]]
    total = sum(t for t, _ in truth.values())
    r = plan_mix(sources, total_tokens=total, max_epochs=10)
    assert r["unmet"] == [] and r["planned_total_tokens"] == pytest.approx(total, abs=3)
    got = {row["source"]: row for row in r["sources"]}
    assert got["blog"]["realised_share"] == pytest.approx(0.5, abs=1e-6)
    assert got["kin"]["epochs"] > 1 and got["blog"]["subsampled_fraction"] < 1
    assert r["blend"][1::2] == [prefixes["blog"], prefixes["news"], prefixes["kin"]]
    assert sum(r["blend"][0::2]) == pytest.approx(1.0, abs=1e-5)


def test_unmet_share_is_capped_reported_and_redistributed(shards):
    prefixes, truth = shards
    sources = [{"name": n, "prefix": prefixes[n], "share": s} for n, s in [("blog", 5), ("news", 3), ("kin", 2)]]
    total = 4 * sum(t for t, _ in truth.values())
    r = plan_mix(sources, total_tokens=total, max_epochs=2)
    got = {row["source"]: row for row in r["sources"]}
    assert r["unmet"] and "kin" in r["unmet"] and "UNMET" in got["kin"]["status"]
    assert got["kin"]["epochs"] == pytest.approx(2.0) and got["kin"]["realised_share"] < 0.2
    for row in r["sources"]:
        assert row["epochs"] <= 2.0 + 1e-9
    # Everything capped: the total shrinks rather than exceed max_epochs.
    assert r["planned_total_tokens"] <= 2 * sum(t for t, _ in truth.values()) + 3


def test_declared_tokens_and_errors(tmp_path):
    r = plan_mix([{"name": "a", "prefix": "x/a", "share": 1, "tokens": 100},
                  {"name": "b", "prefix": "x/b", "share": 1, "tokens": 0}], total_tokens=100)
    assert r["unmet"] == ["b"] and r["blend"] == [1.0, "x/a"]
    with pytest.raises(UserError, match="nope_text_document.idx not found"):
        plan_mix([{"name": "a", "prefix": str(tmp_path / "nope_text_document"), "share": 1}])
    bad = tmp_path / "mix.yaml"
    bad.write_text("sources:\n  blog: {prefix: p, shar: 1}\n", encoding="utf-8")
    with pytest.raises(UserError, match="sources.blog"):
        load_mix(bad)
    (tmp_path / "junk.idx").write_bytes(b"not an index at all, no" * 3)
    with pytest.raises(UserError, match="bad header"):
        idx_token_count(tmp_path / "junk")


def test_cli(shards, tmp_path):
    prefixes, _ = shards
    recipe = tmp_path / "mix.yaml"
    recipe.write_text(yaml.safe_dump({"max_epochs": 3, "sources": {
        "blog": {"prefix": prefixes["blog"], "share": 0.7}, "kin": {"prefix": prefixes["kin"], "share": 0.3}}}))
    out = tmp_path / "blend.yaml"
    res = subprocess.run([sys.executable, "tools/mix_corpus.py", "--recipe", str(recipe), "--output", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "data.blend=[" in res.stdout and "UNMET" in res.stdout
    blend = yaml.safe_load(out.read_text())["data"]["blend"]
    assert blend[1] == prefixes["blog"] and len(blend) == 4
