"""Tuned models outside and inside the project: a LoRA adapter exported in peft's format gives, on
the base's `to-hf` export, the logits of our tuned model (real transformers + peft); P-tuning's
exported prompt embeddings, placed with the loader of docs/tune.md, do the same; evaluation and
generation take --adapter for both kinds."""
from __future__ import annotations

import json

import pytest
import torch

from hyperclova.generate import load_model

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def hf_base(tmp_path_factory, base, tok_dir):
    from hyperclova.convert import to_hf

    out = tmp_path_factory.mktemp("hf_base") / "hf"
    to_hf(base, out, tokenizer_dir=tok_dir)
    return out


def test_peft_adapter_gives_our_logits(lora_run, hf_base, tmp_path):
    from peft import PeftModel
    from transformers import GPT2LMHeadModel

    from hyperclova.convert import export_peft

    export_peft(lora_run[2], tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["target_modules"] == ["c_attn", "c_fc", "c_proj"] and config["fan_in_fan_out"]
    ours, _ = load_model(None, adapter=lora_run[2])
    hf = GPT2LMHeadModel.from_pretrained(hf_base).eval()
    tokens = torch.randint(0, 640, (2, 20), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        base_logits = hf(tokens).logits
        tuned = PeftModel.from_pretrained(hf, tmp_path / "adapter").eval()
        want = ours(tokens)
        torch.testing.assert_close(tuned(tokens).logits, want, rtol=1e-4, atol=1e-4)
    assert (want - base_logits).abs().max() > 1e-3  # the adapter changes the model


def test_peft_target_modules_distinguish_the_two_c_proj():
    from hyperclova.convert.adapters import peft_target_modules

    assert peft_target_modules(["qkv", "proj"]) == r".*\.h\.\d+\.(attn\.c_attn|attn\.c_proj)"
    assert peft_target_modules(["fc1", "fc2", "proj"]) == ["c_fc", "c_proj"]


def hf_prompt_logits(model, wte_ids_before, wte_ids_after, prompts, template):
    """The loader of docs/tune.md: [P]*a input [P]*b, embeddings concatenated for inputs_embeds."""
    a, b = template
    wte = model.get_input_embeddings()
    embeds = torch.cat([prompts[None, :a], wte(wte_ids_before), prompts[None, a:a + b],
                        wte(wte_ids_after)], dim=1)
    return model(inputs_embeds=embeds).logits


def test_exported_prompt_embeddings_give_our_logits(ptuning_run, hf_base, tmp_path):
    from safetensors.torch import load_file
    from transformers import GPT2LMHeadModel

    from hyperclova.convert import export_prompts

    export_prompts(ptuning_run[2], tmp_path / "prompts")
    config = json.loads((tmp_path / "prompts" / "prompt_config.json").read_text())
    prompts = load_file(tmp_path / "prompts" / "prompt_embeddings.safetensors")["prompt_embeddings"]
    assert prompts.shape == (config["num_virtual_tokens"], config["d_model"]) == (6, 64)
    ours, _ = load_model(None, adapter=ptuning_run[2])
    hf = GPT2LMHeadModel.from_pretrained(hf_base).eval()
    text, answer = torch.tensor([[5, 17, 99, 230]]), torch.tensor([[41, 7]])
    ids = torch.cat([640 + torch.arange(3)[None], text, 643 + torch.arange(3)[None], answer], 1)
    with torch.no_grad():
        got = hf_prompt_logits(hf, text, answer, prompts, config["template"])
        torch.testing.assert_close(got, ours(ids), rtol=1e-4, atol=1e-4)


def test_eval_and_generate_take_an_adapter(lora_run, ptuning_run, nsmc, capsys):
    from hyperclova.eval.api import run_evaluation
    from hyperclova.generate import main as generate

    for run in (lora_run, ptuning_run):
        res = run_evaluation(None, "nsmc", data=[str(nsmc[1])], adapter=str(run[2]), log=lambda s: None)
        method = "lora" if run is lora_run else "ptuning"
        assert res["adapter"]["method"] == method and res["config"]["num_fewshot"] == 0
        assert res["metrics"]["accuracy"]["n"] == 1 and res["n_examples"] == 16
        if method == "ptuning":  # the virtual tokens sit around the input, as in tuning
            assert res["first_prompts"][0].startswith("\U00100000\U00100001\U00100002")
        generate(["--adapter", str(run[2]), "--prompt", "이 영화 정말", "--greedy",
                  "--max-new-tokens", "4"])
        assert capsys.readouterr().out.startswith("### 이 영화 정말")


def test_pipeline_tuning_and_tensor_parallel_evaluation(lora_run, ptuning_run, base, nsmc, tmp_path):
    """One torchrun launch (tests/tune/torchrun_worker.py): the P-tuning run of the `ptuning_run`
    fixture repeated by `python -m hyperclova.tune` under pp2 gives its losses and its trained
    weights; both adapters evaluated under tp2 score every example as one process."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from hyperclova.convert.dcp import CheckpointReader
    from hyperclova.eval.api import run_evaluation
    from hyperclova.train.checkpoint import resolve_load_path
    from tune_helpers import tune_overrides

    repo = Path(__file__).resolve().parents[2]
    args = ["--checkpoint", str(base), "parallel.pp=2",
            *tune_overrides(tmp_path / "pp2", nsmc[0], "tune.method=ptuning")]
    (tmp_path / "tune_args.json").write_text(json.dumps(args), encoding="utf-8")
    runs = [str(lora_run[2]), str(ptuning_run[2])]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "--monitor-interval=0.2", str(repo / "tests/tune/torchrun_worker.py"), str(tmp_path),
           str(nsmc[1]), *runs]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo)}
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # pp2 tuning: the same losses and trained weights as one process
    rows = [json.loads(x) for x in (tmp_path / "pp2" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if r["kind"] == "train"]
    assert losses == pytest.approx(ptuning_run[1]["losses"], rel=1e-5)
    a = CheckpointReader(resolve_load_path(tmp_path / "pp2" / "checkpoints"))
    b = CheckpointReader(resolve_load_path(ptuning_run[2]))
    keys = b.group_keys("model")
    assert keys and sorted(a.group_keys("model")) == sorted(keys)
    sa, sb = a.load(keys), b.load(keys)
    for k in keys:
        torch.testing.assert_close(sa[k], sb[k], rtol=1e-4, atol=1e-6, msg=k)
    # tp2 evaluation with either adapter
    for i, run in enumerate(runs):
        one = tmp_path / f"one{i}_pred.jsonl"
        run_evaluation(None, "nsmc", data=[str(nsmc[1])], adapter=run, predictions=str(one),
                       log=lambda s: None)
        tp = json.loads((tmp_path / f"{i}.json").read_text(encoding="utf-8"))
        assert tp["layout"]["tp"] == 2 and tp["adapter"]["path"].startswith(run)
        got = [json.loads(x) for x in (tmp_path / f"{i}_pred.jsonl").read_text().splitlines()]
        want = [json.loads(x) for x in one.read_text().splitlines()]
        assert [r["prediction"] for r in got] == [r["prediction"] for r in want]
        for x, y in zip(got, want):
            assert x["scores"] == pytest.approx(y["scores"], abs=1e-5)
