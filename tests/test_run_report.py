"""The run report (OUT/report.html, `curate report`) and `curate diff`: rendered by headless
Chromium with every section present, planted markup escaped, figures checked against the
run's own output files read independently with pandas, and the diff equal to a set
difference of the two runs' outputs."""
import json
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.pipeline.runner import run_pipeline
from curate.report.diff import diff_runs

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ["funnel", "rules", "samples", "scores", "dedup", "rejects", "languages", "timing", "manifest"]
EVIL_NAME = "<img src=x onerror=alert(1)>.jsonl"


def _config(tmp: Path, out: Path, min_doc_words: int = 50) -> dict:
    return {"inputs": [str(tmp / "in")],
            "steps": [{"step": "language", "languages": ["en"], "model_path": str(ROOT / "examples/models/lid.176.ftz")},
                      {"step": "gopher_quality", "min_doc_words": min_doc_words},
                      {"step": "exact_dedup"}, {"step": "minhash_dedup", "threshold": 0.8}],
            "output": {"dir": str(out)}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs over 200 real C4 documents plus a planted file; they differ in one threshold."""
    tmp = tmp_path_factory.mktemp("report")
    (tmp / "in").mkdir()
    c4 = (ROOT / "examples/data/c4_demo.jsonl").read_text().splitlines()[:200]
    (tmp / "in/c4.jsonl").write_text("\n".join(c4) + "\n")
    long_doc = json.loads(c4[0])
    planted = [
        json.dumps({"id": "planted-script", "text": '<script>alert("owned")</script> hello there'}).encode(),
        json.dumps({"id": "planted-img", "text": "<img src=x onerror=alert(2)> a short one"}).encode(),
        b'{"text": broken',
        json.dumps({"id": "dup-copy", "text": long_doc["text"]}).encode(),
        b'{"text": "bad \xff bytes"}',
    ]
    (tmp / "in" / EVIL_NAME).write_bytes(b"\n".join(planted) + b"\n")
    a, b = tmp / "a", tmp / "b"
    run_pipeline(_config(tmp, a), workers=1, quiet=True)
    run_pipeline(_config(tmp, b, min_doc_words=120), workers=1, quiet=True)
    return a, b, long_doc


def _docs(out: Path, kind: str) -> pd.DataFrame:
    files = sorted((out / kind).glob("*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def test_report_is_escaped_self_contained_and_true(runs):
    a, _, long_doc = runs
    page = (a / "report.html").read_text()
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    evil = "&lt;img src=x onerror=alert(1)&gt;.jsonl"
    assert f"{evil}:3" in page and f"{evil}:5" in page  # rejects at their planted lines

    class Tags(HTMLParser):
        def __init__(self):
            super().__init__()
            self.sections, self.attrs, self.tags = [], [], set()

        def handle_starttag(self, tag, attrs):
            self.tags.add(tag)
            self.attrs += attrs
            if tag == "section":
                self.sections.append(dict(attrs)["id"])

    p = Tags()
    p.feed(page)
    assert p.sections == SECTIONS
    assert not {"script", "iframe", "link", "object", "embed"} & p.tags
    assert not [k for k, _ in p.attrs if k.startswith("on")]
    srcs = [v for k, v in p.attrs if k in ("src", "href")]
    assert len(srcs) == 2 and all(v.startswith("data:image/png;base64,") for v in srcs)  # the score and cluster-size histograms
    for section in ("funnel", "rules", "timing"):  # bar charts drawn as HTML, no image
        assert '<table class="bars">' in page.split(f'<section id="{section}">')[1].split("</section>")[0]

    # figures against the outputs, read independently
    kept, removed = _docs(a, "data"), _docs(a, "removed")
    stats = json.loads((a / "stats.json").read_text())
    assert stats["written"] == len(kept) and stats["removed"] == len(removed)
    last = stats["steps"][-1]["step"]  # its bar: documents kept at the end, against the documents read
    assert (f'<tr><td>{last}</td><td class="bar"><div style="width:{100 * len(kept) / stats["read"]:.1f}%;'
            in page.split('<section id="funnel">')[1])
    langs = pd.concat([kept["meta"], removed["meta"]]).map(lambda m: json.loads(m).get("lang"))
    en_total, en_kept = int((langs == "en").sum()), int((kept["meta"].map(lambda m: json.loads(m).get("lang")) == "en").sum())
    assert f"<tr><td>en</td><td>{en_total}</td><td>{en_kept}</td>" in page
    scores = np.array([json.loads(m)["lang_score"] for m in pd.concat([kept["meta"], removed["meta"]]) if "lang_score" in json.loads(m)])
    assert f"<td>{np.percentile(scores, 50):.4g}</td>" in page
    words = removed[removed["reason"].str.startswith("words ")]
    assert f"<td>gopher_quality</td><td>words</td><td>{len(words)}</td>" in page
    # the planted copy and its original side by side in the dedup section
    dedup = page.split('<section id="dedup">')[1].split("</section>")[0]
    original_id = long_doc.get("id") or "c4.jsonl:1"
    assert "dup-copy" in dedup and original_id in dedup


def test_report_renders_in_headless_chromium(runs, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install -y chromium); .ci/run installs it")
    a, _, _ = runs
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "shot.png"
    dom = subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1200,3000", "--dump-dom", (a / "report.html").as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", header[16:24]) == (1200, 3000)
    for section in SECTIONS:
        assert f'<section id="{section}">' in dom
    assert "<script" not in dom.lower() and "&lt;script&gt;" in dom
    for title in ("Funnel", "Removals by rule", "Score distributions", "Deduplication", "Rejects", "Languages",
                  "Time per step", "Manifest"):
        assert f"<h2>{title}" in dom


def test_curate_report_redraws_the_same_page(runs, tmp_path):
    a, _, _ = runs
    before = (a / "report.html").read_bytes()
    (a / "report.html").unlink()
    result = CliRunner().invoke(cli, ["report", str(a)])
    assert result.exit_code == 0, result.output
    assert (a / "report.html").read_bytes() == before
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "no finished curate run" in result.output


def test_diff_equals_a_set_difference(runs, tmp_path):
    a, b, _ = runs
    d = diff_runs(a, b)
    assert d["same_inputs"]
    for name, keeper, remover in (("only_a", a, b), ("only_b", b, a)):
        kept = set(zip(*_docs(keeper, "data")[["source", "id"]].T.values))
        rem = _docs(remover, "removed")
        rem["rule"] = rem["reason"].str.split().str[0]
        expected = {}
        for row in rem.itertuples():
            if (row.source, row.id) in kept:
                expected.setdefault((row.step, row.rule), set()).add((row.source, row.id))
        got = {k: {(r["source"], r["id"]) for r in rows} for k, rows in d[name].items()}
        assert got == expected
    assert sum(map(len, d["only_a"].values())) > 10 and set(d["only_a"]) == {("gopher_quality", "words")}

    html = tmp_path / "diff.html"
    result = CliRunner().invoke(cli, ["diff", str(a), str(b), "--html", str(html)])
    assert result.exit_code == 0, result.output
    assert f"A keeps, B removes: {sum(map(len, d['only_a'].values()))} document(s)" in result.output
    page = html.read_text()
    assert "<script" not in page.lower() and '<section id="only_a">' in page
    result = CliRunner().invoke(cli, ["diff", str(a), str(tmp_path / "nope")])
    assert result.exit_code == 2 and "not found" in result.output
