"""Task readers on hand-written files in the official formats, and their errors."""
from __future__ import annotations

import json

import pytest

from eval_helpers import FIXTURES
from hyperclova.errors import UserError
from hyperclova.eval.formats import read_examples


def test_nsmc_reads_crlf_quotes_and_counts_an_empty_document():
    ex = read_examples("nsmc", FIXTURES / "ratings_test.txt")
    assert len(ex) == 8 and ex.skipped == {"empty_document": 1}
    assert ex.skip_examples["empty_document"] == [f"{FIXTURES / 'ratings_test.txt'}:8"]
    first = ex.items[0]
    assert first.fields == {"id": "6270596", "document": "굳 ㅋ", "label": 1}
    assert ex.items[5].fields["document"] == '"음악이 주가 된, 최고의 음악영화"'  # quotes kept as is
    assert first.where.endswith("ratings_test.txt:2")


@pytest.mark.parametrize("content, message", [
    ("id\tdocument\n1\tx\n", r":1: expected the NSMC header"),
    ("id\tdocument\tlabel\n1\tgood\t1\n2\tbad\n", r":3: expected 3 tab-separated columns"),
    ("id\tdocument\tlabel\n1\tgood\t2\n", r":2: label must be 0 or 1"),
])
def test_nsmc_malformed_names_file_and_line(tmp_path, content, message):
    f = tmp_path / "ratings_test.txt"
    f.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=message):
        read_examples("nsmc", f)


def test_nsmc_reads_through_the_one_reader(tmp_path):
    """Lines the shared reader cannot use are counted with their locations, as in every tool;
    a compressed file reads the same."""
    import gzip

    f = tmp_path / "r.txt"
    data = b"\xef\xbb\xbfid\tdocument\tlabel\n1\tok\t1\n2\t\xff\xfe\t0\n\n3\tfine\t0\n"
    f.write_bytes(data)
    ex = read_examples("nsmc", f)
    assert [e.fields["id"] for e in ex.items] == ["1", "3"]
    assert ex.skipped == {"invalid_utf8": 1, "empty_text": 1}
    assert ex.skip_examples["invalid_utf8"][0].startswith(f"{f}:3")
    z = tmp_path / "r.txt.gz"
    z.write_bytes(gzip.compress(data))
    assert [e.fields for e in read_examples("nsmc", z).items] == [e.fields for e in ex.items]
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(UserError, match=r"empty.txt:1: expected the NSMC header"):
        read_examples("nsmc", tmp_path / "empty.txt")


def test_korquad_reads_every_question_with_its_paragraph():
    ex = read_examples("korquad", FIXTURES / "korquad_dev.json")
    assert len(ex) == 7
    q = ex.items[2]
    assert q.fields["id"] == "6566495-0-2" and q.fields["answers"] == ["《파우스트》", "파우스트"]
    assert q.fields["paragraph"] == "0.0" and ex.items[5].fields["paragraph"] == "0.1"
    assert "data[0].paragraphs[0].qas[2]" in q.where


def test_korquad_errors_name_the_record(tmp_path):
    data = json.loads((FIXTURES / "korquad_dev.json").read_text(encoding="utf-8"))
    del data["data"][0]["paragraphs"][1]["qas"][1]["id"]
    f = tmp_path / "k.json"
    f.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(UserError, match=r"k.json: data\[0\].paragraphs\[1\].qas\[1\]: missing key 'id'"):
        read_examples("korquad", f)
    f.write_text('{"data": [', encoding="utf-8")
    with pytest.raises(UserError, match=r"k.json:1: invalid JSON"):
        read_examples("korquad", f)


def test_ynat_uses_label_strings_and_rejects_unknown_labels(tmp_path):
    ex = read_examples("ynat", FIXTURES / "ynat_dev.json")
    assert [e.fields["label"] for e in ex.items] == ["사회", "사회", "정치", "스포츠", "IT과학"]
    f = tmp_path / "y.json"
    f.write_text(json.dumps([{"guid": "g0", "title": "t", "label": "IT과학"},
                             {"guid": "g1", "title": "t", "label": 3}]), encoding="utf-8")
    with pytest.raises(UserError, match=r"y.json: record 1 \(guid g1\): key 'label' must be str"):
        read_examples("ynat", f)
    f.write_text(json.dumps([{"guid": "g0", "title": "t", "label": "연예"}]), encoding="utf-8")
    with pytest.raises(UserError, match=r"record 0 \(guid g0\): label '연예' is not one of"):
        read_examples("ynat", f)


def test_klue_sts_threshold_at_exactly_three():
    ex = read_examples("klue-sts", FIXTURES / "klue-sts_dev.json")
    at_three = ex.items[2].fields
    assert at_three["score"] == 3.0 and at_three["label"] == 1 and at_three["binary_label"] == 1
    assert [e.fields["label"] for e in ex.items] == [1, 0, 1, 0, 1]
    assert ex.items[0].fields["real_label"] == pytest.approx(4.857142857142857)


def test_parallel_csv_and_xlsx(tmp_path):
    csv_ex = read_examples("parallel", FIXTURES / "aihub_dev.csv", direction="ko-en")
    assert len(csv_ex) == 4 and csv_ex.skipped == {"empty_sentence": 1}
    assert csv_ex.items[1].fields["source"] == "회의는 3시에 시작합니다, 늦지 마세요."
    assert csv_ex.items[1].fields["target"] == "The meeting starts at 3, don't be late."
    assert csv_ex.skip_examples["empty_sentence"][0].endswith("aihub_dev.csv:4")
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["대분류", "소분류", "원문", "번역문"])
    ws.append(["일상", "카페", "아메리카노 한 잔 주세요.", "One americano, please."])
    ws.append(["일상", "카페", 1234, "1234"])  # a numeric cell is read as text
    ws.append([None, None, None, None])
    path = tmp_path / "aihub.xlsx"
    wb.save(path)
    ex = read_examples("parallel", path, direction="en-ko")
    assert [e.fields["source"] for e in ex.items] == ["One americano, please.", "1234"]
    assert ex.items[0].fields["target"] == "아메리카노 한 잔 주세요." and ex.items[0].where.endswith(":2")
    bad = tmp_path / "bad.tsv"
    bad.write_text("ko\ten\n안녕\thello\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.tsv:1: header lacks column\(s\) \['원문', '번역문'\]"):
        read_examples("parallel", bad)
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"not a zip")
    with pytest.raises(UserError, match="broken.xlsx: not a readable .xlsx"):
        read_examples("parallel", broken)
