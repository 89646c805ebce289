"""Plain texts from a file, whatever it holds: the one text reader of the tools that need
only the text (tokenizer training, the architecture ablation)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from curate.basics.errors import CurateError


def read_texts(paths, text_field: str = "text") -> Iterator[str]:
    """Non-empty texts from ``.parquet`` (column ``text_field``), ``.jsonl`` (field
    ``text_field``) or any other file as plain text, one text per non-blank line."""
    for p in map(Path, paths):
        if not p.is_file():
            raise CurateError(f"no such file: {p}")
        if p.suffix == ".parquet":
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(p).iter_batches(columns=[text_field]):
                yield from (t for t in batch.column(0).to_pylist() if t)
        elif p.suffix == ".jsonl":
            with p.open(encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        text = json.loads(line).get(text_field)
                        if text:
                            yield text
        else:
            yield from (line for line in p.read_text(encoding="utf-8").splitlines() if line.strip())
