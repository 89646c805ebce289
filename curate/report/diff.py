"""``curate diff OUT_A OUT_B``: for two runs over the same input, the documents one run
keeps and the other removes, grouped by the step and rule that removed them, with
samples. Printed in the terminal and written as one self-contained HTML page.

Documents match on (source, id). Only the key columns are read to find the
differences (an Arrow join); texts are read for the few samples shown.
"""
from __future__ import annotations

import json
from html import escape
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from curate.basics.errors import CurateError
from curate.report import collect
from curate.report.html import page, table

SAMPLES = 3
_KEYS = ["source", "id"]


def _read(files: list[Path], columns: list[str]) -> pa.Table:
    tables = [t for f in files for t in collect.iter_tables(f, columns)]
    if not tables:
        return pa.table({c: pa.array([], pa.string()) for c in columns})
    return pa.concat_tables(tables).select(columns)


def _check_run(out: Path) -> None:
    if not (out / "manifest.json").is_file():
        raise CurateError(f"{out} holds no finished curate run (manifest.json is missing)")


def _one_way(keeper: Path, remover: Path) -> pa.Table:
    """Rows (source, id, step, reason) removed in ``remover`` whose document ``keeper`` kept."""
    kept = _read(collect.data_files(keeper), _KEYS)
    removed = _read(collect.removed_files(remover), _KEYS + ["step", "reason"])
    both = removed.join(kept, keys=_KEYS, join_type="left semi")
    rules = [collect.parse_reason(r)["rule"] for r in both["reason"].to_pylist()]
    both = both.append_column("rule", pa.array(rules, pa.string()))
    return both.sort_by([("step", "ascending"), ("rule", "ascending"), ("source", "ascending"), ("id", "ascending")])


def _samples(files: list[Path], keys: pa.Table) -> dict[tuple[str, str], dict]:
    """{(source, id): row with text} for the given keys, read from ``files``."""
    found: dict[tuple[str, str], dict] = {}
    if keys.num_rows == 0:
        return found
    want = pa.array(keys["id"].to_pylist(), pa.string())
    wanted = set(zip(keys["source"].to_pylist(), keys["id"].to_pylist()))
    for path in files:
        for t in collect.iter_tables(path, ["source", "id", "text"]):
            for row in t.filter(pc.is_in(t["id"], value_set=want)).to_pylist():
                if (row["source"], row["id"]) in wanted:
                    found.setdefault((row["source"], row["id"]), {**row, "text": row["text"][: collect.TEXT_CHARS]})
    return found


def diff_runs(out_a: str | Path, out_b: str | Path) -> dict:
    """Compare two finished runs. Returns {'a', 'b', 'same_inputs', 'only_a', 'only_b'} where
    ``only_a`` lists the documents A keeps and B removes as {(step, rule): [row]} (rows: source, id,
    reason, text of the samples) and ``only_b`` the other way round."""
    a, b = Path(out_a), Path(out_b)
    _check_run(a)
    _check_run(b)
    inputs = [[(i["path"], i["xxh3_128"]) for i in json.loads((o / "manifest.json").read_text())["inputs"]] for o in (a, b)]
    result = {"a": str(a), "b": str(b), "same_inputs": inputs[0] == inputs[1]}
    for name, keeper, remover in (("only_a", a, b), ("only_b", b, a)):
        rows = _one_way(keeper, remover)
        groups: dict[tuple[str, str], list[dict]] = {}
        for row in rows.to_pylist():
            groups.setdefault((row["step"], row["rule"]), []).append(row)
        picks = pa.Table.from_pylist([r for g in groups.values() for r in g[:SAMPLES]] or [{"source": "", "id": ""}]).select(_KEYS)
        kept_texts = _samples(collect.data_files(keeper), picks)
        removed_texts = _samples(collect.removed_files(remover), picks)
        for group in groups.values():
            for r in group[:SAMPLES]:
                key = (r["source"], r["id"])
                r["kept_text"] = kept_texts.get(key, {}).get("text", "")
                r["removed_text"] = removed_texts.get(key, {}).get("text", "")
        result[name] = groups
    return result


def diff_text(d: dict, show_all: bool = False) -> str:
    """The comparison as terminal lines: counts per step and rule, with samples (every document with ``show_all``)."""
    lines = [f"A = {d['a']}", f"B = {d['b']}"]
    if not d["same_inputs"]:
        lines.append("warning: the two runs read different inputs (manifest fingerprints differ)")
    for name, keeper, remover in (("only_a", "A", "B"), ("only_b", "B", "A")):
        groups = d[name]
        lines.append(f"{keeper} keeps, {remover} removes: {sum(map(len, groups.values()))} document(s)")
        for (step, rule), rows in groups.items():
            lines.append(f"  {step} / {rule}: {len(rows)}")
            for r in rows if show_all else rows[:SAMPLES]:
                snippet = " ".join(r.get("kept_text", "").split())[:100]
                lines.append(f"    {r['source']} {r['id']}: {r['reason']}" + (f" | {snippet}" if snippet else ""))
    return "\n".join(lines)


def diff_html(d: dict) -> str:
    """The comparison as one self-contained HTML page."""
    head = [f"<p>A = {escape(d['a'])}<br>B = {escape(d['b'])}</p>"]
    if not d["same_inputs"]:
        head.append('<p class="warning">The two runs read different inputs (manifest fingerprints differ).</p>')
    summary = [[k, f"{step} / {rule}", len(rows)] for k, name in (("A keeps, B removes", "only_a"), ("B keeps, A removes", "only_b"))
               for (step, rule), rows in d[name].items()]
    sections = [("summary", "<h2>Summary</h2>" + "".join(head) + table(["which", "step / rule", "documents"], summary))]
    for name, title in (("only_a", "A keeps, B removes"), ("only_b", "B keeps, A removes")):
        parts = [f"<h2>{title}: {sum(map(len, d[name].values()))} document(s)</h2>"]
        for (step, rule), rows in d[name].items():
            parts.append(f"<h3>{escape(step)} / {escape(rule)}: {len(rows)}</h3>")
            parts.append(table(["source", "id", "reason"], [[r["source"], r["id"], r["reason"]] for r in rows[:200]]))
            for r in rows[:SAMPLES]:
                parts.append(f"<p>{escape(r['source'])} · id {escape(r['id'])} — {escape(r['reason'])}</p>"
                             f"<pre>{escape(r['kept_text'])}</pre>")
        sections.append((name, "".join(parts)))
    return page("curate diff", sections)
