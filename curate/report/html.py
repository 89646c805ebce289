"""Building blocks for self-contained HTML reports: one stylesheet, plots as inline
PNG data URIs (matplotlib's Agg backend), bar charts as plain HTML, tables whose every
cell is escaped, and the page shell. No script and no external link anywhere.

Used by the run report (:mod:`curate.report.run_report`), ``curate diff`` and the
vendor / comparison reports in ``annotations``.
"""
from __future__ import annotations

import base64
import io
import sys
from html import escape
from typing import Any, Callable

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1150px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
pre { white-space: pre-wrap; background: #f6f6f6; padding: 6px; max-height: 16em; overflow: auto; }
.error { color: #a00; } .warning { color: #a60; } .note { color: #666; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 8px; }
table.bars td { border: none; padding: 1px 6px; } table.bars th { border: none; }
table.bars td.bar { width: 360px; } table.bars td.bar div { height: 13px; }
"""


def subplots(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (7, 3)):
    """(figure, axes) like ``plt.subplots``, without pyplot (whose import costs a second) or its
    figure registry; ``axes`` is one Axes, or an array of them when there are several.
    matplotlib is imported here, not at the top, so pipeline workers never load it."""
    import matplotlib
    from matplotlib.figure import Figure

    matplotlib.rcParams["text.parse_math"] = False  # labels are data (step, rule, language names): a '$' is not mathtext
    fig = Figure(figsize=figsize)
    axes = fig.subplots(nrows, ncols)
    return fig, axes


def png(fig) -> str:
    """Return ``fig`` as an ``<img>`` with an inline PNG (90 dpi), and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    pyplot = sys.modules.get("matplotlib.pyplot")  # figures made with pyplot live on in its registry until closed
    if pyplot is not None:
        pyplot.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def bars(title: str, rows: list[tuple[str, float]], color: str = "#4a7bb7") -> str:
    """A horizontal bar chart as an HTML table: a row per (label, value), bars scaled to the
    largest value, the value beside each. No image: it needs no matplotlib (a second to import)."""
    top = max((v for _, v in rows), default=0) or 1
    body = "".join(f'<tr><td>{escape(label)}</td><td class="bar"><div style="width:{100 * max(v, 0) / top:.1f}%;'
                   f'background:{color}"></div></td><td>{fmt(v)}</td></tr>' for label, v in rows)
    return f'<table class="bars"><tr><th></th><th>{escape(title)}</th><th></th></tr>{body}</table>'


def fmt(value: Any) -> str:
    """A table cell: '–' for None, 4 significant digits for floats, anything else escaped."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))


def table(header: list[str], rows: list[list[Any]], cell_style: Callable[[int, Any], str] | None = None) -> str:
    """An HTML table; ``cell_style(column, value)`` may return attributes for a cell."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for k, v in enumerate(row):
            style = cell_style(k, v) if cell_style else ""
            cells.append(f"<td{style}>{fmt(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def page(title: str, sections: list[tuple[str, str]]) -> str:
    """A whole page: ``sections`` are (id, inner HTML) pairs, each in ``<section id=...>``."""
    body = "".join(f'<section id="{escape(sid)}">{inner}</section>' for sid, inner in sections)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>")
