"""The one reader: which files, the per-line rules, accounting, and the block path that parallel
callers use giving exactly what `iter_records` gives."""
from __future__ import annotations

import argparse
import gzip
import json

import pytest

from hyperclova.data.reader import (REASONS, InputFile, Range, ReadStats, add_input_args, changed_inputs,
                                    expand_inputs, input_state, iter_records, parse_block, plan_ranges,
                                    read_blocks, text_bytes)
from hyperclova.errors import UserError
from reader_fixtures import build


@pytest.fixture(scope="module")
def fixture_set(tmp_path_factory):
    return build(tmp_path_factory.mktemp("reader"))


def test_fixture_set_reads_as_expected(fixture_set):
    inputs, want = fixture_set
    stats = ReadStats()
    records = list(iter_records(inputs, stats=stats))
    assert [r.texts[0] for r in records] == want["texts"]  # no BOM, no "\r", in input order
    assert (stats.read, stats.kept, stats.skipped) == (want["read"], want["kept"], want["skipped"])
    assert stats.read == stats.kept + sum(stats.skipped.values())
    for reason, where in want["first"].items():
        assert stats.examples[reason][0].startswith(where + ": "), (reason, stats.examples[reason])
    for reason, wheres in want["all_locations"].items():
        assert [e.split(": ")[0] for e in stats.examples[reason]] == wheres
    first = records[0]
    assert first.line == 1 and first.record == {"text": want["texts"][0], "id": 0}
    text_rec = next(r for r in records if r.path.endswith("part-1.txt"))
    assert text_rec.record == {} and text_rec.line == 1
    summary = stats.summary()
    assert summary.startswith(f"read {want['read']} = kept {want['kept']} + skipped {sum(want['skipped'].values())}")
    assert [line.split(":")[0].strip() for line in summary.splitlines() if line.startswith("  skipped")] == \
        [f"skipped, {REASONS[r]}" for r in REASONS]


def test_strict_stops_at_the_first_bad_line(fixture_set):
    inputs, want = fixture_set
    got = []
    with pytest.raises(UserError, match=want["strict_first"].replace("(", r"\(")) as e:
        for rec in iter_records(inputs, strict=True):
            got.append(rec.texts[0])
    assert got == want["texts"][:1] and "drop --strict" in str(e.value)


@pytest.mark.parametrize("range_bytes,block_bytes", [(1, 7), (40, 64), (300, 1 << 20), (1 << 30, 100)])
def test_block_path_gives_what_iter_records_gives(fixture_set, range_bytes, block_bytes):
    """Ranges parsed separately (as tasks do), with line numbers shifted when merged, match one pass."""
    inputs, _ = fixture_set
    ref_stats = ReadStats()
    ref = list(iter_records(inputs, stats=ref_stats))
    ranges = plan_ranges(expand_inputs(inputs), range_bytes)
    stats, records, lines_before = ReadStats(), [], {}
    for r in ranges:
        part = ReadStats()
        got = [rec for block in read_blocks([r], block_bytes) for rec in parse_block(block, ("text",), part)]
        offset = lines_before.get(r.file.path, 0)
        records += [rec._replace(line=rec.line + offset) for rec in got]
        stats.merge(part, line_offset=offset)
        lines_before[r.file.path] = offset + part.lines
    assert records == ref
    assert stats == ref_stats


def test_ranges_cover_files_and_cut_at_line_ends(tmp_path):
    path = tmp_path / "x.jsonl"
    data = b"".join(b'{"text": "%s"}\n' % (b"a" * n) for n in (0, 5, 40, 1, 0, 25, 3))
    path.write_bytes(data[:-1])  # no final newline
    f = InputFile(str(path), "jsonl")
    for size in (1, 10, 30, 1000):
        ranges = plan_ranges([f], size)
        assert ranges[0].start == 0 and ranges[-1].end == len(data) - 1
        assert all(a.end == b.start for a, b in zip(ranges, ranges[1:]))
        assert all(data[r.end - 1:r.end] == b"\n" for r in ranges[:-1])
    gz = tmp_path / "x.jsonl.gz"
    gz.write_bytes(gzip.compress(data))
    assert plan_ranges(expand_inputs([str(gz)]), 10) == [Range(InputFile(str(gz), "jsonl", "gz"))]
    (tmp_path / "empty.jsonl").write_bytes(b"")
    assert plan_ranges(expand_inputs([str(tmp_path / "empty.jsonl")]), 10) == []


def test_strict_in_a_range_names_the_absolute_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text("".join(json.dumps({"text": f"doc {i}"}) + "\n" for i in range(20)) + "{bad\n")
    ranges = plan_ranges(expand_inputs([str(path)]), 100)
    assert len(ranges) > 2
    with pytest.raises(UserError, match=r"x\.jsonl:21: invalid JSON"):
        list(iter_records([ranges[-1]], strict=True))


def test_which_files(tmp_path, monkeypatch):
    (tmp_path / "d" / "e").mkdir(parents=True)
    for name in ["d/b.JSONL", "d/a.txt.GZ", "d/e/c.ndjson.zst", "d/e/skip.csv", "d/.hidden.jsonl", "x.json"]:
        (tmp_path / name).write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    files = expand_inputs(["d", "x.json"])
    assert files == [InputFile("d/a.txt.GZ", "text", "gz"), InputFile("d/b.JSONL", "jsonl"),
                     InputFile("d/e/c.ndjson.zst", "jsonl", "zst"), InputFile("x.json", "jsonl")]
    assert expand_inputs(["d/*.JSONL"]) == [InputFile("d/b.JSONL", "jsonl")]
    assert expand_inputs(["d/e/skip.csv"], input_format="text") == [InputFile("d/e/skip.csv", "text")]
    for bad, message in [("nope.jsonl", "input nope.jsonl does not exist"),
                         ("d/*.parquet", r"input d/\*\.parquet matches no file"),
                         ("d/e/skip.csv", r"d/e/skip\.csv: cannot tell the format"),
                         ]:
        with pytest.raises(UserError, match=message):
            expand_inputs([bad])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="input directory empty holds no"):
        expand_inputs(["empty"])
    with pytest.raises(UserError, match=r"input file d/b\.JSONL is given twice \(by 'd' and 'd/b.JSONL'\)"):
        expand_inputs(["d", "d/b.JSONL"])
    with pytest.raises(UserError, match="--input-format must be one of"):
        expand_inputs(["x.json"], input_format="csv")


def test_several_keys(tmp_path):
    path = tmp_path / "qa.jsonl"
    rows = [{"q": "질문 하나", "a": "답 하나"}, {"q": "질문 둘"}, {"q": "질문 셋", "a": 3}, {"q": " ", "a": "답"},
            {"q": "질문 넷", "a": "답 넷", "extra": [1]}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    stats = ReadStats()
    got = [r.texts for r in iter_records([str(path)], json_keys=["q", "a"], stats=stats)]
    assert got == [("질문 하나", "답 하나"), ("질문 넷", "답 넷")]
    assert stats.skipped == {"missing_key": 1, "non_string": 1, "empty_text": 1}
    (tmp_path / "t.txt").write_text("x\n")
    with pytest.raises(UserError, match="t.txt: a text file has one document per line"):
        list(iter_records([str(tmp_path / "t.txt")], json_keys=["q", "a"]))
    with pytest.raises(UserError, match="distinct keys"):
        list(iter_records([str(path)], json_keys=["q", "q"]))


def test_sampling_is_seeded_and_counted(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("".join(f"line {i}\n" for i in range(1000)))
    runs = []
    for seed in (1, 1, 2):
        stats = ReadStats()
        runs.append([r.line for r in iter_records([str(path)], stats=stats, sample_ratio=0.25, seed=seed)])
        assert stats.read == stats.kept == len(runs[-1]) and stats.lines == 1000
        assert 150 < stats.read < 350 and "lines not sampled" in stats.summary()
    assert runs[0] == runs[1] != runs[2]


def test_corrupt_compressed_files_are_user_errors(tmp_path):
    good = gzip.compress(b'{"text": "a"}\n' * 1000)
    (tmp_path / "t.jsonl.gz").write_bytes(good[: len(good) // 2])
    (tmp_path / "n.jsonl.gz").write_bytes(b"this is not gzip at all")
    (tmp_path / "z.jsonl.zst").write_bytes(b"nor zstd")
    for name in ("t.jsonl.gz", "n.jsonl.gz", "z.jsonl.zst"):
        with pytest.raises(UserError, match=rf"{name}: cannot read .*truncated or corrupt"):
            list(iter_records([str(tmp_path / name)]))


def test_hostile_lines_are_counted_not_crashes(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_bytes(b"[" * 100_000 + b"\n" + "\ufeff{\"text\": \"BOM mid-file\"}\n".encode()
                     + "\u0000".encode("utf-16-le") + b"\n" + b'{"text": "ok"}\n')
    stats = ReadStats()
    assert [r.texts for r in iter_records([str(path)], stats=stats)] == [("ok",)]
    assert stats.skipped == {"invalid_json": 2, "nul_byte": 1}


def test_stats_round_trip_and_merge_caps_examples():
    a, b = ReadStats(), ReadStats()
    for i in range(4):
        a.skip("invalid_json", "f", i + 1, "x")
        b.skip("invalid_json", "f", i + 1, "y")
    a.read, a.kept, b.read, b.kept = 10, 6, 10, 6
    assert ReadStats.from_json(json.loads(json.dumps(a.to_json()))) == a
    a.merge(b, line_offset=10)
    assert a.read == 20 and a.skipped == {"invalid_json": 8}
    assert a.examples["invalid_json"] == ["f:1: x", "f:2: x", "f:3: x", "f:4: x", "f:11: y"]


def test_input_args_are_the_same_everywhere():
    p = argparse.ArgumentParser()
    add_input_args(p)
    a = p.parse_args(["--input", "a.jsonl", "dir/", "--json-keys", "q", "a", "--input-format", "jsonl", "--strict"])
    assert (a.input, a.json_keys, a.input_format, a.strict) == (["a.jsonl", "dir/"], ["q", "a"], "jsonl", True)
    assert p.parse_args(["--input", "x"]).json_keys == ["text"]


def test_text_size_of_compressed_files_and_changes(tmp_path):
    import zstandard

    data = "".join(json.dumps({"text": f"문서 {i} " + "가나다라마바사 " * (i % 7)}, ensure_ascii=False) + "\n"
                   for i in range(60_000)).encode()
    assert len(data) > 4 << 20
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(data))
    (tmp_path / "a.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
    for name in ("a.jsonl.gz", "a.jsonl.zst"):
        est = text_bytes(expand_inputs([str(tmp_path / name)])[0])
        assert 0.7 * len(data) < est < 1.3 * len(data), name
    files = expand_inputs([str(tmp_path / "a.jsonl.gz")])
    state = input_state(files)
    assert changed_inputs(state) == []
    with open(tmp_path / "a.jsonl.gz", "ab") as f:
        f.write(b"more")
    assert "bytes" in changed_inputs(state)[0]
