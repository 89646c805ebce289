"""Peak memory of a long ``keep_if``: an id list of about 150 KB over ~9k documents
(the bundled C4 sample repeated under fresh ids), most of them removed.

    python benchmarks/keep_if_memory.py /tmp/keepif          # writes docs.jsonl and keep_if.yaml
    /usr/bin/time -v curate run /tmp/keepif/keep_if.yaml --workers 1 --quiet   # Maximum resident set size
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def main(out: Path, copies: int = 30, list_ids: int = 11_000) -> None:
    out.mkdir(parents=True, exist_ok=True)
    texts = [json.loads(line)["text"] for line in (ROOT / "examples/data/c4_demo.jsonl").read_text().splitlines()]
    with open(out / "docs.jsonl", "w") as f:
        for c in range(copies):
            for i, t in enumerate(texts):
                f.write(json.dumps({"id": f"doc-{c:02d}-{i:04d}", "text": t}) + "\n")
    # every 9th document is listed, the rest of the list names documents that do not exist
    ids = [f"doc-{c:02d}-{i:04d}" for c in range(copies) for i in range(0, len(texts), 9)]
    ids += [f"gone-{k:06d}" for k in range(list_ids - len(ids))]
    expr = f"id in {json.dumps(ids)}"
    config = {"inputs": [str(out / "docs.jsonl")], "steps": [{"step": "keep_if", "expr": expr}],
              "output": {"dir": str(out / "run")}}
    (out / "keep_if.yaml").write_text(yaml.safe_dump(config, width=1 << 30))
    print(f"{copies * len(texts)} documents, expression {len(expr):,} characters, {len(ids)} ids listed")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
