"""The one report module of the experiments: JSON plus a self-contained HTML page (every
data string escaped) for the vendor comparison and for the ablations.

Vendor comparison (:func:`write_report`): ``compare.json`` (everything) and ``compare.html``
(inline PNG plots, no script).

Sections: verdict, ranking, pairs, win rates, what the metric can see, curves, cost,
profile, manifest. The renderer takes the dict of :func:`experiments.compare.run.summarize`
plus ``profile``/``manifest``/``heldout`` when present, so ablations can reuse it with
other arm names.

Ablations (:func:`write_ablation_report`, kind "data" from experiments.ablate.data or "arch"
from experiments.ablate.arch): ``ablate.json`` / ``arch.json``, an HTML page and PNG figures:
held-out loss against training tokens per arm, the effect of every arm against the baseline
with its 95% interval, and (arch) decode tokens/s against batch size.
"""
from __future__ import annotations

import html
import json
from html import escape
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from annotations.report import STYLE, png_img, summary_html, html_table, heatmap  # noqa: E402
from curate.basics.files import write_json


def _ci(v: dict, digits: int = 4) -> str:
    return f"{v['mean']:.{digits}f} [{v['lo']:.{digits}f}, {v['hi']:.{digits}f}]"


def verdict_lines(result: dict) -> list[str]:
    """One plain sentence per ordered pair a < b in the ranking (best first)."""
    loss = result["loss"]
    lines = []
    ranking = loss["ranking"]
    for i, a in enumerate(ranking):
        for b in ranking[i + 1:]:
            p = loss["pairs"][f"{a}|{b}"]
            text = (f"{a} vs {b}: {p['verdict']} (difference {p['diff']:+.4f} nats, "
                    f"95% interval {p['lo']:+.4f} to {p['hi']:+.4f})")
            if p.get("below_noise_floor"):
                text += "; below the noise floor"
            lines.append(text)
    return lines


def _ranking(result: dict) -> str:
    loss, vendors = result["loss"], result["vendors"]
    reward = result.get("reward")
    header = ["rank", "vendor", "held-out loss [95% interval]", "gain over base", "examples used",
              "answer tokens used"] + (["reward [95% interval]"] if reward else [])
    rows = []
    for k, name in enumerate(loss["ranking"], 1):
        v = vendors[name]
        row = [k, name, _ci(loss["arms"][name]), v["gain_over_base"], v["examples_used"], v["answer_tokens_used"]]
        rows.append(row + ([_ci(reward["arms"][name])] if reward else []))
    note = (f"{loss['seeds']} seeds x {loss['prompts']} held-out prompts; intervals: bootstrap over seeds, then "
            f"prompts ({loss['n_boot']} replicates). Base model loss {result['base_loss']:.4f}.")
    return "<h2>Ranking</h2>" + html_table(header, rows) + f'<p class="note">{escape(note)}</p>'


def _pairs(result: dict) -> str:
    loss = result["loss"]
    names = loss["ranking"]
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            p = loss["pairs"][f"{a}|{b}"]
            matched = result.get("matched", {}).get(f"{a}|{b}", result.get("matched", {}).get(f"{b}|{a}"))
            rows.append([a, b, p["diff"], p["lo"], p["hi"], p["verdict"],
                         "yes" if p.get("below_noise_floor") else "no" if "below_noise_floor" in p else None,
                         matched])
    return ("<h2>Pairs</h2><p>Difference in held-out loss (row vendor minus column vendor; negative: the first "
            "is better). Matched: share of the subsample whose prompts both vendors answered (a matched "
            "comparison sees alignment faults that an unmatched one cannot).</p>"
            + html_table(["vendor a", "vendor b", "a - b", "lo", "hi", "verdict", "below noise floor", "matched"], rows))


def _matrix(block: dict, title: str, what: str) -> str:
    names, m = block["arms"], np.array(block["matrix"])
    fig = heatmap(m, names, "RdYlGn")
    rows = [[a, *[f"{m[i, j]:.1%} [{block['lo'][i][j]:.0%}, {block['hi'][i][j]:.0%}]" for j in range(len(names))]]
            for i, a in enumerate(names)]
    return f"<h3>{escape(title)}</h3><p>{escape(what)}</p>" + png_img(fig) + html_table(["vendor", *names], rows)


def _win_rates(result: dict) -> str:
    html = "<h2>Win rates</h2>" + _matrix(result["win_rate_loss"], "By held-out loss",
                                          "Share of (seed, prompt) cells where the row vendor's model gives the "
                                          "reference answer a lower loss than the column vendor's (ties: half).")
    info = result.get("reward_model")
    if info:
        acc = info.get("accuracy", {}).get("accuracy")
        html += (f"<p>Reward model: {escape(str(info.get('path')))}"
                 + (f", trained here on {info['pairs']} preference pairs; held-out accuracy {acc:.1%}"
                    if acc is not None else "") + ".</p>")
    if "win_rate_reward" in result:
        html += _matrix(result["win_rate_reward"], "By reward model",
                        "Share of (seed, prompt) cells where the reward model scores the row vendor's greedy "
                        "answer above the column vendor's.")
    else:
        html += '<p class="note">No reward model given: no reward scores or reward win rates.</p>'
    return html


def _sensitivity(result: dict) -> str:
    c = result["conditioning"]
    parts = ["<h2>What the metric can see</h2>",
             f"<p>Prompt-conditioning gain of the base model (held-out answer loss after a mismatched prompt "
             f"minus after the right one): <b>{c['gain']:.4f}</b> nats [{c['lo']:.4f}, {c['hi']:.4f}] over "
             f"{c['prompts']} prompts.</p>"]
    if c["ignores_prompt"]:
        parts.append('<p class="error">The base model cannot be shown to read the prompt: the held-out loss '
                     "measures answer style and fluency only, not whether answers fit their prompts.</p>")
    nf = result.get("noise_floor")
    if nf:
        parts.append(f"<p>Noise floor: two models trained on random halves of {escape(nf['vendor'])} differ by "
                     f"{nf['diff']:+.4f} nats [{nf['lo']:+.4f}, {nf['hi']:+.4f}]; floor {nf['floor']:.4f}. "
                     f"Verdict between the halves: {escape(nf['half_vs_half']['verdict'])}. A difference between "
                     f"vendors below the floor is one two samples of the same data could show.</p>")
        if c["gain"] < nf["floor"]:
            parts.append('<p class="warning">The conditioning gain is below the noise floor: only a matched '
                         "comparison (same prompts) can reveal answers that do not fit their prompts.</p>")
    else:
        parts.append('<p class="note">No noise floor measured.</p>')
    return "".join(parts)


def _curves(result: dict) -> str:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    for name, v in result["vendors"].items():
        style = "--" if v["group"] != "main" else "-"
        if v["train_loss"]:
            left.plot(range(1, len(v["train_loss"]) + 1), v["train_loss"], style, label=name)
        if v["val_curve"]:
            steps, vals = zip(*v["val_curve"])
            right.plot(steps, vals, style + "o", label=name, markersize=3)
    right.axhline(result["base_loss"], color="grey", lw=0.8, label="base model")
    left.set(title="training loss (mean over seeds)", xlabel="step", ylabel="nats/token")
    right.set(title="held-out answer loss, token-weighted (mean over seeds)", xlabel="step", ylabel="nats/token")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    return "<h2>Loss curves</h2>" + png_img(fig)


def _cost(result: dict) -> str:
    rows = [[n, v["price_per_example"], v["examples_used"], v["cost"], v["gain_over_base"] * 100, v["cost_per_point"]]
            for n, v in result["vendors"].items() if v["group"] == "main"]
    if all(r[1] is None for r in rows):
        return '<h2>Cost</h2><p class="note">No prices given.</p>'
    return ("<h2>Cost per point</h2><p>A point is 0.01 nats of held-out loss gained over the base model; cost is "
            "the price of the examples one run trained on.</p>"
            + html_table(["vendor", "price/example", "examples used", "cost", "points gained", "cost per point"], rows))


def _manifest(result: dict) -> str:
    m = result.get("manifest")
    if not m:
        return ""
    rows = [[path, digest] for path, digest in m["files"].items()]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    return (f"<h2>Manifest</h2><p>Config hash {escape(m['config_hash'])}; held-out set hash "
            f"{escape(m['heldout_hash'])}; {escape(versions)}.</p>" + html_table(["file", "sha256 (16)"], rows)
            + f"<pre>{escape(json.dumps(m['config'], indent=1))}</pre>")


def render_html(result: dict, title: str = "Vendor comparison") -> str:
    """The whole report as one HTML string."""
    head = "".join(f"<li>{escape(line)}</li>" for line in verdict_lines(result))
    held = result.get("heldout")
    held_note = (f"<p>Held-out set: {held['size']} prompts with reference answers "
                 f"({held['dropped_contaminated']} dropped because a vendor had them).</p>" if held else "")
    sections = [("verdict", f"<h2>Verdict</h2><ul>{head}</ul>{held_note}"), ("ranking", _ranking(result)),
                ("pairs", _pairs(result)), ("win-rates", _win_rates(result)), ("sensitivity", _sensitivity(result)),
                ("curves", _curves(result)), ("cost", _cost(result))]
    if result.get("profile"):
        sections.append(("profile", "<h2>Vendor profile</h2>" + summary_html(result["profile"]).split("</h2>", 1)[1]))
    sections.append(("manifest", _manifest(result)))
    body = "".join(f'<section id="{sid}">{html}</section>' for sid, html in sections)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>")


def write_report(result: dict, out: str | Path, title: str = "Vendor comparison") -> Path:
    """Write ``compare.json`` and ``compare.html`` into ``out``; returns the HTML path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "compare.json", result, indent=1, default=str, newline=False)
    path = out / "compare.html"
    path.write_text(render_html(result, title), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- ablations

def _fmt_cell(x, digits=4) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def _plain_table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt_cell(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def effect_rows(result: dict, names: list[str]) -> list[list]:
    """Arm, held-out loss [95% interval], effect vs baseline [interval], verdict."""
    loss, base = result["loss"], result["baseline"]
    rows = []
    for n in names:
        a = loss["arms"][n]
        p = loss["pairs"].get(f"{n}|{base}")
        rows.append([n, f"{a['mean']:.4f} [{a['lo']:.4f}, {a['hi']:.4f}]",
                     "baseline" if p is None else f"{p['diff']:+.4f} [{p['lo']:+.4f}, {p['hi']:+.4f}]",
                     "" if p is None else p["verdict"]])
    return rows


def _figures(result: dict, out: Path, curves: dict[str, list], kind: str) -> list[str]:
    names = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        if curve:
            ax.plot([c[0] for c in curve], [c[1] for c in curve], marker="o", label=name)
    ax.set_xlabel("training tokens")
    ax.set_ylabel("held-out loss (nats/token)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "loss_curve.png", dpi=110)
    plt.close(fig)
    names.append("loss_curve.png")
    if "loss" in result:
        base = result["baseline"]
        arms = [n for n in curves if n != base and f"{n}|{base}" in result["loss"]["pairs"]]
        if arms:
            pairs = [result["loss"]["pairs"][f"{n}|{base}"] for n in arms]
            fig, ax = plt.subplots(figsize=(6, 0.5 * len(arms) + 1.5))
            ax.errorbar([p["diff"] for p in pairs], range(len(arms)), fmt="o",
                        xerr=[[p["diff"] - p["lo"] for p in pairs], [p["hi"] - p["diff"] for p in pairs]])
            ax.axvline(0, color="grey", lw=1)
            ax.set_yticks(range(len(arms)), arms)
            ax.set_xlabel(f"held-out loss minus {base} (nats/token; < 0 is better)")
            fig.tight_layout()
            fig.savefig(out / "effects.png", dpi=110)
            plt.close(fig)
            names.append("effects.png")
    if kind == "arch" and any("inference" in v for v in result["variants"].values()):
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, v in result["variants"].items():
            for ctx in sorted({s["context"] for s in v["inference"]["speed"]}):
                pts = [s for s in v["inference"]["speed"] if s["context"] == ctx]
                ax.plot([s["batch"] for s in pts], [s["decode_tokens_per_s"] for s in pts], marker="o",
                        label=f"{name}, context {ctx}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("decode tokens/s")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "decode_speed.png", dpi=110)
        plt.close(fig)
        names.append("decode_speed.png")
    return names


def write_ablation_report(result: dict, out: str | Path, kind: str = "data") -> None:
    """Write ``ablate.json`` / ``arch.json``, the matching HTML page and the figures into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "ablate" if kind == "data" else "arch"
    write_json(out / f"{stem}.json", result, indent=1, default=str, newline=False)
    parts = []
    if kind == "data":
        title = f"Data ablation ({result['kind']}, equal {result['mode']})"
        names = list(result["arms"])
        curves = {n: result["arms"][n]["curve"] for n in names}
        rows = [[n, a.get("pool"), a.get("after_pipeline"), a.get("items"), a.get("tokens"), a.get("budget_tokens"),
                 a["trained_tokens"][0]] for n, a in result["arms"].items()]
        parts.append(_plain_table(["arm", "source items", "after pipeline", "items", "tokens in pool", "budget",
                             "trained tokens (seed 0)"], rows))
        if "noise_floor" in result:
            nf = result["noise_floor"]
            parts.append(f"<p>Noise floor (two random halves of one arm): {nf['floor']:.4f} nats.</p>")
    else:
        title = "Architecture ablation (equal parameters)"
        names = list(result["variants"])
        curves = {n: v.get("val_curve", []) for n, v in result["variants"].items()}
        rows = [[n, v["kv_heads"], v["ffn_hidden_dim"], v["params_non_embedding"], f"{100 * v['params_vs_baseline']:+.2f}%",
                 v["kv_bytes_per_token_bf16"]] for n, v in result["variants"].items()]
        parts.append(_plain_table(["variant", "kv heads", "ffn width", "params (non-embedding)", "vs baseline",
                             "KV bytes/token (bf16)"], rows))
        for n, v in result["variants"].items():
            inf = v.get("inference")
            if inf:
                parts.append(f"<h3>{html.escape(n)}: inference on {html.escape(inf['device'])} ({html.escape(inf['dtype'])})</h3>")
                parts.append(_plain_table(["batch", "context", "prefill tok/s", "decode tok/s", "cache bytes"],
                                    [[s["batch"], s["context"], round(s["prefill_tokens_per_s"]),
                                      round(s["decode_tokens_per_s"]), s["cache_bytes"]] for s in inf["speed"]]))
                parts.append(_plain_table([f"context (budget {inf['memory_gib']} GiB)", "max batch (estimate)", "max batch (measured)"],
                                    [[m["context"], m["estimated"], m["measured"]] for m in inf["max_batch"]]))
    if "loss" in result:  # arms outside the comparison (the noise-floor halves) have no row
        parts.insert(0, _plain_table(["arm", "held-out loss [95% CI]", f"vs {result['baseline']} [95% CI]", "verdict"],
                               effect_rows(result, [n for n in names if n in result["loss"]["arms"]])))
    figs = _figures(result, out, curves, kind)
    parts += [f'<img src="{html.escape(f)}" alt="{html.escape(f)}">' for f in figs]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto}table{border-collapse:collapse;"
            "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>" + "\n".join(parts) + "</body></html>")
    (out / f"{stem}.html").write_text(page, encoding="utf-8")
