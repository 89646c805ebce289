"""``OUT/report.html``: one self-contained page about a finished run (inline PNG plots,
no script, every data string escaped), drawn from the files the run left:
``stats.json``, ``manifest.json``, ``removed/``, ``rejects/`` and ``data/``.

Sections (``<section id=...>``): funnel, rules, samples, scores, dedup, rejects,
languages, timing, manifest. ``curate report OUT`` redraws it.
"""
from __future__ import annotations

import json
from html import escape
from pathlib import Path

import numpy as np

from curate.basics.errors import CurateError
from curate.basics.files import atomic_path
from curate.report import collect
from curate.report.html import bars, page, png, subplots, table

DEDUP_STEPS = {"exact_dedup", "minhash_dedup"}


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f}"


def _funnel(stats: dict) -> str:
    steps = stats["steps"]
    parsed = stats["read"] - stats["rejected"]
    rows = [["read (records)", stats["read"], None, None, None, None],
            ["rejected (unreadable)", parsed, stats["rejected"], None, None, None]]
    rows += [[s["step"], s["in"], s["removed"], s["kept"], _mb(s.get("bytes_in", 0)), _mb(s.get("bytes_kept", 0))] for s in steps]
    figure = ""
    if steps:  # with no step the figure would only repeat the sentence above it
        labels = ["read", "parsed"] + [s["step"] for s in steps]
        docs = [stats["read"], parsed] + [s["kept"] for s in steps]
        figure = bars("documents remaining", list(zip(labels, docs)))
        if steps[0].get("bytes_in"):
            mb = [steps[0]["bytes_in"] / 1e6] + [s["bytes_kept"] / 1e6 for s in steps]
            figure = f'<div class="pair">{figure}{bars("MB of text remaining", list(zip(labels[1:], mb)), "#7bb74a")}</div>'
    balance = "balanced" if stats["balanced"] else "NOT BALANCED"
    return (f"<h2>Funnel</h2><p>read {stats['read']} = written {stats['written']} + removed {stats['removed']}"
            f" + rejected {stats['rejected']} ({balance}), {stats['shards']} shard(s), {stats['seconds']:.1f} s.</p>"
            + figure + table(["step", "in", "removed", "kept", "MB in", "MB kept"], rows))


def _rules(stats: dict, rules: dict, params: dict) -> str:
    rows = []
    for s in stats["steps"]:
        for rule, n in sorted(s["removed_by_rule"].items(), key=lambda kv: -kv[1]):
            found = rules.get((s["step"], rule), {}).get("thresholds", {})
            thresholds = "; ".join(t for t, _ in found.most_common(3)) if found else None
            rows.append([s["step"], rule, n, f"{n / max(s['in'], 1):.1%}", thresholds, json.dumps(params.get(s["step"], {}))])
    if not rows:
        return "<h2>Removals by rule</h2><p class=\"note\">No step removed anything.</p>"
    chart = bars("documents removed", [(f"{r[0]}: {r[1]}", r[2]) for r in rows], "#b74a4a")
    return ("<h2>Removals by rule</h2>" + chart
            + table(["step", "rule", "removed", "of step input", "thresholds seen", "step settings"], rows))


def _samples(rules: dict) -> str:
    parts = ["<h2>Removed documents, per rule</h2><p>A few documents each rule removed, with the value "
             "measured on the document next to the rule's threshold.</p>"]
    for (step, rule), entry in rules.items():
        parts.append(f"<h3>{escape(step)}: {escape(rule)}</h3>")
        for row in entry["samples"]:
            measured = (f"measured <b>{escape(row['value'])}</b> {escape(row['op'])} threshold <b>{escape(row['threshold'])}</b>"
                        if row["value"] is not None else escape(row["reason"]))
            parts.append(f'<p class="sample">{escape(row["source"])} · id {escape(row["id"])} — {measured}</p>'
                         f"<pre>{escape(row['text'])}</pre>")
    return "".join(parts)


def _thresholds_for(key: str, rules: dict, params: dict) -> list[float]:
    values = set()
    for (_, rule), entry in rules.items():
        if rule == key:
            for t in entry["thresholds"]:
                try:
                    values.add(float(t.split()[-1]))
                except ValueError:
                    pass
    step, param = collect.THRESHOLD_PARAMS.get(key, (None, None))
    if not values and isinstance(params.get(step, {}).get(param), (int, float)):
        values.add(float(params[step][param]))
    return sorted(values)


def _scores(scores: dict, rules: dict, params: dict) -> str:
    head = "<h2>Score distributions</h2>"
    if not scores:
        return head + '<p class="note">No step wrote a score (lang_score, quality, perplexity, reward, ifd).</p>'
    parts = [head]
    for key, sides in scores.items():
        both = np.concatenate([sides["kept"], sides["removed"]])
        edges = np.histogram_bin_edges(both, bins=40)
        fig, ax = subplots(figsize=(7, 3))
        ax.hist([sides["kept"], sides["removed"]], bins=edges, stacked=True, label=["kept", "removed"], color=["#4a7bb7", "#b74a4a"])
        lines = _thresholds_for(key, rules, params)
        for t in lines:
            ax.axvline(t, color="black", linestyle="--", label=f"threshold {t:g}")
        ax.set_xlabel(key)
        ax.set_ylabel("documents")
        ax.legend(fontsize=8)
        q = np.percentile(both, [10, 50, 90]) if both.size else [None] * 3
        parts += [f"<h3>{escape(key)}</h3>", png(fig),
                  table(["kept", "removed", "p10", "p50", "p90", "threshold(s)"],
                        [[sides["kept"].size, sides["removed"].size, *map(float, q), ", ".join(f"{t:g}" for t in lines) or None]])]
    return "".join(parts)


def _dedup(stats: dict, clusters: dict, kept: dict) -> str:
    parts = ["<h2>Deduplication</h2>"]
    dedup = [s for s in stats["steps"] if s.get("global", {}).get("cluster_sizes") is not None]
    if not dedup:
        return parts[0] + '<p class="note">No dedup step ran.</p>'
    fig, ax = subplots(figsize=(7, 3))
    for s in dedup:
        sizes = sorted((int(k), v) for k, v in s["global"]["cluster_sizes"].items())
        if sizes:
            ax.bar([str(k) for k, _ in sizes], [v for _, v in sizes], label=s["step"], alpha=0.7)
    ax.set_xlabel("cluster size (documents)")
    ax.set_ylabel("clusters")
    if ax.get_legend_handles_labels()[0]:  # no bars when no step found a cluster
        ax.legend(fontsize=8)
    parts.append(png(fig))
    parts.append(table(["step", "clusters", "removed", "candidate pairs"],
                       [[s["step"], s["global"].get("clusters"), s["removed"], s["global"].get("candidate_pairs")] for s in dedup]))
    for cluster, members in clusters.items():
        head = kept.get(members[0]["extra_kept_id"]) if members else None
        left = (f"<p>kept: {escape(head['source'])} · id {escape(head['id'])}</p><pre>{escape(head['text'])}</pre>" if head
                else "<p class=\"note\">kept document not found in the output</p>")
        right = "".join(f"<p>removed ({escape(m['step'])}): {escape(m['source'])} · id {escape(m['id'])}</p>"
                        f"<pre>{escape(m['text'])}</pre>" for m in members)
        parts.append(f"<h3>cluster {escape(cluster)}</h3><div class=\"pair\"><div>{left}</div><div>{right}</div></div>")
    return "".join(parts)


def _rejects(kinds: dict) -> str:
    head = "<h2>Rejects</h2>"
    if not kinds:
        return head + '<p class="note">No input record was rejected.</p>'
    parts = [head, table(["reason", "records"], [[k, v["count"]] for k, v in kinds.items()])]
    for kind, v in kinds.items():
        parts.append(f"<h3>{escape(kind)}</h3>")
        parts.append(table(["source:line", "reason", "raw (first bytes)"],
                           [[f"{r['source']}:{r['line']}", r["reason"], r["raw"][:120]] for r in v["samples"]]))
    return "".join(parts)


def _languages(stats: dict, langs: dict) -> str:
    head = "<h2>Languages</h2>"
    if not any(s["step"] == "language" for s in stats["steps"]):
        return head + '<p class="note">The language step did not run.</p>'
    steps = [s["step"] for s in stats["steps"]]
    order = sorted(langs, key=lambda k: -sum(langs[k].values()))
    rows = [[lang, sum(langs[lang].values()), langs[lang]["kept"], *[langs[lang][s] or None for s in steps]] for lang in order]
    return head + table(["language", "documents", "kept", *[f"removed by {s}" for s in steps]], rows)


def _timing(stats: dict) -> str:
    steps = stats["steps"]
    if not steps:
        return f"<h2>Time per step</h2><p>No steps; the run took {stats['seconds']:.1f} s.</p>"
    # Beside the steps: the tasks' set-up and their reading, writing and bookkeeping (older runs lack them).
    extra = [(name, stats[key]) for name, key in (("(set-up)", "setup_seconds"), ("(read + write)", "io_seconds")) if key in stats]
    chart = bars("seconds (summed over workers)", [(s["step"], s["seconds"]) for s in steps] + extra, "#888")
    rows = [[s["step"], s["seconds"], s["in"] / s["seconds"] if s["seconds"] else None] for s in steps]
    rows += [[name, value, None] for name, value in extra]
    return (f"<h2>Time per step</h2><p>Whole run: {stats['seconds']:.1f} s wall.</p>" + chart
            + table(["step", "seconds", "documents/s"], rows))


def _manifest(manifest: dict) -> str:
    files = table(["file", "rows", "bytes", "sha256"], [[f["path"], f["rows"], f["bytes"], f["sha256"]] for f in manifest["files"]])
    inputs = table(["input", "bytes", "xxh3_128"], [[i["path"], i.get("bytes"), i["xxh3_128"]] for i in manifest["inputs"]])
    return (f"<h2>Manifest</h2><p>curate {escape(str(manifest['version']))}, config fingerprint "
            f"{escape(manifest['config_fingerprint'])}</p><h3>Outputs</h3>{files}<h3>Inputs</h3>{inputs}"
            f"<h3>Config</h3><pre>{escape(json.dumps(manifest['config'], indent=2, ensure_ascii=False))}</pre>")


def render_run_report(out: str | Path) -> str:
    """The report of the finished run in ``out`` as one HTML string."""
    out = Path(out)
    if not (out / "stats.json").is_file() or not (out / "manifest.json").is_file():
        raise CurateError(f"{out} holds no finished curate run (stats.json and manifest.json are missing)")
    stats = json.loads((out / "stats.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    params = {s.get("step"): {k: v for k, v in s.items() if k != "step"} for s in manifest["config"].get("steps", [])}
    rules, clusters = collect.removal_samples(out, DEDUP_STEPS)
    for members in clusters.values():
        for m in members:
            m["extra_kept_id"] = json.loads(m["extra"]).get("kept_id")
    kept = collect.texts_by_id(out, {m["extra_kept_id"] for ms in clusters.values() for m in ms if m["extra_kept_id"]})
    sections = [
        ("funnel", _funnel(stats)), ("rules", _rules(stats, rules, params)), ("samples", _samples(rules)),
        ("scores", _scores(collect.scores(out), rules, params)), ("dedup", _dedup(stats, clusters, kept)),
        ("rejects", _rejects(collect.rejects(out))), ("languages", _languages(stats, collect.languages(out))),
        ("timing", _timing(stats)), ("manifest", _manifest(manifest)),
    ]
    return page(f"curate run: {out.name}", sections)


def write_run_report(out: str | Path) -> Path:
    """Write ``out/report.html`` (atomically) and return its path."""
    path = Path(out) / "report.html"
    html = render_run_report(out)
    with atomic_path(path) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return path
