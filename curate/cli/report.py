"""`curate report` and `curate diff`."""
from __future__ import annotations

from pathlib import Path

import click

from curate.basics.errors import CurateError
from curate.basics.files import atomic_path
from curate.report.diff import diff_html, diff_runs, diff_text
from curate.report.run_report import write_run_report


@click.command("report")
@click.argument("out", type=click.Path(file_okay=False))
def report_cmd(out):
    """Redraw OUT/report.html for the finished run in OUT: the funnel, removals by rule
    with samples and thresholds, score histograms, dedup clusters, rejects, languages,
    time per step and the manifest (one self-contained page).

    \b
    Example:
      curate report out/web
    """
    if not Path(out).is_dir():
        raise CurateError(f"output folder not found: {out}")
    click.echo(str(write_run_report(out)))


@click.command("diff")
@click.argument("out_a", type=click.Path(file_okay=False))
@click.argument("out_b", type=click.Path(file_okay=False))
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default="diff.html", show_default=True,
              help="Where to write the HTML page.")
@click.option("--all", "show_all", is_flag=True, help="Print every differing document, not just samples.")
def diff_cmd(out_a, out_b, html_path, show_all):
    """Compare two runs over the same input: the documents one keeps and the other
    removes, grouped by the step and rule responsible, with samples. Prints the
    comparison and writes it as HTML.

    \b
    Example:
      curate diff out/strict out/loose --html diff.html
    """
    for out in (out_a, out_b):
        if not Path(out).is_dir():
            raise CurateError(f"output folder not found: {out}")
    d = diff_runs(out_a, out_b)
    click.echo(diff_text(d, show_all))
    with atomic_path(html_path) as tmp:
        tmp.write_text(diff_html(d), encoding="utf-8")
    click.echo(f"html: {html_path}")

