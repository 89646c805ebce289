"""Writers. Every file is written under a temporary name in the same folder and
renamed into place when complete, so a crash never leaves a partial file under
its final name."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.basics.files import TMP_PREFIX, atomic_path
from curate.record import SCHEMA, Document, Removed, TableBatch, to_table

# Row groups of data files: cut by these alone, whatever batches the rows arrive in, so that
# the same rows give the same bytes (the fast JSONL path and the line-by-line one agree).
ROW_GROUP_ROWS = 65536
ROW_GROUP_BYTES = 64 << 20  # of text
REMOVED_SCHEMA = SCHEMA.append(pa.field("step", pa.string())).append(pa.field("reason", pa.string())).append(pa.field("extra", pa.string()))


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def removed_table(removed: list[Removed], batch: TableBatch | None = None) -> pa.Table:
    """Removed documents in :data:`REMOVED_SCHEMA`; ``batch``: the table they were read as, if any."""
    docs = [r.doc for r in removed]
    base = batch.table_of(docs) if batch is not None else to_table(docs)
    return (
        base.append_column("step", pa.array([r.step for r in removed], pa.string()))
        .append_column("reason", pa.array([r.reason for r in removed], pa.string()))
        .append_column("extra", pa.array([json.dumps(r.extra, sort_keys=True) if r.extra else "{}" for r in removed], pa.string()))
    )


def write_parquet(path: str | Path, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


class ShardWriter:
    """Writes documents to ``{prefix}-{k:03d}.parquet`` (or ``.jsonl``) files, starting a
    new file once about ``max_bytes`` of text has gone into the current one.

    Call :meth:`close` to finish; files appear under their final names only then."""

    def __init__(self, folder: str | Path, prefix: str, max_bytes: int = 256 * 1024 * 1024, fmt: str = "parquet"):
        self.folder, self.prefix, self.max_bytes, self.fmt = Path(folder), prefix, max_bytes, fmt
        self.folder.mkdir(parents=True, exist_ok=True)
        self.paths: list[Path] = []
        self.rows_per_file: list[int] = []
        self._pending: list[tuple[Path, Path]] = []
        self._writer = None
        self._bytes = 0
        self._group: list[pa.Table] = []
        self._group_rows = self._group_bytes = 0

    def _open(self):
        final = self.folder / f"{self.prefix}-{len(self.paths):03d}.{self.fmt}"
        tmp = final.with_name(f"{TMP_PREFIX}{os.getpid()}-{final.name}")
        self.paths.append(final)
        self.rows_per_file.append(0)
        self._pending.append((tmp, final))
        self._writer = pq.ParquetWriter(tmp, SCHEMA, compression="zstd") if self.fmt == "parquet" else open(tmp, "w", encoding="utf-8")
        self._bytes = 0

    def write(self, docs: list[Document]) -> None:
        """Append documents, starting a new file whenever the current one is full."""
        if self.fmt == "parquet":
            self.write_table(to_table(docs))
            return
        start = 0
        while start < len(docs):
            if self._writer is None or self._bytes >= self.max_bytes:
                self._finish_current()
                self._open()
            end = start
            while end < len(docs) and self._bytes < self.max_bytes:
                self._bytes += len(docs[end].text.encode("utf-8"))
                end += 1
            self._write_rows(docs[start:end])
            start = end

    def _write_rows(self, docs: list[Document]) -> None:
        for d in docs:
            row = {"id": d.id, "text": d.text, "source": d.source, "meta": d.meta}
            self._writer.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
        self.rows_per_file[-1] += len(docs)

    def write_table(self, table: pa.Table) -> None:
        """Append a table in :data:`curate.record.SCHEMA` (Parquet output). A file ends once about
        ``max_bytes`` of text went in, a row group at ROW_GROUP_ROWS rows or ROW_GROUP_BYTES of text."""
        lengths = pc.binary_length(table["text"]).to_numpy(zero_copy_only=False)
        pos = 0
        while pos < len(lengths):
            if self._writer is None:
                self._open()
            room = min(ROW_GROUP_BYTES - self._group_bytes, self.max_bytes - self._bytes)
            csum = np.cumsum(lengths[pos : pos + ROW_GROUP_ROWS - self._group_rows])
            n = min(int(np.searchsorted(csum, room)) + 1, len(csum))  # the row that fills it goes in
            self._group.append(table.slice(pos, n))
            self._group_rows += n
            self._group_bytes += int(csum[n - 1])
            self._bytes += int(csum[n - 1])
            self.rows_per_file[-1] += n
            if self._group_rows >= ROW_GROUP_ROWS or self._group_bytes >= ROW_GROUP_BYTES or self._bytes >= self.max_bytes:
                self._flush_group()
            if self._bytes >= self.max_bytes:
                self._finish_current()
            pos += n

    def _flush_group(self):
        if self._group:
            self._writer.write_table(pa.concat_tables(self._group).combine_chunks(), row_group_size=ROW_GROUP_ROWS)
        self._group, self._group_rows, self._group_bytes = [], 0, 0

    def _finish_current(self):
        if self._writer is not None:
            if self.fmt == "parquet":
                self._flush_group()
            self._writer.close()
            self._writer = None

    def close(self) -> list[Path]:
        """Close and rename every file into place; returns the final paths."""
        self._finish_current()
        for tmp, final in self._pending:
            os.replace(tmp, final)
        self._pending = []
        return self.paths

    def abort(self) -> None:
        self._finish_current()
        for tmp, _ in self._pending:
            if tmp.exists():
                tmp.unlink()


def remove_stale_tmp(folder: str | Path) -> None:
    """Delete temporary files a crashed run left behind."""
    folder = Path(folder)
    if folder.exists():
        for f in folder.rglob(f"{TMP_PREFIX}*"):
            if f.is_file():
                f.unlink()
