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


def test_top_fraction_is_global_across_shards(shared, tmp_path):
    """quality_filter keeps the top half of all documents by lang_score, over two input files."""
    import fasttext

    texts = [json.loads(line)["text"] for line in (shared / "data/pretrain/c4_demo.jsonl").read_text().splitlines()[:20]]
    texts[3] = "Ok."  # a low-confidence language guess
    for i in range(2):
        (tmp_path / f"part{i}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[i * 10:(i + 1) * 10]))
    lid = str(shared / "models/lid.176.ftz")
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["filter", str(tmp_path / "part0.jsonl"), str(tmp_path / "part1.jsonl"), "--out", str(out),
                                   "--rules", "language,quality_filter", "--param", f"language.model_path={lid}",
                                   "--param", "language.min_score=0", "--param", "quality_filter.key=lang_score",
                                   "--param", "quality_filter.top_fraction=0.5", "--workers", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    import pyarrow.parquet as pq

    kept = {row for f in (out / "data").glob("*.parquet") for row in pq.read_table(f)["text"].to_pylist()}
    # independently: fastText's top-language probability, highest 10 of 20 (input order breaks ties)
    model = fasttext.load_model(lid)
    scores = [round(min(float(model.predict(t.replace("\n", " "))[1][0]), 1.0), 4) for t in texts]
    order = sorted(range(20), key=lambda i: (-scores[i], i))[:10]
    assert kept == {texts[i] for i in order} and texts[3] not in kept and scores[3] < 0.5


def test_classifier_train_command(shared, tmp_path):
    # positives: Wikipedia articles (one a line); negatives: C4 web pages
    model = tmp_path / "q.bin"
    res = CliRunner().invoke(cli, ["classifier", "train", "--positive", str(shared / "data/pretrain/wiki_demo.txt"),
                                   "--negative", str(shared / "data/pretrain/c4_demo.jsonl"), "--max-docs", "30",
                                   "--out", str(model), "--bucket", "50000"])
    assert res.exit_code == 0, res.output
    figures = json.loads((tmp_path / "q.bin.json").read_text())
    assert figures["test"] == 12 and figures["train"] == 48  # 20% of 30 held out per side
    assert f"held-out accuracy {figures['accuracy']:.3f}  AUC {figures['auc']:.3f}" in res.output
    assert model.is_file()
