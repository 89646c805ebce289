"""`curate filter`, `curate score` and `curate inspect` end to end on the real C4 sample."""
import json

from click.testing import CliRunner

from curate.cli import cli
from curate.filters.gopher import GopherQuality
from curate.record import Document


def test_filter_then_inspect(shared, tmp_path):
    src = tmp_path / "c4.jsonl"
    lines = (shared / "data/pretrain/c4_demo.jsonl").read_text().splitlines()[:80]
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["filter", str(src), "--out", str(out), "--rules", "gopher_quality,pii,keep_if",
                                   "--param", "keep_if.expr=id != 'never'", "--workers", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    stats = json.loads((out / "stats.json").read_text())
    # the run's removals are exactly what the filter says document by document
    f = GopherQuality()
    expected = {}
    for i, line in enumerate(lines):
        why = f.reason(Document(str(i), json.loads(line)["text"]))
        if why:
            expected[why.split()[0]] = expected.get(why.split()[0], 0) + 1
    gopher = stats["steps"][0]
    assert gopher["step"] == "gopher_quality" and gopher["removed_by_rule"] == expected and sum(expected.values()) > 0
    assert stats["steps"][2]["removed"] == 0

    res = CliRunner().invoke(cli, ["inspect", str(out), "-n", "2", "--width", "80"])
    assert res.exit_code == 0, res.output
    for rule, n in expected.items():
        assert f"== gopher_quality / {rule}: {n} removed" in res.output
    res = CliRunner().invoke(cli, ["inspect", str(out), "--rule", "no_such_rule"])
    assert res.exit_code != 0


def test_score_writes_language_without_removing(shared, tmp_path):
    src = tmp_path / "c4.jsonl"
    src.write_text("\n".join((shared / "data/pretrain/c4_demo.jsonl").read_text().splitlines()[:20]) + "\n")
    out = tmp_path / "scored"
    res = CliRunner().invoke(cli, ["score", str(src), "--out", str(out), "--lid-model",
                                   str(shared / "models/lid.176.ftz"), "--workers", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    stats = json.loads((out / "stats.json").read_text())
    assert stats["written"] == 20 and stats["removed"] == 0
    import pyarrow.parquet as pq

    metas = [json.loads(m) for f in sorted((out / "data").glob("*.parquet")) for m in pq.read_table(f)["meta"].to_pylist()]
    assert len(metas) == 20 and all(m["lang"] == "en" and 0.5 < m["lang_score"] <= 1 for m in metas)
    res = CliRunner().invoke(cli, ["score", str(src), "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "nothing to score" in res.output
