"""Agreement of curate's heuristic filters with datatrove's, on real documents.

Documents: every C4 document, every Wikipedia article (the 30 long articles and the XML
dump split into articles, wiki markup stripped by curate's MediaWiki reader) and every
news document in ../shared/data/pretrain. Each filter runs on each document on its own
(default settings on both sides) and the keep/drop decisions are compared:

    datatrove GopherQualityFilter     <-> curate gopher_quality
    datatrove GopherRepetitionFilter  <-> curate gopher_repetition
    datatrove C4QualityFilter         <-> curate c4_quality  (also: identical cleaned text)
    datatrove FineWebQualityFilter    <-> curate fineweb_quality
    datatrove C4BadWordsFilter        <-> curate c4_badwords (same LDNOOBW list)

    python benchmarks/filter_agreement.py [--out /tmp/curate_filter_agreement]

datatrove runs in a virtual environment this script creates under /tmp (datatrove,
spacy, regex, xxhash<4 from PyPI the first time). Disagreeing documents are written to
OUT/disagreements_<filter>.jsonl with both sides' reasons. ``filter_bench.py`` imports
the corpus and venv helpers from here.
"""
from __future__ import annotations

import argparse
import bz2
import html
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from _common import machine

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CURATE_SHARED", ROOT.parent / "shared")) / "data"
VENV = Path("/tmp/curate_filters_datatrove_venv")
PEER_PACKAGES = ["datatrove==0.10.1", "spacy>=3.7", "regex", "fasteners", "requests", "aiohttp", "xxhash<4"]
FILTERS = ["gopher_quality", "gopher_repetition", "c4_quality", "fineweb_quality", "c4_badwords"]

# Runs inside the datatrove venv: reads {"mode", "docs", "out"} as JSON from argv[1].
PEER_SCRIPT = r'''
import json, sys, time
from datatrove.data import Document
from datatrove.pipeline.filters import (C4BadWordsFilter, C4QualityFilter, FineWebQualityFilter,
                                        GopherQualityFilter, GopherRepetitionFilter)
job = json.loads(open(sys.argv[1]).read())
if job.get("badwords_en"):
    # No network here: put the same LDNOOBW list (shipped with curate) where datatrove caches its download.
    import os
    from huggingface_hub import cached_assets_path
    from datatrove.pipeline.filters.c4_filters import _EN_BADWORDS_URL
    folder = cached_assets_path(library_name="datatrove", namespace="filters", subfolder="c4_badwords")
    from fsspec.core import strip_protocol
    local = os.path.join(folder, strip_protocol(_EN_BADWORDS_URL).replace("/", "_"))
    if not os.path.exists(local + ".completed"):
        words = [w for w in open(job["badwords_en"], encoding="utf-8").read().splitlines() if not w.startswith("# ")]
        open(local, "w", encoding="utf-8").write("\n".join(words) + "\n")
        open(local + ".completed", "w").close()  # datatrove's marker for a finished download
docs = [json.loads(line) for line in open(job["docs"])]
make = {"gopher_quality": GopherQualityFilter, "gopher_repetition": GopherRepetitionFilter,
        "c4_quality": C4QualityFilter, "fineweb_quality": FineWebQualityFilter,
        "c4_badwords": C4BadWordsFilter}

def verdict(result):
    if result is True:
        return None
    if isinstance(result, tuple):
        return result[1] or "removed"
    return "removed"

if job["mode"] == "agree":
    out = {}
    for name in job["filters"]:
        f = make[name]()
        rows = []
        for d in docs:
            doc = Document(text=d["text"], id=d["id"])
            why = verdict(f.filter(doc))
            rows.append([why, doc.text if name == "c4_quality" and why is None else None])
        out[name] = rows
    from datatrove.utils.text import split_into_words
    out["tokens"] = [split_into_words(d["text"]) for d in docs]
else:  # bench: the chain Gopher quality -> Gopher repetition -> C4 -> FineWeb
    chain = [GopherQualityFilter(), GopherRepetitionFilter(), C4QualityFilter(), FineWebQualityFilter()]
    chain[0].filter(Document(text="warm up the spaCy tokenizer before timing.", id="w"))
    kept = []
    t0, c0 = time.perf_counter(), time.process_time()
    for d in docs:
        doc = Document(text=d["text"], id=d["id"])
        for f in chain:
            if f.filter(doc) is not True:
                break
        else:
            kept.append(doc.id)
    out = {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0, "kept": kept}
open(job["out"], "w").write(json.dumps(out))
'''


def ensure_venv() -> Path:
    """Create the datatrove venv under /tmp once; return its python."""
    python = VENV / "bin" / "python"
    if not python.exists() or subprocess.run([str(python), "-c", "import datatrove, spacy, regex"],
                                             capture_output=True).returncode != 0:
        print(f"creating {VENV} with {' '.join(PEER_PACKAGES)} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
    return python


def wiki_articles(path: Path) -> list[tuple[str, str]]:
    """(title, plain text) of each main-namespace, non-redirect page of a MediaWiki dump."""
    from curate.io.mediawiki import strip_wikitext

    dump = bz2.open(path, "rt", encoding="utf-8").read()
    out = []
    for page in re.findall(r"<page>(.*?)</page>", dump, re.S):
        ns = re.search(r"<ns>(\d+)</ns>", page)
        text = re.search(r"<text[^>]*>(.*?)</text>", page, re.S)
        title = re.search(r"<title>(.*?)</title>", page, re.S)
        if not (ns and text and title) or ns.group(1) != "0":
            continue
        raw = html.unescape(text.group(1))
        if raw.lstrip().lower().startswith("#redirect"):
            continue
        plain = strip_wikitext(raw).strip()
        if plain:
            out.append((html.unescape(title.group(1)), plain))
    return out


def real_documents(shared: Path = SHARED) -> list[dict]:
    """Every real pretraining document in ../shared/data/pretrain, as {id, source, text}."""
    pre = shared / "pretrain"
    docs = []
    for i, line in enumerate(open(pre / "c4_demo.jsonl", encoding="utf-8")):
        docs.append({"id": f"c4-{i}", "source": "c4", "text": json.loads(line)["text"]})
    for i, line in enumerate(open(pre / "wiki_demo.txt", encoding="utf-8")):
        if line.strip():
            docs.append({"id": f"wiki-{i}", "source": "wikipedia", "text": line.strip()})
    dump = next(pre.glob("enwiki-*.xml*.bz2"))
    for title, text in wiki_articles(dump):
        docs.append({"id": f"enwiki-{title}", "source": "wikipedia-xml", "text": text})
    for i, line in enumerate(open(pre / "lee_background.cor", encoding="utf-8", errors="replace")):
        if line.strip():
            docs.append({"id": f"news-{i}", "source": "news", "text": line.strip()})
    return docs


def run_peer(python: Path, mode: str, docs_path: Path, work: Path, filters: list[str] | None = None) -> dict:
    from curate.filters.c4 import BADWORDS_EN

    job = {"mode": mode, "docs": str(docs_path), "out": str(work / f"peer_{mode}.json"), "filters": filters or [],
           "badwords_en": str(BADWORDS_EN)}
    (work / f"job_{mode}.json").write_text(json.dumps(job))
    (work / "peer.py").write_text(PEER_SCRIPT)
    subprocess.run([str(python), str(work / "peer.py"), str(work / f"job_{mode}.json")], check=True)
    return json.loads(Path(job["out"]).read_text())


def ours(name: str, docs: list[dict]) -> list[tuple[str | None, str | None]]:
    """(reason or None, cleaned text for kept c4_quality docs) for each document."""
    from experiments.steps import build_step
    from curate.record import Document

    step = build_step({"step": name})
    step.setup()
    out = []
    for d in docs:
        kept, removed = step.process([Document(d["id"], d["text"], d["source"])])
        if removed:
            out.append((removed[0].reason, None))
        else:
            out.append((None, kept[0].text if name == "c4_quality" else None))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/curate_filter_agreement", help="where disagreements are written")
    args = ap.parse_args()
    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    python = ensure_venv()
    docs = real_documents()
    docs_path = work / "docs.jsonl"
    docs_path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))
    by_source: dict[str, int] = {}
    for d in docs:
        by_source[d["source"]] = by_source.get(d["source"], 0) + 1
    print(f"machine: {machine()}")
    print(f"documents: {len(docs)} ({', '.join(f'{k} {v}' for k, v in by_source.items())})")
    t0 = time.perf_counter()
    peer = run_peer(python, "agree", docs_path, work, FILTERS)
    print(f"datatrove ran in {time.perf_counter() - t0:.1f} s")
    print(f"{'filter':<20} {'agree':>8} {'both keep':>10} {'both drop':>10} {'only dt drops':>14} {'only we drop':>13}")
    for name in FILTERS:
        mine = ours(name, docs)
        theirs = peer[name]
        same = both_keep = both_drop = only_dt = only_us = same_text = 0
        bad = []
        for d, (why_us, text_us), (why_dt, text_dt) in zip(docs, mine, theirs):
            if (why_us is None) == (why_dt is None):
                same += 1
                if why_us is None:
                    both_keep += 1
                    same_text += text_us == text_dt
                else:
                    both_drop += 1
            else:
                only_dt += why_dt is not None
                only_us += why_us is not None
                bad.append({"id": d["id"], "source": d["source"], "curate": why_us, "datatrove": why_dt,
                            "text": d["text"]})
        with open(work / f"disagreements_{name}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(b, ensure_ascii=False) + "\n" for b in bad)
        extra = f"   identical cleaned text {same_text}/{both_keep}" if name == "c4_quality" else ""
        print(f"{name:<20} {same / len(docs):>8.2%} {both_keep:>10} {both_drop:>10} {only_dt:>14} {only_us:>13}{extra}")
    print(f"disagreeing documents: {work}/disagreements_<filter>.jsonl")
    tokenizer_agreement(docs, peer["tokens"])


def tokenizer_agreement(docs: list[dict], spacy_tokens: list[list[str]]) -> None:
    """How close curate's regex tokenizer comes to datatrove's spaCy word tokenizer."""
    from collections import Counter

    from curate.filters.text import split_words

    same_docs = ours_total = theirs_total = shared = 0
    for d, theirs in zip(docs, spacy_tokens):
        ours = list(split_words(d["text"]))
        same_docs += ours == theirs
        ours_total += len(ours)
        theirs_total += len(theirs)
        shared += sum((Counter(ours) & Counter(theirs)).values())
    print(f"word tokens: spaCy {theirs_total}, curate {ours_total} ({ours_total / theirs_total - 1:+.3%}); "
          f"identical token lists in {same_docs}/{len(docs)} documents; "
          f"{shared / theirs_total:.3%} of spaCy's tokens matched (as a multiset per document)")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
