"""Cleaning statistics: per-task counters, their merge, and the JSON + text report.

Invariant checked when merging: documents in = kept + rejected (summed over reasons). Lines that are
not documents (bad JSON, not UTF-8, no text, ...) are the reader's to count (`report["input"]`, the
same accounting every tool prints, with file:line examples).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from hyperclova.corpus.jsonl import write_json_atomic
from hyperclova.data.reader import ReadStats


class TaskStats:
    def __init__(self):
        self.docs_in = self.bytes_in = self.docs_kept = self.bytes_kept = 0
        self.steps: dict = defaultdict(lambda: [0, 0, 0, 0])  # docs in, bytes in, docs out, bytes out
        self.rejected: dict = defaultdict(lambda: [0, 0])  # reason -> docs, bytes
        self.sources: dict = defaultdict(Counter)  # source -> {"in", "kept", reason...}
        self.pii: Counter = Counter()
        self.flags: Counter = Counter()
        self.read = ReadStats()  # lines of this task's input range (line numbers count from its start)

    def doc_in(self, rec: dict) -> None:
        self.docs_in += 1
        self.bytes_in += len(rec["text"].encode("utf-8"))
        self.sources[str(rec.get("source", "unknown"))]["in"] += 1

    def step(self, name: str, size_in: int, size_out: int | None) -> None:
        s = self.steps[name]
        s[0] += 1
        s[1] += size_in
        if size_out is not None:
            s[2] += 1
            s[3] += size_out

    def reject(self, rec: dict, reason: str, size: int) -> None:
        self.rejected[reason][0] += 1
        self.rejected[reason][1] += size
        self.sources[str(rec.get("source", "unknown"))][reason] += 1

    def kept(self, rec: dict, line_bytes: int) -> None:
        self.docs_kept += 1
        self.bytes_kept += len(rec["text"].encode("utf-8"))
        self.sources[str(rec.get("source", "unknown"))]["kept"] += 1

    def to_json(self) -> dict:
        return {"docs_in": self.docs_in, "bytes_in": self.bytes_in, "docs_kept": self.docs_kept,
                "bytes_kept": self.bytes_kept, "steps": dict(self.steps),
                "rejected": dict(self.rejected), "sources": {k: dict(v) for k, v in self.sources.items()},
                "pii": dict(self.pii), "flags": dict(self.flags), "read": self.read.to_json()}


def merge_stats(parts: list[dict], step_names: list[str]) -> dict:
    out = {"docs_in": 0, "bytes_in": 0, "docs_kept": 0, "bytes_kept": 0}
    steps = {n: [0, 0, 0, 0] for n in step_names}
    rejected: dict = defaultdict(lambda: [0, 0])
    sources: dict = defaultdict(Counter)
    pii, flags = Counter(), Counter()
    for p in parts:
        for k in out:
            out[k] += p[k]
        for n, v in p["steps"].items():
            steps.setdefault(n, [0, 0, 0, 0])
            steps[n] = [a + b for a, b in zip(steps[n], v)]
        for r, v in p["rejected"].items():
            rejected[r] = [rejected[r][0] + v[0], rejected[r][1] + v[1]]
        for s, c in p["sources"].items():
            sources[s].update(c)
        pii.update(p["pii"])
        flags.update(p["flags"])
    n_rejected = sum(v[0] for v in rejected.values())
    if out["docs_in"] != out["docs_kept"] + n_rejected:  # a bug, not a user error: fail loudly
        raise AssertionError(f"documents in {out['docs_in']} != kept {out['docs_kept']} + rejected {n_rejected}")
    out.update(docs_rejected=n_rejected,
               steps={n: dict(zip(["docs_in", "bytes_in", "docs_out", "bytes_out"], v)) for n, v in steps.items()},
               rejected={r: {"docs": v[0], "bytes": v[1]} for r, v in sorted(rejected.items())},
               sources={s: dict(sorted(c.items())) for s, c in sorted(sources.items())},
               pii=dict(sorted(pii.items())), flags=dict(sorted(flags.items())))
    return out


def format_report(r: dict) -> str:
    mb = lambda b: f"{b / 1e6:.2f}"  # noqa: E731
    lines = [f"documents in {r['docs_in']}  kept {r['docs_kept']}  rejected {r['docs_rejected']}  "
             f"(text MB in {mb(r['bytes_in'])}, kept {mb(r['bytes_kept'])})",
             ReadStats.from_json(r["input"]).summary(),
             "", f"{'step':<14}{'docs in':>10}{'docs out':>10}{'MB in':>9}{'MB out':>9}"]
    for n, s in r["steps"].items():
        lines.append(f"{n:<14}{s['docs_in']:>10}{s['docs_out']:>10}{mb(s['bytes_in']):>9}{mb(s['bytes_out']):>9}")
    lines += ["", f"{'reason':<20}{'docs':>8}{'MB':>9}"]
    lines += [f"{k:<20}{v['docs']:>8}{mb(v['bytes']):>9}" for k, v in r["rejected"].items()]
    reasons = list(r["rejected"])
    lines += ["", f"{'source':<12}{'in':>8}{'kept':>8}" + "".join(f"{x[:10]:>11}" for x in reasons)]
    for s, c in r["sources"].items():
        lines.append(f"{s:<12}{c.get('in', 0):>8}{c.get('kept', 0):>8}" + "".join(f"{c.get(x, 0):>11}" for x in reasons))
    if r["pii"]:
        lines += ["", "PII masked: " + ", ".join(f"{k} {v}" for k, v in r["pii"].items())]
    if r["flags"]:
        lines += ["flagged (kept): " + ", ".join(f"{k} {v}" for k, v in r["flags"].items())]
    if r.get("dedup"):
        d = r["dedup"]
        lines += ["", "dedup: " + ", ".join(f"{k}={v}" for k, v in d.items())]
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, report: dict) -> None:
    write_json_atomic(out_dir / "report.json", report)
    text = format_report(report)
    tmp = out_dir / "report.txt.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out_dir / "report.txt")
    report["text"] = text
