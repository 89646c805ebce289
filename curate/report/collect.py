"""Read what a run left in its output folder into the plain figures the run report
draws: removal samples per rule, score values, dedup clusters, rejects by reason,
language counts. Every reader streams Parquet in batches and keeps only counts,
values of the scores and a handful of samples, so memory does not grow with the run.
"""
from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SCORE_KEYS = ("lang_score", "quality", "perplexity", "reward", "ifd")
# Where a score's threshold lives in a step's config when no removal reason names it.
THRESHOLD_PARAMS = {"lang_score": ("language", "min_score"), "quality": ("quality_filter", "threshold"),
                    "reward": ("reward", "min_reward")}
SAMPLES_PER_RULE = 3
CLUSTERS_SHOWN = 4
TEXT_CHARS = 600
_REASON = re.compile(r"^(?P<rule>\S+) (?P<value>\S+) (?P<op><=|>=|<|>|==|!=|not in|in|below top) (?P<threshold>.+)$")
_NUMBER = re.compile(r"(?<![\w-])\d+")


def parse_reason(reason: str) -> dict:
    """Split a removal reason such as ``'stop_words 1 < 2'`` into rule, measured value,
    comparison and threshold; reasons of another shape give just the rule."""
    m = _REASON.match(reason)
    if m:
        return m.groupdict()
    rule = reason.split(None, 1)[0].rstrip(":") if reason.strip() else "?"
    return {"rule": rule, "value": None, "op": None, "threshold": None}


def reject_kind(reason: str) -> str:
    """A reject reason with its numbers blanked, so that 'at byte 5' and 'at byte 9' group together."""
    return _NUMBER.sub("N", reason)


def data_files(out: Path) -> list[Path]:
    return sorted((out / "data").glob("*.parquet")) + sorted((out / "data").glob("*.jsonl"))


def removed_files(out: Path) -> list[Path]:
    return sorted((out / "removed").glob("*.parquet"))


def iter_tables(path: Path, columns: list[str], batch_rows: int = 8192) -> Iterator[pa.Table]:
    """Batches of ``columns`` from a Parquet file, or from a JSONL output file (meta re-encoded as JSON text)."""
    if path.suffix == ".parquet":
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=columns):
            yield pa.Table.from_batches([batch])
        return
    rows: list[dict] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            row["meta"] = json.dumps(row.get("meta") or {}, ensure_ascii=False, sort_keys=True)
            rows.append({c: row.get(c) for c in columns})
            if len(rows) == batch_rows:
                yield pa.Table.from_pylist(rows)
                rows = []
    if rows:
        yield pa.Table.from_pylist(rows)


def _meta_number(meta: pa.ChunkedArray, key: str) -> np.ndarray:
    # Top-level keys of meta (json.dumps with sort_keys) follow '{' or ', '; values inside strings escape their quotes.
    found = pc.extract_regex(meta, rf'(?:^\{{|, )"{re.escape(key)}": (?P<v>-?[0-9][0-9.eE+-]*)')
    values = pc.struct_field(found, [0]).drop_null()
    return np.asarray(pc.cast(values, pa.float64()), dtype=np.float64)


def _meta_string(meta: pa.ChunkedArray, key: str) -> list[str | None]:
    found = pc.extract_regex(meta, rf'(?:^\{{|, )"{re.escape(key)}": "(?P<v>[^"\\]*)"')
    return pc.struct_field(found, [0]).to_pylist()


def scores(out: Path) -> dict[str, dict[str, np.ndarray]]:
    """For each score key present: {'kept': values, 'removed': values} over the output."""
    found: dict[str, dict[str, list]] = {k: {"kept": [], "removed": []} for k in SCORE_KEYS}
    for side, files in (("kept", data_files(out)), ("removed", removed_files(out))):
        for path in files:
            for t in iter_tables(path, ["meta"]):
                for key in SCORE_KEYS:
                    found[key][side].append(_meta_number(t["meta"], key))
    result = {}
    for key, sides in found.items():
        arrays = {side: np.concatenate(v) if v else np.zeros(0) for side, v in sides.items()}
        if sum(a.size for a in arrays.values()):
            result[key] = arrays
    return result


def languages(out: Path) -> dict[str, Counter]:
    """Per language code (``meta.lang``): documents kept and removed by each step."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for path in data_files(out):
        for t in iter_tables(path, ["meta"]):
            for lang in _meta_string(t["meta"], "lang"):
                counts[lang or "(none)"]["kept"] += 1
    for path in removed_files(out):
        for t in iter_tables(path, ["meta", "step"]):
            for lang, step in zip(_meta_string(t["meta"], "lang"), t["step"].to_pylist()):
                counts[lang or "(none)"][step] += 1
    return dict(counts)


def removal_samples(out: Path, dedup_steps: set[str]) -> tuple[dict, dict]:
    """({(step, rule): {'thresholds': Counter, 'samples': [row]}}, {cluster_id: [removed rows]})
    with a few samples per rule and the first few dedup clusters. A first pass reads only
    step, reason and extra (each distinct reason parsed once); a second reads the text of the
    rows it picked."""
    rules: dict[tuple[str, str], dict] = {}
    clusters: dict[str, list[int]] = {}
    picks: set[int] = set()
    offset = 0
    for path in removed_files(out):
        for t in iter_tables(path, ["step", "reason", "extra"]):
            steps, reasons = t["step"].to_pylist(), t["reason"].to_pylist()
            keys = {}  # (step, reason) -> that rule's entry
            for (step, reason), n in Counter(zip(steps, reasons)).items():
                parsed = parse_reason(reason)
                entry = keys[step, reason] = rules.setdefault((step, parsed["rule"]), {"thresholds": Counter(), "samples": []})
                if parsed["threshold"] is not None:
                    entry["thresholds"][f"{parsed['op']} {parsed['threshold']}"] += n
            cluster_of = _cluster_ids(t, dedup_steps)
            for k, pair in enumerate(zip(steps, reasons)):
                samples = keys[pair]["samples"]
                if len(samples) < SAMPLES_PER_RULE:
                    samples.append(offset + k)
                    picks.add(offset + k)
            for k, cluster in cluster_of:
                if cluster in clusters or len(clusters) < CLUSTERS_SHOWN:
                    clusters.setdefault(cluster, []).append(offset + k)
                    picks.add(offset + k)
            offset += t.num_rows
    rows = _picked_rows(out, picks)
    for entry in rules.values():
        entry["samples"] = [rows[i] for i in entry["samples"]]
    return rules, {c: [rows[i] for i in members] for c, members in clusters.items()}


def _cluster_ids(t: pa.Table, dedup_steps: set[str]) -> list[tuple[int, str]]:
    """(row, cluster id as text) of the dedup removals in a table of removed/ rows."""
    is_dedup = pc.is_in(t["step"], value_set=pa.array(sorted(dedup_steps), pa.string()))
    rows = pc.indices_nonzero(is_dedup).to_pylist()
    if not rows:
        return []
    extras = t["extra"].take(pa.array(rows, pa.int64())).to_pylist()
    found = [(k, json.loads(extra or "{}").get("cluster_id")) for k, extra in zip(rows, extras)]
    return [(k, str(c)) for k, c in found if c is not None]


def _picked_rows(out: Path, picks: set[int]) -> dict[int, dict]:
    """{run-wide row number: row with parsed reason and shortened text} for the picked rows of removed/."""
    rows: dict[int, dict] = {}
    offset = 0
    for path in removed_files(out):
        n = pq.ParquetFile(path).metadata.num_rows
        if any(offset <= i < offset + n for i in picks):
            for t in iter_tables(path, ["id", "text", "source", "step", "reason", "extra"]):
                here = sorted(i for i in picks if offset <= i < offset + t.num_rows)
                if here:
                    taken = t.take(pa.array([i - offset for i in here], pa.int64())).to_pylist()
                    for i, row in zip(here, taken):
                        rows[i] = {**row, **parse_reason(row["reason"]), "text": row["text"][:TEXT_CHARS]}
                offset += t.num_rows
        else:
            offset += n
    return rows


def texts_by_id(out: Path, ids: set[str]) -> dict[str, dict]:
    """The rows (kept or removed) whose id is in ``ids``: the kept side of dedup clusters."""
    found: dict[str, dict] = {}
    if not ids:
        return found
    want = pa.array(sorted(ids), pa.string())
    for path in data_files(out) + removed_files(out):
        for t in iter_tables(path, ["id", "text", "source"]):
            hits = t.filter(pc.is_in(t["id"], value_set=want))
            for row in hits.to_pylist():
                found.setdefault(row["id"], {**row, "text": row["text"][:TEXT_CHARS]})
    return found


def rejects(out: Path, samples: int = 5) -> dict[str, dict]:
    """Rejects grouped by reason kind: {'count': n, 'samples': [{source, line, reason, raw}]}."""
    kinds: dict[str, dict] = {}
    for path in sorted((out / "rejects").glob("*.jsonl")):
        with open(path, encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                entry = kinds.setdefault(reject_kind(r["reason"]), {"count": 0, "samples": []})
                entry["count"] += 1
                if len(entry["samples"]) < samples:
                    entry["samples"].append(r)
    return dict(sorted(kinds.items(), key=lambda kv: -kv[1]["count"]))
