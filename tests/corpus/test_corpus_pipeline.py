"""The cleaning pipeline end to end: executors agree, resumes, bad input, reasons, accounting."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from hyperclova.corpus import pipeline
from hyperclova.corpus.recipe import DEFAULT_RECIPE
from hyperclova.corpus.synthetic import generate_corpus
from hyperclova.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("pipe")
    generate_corpus(d / "raw.jsonl", n_docs=800, seed=3, noise=1.0)
    recipe = d / "recipe.yaml"  # the default recipe with small tasks, so there are several
    recipe.write_text(DEFAULT_RECIPE.read_text(encoding="utf-8").replace("task_mb: 32", "task_mb: 0.08"),
                      encoding="utf-8")
    return d, str(recipe)


def _outputs(out: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted((out / "data").glob("*.jsonl"))}


@pytest.fixture(scope="module")
def reference(corpus):
    d, recipe = corpus
    out = d / "local1"
    report = pipeline.run([str(d / "raw.jsonl")], out, recipe, "local", 1, rejects=True)
    return out, report


def test_accounting_and_report(reference):
    out, r = reference
    assert r["tasks"] >= 3
    assert r["docs_in"] == 800 == r["docs_kept"] + sum(v["docs"] for v in r["rejected"].values())
    kept = sum(1 for p in (out / "data").glob("*.jsonl") for _ in open(p, encoding="utf-8"))
    assert kept == r["docs_kept"]
    for reason, v in r["rejected"].items():
        n = sum(1 for p in (out / "rejects" / reason).glob("*.jsonl") for _ in open(p, encoding="utf-8"))
        assert n == v["docs"], reason
    for reason in ["exact_dup", "near_dup", "spam"]:
        assert r["rejected"][reason]["docs"] > 0
    assert set(r["pii"]) >= {"phone", "email"}
    assert (out / "report.txt").read_text(encoding="utf-8").startswith("documents in 800")
    steps = list(r["steps"])
    assert steps[0] == "normalize" and steps[-2:] == ["exact_dedup", "near_dedup"]
    for a, b in zip(steps, steps[1:]):  # each step's output is the next step's input
        assert r["steps"][a]["docs_out"] == r["steps"][b]["docs_in"]


def test_metadata_kept_and_user_id_hashed(reference, corpus):
    out, _ = reference
    raw = {json.loads(line)["id"]: json.loads(line) for line in open(corpus[0] / "raw.jsonl", encoding="utf-8")}
    for p in (out / "data").glob("*.jsonl"):
        for line in open(p, encoding="utf-8"):
            rec = json.loads(line)
            src = raw[rec["id"]]
            assert rec["source"] == src["source"] and rec["category"] == src["category"]
            if "user_id" in src:
                assert rec["user_id"] != src["user_id"] and len(rec["user_id"]) == 16
            assert "ㅋㅋㅋㅋㅋㅋ" not in rec["text"] and "<p>" not in rec["text"]


def test_two_workers_slurm_and_resume_give_identical_output(reference, corpus, monkeypatch):
    ref, ref_report = reference
    d, recipe = corpus
    out2 = d / "local2"
    pipeline.run([str(d / "raw.jsonl")], out2, recipe, "local", 2, rejects=True)
    assert _outputs(out2) == _outputs(ref)

    slurm = d / "slurm"  # plan, a 2-element array, dedup, array again, report: as the sbatch does
    pipeline.run([str(d / "raw.jsonl")], slurm, recipe, "local", 1, stage="plan")
    for stage in ["process", "dedup", "finalize", "report"]:
        elements = range(2) if stage in ("process", "finalize") else [None]
        for k in elements:
            if k is not None:
                monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(k))
                monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
            pipeline.run([], slurm, recipe, "slurm" if k is not None else "local", 1, stage=stage)
    assert _outputs(slurm) == _outputs(ref)

    # Resume: delete one finished task's output and marker; only that task is redone.
    victim = sorted((slurm / "work" / "finalize").glob("*.done"))[1]
    (slurm / "data" / f"shard_{victim.stem}.jsonl").unlink()
    victim.unlink()
    before = {p: p.stat().st_mtime_ns for p in (slurm / "data").glob("*.jsonl")}
    report = pipeline.run([str(d / "raw.jsonl")], slurm, recipe, "local", 1)
    assert _outputs(slurm) == _outputs(ref)
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    assert report["docs_kept"] == ref_report["docs_kept"]


def test_ray_local_mode_gives_identical_output(reference, corpus):
    pytest.importorskip("ray", reason="ray not installed (extra [ray])")
    d, recipe = corpus
    out = d / "ray"
    pipeline.run([str(d / "raw.jsonl")], out, recipe, "ray", 2)
    assert _outputs(out) == _outputs(reference[0])


def test_changed_inputs_are_refused_and_overwrite_starts_over(tmp_path):
    """A rerun resumes; one after documents were appended to an input says so (instead of silently
    ignoring them), and --overwrite starts over and cleans them too. Another --json-keys field is
    cleaned and written back under its own name."""
    raw = tmp_path / "in.jsonl"
    docs = [{"body": f"오늘은 {i}번째 글을 씁니다. 날씨가 맑아서 공원에 산책을 다녀왔어요.", "text": f"meta {i}"}
            for i in range(3)]
    raw.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("steps:\n  - normalize: {}\n", encoding="utf-8")
    out = tmp_path / "out"
    first = pipeline.run([str(raw)], out, str(recipe), json_keys=("body",))
    assert pipeline.run([str(raw)], out, str(recipe), json_keys=("body",))["docs_kept"] == first["docs_kept"] == 3
    with open(raw, "a", encoding="utf-8") as f:
        f.write(json.dumps({"body": "추가된 글입니다. 새로 들어온 문서예요.", "text": "meta 3"}, ensure_ascii=False) + "\n")
    with pytest.raises(UserError, match=r"the inputs changed since .* planned \(.*in\.jsonl: [\d,]+ -> [\d,]+ bytes.*--overwrite"):
        pipeline.run([str(raw)], out, str(recipe), json_keys=("body",))
    with pytest.raises(UserError, match="inputs changed"):  # a later stage alone notices too
        pipeline.run([], out, str(recipe), stage="report")
    report = pipeline.run([str(raw)], out, str(recipe), json_keys=("body",), overwrite=True)
    assert report["docs_kept"] == 4
    rows = [json.loads(x) for x in open(out / "data" / "shard_00000.jsonl", encoding="utf-8")]
    assert [list(r) for r in rows] == [["body", "text"]] * 4 and rows[3]["text"] == "meta 3"


def _salad() -> str:
    """Random Hangul syllables in word-like groups: no repeats, no particles, pure noise."""
    rng = random.Random(5)
    return " ".join("".join(chr(0xAC00 + rng.randrange(11172)) for _ in range(rng.randint(1, 4)))
                    for _ in range(40))


def test_known_bad_removed_with_reason_and_good_kept(tmp_path):
    good = ["서울의 낮 최고 기온이 35도까지 올랐다. 기상청은 폭염 특보를 확대했다. 시민들은 외출을 자제했다.",
            "새 노트북을 샀는데 속도가 엄청 빨라졌어요. 화면도 선명하고 배터리도 오래가서 만족해요.",
            "가격은 12,900원이고 2024-01-15에 출시됐어요. 모델명 AB-1234 제품이에요. 정말 좋아요."]
    bad = {"too_short": "좋아요", "low_hangul": "This review is written entirely in English, sorry about that.",
           "repetitive_ngrams": " ".join(["정말 최고 대박"] * 20),
           "profanity": "이 씨발 제품 진짜 병신 같네 존나 별로 지랄 하지마",
           "spam": "★특가★ 최저가 할인 쿠폰 증정! 클릭 http://a.example.com 문의 010-1234-5678 카톡 이벤트",
           "meaningless_words": _salad()}
    recs = [{"id": f"g{i}", "text": t, "source": "blog"} for i, t in enumerate(good)]
    recs += [{"id": reason, "text": t, "source": "web"} for reason, t in bad.items()]
    raw = tmp_path / "in.jsonl"
    raw.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    out = tmp_path / "out"
    r = pipeline.run([str(raw)], out, None, "local", 1, rejects=True)
    kept = [json.loads(x)["id"] for p in (out / "data").glob("*.jsonl") for x in open(p, encoding="utf-8")]
    assert sorted(kept) == ["g0", "g1", "g2"]
    for reason in bad:
        rejected = [json.loads(x) for x in open(out / "rejects" / reason / "shard_00000.jsonl", encoding="utf-8")]
        assert [x["id"] for x in rejected] == [reason] and rejected[0]["reject_detail"]
    assert r["sources"]["web"]["in"] == len(bad) and r["sources"]["blog"]["kept"] == 3


def test_flag_action_keeps_and_records(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("steps:\n  - length: {min_chars: 50, action: flag}\n", encoding="utf-8")
    raw = tmp_path / "in.jsonl"
    raw.write_text(json.dumps({"text": "짧은 글", "id": "a"}, ensure_ascii=False) + "\n", encoding="utf-8")
    r = pipeline.run([str(raw)], tmp_path / "out", str(recipe), "local", 1)
    rec = json.loads((tmp_path / "out" / "data" / "shard_00000.jsonl").read_text(encoding="utf-8"))
    assert rec["flags"] == ["too_short"] and r["flags"] == {"too_short": 1} and r["docs_kept"] == 1


@pytest.mark.parametrize("text,needle", [
    ("steps:\n  - lenght: {}\n", "unknown step 'lenght'"),
    ("steps:\n  - length: {min_char: 3}\n", "steps[0].length.min_char' (did you mean 'min_chars'?)"),
    ("steps:\n  - exact_dedup: {}\n  - length: {}\n  - near_dedup: {}\n", "must be adjacent"),
    ("steps: [\n", "invalid YAML"),
    # wrong types and choices: the checks run configs get (hyperclova.config.from_dict)
    ("steps:\n  - length: {min_chars: ten}\n", "steps[0].length.min_chars: expected an integer, got 'ten'"),
    ("steps:\n  - normalize: {form: 5}\n", "steps[0].normalize.form: 5 is not one of"),
    ("steps:\n  - normalize: {strip_html: maybe}\n", "strip_html: expected true/false"),
    ("steps:\n  - spam: {action: delete}\n", "steps[0].spam.action: 'delete' is not one of ['drop', 'flag']"),
    ("steps:\n  - profanity: {words: [a]}\n", "unknown config key"),
    ("steps:\n  - pii: {salt: s, types: email}\n", "steps[0].pii.types: expected a list"),
    ("steps:\n  - pii: {salt: s, types: [emial]}\n", "steps[0].pii.types[0]: 'emial' is not one of"),
    ("steps:\n  - near_dedup: {unit: word}\n", "near_dedup.unit: 'word' is not one of"),
    ("steps:\n  - near_dedup: {bands: [16]}\n", "near_dedup.bands: expected an integer"),
    ("steps:\n  - exact_dedup: {by: text}\n", "exact_dedup.by"),
    ("tasks_mb: 3\nsteps: []\n", "did you mean 'task_mb'"),
    ("task_mb: big\nsteps: []\n", "task_mb: expected a number"),
    ("task_mb: 3\n", "steps: missing"),
    ("steps: {length: {}}\n", "steps: expected a list"),
])
def test_bad_recipe_names_the_problem(tmp_path, text, needle):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text, encoding="utf-8")
    with pytest.raises(UserError, match=None) as e:
        pipeline.run(["x"], tmp_path / "out", str(recipe))
    assert needle in str(e.value) and str(recipe) in str(e.value)


def test_interrupted_run_leaves_no_final_output(tmp_path, monkeypatch, corpus):
    d, recipe = corpus
    calls = {"n": 0}
    real = pipeline._apply_steps

    def boom(*a, **k):
        calls["n"] += 1
        if calls["n"] == 50:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(pipeline, "_apply_steps", boom)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run([str(d / "raw.jsonl")], tmp_path / "out", recipe, "local", 1)
    work = tmp_path / "out" / "work" / "process"
    assert not list(work.glob("00000.jsonl")) and not list(work.glob("*.done"))
    assert not (tmp_path / "out" / "data").exists()


def test_cli_runs_and_reports_user_errors(tmp_path, corpus):
    d, recipe = corpus
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "tools/clean_corpus.py", "--input", str(d / "raw.jsonl"), "--output",
           str(tmp_path / "o"), "--recipe", recipe]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    assert "documents in 800" in res.stdout and "near_dedup" in res.stdout
    bad = subprocess.run(cmd[:3] + ["nope.jsonl", "--output", str(tmp_path / "p")], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, env=env)
    assert bad.returncode == 2 and "nope.jsonl does not exist" in bad.stderr and "Traceback" not in bad.stderr


def test_stages_out_of_order_or_with_another_recipe_are_refused(corpus, tmp_path):
    """finalize before dedup would keep every duplicate for good; a changed recipe between
    separately submitted stages would mix two recipes in one output."""
    d, recipe = corpus
    out = tmp_path / "out"
    pipeline.run([str(d / "raw.jsonl")], out, recipe, "local", 1, stage="plan")
    pipeline.run([], out, recipe, "local", 1, stage="process")
    with pytest.raises(UserError, match="run --stage dedup first"):
        pipeline.run([], out, recipe, "local", 1, stage="finalize")
    assert not list((out / "work").glob("finalize/*.done"))
    other = tmp_path / "other.yaml"
    other.write_text(Path(recipe).read_text(encoding="utf-8").replace("task_mb: 0.08", "task_mb: 0.09"),
                     encoding="utf-8")
    with pytest.raises(UserError, match="planned with another recipe"):
        pipeline.run([], out, str(other), "local", 1, stage="dedup")
