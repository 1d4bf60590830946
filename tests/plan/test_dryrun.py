"""The dry run builds ranks through the engine's own build path (meta device, fake process
group), and the planner's per-rank bytes equal what it measures."""
from dataclasses import replace
from pathlib import Path

import pytest
import torch.distributed as dist

from hyperclova.config import load_config
from hyperclova.errors import UserError
from hyperclova.model.presets import count_params
from hyperclova.parallel.layout import Layout
from hyperclova.plan.dryrun import dry_run, main
from hyperclova.plan.memory import memory_breakdown, model_stats

pytestmark = pytest.mark.skipif(dist.is_available() and dist.is_initialized(),
                                reason="a process group is already running in this interpreter")

LAYOUTS = [
    ("tiny", dict(tp=1, pp=1), 8),
    ("tiny", dict(tp=4, pp=2), 8),
    ("tiny", dict(tp=2, pp=2, vpp=2, dp_replicate=2), 8),
    ("tiny", dict(tp=2, pp=2, dp_shard=3), 12),  # FSDP padding: 3 does not divide most dims
    ("tiny", dict(tp=2, dp_shard=2, zero_stage=2), 8),  # ZeRO-2: the whole bf16 copy resident
    ("350m", dict(tp=2, dp_shard=2), 8),  # FSDP without PP: two gathered blocks
    ("1.3b", dict(tp=2, pp=4, vpp=3, dp_shard=2), 16),
    ("82b", dict(tp=8, pp=8, vpp=2, dp_replicate=16), 1024),
]


def _cfg(preset, par, gbs, *extra):
    if par.get("vpp", 1) > 1:
        par = dict(par, schedule="interleaved_1f1b")
    return load_config(None, [f"model={preset}", f"train.global_batch_size={gbs}",
                              "train.micro_batch_size=1", *extra]
                       + [f"parallel.{k}={v}" for k, v in par.items()])


def _check(cfg, reports, n_micro):
    lay = Layout.from_config(cfg)
    stats = model_stats(cfg.model)
    for rep in reports:
        mem = memory_breakdown(stats, lay, rep.coord.pp, n_micro=n_micro)
        planned = mem.params + mem.grads + mem.optimizer
        assert (rep.compute_copy_bytes, rep.grad_accum_bytes) == (mem.compute_copy, mem.grad_accum)
        assert rep.activation_bytes == mem.activations
        assert rep.optim_bytes == 2 * rep.param_bytes  # AdamW: two fp32 moments
        if lay.dp_shard == 1:
            assert (rep.param_bytes, rep.grad_bytes, rep.optim_bytes) == \
                (mem.params, mem.grads, mem.optimizer)
        else:  # FSDP2 cuts dim 0 in ceil-sized chunks: one shard is off 1/dp_shard by rounding
            assert abs(rep.state_bytes - planned) < 1e-2 * planned
    return lay


@pytest.mark.parametrize("preset,par,gbs", LAYOUTS)
def test_planner_bytes_equal_dry_run(preset, par, gbs):
    cfg = _cfg(preset, par, gbs)
    lay = Layout.from_config(cfg)
    reports = dry_run(cfg, ranks=None if preset != "82b" else [0, lay.world_size - 1])
    _check(cfg, reports, gbs // lay.dp)
    if lay.dp_shard > 1 and preset == "tiny":  # all shards of one stage add up to the plan
        c = reports[0].coord
        shards = dry_run(cfg, ranks=[lay.rank(replace(c, dp_shard=i)) for i in range(lay.dp_shard)])
        mem = memory_breakdown(model_stats(cfg.model), lay, c.pp, n_micro=gbs // lay.dp)
        assert sum(r.state_bytes for r in shards) == pytest.approx(
            lay.dp_shard * (mem.params + mem.grads + mem.optimizer))


def test_shipped_82b_layout_builds_with_the_planners_bytes():
    """configs/82b.yaml (1,024 ranks: FSDP 128 x TP 8 with sequence parallelism) builds through
    the real build path under a fake process group, with the planner's per-rank bytes."""
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "82b.yaml")
    lay = Layout.from_config(cfg)
    (rep,) = dry_run(cfg, ranks=[lay.world_size - 1])
    assert rep.layers == list(range(64)) and rep.embedding and rep.head
    _check(cfg, [rep], cfg.train.global_batch_size // (lay.dp * cfg.train.micro_batch_size))
    assert rep.local_params < count_params(cfg.model) / 1000  # a 1/1024 shard, not the model


def test_shards_add_up_to_the_model():
    """Summing one TP rank per stage, x tp, minus replicated parts, gives count_params."""
    cfg = _cfg("tiny", dict(tp=1, pp=4), 8)
    reports = dry_run(cfg)
    head_copy = cfg.model.vocab_size * cfg.model.d_model  # the last stage's untied head copy
    assert sum(r.params for r in reports) - head_copy == count_params(cfg.model)
    assert [r.layers for r in reports] == [[0], [1], [2], [3]]
    assert reports[0].embedding and not reports[0].head and reports[-1].head


def test_interleaved_chunks_and_coordinates():
    cfg = _cfg("tiny", dict(tp=2, pp=2, vpp=2, dp_replicate=2), 8)
    lay = Layout.from_config(cfg)
    assert lay.coord(5).pp == 1 and lay.coord(5).tp == 1
    (rep,) = dry_run(cfg, ranks=[5])
    assert rep.layers == [1, 3] and rep.head and not rep.embedding and rep.coord == lay.coord(5)


def test_bad_layout_is_a_user_error(capsys):
    with pytest.raises(UserError, match="n_layers"):
        dry_run(_cfg("tiny", dict(pp=3), 8))
    with pytest.raises(UserError, match="outside"):
        dry_run(_cfg("tiny", dict(tp=2), 8), ranks=[2])
    with pytest.raises(SystemExit) as e:
        main(["model=tiny", "parallel.tp=3"])
    assert e.value.code == 2 and "n_heads" in capsys.readouterr().err


def test_cli_prints_each_rank(capsys):
    main(["model=tiny", "parallel.pp=2", "parallel.tp=2", "train.micro_batch_size=1"])
    out = capsys.readouterr().out
    assert "world 4" in out and out.count(" y ") >= 2
