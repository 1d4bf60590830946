"""The planner's per-rank bytes must equal what the dry run measures on the meta device."""
from dataclasses import replace

import pytest

from hyperclova.config import load_config
from hyperclova.errors import UserError
from hyperclova.model.presets import count_params
from hyperclova.plan.dryrun import dry_run, main
from hyperclova.plan.layout import Layout, coord_rank, rank_coord
from hyperclova.plan.memory import memory_breakdown, model_stats

LAYOUTS = [
    ("tiny", dict(tp=1, pp=1), 8),
    ("tiny", dict(tp=4, pp=2), 8),
    ("tiny", dict(tp=2, pp=2, vpp=2, dp_replicate=2), 8),
    ("tiny", dict(tp=2, pp=2, dp_shard=3), 12),  # FSDP padding: 3 does not divide most dims
    ("350m", dict(tp=2, dp_shard=4), 8),  # FSDP without PP: two gathered blocks
    ("1.3b", dict(tp=2, pp=4, vpp=3, dp_shard=2), 16),
    ("82b", dict(tp=8, pp=8, vpp=2, dp_replicate=16), 1024),
]


def _cfg(preset, par, gbs):
    if par.get("vpp", 1) > 1:
        par = dict(par, schedule="interleaved_1f1b")
    return load_config(None, [f"model={preset}", f"train.global_batch_size={gbs}",
                              "train.micro_batch_size=1"]
                       + [f"parallel.{k}={v}" for k, v in par.items()])


@pytest.mark.parametrize("preset,par,gbs", LAYOUTS)
def test_planner_bytes_equal_dry_run(preset, par, gbs):
    cfg = _cfg(preset, par, gbs)
    lay = Layout.from_config(cfg.parallel, 1)
    stats = model_stats(cfg.model)
    last = lay.world_size - 1  # the last rank: last stage, last tp / dp coordinates
    reports = dry_run(cfg, ranks=None if preset != "82b" else [0, last])
    assert reports
    for rep in reports:
        mem = memory_breakdown(stats, lay, rep.coord.pp, n_micro=gbs // lay.dp)
        planned = mem.params + mem.grads + mem.optimizer
        assert (rep.compute_copy_bytes, rep.grad_accum_bytes) == (mem.compute_copy, mem.grad_accum)
        assert rep.activation_bytes == mem.activations
        if lay.dp_shard == 1:
            assert rep.param_bytes == mem.params and rep.grad_bytes == mem.grads
            assert rep.optim_bytes == mem.optimizer
        else:  # FSDP2 cuts dim 0 in ceil-sized chunks: one shard is off 1/dp_shard by rounding,
            # all dp_shard shards of the same stage and TP rank add up to dp_shard x the plan
            assert abs(rep.state_bytes - planned) < 1e-2 * planned
            c = rep.coord
            shards = dry_run(cfg, ranks=[coord_rank(lay, replace(c, dp_shard=i))
                                         for i in range(lay.dp_shard)])
            assert sum(r.state_bytes for r in shards) == pytest.approx(lay.dp_shard * planned)
        assert rep.optim_bytes == 2 * rep.param_bytes  # AdamW: two fp32 moments


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
    lay = Layout.from_config(cfg.parallel, 1)
    assert rank_coord(lay, 5).pp == 1 and rank_coord(lay, 5).tp == 1
    (rep,) = dry_run(cfg, ranks=[5])
    assert rep.layers == [1, 3] and rep.head and not rep.embedding


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
