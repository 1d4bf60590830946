"""Readers for the tasks' official file formats, as users download them.

Each reader returns `Examples`: a list of `Example(fields, where)` plus the records it skipped,
counted by reason with their locations. A file that does not have the format's shape (missing
columns or keys, a label outside the task's set, broken JSON) stops with a `UserError` naming the
file and the line or record; a record that is well formed but unusable (an empty NSMC document, an
empty sentence of a parallel pair) is skipped and counted, never silently lost.

| format | file | fields of an example |
|---|---|---|
| `nsmc` | `ratings_*.txt`: TSV with header `id document label` (through the one reader) | id, document, label (0/1) |
| `korquad` | KorQuAD 1.0 / SQuAD v1.1 JSON | id, question, context, answers, paragraph |
| `ynat` | `ynat-v1.1_*.json`: JSON array | guid, title, label (topic name) |
| `klue-sts` | `klue-sts-v1.1_*.json`: JSON array | guid, sentence1, sentence2, label, real_label, binary_label |
| `parallel` | AI Hub Ko-En `.xlsx`, `.csv` or `.tsv` with `원문`/`번역문` columns | source, target, ko, en |
| `jsonl` | JSON lines or text through the one reader (`hyperclova.data.reader`) | the record's keys |
"""
from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hyperclova.errors import UserError

EXAMPLES_PER_REASON = 5


@dataclass
class Example:
    fields: dict[str, Any]
    where: str  # "file:line" or "file: record" — for messages and the predictions file


@dataclass
class Examples:
    path: str
    items: list[Example] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    skip_examples: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, where: str) -> None:
        self.skipped[reason] += 1
        self.skip_examples.setdefault(reason, [])
        if len(self.skip_examples[reason]) < EXAMPLES_PER_REASON:
            self.skip_examples[reason].append(where)

    def summary(self) -> dict:
        return {"path": self.path, "read": len(self.items) + sum(self.skipped.values()),
                "kept": len(self.items), "skipped": dict(self.skipped),
                "skip_examples": self.skip_examples}

    def __len__(self) -> int:
        return len(self.items)


# --- NSMC ----------------------------------------------------------------------------------------

NSMC_HEADER = ["id", "document", "label"]


def read_nsmc(path: str | Path, **_) -> Examples:
    """NSMC's TSV, line by line through the one reader (CRLF, a BOM, .gz/.zst as everywhere);
    lines the reader cannot use (invalid UTF-8, NUL bytes, blank) are counted, not fatal."""
    from hyperclova.data.reader import ReadStats, expand_inputs, iter_records

    out = Examples(str(path))
    stats = ReadStats()
    header = True
    for rec in iter_records(expand_inputs([str(path)], input_format="text"), stats=stats):
        line, where = rec.texts[0], f"{rec.path}:{rec.line}"
        if header:
            if rec.line != 1 or line.split("\t") != NSMC_HEADER:
                got = line[:80] if rec.line == 1 else f"no usable first line ({stats.summary()})"
                raise UserError(f"{rec.path}:1: expected the NSMC header 'id<TAB>document<TAB>label', "
                                f"got {got!r}")
            header = False
            continue
        cols = line.split("\t")
        if len(cols) != 3:
            raise UserError(f"{where}: expected 3 tab-separated columns (id, document, label), "
                            f"got {len(cols)}")
        rid, doc, label = cols
        if label not in ("0", "1"):
            raise UserError(f"{where}: label must be 0 or 1, got {label!r}")
        if not doc.strip():
            out.skip("empty_document", where)
            continue
        out.items.append(Example({"id": rid, "document": doc, "label": int(label)}, where))
    if header:
        raise UserError(f"{path}:1: expected the NSMC header 'id<TAB>document<TAB>label', got "
                        "an empty file")
    _count_reader_skips(out, stats)
    return out


# --- KorQuAD 1.0 ---------------------------------------------------------------------------------

def read_korquad(path: str | Path, **_) -> Examples:
    out = Examples(str(path))
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise UserError(f"{path}: expected a KorQuAD/SQuAD v1.1 object with a 'data' list")
    seen: set[str] = set()
    for a, article in enumerate(data["data"]):
        paragraphs = _get(article, "paragraphs", list, f"{path}: data[{a}]")
        for p, para in enumerate(paragraphs):
            loc = f"{path}: data[{a}].paragraphs[{p}]"
            context = _get(para, "context", str, loc)
            for q, qa in enumerate(_get(para, "qas", list, loc)):
                qloc = f"{loc}.qas[{q}]"
                qid = _get(qa, "id", str, qloc)
                if qid in seen:
                    raise UserError(f"{qloc}: duplicate question id {qid!r}")
                seen.add(qid)
                answers = []
                for i, ans in enumerate(_get(qa, "answers", list, qloc)):
                    answers.append(_get(ans, "text", str, f"{qloc}.answers[{i}]"))
                    _get(ans, "answer_start", int, f"{qloc}.answers[{i}]")
                if not answers:
                    out.skip("no_answer", qloc)
                    continue
                out.items.append(Example({"id": qid, "question": _get(qa, "question", str, qloc),
                                          "context": context, "answers": answers,
                                          "answer": answers[0], "paragraph": f"{a}.{p}"}, qloc))
    return out


# --- KLUE ----------------------------------------------------------------------------------------

YNAT_LABELS = ("IT과학", "경제", "사회", "생활문화", "세계", "스포츠", "정치")


def read_ynat(path: str | Path, labels: tuple[str, ...] | None = None, **_) -> Examples:
    """KLUE-YNAT; `labels` is the task's label set (default: YNAT's seven topic names)."""
    labels = tuple(labels or YNAT_LABELS)
    out = Examples(str(path))
    for rec, guid, loc in _klue_records(path):
        title, label = _get(rec, "title", str, loc), _get(rec, "label", str, loc)
        if label not in labels:
            raise UserError(f"{loc}: label {label!r} is not one of the task's labels {list(labels)}")
        if not title.strip():
            out.skip("empty_title", loc)
            continue
        out.items.append(Example({"guid": guid, "title": title, "label": label}, loc))
    return out


def read_klue_sts(path: str | Path, **_) -> Examples:
    out = Examples(str(path))
    for rec, guid, loc in _klue_records(path):
        s1, s2 = _get(rec, "sentence1", str, loc), _get(rec, "sentence2", str, loc)
        labels = _get(rec, "labels", dict, loc)
        label = _get(labels, "label", (int, float), f"{loc}: labels")
        real = _get(labels, "real-label", (int, float), f"{loc}: labels")
        binary = _get(labels, "binary-label", int, f"{loc}: labels")
        if not s1.strip() or not s2.strip():
            out.skip("empty_sentence", loc)
            continue
        out.items.append(Example({"guid": guid, "sentence1": s1, "sentence2": s2,
                                  "label": int(label >= 3.0), "score": float(label),
                                  "real_label": float(real), "binary_label": binary}, loc))
    return out


# --- AI Hub Korean-English parallel corpus ---------------------------------------------------------

KO_COLUMN, EN_COLUMN = "원문", "번역문"


def read_parallel(path: str | Path, direction: str = "ko-en", **_) -> Examples:
    """Rows with `원문` (Korean) and `번역문` (English) columns, from .xlsx, .csv or .tsv.
    `direction` "ko-en" makes 원문 the source; "en-ko" the reverse."""
    if direction not in ("ko-en", "en-ko"):
        raise UserError(f"direction must be 'ko-en' or 'en-ko', got {direction!r}")
    suffix = Path(path).suffix.lower()
    if suffix == ".xlsx":
        rows = _xlsx_rows(path)
    elif suffix in (".csv", ".tsv"):
        rows = _csv_rows(path, "\t" if suffix == ".tsv" else ",")
    else:
        raise UserError(f"{path}: parallel corpus files must be .xlsx, .csv or .tsv")
    out = Examples(str(path))
    header = next(rows, None)
    if header is None:
        raise UserError(f"{path}: empty file")
    header_row, names = header
    names = [str(c).strip().lstrip("\ufeff") if c is not None else "" for c in names]
    missing = [c for c in (KO_COLUMN, EN_COLUMN) if c not in names]
    if missing:
        raise UserError(f"{path}:{header_row}: header lacks column(s) {missing} "
                        f"(found {names[:10]}); the AI Hub release names them 원문 and 번역문")
    ko_i, en_i = names.index(KO_COLUMN), names.index(EN_COLUMN)
    for row_no, row in rows:
        where = f"{path}:{row_no}"
        if all(c is None or str(c).strip() == "" for c in row):
            continue  # spreadsheets end with blank rows
        cell = lambda i: "" if i >= len(row) or row[i] is None else str(row[i]).strip()
        ko, en = cell(ko_i), cell(en_i)
        if not ko or not en:
            out.skip("empty_sentence", where)
            continue
        src, tgt = (ko, en) if direction == "ko-en" else (en, ko)
        out.items.append(Example({"source": src, "target": tgt, "ko": ko, "en": en}, where))
    return out


def _xlsx_rows(path):
    try:
        import openpyxl
    except ImportError as e:
        raise UserError("reading .xlsx needs openpyxl: pip install 'hyperclova[eval]'") from e
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # openpyxl raises several unrelated types for a broken file
        raise UserError(f"{path}: not a readable .xlsx workbook ({type(e).__name__}: {e})") from e
    sheet = wb.worksheets[0]
    for n, row in enumerate(sheet.iter_rows(values_only=True), start=1):
        yield n, list(row)
    wb.close()


def _csv_rows(path, delimiter: str):
    text = _read_text(path)
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    try:
        for row in reader:
            yield reader.line_num, row
    except csv.Error as e:
        raise UserError(f"{path}:{reader.line_num}: {e}") from e


# --- JSON lines / text (the shared reader) -------------------------------------------------------

def read_jsonl(path: str | Path, json_keys: tuple[str, ...] = ("text",), strict: bool = False,
               **_) -> Examples:
    """Generic JSONL/text task files through the one input reader: each kept record's whole object
    (or {"text": line} for text files) becomes the example's fields."""
    from hyperclova.data.reader import ReadStats, expand_inputs, iter_records

    out = Examples(str(path))
    stats = ReadStats()
    for rec in iter_records(expand_inputs([str(path)]), json_keys=tuple(json_keys), strict=strict,
                            stats=stats):
        fields = dict(rec.record) if rec.record else {json_keys[0]: rec.texts[0]}
        out.items.append(Example(fields, f"{rec.path}:{rec.line}"))
    _count_reader_skips(out, stats)
    return out


def _count_reader_skips(out: Examples, stats) -> None:
    for reason, n in stats.skipped.items():
        out.skipped[reason] += n
        out.skip_examples[reason] = list(stats.examples.get(reason, []))[:EXAMPLES_PER_REASON]


READERS: dict[str, Callable[..., Examples]] = {
    "nsmc": read_nsmc, "korquad": read_korquad, "ynat": read_ynat, "klue-sts": read_klue_sts,
    "parallel": read_parallel, "jsonl": read_jsonl,
}


def read_examples(fmt: str, path: str | Path, **options) -> Examples:
    if fmt not in READERS:
        raise UserError(f"unknown task file format {fmt!r}; expected one of {sorted(READERS)}")
    if not Path(path).is_file():
        raise UserError(f"task file {str(path)!r} does not exist")
    return READERS[fmt](path, **options)


# --- helpers -------------------------------------------------------------------------------------

def _read_text(path) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: invalid UTF-8 (byte {e.start}); the official files are UTF-8") from None
    return text.lstrip("\ufeff")


def _load_json(path) -> Any:
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: invalid JSON ({e.msg}, column {e.colno})") from None


def _json_array(path) -> list:
    data = _load_json(path)
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON array of records (the KLUE v1.1 format)")
    return data


def _klue_records(path):
    """(record, guid, location) for each record of a KLUE v1.1 JSON array; errors name the guid."""
    for i, rec in enumerate(_json_array(path)):
        guid = _get(rec, "guid", str, f"{path}: record {i}")
        yield rec, guid, f"{path}: record {i} (guid {guid})"


def _get(obj: Any, key: str, types, where: str) -> Any:
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected an object, got {type(obj).__name__}")
    if key not in obj:
        raise UserError(f"{where}: missing key {key!r}")
    value = obj[key]
    if not isinstance(value, types) or (types in (int, (int, float)) and isinstance(value, bool)):
        names = types.__name__ if isinstance(types, type) else "/".join(t.__name__ for t in types)
        raise UserError(f"{where}: key {key!r} must be {names}, got {type(value).__name__}")
    return value
