"""Throughput of the heuristic filter chain, curate vs datatrove, same documents, one run.

Chain: Gopher quality -> Gopher repetition -> C4 quality (line cleaning + drop) ->
FineWeb quality, default settings on both sides; a document stops at the first filter
that drops it. Documents: the real texts of ../shared/data/pretrain (C4, Wikipedia
articles and XML dump, news) cut into passages at line and sentence boundaries, each at
least a seeded 10-110 words long: 10,746 passages of 75 words on average. Both sides run
single-threaded in their own process; timing starts after loading (spaCy's tokenizer is
warmed up first; curate's token cache starts empty), so it is the filtering alone. Wall
and CPU seconds are both printed: on a shared machine wall time includes waiting. datatrove's filters are called directly (``filter(doc)``), without
its pipeline overhead; curate's run through ``Step.process`` on batches of 1000, as the
runner calls them. The script also reports how many final keep/drop decisions agree.

    python benchmarks/filter_bench.py [--min-docs 10000] [--seed 0]

datatrove runs from the venv that filter_agreement.py creates under /tmp.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from filter_agreement import ensure_venv, machine, real_documents, run_peer  # noqa: E402

WORK = Path("/tmp/curate_filter_bench")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def passages(text: str, rng: random.Random) -> list[str]:
    """Cut a text into passages of at least a random 10-110 words: whole lines, with lines
    over 80 words first split at sentence ends."""
    pieces: list[str] = []
    for line in text.split("\n"):
        if len(line.split()) > 80:
            pieces += SENTENCE_END.split(line)
        else:
            pieces.append(line)
    out, cur, words, target = [], [], 0, rng.randint(10, 110)
    for piece in pieces:
        cur.append(piece)
        words += len(piece.split())
        if words >= target:
            out.append("\n".join(cur).strip())
            cur, words, target = [], 0, rng.randint(10, 110)
    if words:
        out.append("\n".join(cur).strip())
    return [p for p in out if p]


def bench_docs(min_docs: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    docs = []
    for d in real_documents():
        for j, p in enumerate(passages(d["text"], rng)):
            docs.append({"id": f"{d['id']}#{j}", "source": d["source"], "text": p})
    if len(docs) < min_docs:
        raise SystemExit(f"only {len(docs)} passages; lower --min-docs")
    return docs


def run_curate(docs: list[dict]) -> tuple[float, float, list[str]]:
    from experiments.steps import build_step
    from curate.record import Document

    chain = [build_step({"step": s}) for s in ("gopher_quality", "gopher_repetition", "c4_quality", "fineweb_quality")]
    for s in chain:
        s.setup()
    batches = [[Document(d["id"], d["text"], d["source"]) for d in docs[i:i + 1000]] for i in range(0, len(docs), 1000)]
    kept_ids = []
    t0, c0 = time.perf_counter(), time.process_time()
    for batch in batches:
        for s in chain:
            batch, _ = s.process(batch)
        kept_ids += [d.id for d in batch]
    return time.perf_counter() - t0, time.process_time() - c0, kept_ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--min-docs", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    python = ensure_venv()
    docs = bench_docs(args.min_docs, args.seed)
    path = WORK / "docs.jsonl"
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))
    n_words = sum(len(d["text"].split()) for d in docs)
    print(f"machine: {machine()}")
    print(f"documents: {len(docs)} passages, {n_words / len(docs):.0f} words on average")
    ours_s, ours_cpu, ours_kept = run_curate(docs)
    peer = run_peer(python, "bench", path, WORK)
    dt_s, dt_cpu, dt_kept = peer["seconds"], peer["cpu_seconds"], set(peer["kept"])
    ours_set = set(ours_kept)
    same = sum((d["id"] in dt_kept) == (d["id"] in ours_set) for d in docs)
    # CPU seconds too: on a shared machine wall time also counts other people's work.
    print(f"{'tool':<10} {'wall s':>8} {'docs/s':>8} {'cpu s':>8} {'docs/cpu-s':>11} {'kept':>6}")
    for name, wall, cpu, kept in (("curate", ours_s, ours_cpu, len(ours_kept)), ("datatrove", dt_s, dt_cpu, len(dt_kept))):
        print(f"{name:<10} {wall:>8.2f} {len(docs) / wall:>8.0f} {cpu:>8.2f} {len(docs) / cpu:>11.0f} {kept:>6}")
    print(f"speed-up: {dt_s / ours_s:.1f}x datatrove (wall), {dt_cpu / ours_cpu:.1f}x (cpu); "
          f"identical final keep/drop: {same / len(docs):.2%}")


if __name__ == "__main__":
    main()
