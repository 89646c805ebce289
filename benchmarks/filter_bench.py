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
    python benchmarks/filter_bench.py --long           # whole documents, not passages
    python benchmarks/filter_bench.py --multilingual   # per language, ../shared/data/multilingual

``--long`` runs the same chain on the whole documents (C4 pages, Wikipedia articles,
news), whose long tail is where repeated n-gram counting costs most. ``--multilingual``
runs, per language, the FineWeb-2 chain (Gopher repetition -> FineWeb -> Gopher quality
with that language's settings on both sides) and, for languages split by a segmenter,
also times the segmenter alone: the floor for both tools.

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

from filter_agreement import (PEER_LANGUAGE, SHARED, ensure_venv, machine, peer_settings,  # noqa: E402
                              real_documents, run_peer)

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


CHAIN = ("gopher_quality", "gopher_repetition", "c4_quality", "fineweb_quality")
FINEWEB2_CHAIN = ("gopher_repetition", "fineweb_quality", "gopher_quality")


def run_curate(docs: list[dict], steps=CHAIN, language: str | None = None) -> tuple[float, float, list[str]]:
    from experiments.steps import build_step
    from curate.record import Document

    chain = [build_step({"step": s, "language": language}) for s in steps]
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


def multilingual(python: Path, langs: list[str]) -> None:
    """Per language: documents per CPU second of the FineWeb-2 chain, curate and datatrove,
    and of the segmenter alone."""
    from curate.filters.segmenters import SEGMENTED, segment

    print(f"machine: {machine()}")
    # Documents per CPU second: on a shared machine wall time also counts other people's work.
    print(f"{'lang':<5} {'docs':>5} {'KB/doc':>7} {'curate/s':>9} {'dt/s':>7} {'speed-up':>9} {'segmenter/s':>12} {'same':>7}")
    for path in sorted((SHARED / "multilingual").glob("*.jsonl")):
        lang = path.stem
        if langs and lang not in langs:
            continue
        docs = [json.loads(line) for line in open(path, encoding="utf-8")]
        docs_path = WORK / f"docs_{lang}.jsonl"
        docs_path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))
        run_curate(docs[:5], FINEWEB2_CHAIN, lang)  # load the segmenter before timing, as datatrove's is warmed
        _, ours_s, ours_kept = run_curate(docs, FINEWEB2_CHAIN, lang)
        peer = run_peer(python, "bench_lang", docs_path, WORK, list(FINEWEB2_CHAIN),
                        language=PEER_LANGUAGE.get(lang, lang), settings=peer_settings(lang))
        seg = ""
        if lang in SEGMENTED:
            t0 = time.process_time()
            for d in docs:
                segment(d["text"], lang)
            seg = f"{len(docs) / (time.process_time() - t0):.0f}"
        dt_kept, our_kept = set(peer["kept"]), set(ours_kept)
        same = sum((d["id"] in dt_kept) == (d["id"] in our_kept) for d in docs)
        kb = sum(len(d["text"].encode()) for d in docs) / len(docs) / 1024
        dt_s = peer["cpu_seconds"]
        print(f"{lang:<5} {len(docs):>5} {kb:>7.1f} {len(docs) / ours_s:>9.0f} {len(docs) / dt_s:>7.0f} "
              f"{dt_s / ours_s:>8.1f}x {seg:>12} {same / len(docs):>7.2%}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--min-docs", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--long", action="store_true", help="whole documents instead of passages")
    ap.add_argument("--multilingual", action="store_true", help="per language, on ../shared/data/multilingual")
    ap.add_argument("--langs", default="", help="with --multilingual: comma-separated codes (default: all)")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    python = ensure_venv()
    if args.multilingual:
        multilingual(python, [x for x in args.langs.split(",") if x])
        return
    docs = [{"id": d["id"], "source": d["source"], "text": d["text"]} for d in real_documents()] if args.long \
        else bench_docs(args.min_docs, args.seed)
    path = WORK / "docs.jsonl"
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))
    n_words = sum(len(d["text"].split()) for d in docs)
    print(f"machine: {machine()}")
    print(f"documents: {len(docs)} {'whole documents' if args.long else 'passages'}, {n_words / len(docs):.0f} words on average, "
          f"longest {max(len(d['text']) for d in docs) / 1024:.0f} KB")
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
