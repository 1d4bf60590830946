"""One small set of input files with every kind of bad line, every compression, a directory and a
glob: the reader's shared behaviour is checked on it once, through every tool that reads a corpus."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

GOOD = [
    "오늘은 날씨가 맑아서 공원에 산책을 다녀왔어요.",
    "새로 나온 노트북은 화면이 선명하고 배터리가 오래 갑니다.",
    "서울의 낮 최고 기온이 35도까지 오르며 폭염 특보가 내려졌다.",
    "주말에 가족과 함께 바닷가에 가서 회를 먹었어요.",
    "이 식당은 김치찌개가 정말 맛있어서 자주 가요.",
    "내일은 전국에 비가 내리고 바람이 강하게 불겠습니다.",
    "도서관에서 빌린 소설책을 하룻밤 만에 다 읽었어요.",
    "회사 근처에 새로 생긴 카페의 커피가 아주 진하다.",
    "아이들과 함께 만든 쿠키가 생각보다 잘 구워졌어요.",
    "경기 후반에 터진 역전 골로 팀이 결승에 진출했다.",
    "봄이 오면 벚꽃이 핀 강변을 따라 자전거를 타고 싶어요.",
    "새 학기를 맞아 학생들이 교복을 입고 등교했습니다.",
]


def _jl(text: str, **extra) -> bytes:
    return json.dumps({"text": text, **extra}, ensure_ascii=False).encode()


def build(root: Path) -> tuple[list[str], dict]:
    """Write the set under `root`; returns the --input arguments and what reading them must give:
    {"read", "kept", "skipped": {reason: n}, "first": {reason: "path:line"}, "texts": [...],
    "strict_first": "path:line: <reason text>"}."""
    root.mkdir(parents=True, exist_ok=True)
    plain = root / "plain.jsonl"
    # BOM on the first line, CRLF endings, no final newline; one of each bad kind.
    lines = [
        b"\xef\xbb\xbf" + _jl(GOOD[0], id=0) + b"\r",  # 1 good (BOM, CRLF)
        b'{"text": "caf\xc3 au lait"}',  # 2 invalid_utf8
        _jl(GOOD[1], id=1) + b"\r",  # 3 good (CRLF)
        b'{"text": "nul\x00byte"}',  # 4 nul_byte
        b"{not json",  # 5 invalid_json
        b"[1, 2, 3]",  # 6 not_an_object
        b'{"body": "no text key"}',  # 7 missing_key
        b'{"text": 42}',  # 8 non_string
        b'{"text": "lone \\ud800 surrogate"}',  # 9 invalid_unicode
        b'{"text": ""}',  # 10 empty_text (empty string)
        b'{"text": "  \\n\\t "}',  # 11 empty_text (whitespace only)
        b"",  # 12 empty_text (blank line)
        _jl(GOOD[2], id=2, source="news"),  # 13 good, no final newline
    ]
    plain.write_bytes(b"\n".join(lines))

    d = root / "dir"
    (d / "sub").mkdir(parents=True, exist_ok=True)
    with gzip.open(d / "a.jsonl.gz", "wb") as f:  # a directory, gzip
        f.write(b"\n".join([_jl(GOOD[3]), b'{"text": "broken', _jl(GOOD[4])]) + b"\n")
    import zstandard

    (d / "sub" / "b.JSONL.zst").write_bytes(  # upper-case extension, zstd, in a subdirectory
        zstandard.ZstdCompressor().compress(b"\n".join([_jl(GOOD[5]), b'{"title": "x"}', _jl(GOOD[6])]) + b"\n"))
    (d / "notes.md").write_text("not an input: directories take known extensions only\n")
    (d / ".hidden.jsonl").write_text("{broken hidden file, skipped}\n")

    g = root / "glob"
    g.mkdir(exist_ok=True)
    (g / "part-1.txt").write_text(f"{GOOD[7]}\n\n{GOOD[8]}\r\n", encoding="utf-8")  # a glob, text files
    (g / "part-2.txt").write_text(f"{GOOD[9]}\n   \n{GOOD[10]}\n{GOOD[11]}\n", encoding="utf-8")
    (g / "other.txt").write_text("not matched by the glob\n", encoding="utf-8")

    p, a, b = str(plain), str(d / "a.jsonl.gz"), str(d / "sub" / "b.JSONL.zst")
    t1, t2 = str(g / "part-1.txt"), str(g / "part-2.txt")
    expected = {
        "read": 13 + 3 + 3 + 3 + 4,
        "kept": 3 + 2 + 2 + 2 + 3,
        "skipped": {"invalid_utf8": 1, "nul_byte": 1, "invalid_json": 2, "not_an_object": 1,
                    "missing_key": 2, "non_string": 1, "invalid_unicode": 1, "empty_text": 5},
        "first": {"invalid_utf8": f"{p}:2", "nul_byte": f"{p}:4", "invalid_json": f"{p}:5",
                  "not_an_object": f"{p}:6", "missing_key": f"{p}:7", "non_string": f"{p}:8",
                  "invalid_unicode": f"{p}:9", "empty_text": f"{p}:10"},
        "all_locations": {"invalid_json": [f"{p}:5", f"{a}:2"], "missing_key": [f"{p}:7", f"{b}:2"],
                          "empty_text": [f"{p}:10", f"{p}:11", f"{p}:12", f"{t1}:2", f"{t2}:2"]},
        "texts": GOOD,
        "strict_first": f"{p}:2: invalid UTF-8",
    }
    return [p, str(d), str(g / "part-*.txt")], expected
