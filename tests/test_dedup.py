"""MinHash, LSH and the dedup steps, checked against datasketch and planted truth on real text."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH
from datasketch.lsh import _optimal_param

from curate.dedup import lsh
from curate.dedup.minhash import band_keys, jaccard, minhash_signatures, optimal_bands, shingle_hash32
from curate.dedup.normalize import normalize_exact, normalize_words
from curate.dedup.unionfind import UnionFind
from experiments.steps import build_step
from curate.record import Document


def reference_ngrams(text: str, n: int = 5) -> list[str]:
    """Plain-Python shingles: the definition the vectorised code must match."""
    words = normalize_words(text).split()
    if not words:
        return []
    if len(words) < n:
        return [" ".join(words)]
    return [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]


def exact_jaccard(a: str, b: str) -> float:
    sa, sb = set(reference_ngrams(a)), set(reference_ngrams(b))
    return len(sa & sb) / len(sa | sb)


@pytest.fixture(scope="module")
def texts(shared) -> dict[str, list[str]]:
    pre = shared / "data" / "pretrain"
    c4 = [json.loads(line)["text"] for line in (pre / "c4_demo.jsonl").open()]
    wiki = [line.strip() for line in (pre / "wiki_demo.txt").open() if line.strip()]
    news = [line.strip() for line in (pre / "lee_background.cor").open(encoding="latin-1") if line.strip()]
    return {"c4": c4, "wiki": wiki, "news": news}


def edit_words(text: str, edits: int, rng: random.Random) -> str:
    """Replace ``edits`` distinct word positions with a token absent from real text."""
    words = text.split()
    for i in rng.sample(range(len(words)), edits):
        words[i] = f"qx{rng.randrange(10**6)}"
    return " ".join(words)


@pytest.fixture(scope="module")
def planted(texts):
    """Distinct real passages plus planted exact copies and near-copies (known edits)."""
    rng = random.Random(7)
    pool = [t for t in texts["c4"] + texts["news"] if len(t.split()) >= 120]
    for article in texts["wiki"][:12]:
        words = article.split()
        pool += [" ".join(words[i:i + 200]) for i in range(0, len(words) - 200, 200)][:25]
    base, seen = [], set()
    for t in pool:  # the news corpus repeats some stories: keep one of each
        key = normalize_exact(t)[:80]
        if key not in seen:
            seen.add(key)
            base.append(t)
    docs = [Document(f"orig{i}", t) for i, t in enumerate(base)]
    truth = set()
    n_words = [len(t.split()) for t in base]
    for j in range(120):
        edits = j % 4  # 0: exact copy up to case and whitespace; else 1..3 word substitutions
        src = rng.choice([i for i, n in enumerate(n_words) if n >= 100 * edits])
        if edits == 0:  # ASCII words only: "ß".upper().lower() is "ss", a different text
            text = "  ".join(w.upper() if w.isascii() else w for w in base[src].split())
        else:
            text = edit_words(base[src], edits, rng)
        docs.append(Document(f"copy{j}_of_orig{src}", text))
        truth.add(f"copy{j}_of_orig{src}")
    rng.shuffle(docs)
    return docs, truth


def run_step(spec: dict, docs: list[Document], shards: int, workdir: Path):
    """index every shard, reduce once, apply every shard -- the runner's three phases."""
    step = build_step(spec)
    parts = [docs[i * len(docs) // shards:(i + 1) * len(docs) // shards] for i in range(shards)]
    for i, part in enumerate(parts):
        step.index(part, i, workdir)
    stats = step.reduce(workdir, shards)
    kept, removed = [], []
    for i, part in enumerate(parts):
        k, r = step.apply(part, i, workdir)
        kept += k
        removed += r
    return stats, kept, removed


def test_signatures_equal_datasketch(texts):
    sample = texts["c4"][:25] + texts["news"][:5] + ["", "Two words", "Ünïcödé — 2024 DÉJÀ vu!"]
    sig = minhash_signatures(sample, num_perm=128, ngram=5, seed=1)
    np.testing.assert_array_equal(sig, minhash_signatures(sample, batch_chars=3000))  # batching changes nothing
    for text, row in zip(sample, sig):
        ref = MinHash(num_perm=128, seed=1, hashfunc=shingle_hash32)
        ref.update_batch(reference_ngrams(text))
        np.testing.assert_array_equal(ref.hashvalues, row)


def test_jaccard_estimate_close_to_exact(texts):
    rng = random.Random(3)
    pairs = []
    for article in texts["wiki"][:10]:
        words = article.split()
        if len(words) < 800:
            continue
        for shift in (0, 10, 40, 80, 150, 250, 350):  # overlapping windows: Jaccard from 1 down to ~0
            pairs.append((" ".join(words[:400]), " ".join(words[shift:shift + 400])))
    for t in texts["c4"][:40]:
        if len(t.split()) > 60:
            pairs.append((t, edit_words(t, rng.randrange(1, 8), rng)))
    a, b = zip(*pairs)
    est = jaccard(minhash_signatures(list(a)), minhash_signatures(list(b)))
    exact = np.array([exact_jaccard(x, y) for x, y in pairs])
    assert exact.min() < 0.2 and exact.max() == 1.0  # the pairs span the range
    assert np.abs(est - exact).mean() < 0.03


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9, 0.95])
def test_bands_rows_equal_datasketch(threshold):
    assert optimal_bands(threshold, 128) == _optimal_param(threshold, 128, 0.5, 0.5)


def test_bands_rows_equal_datasketch_other_weights():
    assert optimal_bands(0.75, 64, 0.3, 0.7) == _optimal_param(0.75, 64, 0.3, 0.7)


def test_candidate_pairs_equal_datasketch_lsh(planted, tmp_path, monkeypatch):
    docs, _ = planted
    sig = minhash_signatures([d.text for d in docs])
    b, r = optimal_bands(0.8, 128)
    ours = lsh.candidate_pairs(band_keys(sig, b, r))
    index = MinHashLSH(threshold=0.8, num_perm=128)
    minhashes = [MinHash(seed=1, hashvalues=row, scheme="affine32") for row in sig]
    for i, m in enumerate(minhashes):
        index.insert(i, m)
    theirs = {(min(i, j), max(i, j)) for i, m in enumerate(minhashes) for j in index.query(m) if i != j}
    assert (index.b, index.r) == (b, r)
    assert len(theirs) > 50 and ours == theirs
    # The sharded, hash-partitioned reducer without verification finds the same components.
    monkeypatch.setattr(lsh, "PARTITION_ROWS", 97)  # many key-range partitions per band
    _, _, removed = run_step({"step": "minhash_dedup", "verify": False}, docs, 4, tmp_path)
    uf = UnionFind(len(docs))
    pairs = np.array(sorted(theirs))
    uf.union(pairs[:, 0], pairs[:, 1])
    roots = uf.roots()
    expected = {docs[i].id for i in range(len(docs)) if roots[i] != i}
    assert {x.doc.id for x in removed} == expected


def group_of(doc_id: str) -> str:
    """Planted truth: a copy belongs with its original ("copy3_of_orig17" -> "orig17")."""
    return doc_id.split("_of_")[-1]


def test_planted_duplicates_found(planted, tmp_path):
    docs, truth = planted
    stats, kept, removed = run_step({"step": "minhash_dedup", "threshold": 0.8}, docs, 5, tmp_path / "m")
    # A removal is right when the kept document is from the same planted group
    # (whichever of original and copy came first is the one kept).
    right = sum(group_of(x.doc.id) == group_of(x.extra["kept_id"]) for x in removed)
    precision, recall = right / len(removed), right / len(truth)
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)
    assert stats["removed"] == len(removed) and len(kept) + len(removed) == len(docs)
    assert sum(int(k) * v for k, v in stats["cluster_sizes"].items()) - stats["clusters"] == len(removed)
    kept_ids = {d.id for d in kept}
    assert all(x.extra["kept_id"] in kept_ids for x in removed)
    # exact dedup removes exactly one document per exact copy, never a near-copy
    exact_copies = [t for t in truth if int(t.split("_")[0][4:]) % 4 == 0]
    _, _, exact_removed = run_step({"step": "exact_dedup"}, docs, 3, tmp_path / "e")
    assert len(exact_removed) == len(exact_copies)
    for x in exact_removed:
        assert group_of(x.doc.id) == group_of(x.extra["kept_id"])
        assert normalize_exact(x.doc.text) == normalize_exact(next(d.text for d in docs if d.id == x.extra["kept_id"]))


def test_same_decisions_for_any_sharding(planted, tmp_path):
    docs, _ = planted
    results = []
    for shards in (1, 3, 7):
        _, _, removed = run_step({"step": "minhash_dedup"}, docs, shards, tmp_path / str(shards))
        results.append(sorted((x.doc.id, x.extra["kept_id"]) for x in removed))
    assert results[0] == results[1] == results[2]


def test_keep_policies(texts, tmp_path):
    base = texts["news"][0]
    docs = [Document("short", base, meta={"q": 0.1}), Document("long", base + " and one more clause", meta={"q": 0.2}),
            Document("best", base.replace(".", "!"), meta={"q": 0.9}), Document("other", texts["news"][1])]
    for spec, kept_id in [({"keep": "first"}, "short"), ({"keep": "longest"}, "long"),
                          ({"keep": "score", "score_key": "q"}, "best")]:
        _, kept, removed = run_step({"step": "minhash_dedup", **spec}, docs, 2, tmp_path / kept_id)
        assert sorted(d.id for d in kept) == sorted([kept_id, "other"])
        assert {x.extra["kept_id"] for x in removed} == {kept_id}
        assert len({x.extra["cluster_id"] for x in removed}) == 1


def test_incremental_against_saved_index(texts, tmp_path):
    old = [Document(f"old{i}", t) for i, t in enumerate(texts["news"][:100])]
    old.append(Document("old_dup", texts["news"][5].upper()))
    stats_old, _, removed_old = run_step({"step": "minhash_dedup", "index_dir": str(tmp_path / "idx")},
                                         old, 2, tmp_path / "w1")
    assert [x.doc.id for x in removed_old] == ["old_dup"]
    rng = random.Random(1)
    new = [Document("new_copy_of_old7", edit_words(texts["news"][7], 1, rng)),
           Document("fresh", texts["news"][200]), Document("fresh_copy", texts["news"][200] + " "),
           Document("new_copy_of_old_dup", texts["news"][5])]
    stats, kept, removed = run_step({"step": "minhash_dedup", "against": str(tmp_path / "idx")},
                                    new, 2, tmp_path / "w2")
    assert stats["against_documents"] == 100  # the kept old documents, not hashed again
    assert sorted(d.id for d in kept) == ["fresh"]
    assert {x.doc.id: x.extra["kept_id"] for x in removed} == {
        "new_copy_of_old7": "old7", "fresh_copy": "fresh", "new_copy_of_old_dup": "old5"}
    with pytest.raises(ValueError, match="built with"):
        run_step({"step": "minhash_dedup", "num_perm": 64, "against": str(tmp_path / "idx")}, new, 1, tmp_path / "w3")
    # exact dedup keeps an index the same way
    run_step({"step": "exact_dedup", "index_dir": str(tmp_path / "eidx")}, old, 2, tmp_path / "e1")
    _, kept, removed = run_step({"step": "exact_dedup", "against": str(tmp_path / "eidx")}, new, 2, tmp_path / "e2")
    assert {x.doc.id: x.extra["kept_id"] for x in removed} == {"fresh_copy": "fresh", "new_copy_of_old_dup": "old5"}


def test_exact_normalisation_and_bad_input(tmp_path):
    docs = [Document("a", "Café  au lait\n"), Document("b", "cafe\u0301 AU lait"),  # NFC + case + spaces
            Document("c", "café au lait!"), Document("d", ""), Document("e", ""),
            Document("f", "x", meta={"prompt": ["list", "value"]}),
            Document("g", "y", meta={"prompt": ["list", "value"]})]
    _, kept, removed = run_step({"step": "exact_dedup"}, docs, 2, tmp_path / "1")
    assert [x.doc.id for x in removed] == ["b"]  # empty texts are never deduped
    _, _, removed = run_step({"step": "exact_dedup", "lowercase": False}, docs, 2, tmp_path / "2")
    assert removed == []
    _, kept, removed = run_step({"step": "exact_dedup", "text_key": "prompt", "bits": 64}, docs, 3, tmp_path / "3")
    assert [x.doc.id for x in removed] == ["g"]  # a missing key is no text; lists compare as JSON
    assert normalize_exact("A\u030a  B") == "\u00e5 b"


def test_union_find_matches_scipy_components():
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rng = np.random.default_rng(0)
    n = 5000
    u, v = rng.integers(0, n, 4000), rng.integers(0, n, 4000)
    uf = UnionFind(n)
    uf.union(u, v)
    roots = uf.roots()
    _, labels = connected_components(coo_matrix((np.ones(len(u)), (u, v)), shape=(n, n)), directed=False)
    # same partition: a bijection between root ids and scipy labels, roots are the minima
    assert len(set(zip(roots, labels))) == len(set(labels)) == len(set(roots))
    assert all(roots[r] == r and r <= i for i, r in enumerate(roots))


def test_empty_shard_and_all_empty_texts(tmp_path):
    docs = [Document("a", "same words here"), Document("b", "Same words here!"), Document("c", "")]
    step = build_step({"step": "minhash_dedup"})
    step.index([], 0, tmp_path)
    step.index(docs, 1, tmp_path)
    step.index([Document("z", "")], 2, tmp_path)
    stats = step.reduce(tmp_path, 3)
    assert stats["skipped_empty"] == 2 and stats["removed"] == 1
    assert step.apply([], 0, tmp_path) == ([], [])
    kept, removed = step.apply(docs, 1, tmp_path)
    assert [d.id for d in kept] == ["a", "c"] and removed[0].reason == "near_duplicate of a"


def test_cli_matches_curate_run(planted, tmp_path):
    import pyarrow.parquet as pq
    from click.testing import CliRunner

    from curate.cli import cli
    from curate.cli.dedup import dedup_config
    from curate.pipeline.runner import run_pipeline

    docs, _ = planted
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": d.id, "text": d.text}) + "\n" for d in docs))
    result = CliRunner().invoke(cli, ["dedup", str(src), "--out", str(tmp_path / "cli"), "--workers", "1"])
    assert result.exit_code == 0, result.output
    run_pipeline(dedup_config([str(src)], str(tmp_path / "run")), workers=1, quiet=True)

    def outputs(out):
        kept = sorted(i for f in (out / "data").glob("*.parquet") for i in pq.read_table(f).column("id").to_pylist())
        removed = sorted((r["id"], r["reason"], r["extra"]) for f in (out / "removed").glob("*.parquet")
                         for r in pq.read_table(f).to_pylist())
        stats = json.loads((out / "stats.json").read_text())
        return kept, removed, [(s["step"], s["in"], s["removed"]) for s in stats["steps"]]

    assert outputs(tmp_path / "cli") == outputs(tmp_path / "run")
    kept, removed, steps = outputs(tmp_path / "cli")
    assert f"documents in:            {len(docs)}" in result.output
    assert f"kept:                    {len(kept)}" in result.output
    assert f"exact duplicates:        {steps[0][2]}" in result.output and steps[0][2] > 0
    assert len(kept) + len(removed) == len(docs)
    bad = CliRunner().invoke(cli, ["dedup", str(src), "--out", str(tmp_path / "x"), "--keep", "score"])
    assert bad.exit_code == 2 and "--score-key" in bad.output


def test_verification_rejects_lsh_false_positives(texts, tmp_path):
    words = next(a for a in texts["wiki"] if len(a.split()) > 1000).split()
    a, b = " ".join(words[:400]), " ".join(words[100:500])  # overlapping windows: Jaccard ~0.6
    assert 0.5 < exact_jaccard(a, b) < 0.7
    docs = [Document("a", a), Document("b", b)]
    loose = {"step": "minhash_dedup", "bands": 64, "rows": 2}  # such pairs are almost surely candidates
    stats, _, removed = run_step({**loose, "verify": False}, docs, 2, tmp_path / "off")
    assert stats["candidate_pairs"] == 1 and len(removed) == 1
    stats, _, removed = run_step(loose, docs, 2, tmp_path / "on")
    # checked in every band they share, rejected every time
    assert stats["candidate_pairs"] == stats["rejected_pairs"] > 1 and removed == []
