import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "hyperclova.train", *args],
                          capture_output=True, text=True, timeout=300)


def test_bad_override_is_one_line_error_without_traceback():
    r = run("train.stpes=3")
    assert r.returncode == 2
    assert "unknown config key 'train.stpes' (did you mean 'steps'?)" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_shard_names_the_file(tmp_path):
    r = run("model=tiny", f"data.blend=[{tmp_path}/nope_text_document]", "train.steps=1",
            f"logging.run_dir={tmp_path}/run", "logging.progress_bar=false")
    assert r.returncode == 2, r.stderr
    assert "nope_text_document" in r.stderr and "Traceback" not in r.stderr


def test_presets_command_prints_every_size():
    r = subprocess.run([sys.executable, "-m", "hyperclova.model.presets"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0
    for name in ("137m", "350m", "760m", "1.3b", "6.9b", "13b", "39b", "82b", "tiny"):
        assert f" {name} " in r.stdout
    assert "81,215,508,480" in r.stdout
