"""MinHash near-dedup benchmark: curate vs datatrove vs text-dedup, one corpus, one run.

Corpus: every real text in ../shared/data (C4, Wikipedia articles and XML dump,
news, SFT data) cut into passages of 40-100 words; passages that are already
near-duplicates of each other (exact Jaccard >= 0.5 among datasketch LSH
candidates) are dropped, then a seeded generator plants copies: a quarter
byte-identical, the rest near-copies with 1-4 word edits (substitution,
insertion, deletion; whitespace otherwise unchanged) whose exact Jaccard with
the source is >= 0.85. Truth: each source with its copies is
a group that should keep exactly one document.

Every tool gets word 5-grams and 128 permutations at threshold 0.8, 2 workers,
JSONL in, kept documents out. Throughput counts the whole command (process
start, reading, hashing, clustering, writing); peak memory is the largest sum
of RSS over the tool's process tree (sampled every 50 ms).

    python benchmarks/dedup_bench.py [--docs 20000] [--workers 2] [--skip-peers]
    python benchmarks/dedup_bench.py --scale 10000000   # reduce on N synthetic signatures: time, RAM, disk

The peers run from a virtual environment this script creates under /tmp
(datatrove[processing] with spacy, text-dedup; needs PyPI the first time).
"""
from __future__ import annotations

import argparse
import bz2
import html
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import machine

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CURATE_SHARED", ROOT.parent / "shared")) / "data"
WORK = Path("/tmp/curate_dedup_bench")
VENV = Path("/tmp/dedup_bench_venv")
PEER_PACKAGES = ["datatrove[processing]==0.10.1", "orjson", "spacy", "text-dedup==0.4.0", "xxhash<4"]
NGRAM, NUM_PERM, THRESHOLD = 5, 128, 0.8


# --- corpus ---------------------------------------------------------------------------
def real_texts() -> list[str]:
    from curate.io.mediawiki import strip_wikitext

    pre, sft = SHARED / "pretrain", SHARED / "sft"
    texts = [json.loads(line)["text"] for line in (pre / "c4_demo.jsonl").open()]
    texts += (pre / "wiki_demo.txt").read_text().splitlines()
    texts += (pre / "lee_background.cor").read_text(encoding="latin-1").splitlines()
    dump = bz2.open(next(pre.glob("enwiki-*.bz2"))).read().decode()
    texts += [strip_wikitext(html.unescape(m)) for m in re.findall(r"<text[^>]*>(.*?)</text>", dump, re.S)]
    for name in ("alpaca_en_demo.json", "identity.json"):
        texts += [" ".join(ex.values()) for ex in json.loads((sft / name).read_text())]
    for ex in json.loads((sft / "dpo_en_demo.json").read_text()):
        texts += [c["value"] for c in ex["conversations"]] + [ex["chosen"]["value"], ex["rejected"]["value"]]
    for ex in json.loads((sft / "kto_en_demo.json").read_text()):
        texts += [m["content"] for m in ex["messages"]]
    for line in (sft / "v1_sft_demo.jsonl").open():
        for m in json.loads(line)["messages"]:
            texts += [p["value"] for p in m["content"] if p.get("type") == "text"]
    return [t for t in texts if t and t.strip()]


def passages(texts: list[str], rng: random.Random) -> list[str]:
    out = []
    for t in texts:
        words = t.split()
        i = 0
        while len(words) - i >= 40:
            n = rng.randint(40, 100)
            out.append(" ".join(words[i:i + n]))
            i += n
    return out


def drop_natural_duplicates(docs: list[str]) -> list[str]:
    """Remove passages that are near-duplicates of an earlier one (exact Jaccard >= 0.5),
    found with datasketch's own MinHash/LSH, so that only planted copies are duplicates."""
    from datasketch import MinHash, MinHashLSH

    from curate.dedup.normalize import normalize_words

    def shingles(t):
        w = normalize_words(t).split()
        return {" ".join(w[i:i + NGRAM]) for i in range(max(1, len(w) - NGRAM + 1))}

    sets = [shingles(t) for t in docs]
    lsh, keep = MinHashLSH(threshold=0.5, num_perm=64), []
    for i, s in enumerate(sets):
        m = MinHash(num_perm=64)
        m.update_batch([x.encode() for x in s])
        if any(len(s & sets[j]) / len(s | sets[j]) >= 0.5 for j in lsh.query(m)) or not s:
            continue
        lsh.insert(i, m)
        keep.append(i)
    return [docs[i] for i in keep]


def jaccard(a: str, b: str) -> float:
    from curate.dedup.normalize import normalize_words

    def grams(t):
        w = normalize_words(t).split()
        return {" ".join(w[i:i + NGRAM]) for i in range(len(w) - NGRAM + 1)}

    x, y = grams(a), grams(b)
    return len(x & y) / len(x | y)


def near_copy(text: str, rng: random.Random) -> str:
    words = text.split()
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(words))
        op = rng.choice("sid")
        if op == "s":
            words[i] = f"w{rng.randrange(10**6)}"
        elif op == "i":
            words.insert(i, f"w{rng.randrange(10**6)}")
        elif len(words) > 1:
            del words[i]
    return " ".join(words)


def build_corpus(n_docs: int, seed: int = 0, files: int = 4) -> tuple[Path, dict[str, str]]:
    """Write ``files`` JSONL shards with ``n_docs`` documents; return (folder, id -> group)."""
    folder = WORK / f"corpus-{n_docs}-{seed}"
    truth_path = folder / "truth.json"
    if truth_path.exists():
        return folder, json.loads(truth_path.read_text())
    rng = random.Random(seed)
    pool = drop_natural_duplicates(passages(real_texts(), rng))
    rng.shuffle(pool)
    n_base = min(len(pool), n_docs * 4 // 5)  # at least a fifth of the corpus is planted copies
    docs = [(f"p{i}", t, f"p{i}") for i, t in enumerate(pool[:n_base])]
    while len(docs) < n_docs:
        _, src, group = docs[rng.randrange(n_base)]
        if rng.random() < 0.25:
            text = src  # a byte-identical copy
        else:
            tries = (near_copy(src, rng) for _ in range(20))
            text = next((t for t in tries if jaccard(src, t) >= 0.85), None)
            if text is None:  # too short for any edit to stay above 0.85
                continue
        docs.append((f"c{len(docs)}_{group}", text, group))
    rng.shuffle(docs)
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        with (folder / f"part-{f}.jsonl").open("w") as out:
            for doc_id, text, _ in docs[f::files]:
                out.write(json.dumps({"id": doc_id, "text": text}) + "\n")
    truth = {doc_id: group for doc_id, _, group in docs}
    truth_path.write_text(json.dumps(truth))
    return folder, truth


def score(kept: set[str], truth: dict[str, str]) -> dict[str, float]:
    """Precision/recall of removals: per planted group, removing all but one is right."""
    sizes, kept_per_group = {}, {}
    for doc_id, group in truth.items():
        sizes[group] = sizes.get(group, 0) + 1
        kept_per_group[group] = kept_per_group.get(group, 0) + (doc_id in kept)
    removed = len(truth) - len(kept & truth.keys())
    right = sum(min(sizes[g] - kept_per_group[g], sizes[g] - 1) for g in sizes)
    should = sum(s - 1 for s in sizes.values())
    p, r = right / max(removed, 1), right / should
    return {"precision": p, "recall": r, "f1": 2 * p * r / max(p + r, 1e-9), "removed": removed}


# --- running tools ----------------------------------------------------------------------
def tree_sample(pid: int, cpu_ticks: dict[int, int]) -> int:
    """Sum of RSS (bytes) over ``pid`` and all its descendants, from /proc; records each
    process's CPU ticks (user + system) in ``cpu_ticks``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            cpu_ticks[p] = max(cpu_ticks.get(p, 0), int(fields[11]) + int(fields[12]))
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            pass
    return total


def timed(cmd: list[str], env: dict | None = None, log: Path | None = None) -> tuple[float, int, float]:
    """Run ``cmd``; return (wall seconds, peak tree RSS bytes, CPU seconds of the tree). Fails loudly.
    Both from sampling /proc every 50 ms over the tool's process tree; CPU time (user +
    system) does not depend on what else the machine runs, unlike wall time."""
    t0 = time.perf_counter()
    cpu_ticks: dict[int, int] = {}
    with open(log or os.devnull, "w") as out:
        proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, tree_sample(proc.pid, cpu_ticks))
            time.sleep(0.05)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{cmd[:3]} failed with {proc.returncode}; see {log}")
    return seconds, peak, sum(cpu_ticks.values()) / os.sysconf("SC_CLK_TCK")


def run_curate(corpus: Path, workers: int) -> tuple[tuple[float, int, float], set[str], str]:
    out = WORK / "out-curate"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-c", "from curate.cli import main; main()", "dedup",
           *map(str, sorted(corpus.glob("part-*.jsonl"))), "--out", str(out), "--no-exact", "--threshold",
           str(THRESHOLD), "--num-perm", str(NUM_PERM), "--ngram", str(NGRAM), "--workers", str(workers), "--quiet"]
    measured = timed(cmd, log=WORK / "curate.log")
    import pyarrow.parquet as pq

    kept = set()
    for f in (out / "data").glob("*.parquet"):
        kept.update(pq.read_table(f, columns=["id"]).column("id").to_pylist())
    g = json.loads((out / "stats.json").read_text())["steps"][-1]["global"]
    from curate.dedup.minhash import optimal_bands

    b, r = optimal_bands(THRESHOLD, NUM_PERM, 0.05, 0.95)
    return measured, kept, f"{b}x{r}, verified ({g['rejected_pairs']} of {g['candidate_pairs']} rejected)"


DATATROVE = '''
import sys
from datatrove.executor.local import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                              MinhashDedupFilter, MinhashDedupSignature)
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.hashing import HashConfig

if __name__ == "__main__":  # its worker processes re-import this file
    corpus, out, workers, files = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    config = MinhashConfig(n_grams=5, num_buckets=16, hashes_per_bucket=8, hash_config=HashConfig(precision=64))
    read = lambda: JsonlReader(corpus, glob_pattern="part-*.jsonl", id_key="id", text_key="text")
    stages = [
        ([read(), MinhashDedupSignature(output_folder=f"{out}/sigs", config=config)], files),
        ([MinhashDedupBuckets(input_folder=f"{out}/sigs", output_folder=f"{out}/buckets", config=config)], 16),
        ([MinhashDedupCluster(input_folder=f"{out}/buckets", output_folder=f"{out}/remove_ids", config=config)], 1),
        ([read(), MinhashDedupFilter(input_folder=f"{out}/remove_ids"), JsonlWriter(f"{out}/kept", compression=None)],
         files),
    ]
    for i, (pipeline, tasks) in enumerate(stages):
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=min(workers, tasks),
                              logging_dir=f"{out}/logs/stage{i}").run()
'''


def run_datatrove(corpus: Path, workers: int) -> tuple[tuple[float, int, float], set[str], str]:
    out = WORK / "out-datatrove"
    shutil.rmtree(out, ignore_errors=True)
    script = WORK / "datatrove_minhash.py"
    script.write_text(DATATROVE)
    files = len(list(corpus.glob("part-*.jsonl")))
    measured = timed([str(VENV / "bin/python"), str(script), str(corpus), str(out), str(workers), str(files)],
                     log=WORK / "datatrove.log")
    kept = {json.loads(line)["id"] for f in (out / "kept").glob("*.jsonl") for line in f.open()}
    return measured, kept, "16x8, unverified"


def run_text_dedup(corpus: Path, workers: int) -> tuple[tuple[float, int, float], set[str], str]:
    out = WORK / "out-text-dedup"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(WORK / "hf-cache", ignore_errors=True)
    cmd = [str(VENV / "bin/python"), "-m", "text_dedup.minhash", "--path", "json", "--data_files",
           str(corpus / "part-*.jsonl"), "--split", "train", "--cache_dir", str(WORK / "hf-cache"), "--column", "text",
           "--output", str(out), "--num_perm", str(NUM_PERM), "--ngram", str(NGRAM), "--threshold", str(THRESHOLD),
           "--num_proc", str(workers)]
    measured = timed(cmd, env={"HF_DATASETS_OFFLINE": "1"}, log=WORK / "text-dedup.log")
    ids = subprocess.run([str(VENV / "bin/python"), "-c", "import sys, json, datasets; "
                          "print(json.dumps(list(datasets.load_from_disk(sys.argv[1])['id'])))", str(out)],
                         capture_output=True, text=True, check=True).stdout
    return measured, set(json.loads(ids)), "9x13 (its optimal_param), unverified"


def ensure_venv() -> None:
    check = [str(VENV / "bin/python"), "-c", "import datatrove, orjson, text_dedup, spacy"]
    if (VENV / "bin/python").exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return
    print(f"creating {VENV} with {' '.join(PEER_PACKAGES)} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin/pip"), "install", "-q", *PEER_PACKAGES], check=True)


SCALE_CHILD = '''
import json, resource, sys, time
import numpy as np
from pathlib import Path
from experiments.steps import build_step

phase, work, n, shard_size = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
step = build_step({"step": "minhash_dedup"})
n_shards = -(-n // shard_size)
t0 = time.perf_counter()
if phase == "index":  # random signatures; 1% of rows are copies of shard 0 rows with 8 of 128 values changed
    rng = np.random.default_rng(0)
    sources = rng.integers(0, 2**32, (shard_size, 128), dtype=np.uint32)
    for s in range(n_shards):
        rows = min(shard_size, n - s * shard_size)
        sig = sources[:rows].copy() if s == 0 else rng.integers(0, 2**32, (rows, 128), dtype=np.uint32)
        planted = rng.choice(rows, rows // 100, replace=False)
        sig[planted] = sources[rng.integers(0, rows if s == 0 else shard_size, len(planted))]
        changed = rng.integers(0, 128, (len(planted), 8))
        sig[planted[:, None], changed] = rng.integers(0, 2**32, changed.shape, dtype=np.uint32)
        step._write_shard(work, f"{s:05d}", sig, np.ones(rows, bool), np.full(rows, 100), np.zeros(rows),
                          [f"d{s}_{r}" for r in range(rows)])
    figures = {}
else:
    figures = step.reduce(work, n_shards)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": round(time.perf_counter() - t0, 1), "peak_rss_mib": round(peak),
                  "removed": figures.get("removed"), "candidate_pairs": figures.get("candidate_pairs")}))
'''


def scale(n: int, shard_size: int = 250_000) -> None:
    """Index then reduce ``n`` synthetic signatures; print time, peak RSS and disk."""
    work = WORK / f"scale-{n}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for phase in ("index", "reduce"):
        out = subprocess.run([sys.executable, "-c", SCALE_CHILD, phase, str(work), str(n), str(shard_size)],
                             capture_output=True, text=True, check=True).stdout
        print(f"{phase}: {out.strip()}", flush=True)
    disk = sum(f.stat().st_size for f in work.iterdir())
    print(f"index on disk: {disk / 2**30:.2f} GiB ({disk / n:.0f} bytes per document)")
    shutil.rmtree(work)


def machine_and_load() -> str:
    return f"{machine()}, load average {os.getloadavg()[0]:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-peers", action="store_true", help="only run curate")
    ap.add_argument("--repeat", type=int, default=1, help="runs per tool; the fastest counts (default 1)")
    ap.add_argument("--scale", type=int, default=0, help="instead: reduce N synthetic signatures (RAM, time)")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine_and_load()}")
    if args.scale:
        return scale(args.scale)
    corpus, truth = build_corpus(args.docs)
    copies = sum(1 for d in truth if d.startswith("c"))
    print(f"corpus: {len(truth)} documents ({copies} planted copies) in {corpus}")
    tools = {"curate": run_curate}
    if not args.skip_peers:
        ensure_venv()
        tools.update({"datatrove": run_datatrove, "text-dedup": run_text_dedup})
    runs: dict[str, list] = {name: [] for name in tools}
    results = {}
    for _ in range(args.repeat):  # tools take turns, so that each meets the same changes in load
        for name, run in tools.items():
            measured, kept, how = run(corpus, args.workers)
            runs[name].append(measured)
            results[name] = (kept, how)
            print(f"  {name}: {measured[0]:.1f} s wall, {measured[2]:.1f} CPU s", flush=True)
    rows = {}
    for name in tools:
        kept, how = results[name]
        seconds, peak, cpu = min(runs[name])  # the run least slowed down by other load
        rows[name] = {"docs_per_s": len(truth) / seconds, "seconds": seconds, "cpu_s": cpu, "peak_mib": peak / 2**20,
                      **score(kept, truth), "bands": how}
    print(f"\nbest of {args.repeat} run(s) per tool, {args.workers} workers")
    print("| tool | docs/s | wall s | CPU s | docs per CPU s | peak MiB | precision | recall | F1 | removed "
          "| bands x rows |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['docs_per_s']:.0f} | {r['seconds']:.1f} | {r['cpu_s']:.1f} | "
              f"{len(truth) / r['cpu_s']:.0f} | {r['peak_mib']:.0f} | {r['precision']:.4f} | {r['recall']:.4f} | "
              f"{r['f1']:.4f} | {r['removed']} | {r['bands']} |")
    for peer in ("datatrove", "text-dedup"):
        if peer in rows:
            print(f"curate / {peer}: throughput {rows['curate']['docs_per_s'] / rows[peer]['docs_per_s']:.1f}x, "
                  f"CPU time {rows[peer]['cpu_s'] / rows['curate']['cpu_s']:.1f}x less")
    print(f"machine after: {machine_and_load()}")
    (WORK / "results.json").write_text(json.dumps({"machine": machine_and_load(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
