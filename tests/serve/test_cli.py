"""The command lines a new user meets: `python -m hyperclova.generate` never draws an id its
tokenizer cannot decode (the padded vocabulary), bad sampling flags and files are one-line errors
naming the flag, and `python -m hyperclova.serve` refuses a bad config before loading anything."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from serve_helpers import ROOT


def run(module, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def boosted_export(trained, tokenizer, path):
    """The trained model as a `consolidate` file, with the padded embedding rows (ids the
    tokenizer does not have) and a special id made the likeliest picks: each is set to three
    times the embedding of the token the model likes best after a prompt."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from hyperclova.convert.to_hf import consolidate
    from hyperclova.generate import load_model

    consolidate(trained.checkpoint, path)
    model, _ = load_model(path)
    with torch.no_grad():
        logits = model(torch.tensor([tokenizer.encode("오늘 서울의 날씨는")]))[0, -1]
    best = int(logits[: tokenizer.vocab_size].argmax())
    assert logits[best] > 0
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    sd = load_file(str(path))
    emb = sd["tok_emb.weight"]
    emb[tokenizer.vocab_size:] = 3 * emb[best]
    emb[tokenizer.special_tokens["<|pad|>"]] = 3 * emb[best]
    save_file(sd, str(path), metadata=meta)
    return path


def test_generate_never_draws_undecodable_ids(trained, tokenizer, tmp_path):
    from hyperclova.generate import Sampling, generate, load_model

    ckpt = boosted_export(trained, tokenizer, tmp_path / "boosted.safetensors")
    model, _ = load_model(ckpt)
    prompts = [tokenizer.encode(p) for p in ("오늘 서울의 날씨는", "정부는", "맛집 후기")]
    raw = generate(model, prompts, Sampling(max_new_tokens=16, temperature=0.8, top_k=50, top_p=0.95),
                   generator=torch.Generator().manual_seed(0))
    assert any(t >= tokenizer.vocab_size for row in raw for t in row)  # without the mask, it would
    banned = set(Sampling.for_tokenizer(tokenizer).suppress_ids)
    for seed in range(3):
        s = Sampling.for_tokenizer(tokenizer, max_new_tokens=16, temperature=0.8, top_k=50, top_p=0.95)
        out = generate(model, prompts, s, generator=torch.Generator().manual_seed(seed))
        assert all(t < tokenizer.vocab_size and t not in banned for row in out for t in row)
        tokenizer.decode([t for row in out for t in row])
    (tmp_path / "prompts.txt").write_text("오늘 서울의 날씨는\n\n정부는\n", encoding="utf-8")
    r = run("hyperclova.generate", "--checkpoint", ckpt, "--tokenizer", trained.tokenizer,
            "--prompts-file", tmp_path / "prompts.txt", "--max-new-tokens", 16, "--seed", 1)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("### ") == 2 and "Traceback" not in r.stderr


def cli_error(main, argv, capsys) -> str:
    """Run a CLI's main in-process; it must exit 2 with a one-line message (no traceback)."""
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and "Traceback" not in err, err
    return err


def test_generate_bad_arguments_name_the_flag(trained, tmp_path, capsys):
    from hyperclova.generate import main

    for args, flag in [(["--top-p", "0"], "--top-p"), (["--max-new-tokens", "-3"], "--max-new-tokens"),
                       (["--temperature", "-1"], "--temperature"), (["--top-k", "-2"], "--top-k"),
                       (["--prompts-file", tmp_path / "missing.txt"], "--prompts-file")]:
        assert flag in cli_error(main, ["--checkpoint", trained.checkpoint, "--prompt", "안녕", *args], capsys)


def test_serve_refuses_bad_settings(trained, tmp_path, capsys):
    from hyperclova.serve.__main__ import main

    bad = tmp_path / "filters.yaml"
    bad.write_text("pii:\n  output: drop\n")
    ckpt = ["--checkpoint", trained.checkpoint]
    assert "pii.output must be one of" in cli_error(main, ckpt + ["--filter-config", bad], capsys)
    assert "--max-batch" in cli_error(main, ckpt + ["--max-batch", "0"], capsys)
    assert "nowhere" in cli_error(main, ["--checkpoint", tmp_path / "nowhere"], capsys)
    (tmp_path / "k.jsonl").write_text(json.dumps({"title": "no text"}) + "\n")
    assert "no text to index" in cli_error(main, ckpt + ["--knowledge", tmp_path / "k.jsonl"], capsys)
    assert "--max-model-len" in cli_error(main, ckpt + ["--max-model-len", "4096"], capsys)
