"""The search: valid layouts only, sensible ranking, overrides the config accepts, the CLI."""
import subprocess
import sys
from pathlib import Path

import pytest

from hyperclova.config import load_config
from hyperclova.errors import UserError
from hyperclova.model.presets import PRESETS
from hyperclova.plan.hardware import Cluster, get_gpu
from hyperclova.parallel.layout import Layout
from hyperclova.plan.search import Job, evaluate, search

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import plan as plan_tool  # noqa: E402


@pytest.fixture(scope="module")
def rows_13b():
    job = Job(PRESETS["13b"], Cluster(16, 8, get_gpu("a100-40gb")), 512, 100e9)
    return job, search(job)


def test_every_row_is_a_valid_layout(rows_13b):
    job, rows = rows_13b
    cfg = job.model
    for r in rows:
        lay = r.layout
        assert lay.world_size == 128 and lay.tp <= 8
        assert cfg.n_heads % lay.tp == 0 and cfg.n_layers % (lay.pp * lay.vpp) == 0
        assert job.global_batch % (lay.dp * lay.micro_batch_size) == 0
        assert not (lay.sequence_parallel and lay.tp == 1)


def test_ranking_fits_first_then_fastest(rows_13b):
    _, rows = rows_13b
    fits = [r.fits for r in rows]
    assert fits[0] and fits == sorted(fits, reverse=True)
    best = rows[0].step.step_time
    keys = [(round(r.step.step_time / best, 2), r.step.internode_bytes) for r in rows if r.fits]
    assert keys == sorted(keys)  # fastest first; within 1%, least InfiniBand traffic first
    assert any(not r.fits for r in rows)  # 13B without sharding overflows 40 GB


def test_multi_node_fsdp_becomes_hsdp():
    """13B with TP 4 on 4 nodes: FSDP over all 8 data-parallel ranks would span the 4 nodes;
    the planner shards inside a node (dp_shard 2 x tp 4 = 8 GPUs) and replicates across."""
    job = Job(PRESETS["13b"], Cluster(4, 8, get_gpu("a100-80gb")), 1024, 1e9)
    best = search(job, tp=[4], pp=[1])[0].layout
    assert best.dp_shard > 1 and best.dp_replicate > 1
    assert best.tp * best.dp_shard <= 8


def test_overrides_load_into_the_config_and_the_engine_accepts_them(rows_13b):
    from hyperclova.parallel.layout import check_layout

    job, rows = rows_13b
    for row in rows[:: max(1, len(rows) // 200)]:  # a spread of rows, all schedules and degrees
        lay = row.layout
        cfg = load_config(None, ["model=13b"] + lay.overrides(job.global_batch))
        assert Layout.from_config(cfg) == lay
        assert cfg.train.global_batch_size == job.global_batch
        check_layout(cfg, world_size=128)  # the trainer's own validation


def test_layouts_the_trainer_refuses_are_never_offered(capsys):
    """tp 8 on a 12-head model, pp 5 on 24 layers: the trainer refuses both, so does the planner,
    in the trainer's words (the tool and the dry run alike)."""
    from hyperclova.config import ConfigError, ModelConfig
    from hyperclova.parallel.layout import check_layout
    from hyperclova.plan.dryrun import main as dry_run_main

    job = Job(ModelConfig(n_layers=24, d_model=768, n_heads=12, vocab_size=64000, seq_len=2048),
              Cluster(2, 8, get_gpu("a100-80gb")), 64, 1e9)
    model = ["model.n_layers=24", "model.d_model=768", "model.n_heads=12",
             "train.global_batch_size=64", "train.micro_batch_size=1"]
    for flag, override in (("--tp", "parallel.tp=8"), ("--pp", "parallel.pp=5")):
        with pytest.raises(ConfigError) as trainer:
            check_layout(load_config(None, model + [override]))
        with pytest.raises(UserError, match="no layout") as planner:
            search(job, **{flag[2:]: [int(override[-1])]})
        assert str(trainer.value) in str(planner.value)
        with pytest.raises(SystemExit):
            plan_tool.main(["--layers", "24", "--d-model", "768", "--heads", "12", "--nodes", "2",
                            "--global-batch", "64", flag, override[-1]])
        assert str(trainer.value) in capsys.readouterr().err
        with pytest.raises(SystemExit):
            dry_run_main(model + [override])
        assert str(trainer.value) in capsys.readouterr().err
    assert {r.layout.tp for r in search(job)} <= {1, 2, 4}
    assert {r.layout.pp for r in search(job)} <= {1, 2, 4, 8}


def test_recompute_and_sp_trade_memory_for_time():
    job = Job(PRESETS["13b"], Cluster(4, 8, get_gpu("a100-80gb")), 256, 1e9)
    base = dict(tp=8, pp=2, dp_replicate=2, micro_batch_size=2)
    none, full = (evaluate(job, Layout(recompute=rc, **base)) for rc in ("none", "full"))
    assert full.memory.activations < none.memory.activations / 4
    assert full.step.step_time > none.step.step_time
    sp = evaluate(job, Layout(sequence_parallel=True, **base))
    assert sp.memory.activations < none.memory.activations
    more_micro = evaluate(job, Layout(tp=8, pp=2, dp_replicate=2, micro_batch_size=1))
    assert more_micro.bubble < none.bubble  # more micro-batches: smaller pipeline bubble


def test_cli_table_explain_and_errors(capsys):
    plan_tool.main(["--preset", "1.3b", "--nodes", "2", "--top", "3", "--explain"])
    out = capsys.readouterr().out
    assert "best #1: model=1.3b parallel.tp=" in out and "Korthikanti" in out
    assert "train.global_batch_size=1024" in out and "days" in out
    for argv, msg in [(["--preset", "nope"], "--preset"), (["--layers", "2"], "--d-model"),
                      (["--preset", "tiny", "--gpu", "v100"], "unknown GPU"),
                      (["--preset", "tiny", "--nodes", "3", "--gpus-per-node", "1", "--global-batch", "7"],
                       "divisible"),
                      (["--layers", "2", "--d-model", "100", "--heads", "3"], "divisible")]:
        with pytest.raises(SystemExit) as e:
            plan_tool.main(argv)
        assert e.value.code == 2 and msg in capsys.readouterr().err, argv


def test_tool_runs_from_the_repo_root():
    out = subprocess.run([sys.executable, "tools/plan.py", "--preset", "tiny", "--nodes", "1",
                          "--global-batch", "16", "--tokens", "1e6", "--top", "2"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "best #1: model=tiny" in out.stdout
