"""The ablation reports: JSON, an HTML page (all data escaped) and PNG figures.

``write_report(result, out, kind)``: kind "data" (from experiments.ablate.data) or "arch" (from
experiments.ablate.arch). Figures: held-out loss against training tokens per arm, the effect of every
arm against the baseline with its 95% interval, and (arch) decode tokens/s against batch size.
"""
from __future__ import annotations

import html
import json
from pathlib import Path


def _fmt(x, digits=4) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def write_report(result: dict, out: str | Path, kind: str = "data") -> None:
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
        parts.append(_table(["arm", "source items", "after pipeline", "items", "tokens in pool", "budget",
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
        parts.append(_table(["variant", "kv heads", "ffn width", "params (non-embedding)", "vs baseline",
                             "KV bytes/token (bf16)"], rows))
        for n, v in result["variants"].items():
            inf = v.get("inference")
            if inf:
                parts.append(f"<h3>{html.escape(n)}: inference on {html.escape(inf['device'])} ({html.escape(inf['dtype'])})</h3>")
                parts.append(_table(["batch", "context", "prefill tok/s", "decode tok/s", "cache bytes"],
                                    [[s["batch"], s["context"], round(s["prefill_tokens_per_s"]),
                                      round(s["decode_tokens_per_s"]), s["cache_bytes"]] for s in inf["speed"]]))
                parts.append(_table([f"context (budget {inf['memory_gib']} GiB)", "max batch (estimate)", "max batch (measured)"],
                                    [[m["context"], m["estimated"], m["measured"]] for m in inf["max_batch"]]))
    if "loss" in result:  # arms outside the comparison (the noise-floor halves) have no row
        parts.insert(0, _table(["arm", "held-out loss [95% CI]", f"vs {result['baseline']} [95% CI]", "verdict"],
                               effect_rows(result, [n for n in names if n in result["loss"]["arms"]])))
    figs = _figures(result, out, curves, kind)
    parts += [f'<img src="{html.escape(f)}" alt="{html.escape(f)}">' for f in figs]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto}table{border-collapse:collapse;"
            "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>" + "\n".join(parts) + "</body></html>")
    (out / f"{stem}.html").write_text(page, encoding="utf-8")
