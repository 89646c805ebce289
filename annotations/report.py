"""Render a vendor profile (from :func:`annotations.profile.profile_vendors`) as one
self-contained HTML page: plots are inline PNG data URIs drawn with matplotlib's Agg
backend, there is no script and no external link, and every string that came from
data or config passes through ``html.escape``.

Sections (``<section id=...>``): summary, lengths, checks, overlap, scores, worst.
"""
from __future__ import annotations

from html import escape

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["text.parse_math"] = False  # labels are data (vendor names): a '$' is not mathtext
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from annotations.profile import LENGTH_EDGES  # noqa: E402
from curate.report.html import STYLE, page  # noqa: E402,F401  (STYLE: other reports import it from here)
from curate.report.html import png as png_img  # noqa: E402
from curate.report.html import table as html_table  # noqa: E402

SCORE_NOTES = {
    "ifd": "Instruction-following difficulty: the answer's loss given its prompt divided by its loss alone. "
           "Low: the prompt makes the answer easy; 1 or more (dashed line): the prompt does not help, "
           "the mark of an answer that does not fit its prompt.",
}


def summary_html(profile: dict) -> str:
    header = ["vendor", "read", "kept", "removed", "rejected", "kinds", "turns (mean)", "prompt words p50",
              "answer words p50", "answer tokens p50", "distinct-1 (type/token)", "distinct-2", "exact dup", "near dup",
              "languages", "price/example", "cost/kept"]
    rows = []
    for name, v in profile["vendors"].items():
        c, lengths = v["counts"], v["lengths"]
        langs = ", ".join(f"{k} {p:.0%}" for k, p in list(v["languages"].items())[:3]) if v["languages"] else None
        rows.append([name, c["read"], c["kept"], c["removed"], c["rejected"],
                     ", ".join(f"{k} {n}" for k, n in c["kinds"].items()), v["turns"].get("mean"),
                     lengths["prompt_words"].get("p50"), lengths["answer_words"].get("p50"),
                     lengths.get("answer_tokens", {}).get("p50"), v["diversity"]["distinct_1"],
                     v["diversity"]["distinct_2"], v["exact_duplicate_rate"], v["near_duplicate_rate"],
                     langs, v["price_per_example"], v["cost_per_kept"]])
    notes = []
    if profile["skipped_checks"]:
        notes.append("not run (no language-ID model given): " + ", ".join(profile["skipped_checks"]))
    if not profile["settings"]["tokenizer"]:
        notes.append("token lengths not measured (no tokenizer given)")
    note = "".join(f'<p class="note">{escape(n)}</p>' for n in notes)
    return "<h2>Summary</h2>" + html_table(header, rows) + note


def _lengths(profile: dict) -> str:
    keys = [k for k in ("prompt_words", "answer_words", "prompt_tokens", "answer_tokens")
            if any(k in v["lengths"] for v in profile["vendors"].values())]
    rows = (len(keys) + 1) // 2
    fig, axes = plt.subplots(rows, 2, figsize=(9, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(keys):]:
        ax.set_visible(False)
    for ax, key in zip(axes.flat, keys):
        for name, v in profile["vendors"].items():
            hist = v["lengths"].get(key, {}).get("histogram")
            if hist and sum(hist):
                share = np.asarray(hist) / sum(hist)
                ax.stairs(share, np.maximum(LENGTH_EDGES, 0.5), label=name)
        ax.set_xscale("log", base=2)
        ax.set_title(key.replace("_", " "))
        ax.set_ylabel("share of vendor")
    axes[0][0].legend(fontsize=8)
    return "<h2>Length distributions</h2>" + png_img(fig)


def _checks(profile: dict) -> str:
    vendors = list(profile["vendors"])
    checks = [c for c in profile["checks"] if c not in profile["skipped_checks"]]
    rates = np.array([[profile["vendors"][v]["check_failures"][c]["rate"] for v in vendors] for c in checks])
    fig, ax = plt.subplots(figsize=(10, 0.3 * len(checks) + 1.2))
    height = 0.8 / max(len(vendors), 1)
    for k, name in enumerate(vendors):
        ax.barh(np.arange(len(checks)) + k * height, rates[:, k], height=height, label=name)
    ax.set_yticks(np.arange(len(checks)) + 0.4 - height / 2, checks)
    ax.invert_yaxis()
    ax.set_xlabel("failure rate (share of records read)")
    ax.legend(fontsize=8)
    rows = [[c, profile["checks"][c]["severity"], *[f"{r:.1%}" for r in rates[i]],
             profile["checks"][c]["description"]] for i, c in enumerate(checks)]

    def style(k, v):
        return f' class="{escape(v)}"' if k == 1 else ' class="text"' if k == len(vendors) + 2 else ""

    return ("<h2>Check failure rates</h2>" + png_img(fig)
            + html_table(["check", "severity", *vendors, "what it finds"], rows, style))


def heatmap(matrix: np.ndarray, names: list[str], cmap: str, xlabel: str | None = None):
    """A labelled square heatmap of shares (0-1), each cell printed as a percentage."""
    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 2.5, 0.9 * len(names) + 1.5))
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap=cmap)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    dark_low = cmap == "viridis"  # viridis is dark at 0: white text there
    for a in range(len(names)):
        for b in range(len(names)):
            color = "white" if dark_low and matrix[a, b] < 0.6 else "black"
            ax.text(b, a, f"{matrix[a, b]:.0%}", ha="center", va="center", color=color, fontsize=9)
    if xlabel:
        ax.set_xlabel(xlabel)
    fig.colorbar(image, ax=ax, fraction=0.046)
    return fig


def _overlap(profile: dict) -> str:
    names, matrix = profile["overlap"]["vendors"], np.array(profile["overlap"]["matrix"])
    fig = heatmap(matrix, names, "viridis", xlabel="has a near-duplicate prompt in")
    t = profile["settings"]["threshold"]
    rows = [[a, *[f"{x:.1%}" for x in matrix[i]]] for i, a in enumerate(names)]
    return (f"<h2>Prompt overlap between vendors</h2><p>Share of the row vendor's records whose prompt has a "
            f"near-duplicate (MinHash Jaccard ≥ {t:g}) among the column vendor's; the diagonal is the "
            f"within-vendor near-duplicate rate.</p>" + png_img(fig) + html_table(["vendor", *names], rows))


def _scores(profile: dict) -> str:
    head = "<h2>Score distributions</h2>"
    if not profile.get("scores"):
        return head + '<p class="note">No scorer given (curate vendors profile --reward-model DIR adds reward-model scores, --quality-model FILE quality-classifier scores, --ifd-model DIR instruction-following difficulty).</p>'
    parts = [head]
    for name, s in profile["scores"].items():
        fig, ax = plt.subplots(figsize=(6, 3))
        for vendor, v in s["vendors"].items():
            if v.get("histogram") and sum(v["histogram"]):
                ax.stairs(np.asarray(v["histogram"]) / sum(v["histogram"]), s["edges"], label=vendor)
        if name == "ifd":  # at and above 1 the prompt does not help: answers that do not fit it
            ax.axvline(1.0, color="#a00", linestyle="--", linewidth=1)
        ax.set_xlabel(name)
        ax.set_ylabel("share of vendor")
        ax.legend(fontsize=8)
        rows = [[vendor, v["n"], v["unscored"], v.get("mean"), v.get("p10"), v.get("p50"), v.get("p90"),
                 s["preference_agreement"].get(vendor)] for vendor, v in s["vendors"].items()]
        parts += [f"<h3>{escape(name)}</h3>", f'<p class="note">{SCORE_NOTES[name]}</p>' if name in SCORE_NOTES else "",
                  png_img(fig),
                  html_table(["vendor", "scored", "unscored", "mean", "p10", "p50", "p90", "chosen > rejected"], rows)]
    return "".join(parts)


def _worst(profile: dict) -> str:
    parts = ["<h2>Worst examples per check</h2><p>Per check and vendor, the failing records that fail "
             "the most checks overall.</p>"]
    for check, info in profile["checks"].items():
        items = [(v, s) for v, p in profile["vendors"].items() for s in p["worst"].get(check, [])]
        if not items:
            continue
        parts.append(f'<h3>{escape(check)} <span class="{escape(info["severity"])}">'
                     f'({escape(info["severity"])})</span></h3>')
        for vendor, s in items:
            parts.append(f"<p><b>{escape(vendor)}</b> {escape(s['source'])}:{s['line']} — "
                         f"{escape(s['detail'])} <span class=\"note\">[{escape(', '.join(s['failed']))}]</span></p>"
                         f"<pre>{escape(s['excerpt'])}</pre>")
    return "".join(parts)


def render_html(profile: dict, title: str = "Vendor profile") -> str:
    """The whole report as one HTML string."""
    sections = [("summary", summary_html), ("lengths", _lengths), ("checks", _checks),
                ("overlap", _overlap), ("scores", _scores), ("worst", _worst)]
    return page(title, [(sid, make(profile)) for sid, make in sections])
