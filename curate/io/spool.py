"""Shards for big compressed line files (.gz, .zst, .bz2).

A compressed stream cannot be entered in the middle, so a compressed file used to be one
shard, and a global step (dedup) held that whole shard in memory. Here the file is read
once, as a stream, and written back as pieces of about ``shard_bytes`` of decompressed
text each (zstd level 1, cut just after a newline), so that each piece is a shard of its
own: memory follows ``shard_bytes``, not the size of the file. Line numbers run on across
pieces and records keep the original file's name as their source.
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import zstandard

from curate.io.sources import Shard, compression, open_binary
from curate.basics.files import atomic_path

READ_BYTES = 8 << 20


def split_shards(shards: list[Shard], folder: Path) -> list[Shard]:
    """``shards`` with each whole compressed JSONL or line-text file over its spec's
    ``shard_bytes`` replaced by the pieces :func:`split_compressed` writes under ``folder``."""
    out: list[Shard] = []
    for shard in shards:
        splittable = (shard.format in ("jsonl", "text") and shard.spec.text_mode == "line"
                      and compression(shard.path) and shard.start == 0 and shard.end is None)
        pieces = split_compressed(shard.path, shard.spec.shard_bytes, folder / f"{shard.index:05d}") if splittable else None
        if not pieces:
            out.append(replace(shard, index=len(out)))
        for piece, line in pieces or []:
            out.append(Shard(len(out), piece, shard.source, shard.format, shard.spec, first_line=line, origin=shard.path))
    return out


def _stamp(path: str) -> dict:
    st = os.stat(path)
    return {"path": os.path.abspath(path), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def split_compressed(path: str, shard_bytes: int, folder: Path) -> list[tuple[str, int]] | None:
    """Split the compressed line file ``path`` into pieces of about ``shard_bytes`` decompressed
    bytes under ``folder``; return [(piece path, first line number)], or None when the file
    fits in one shard or its stream is damaged (the reader then reads the original and reports
    the damage as a reject). A finished split is reused while the file is unchanged."""
    done = folder / "pieces.json"
    if done.exists():
        record = json.loads(done.read_text())
        if record["input"] == _stamp(path):
            return [tuple(p) for p in record["pieces"]] or None
    folder.mkdir(parents=True, exist_ok=True)
    try:
        pieces = _write_pieces(path, shard_bytes, folder)
    except (EOFError, OSError, ValueError, zstandard.ZstdError):  # a damaged stream
        pieces = []
    if len(pieces) <= 1:
        for piece, _ in pieces:
            os.unlink(piece)
        pieces = []
    with atomic_path(done) as tmp:
        tmp.write_text(json.dumps({"input": _stamp(path), "pieces": pieces}))
    return pieces or None


def _write_pieces(path: str, shard_bytes: int, folder: Path) -> list[tuple[str, int]]:
    pieces: list[tuple[str, int]] = []
    line, size, out = 1, 0, None
    try:
        with open_binary(path) as f:
            for chunk in iter(lambda: f.read(READ_BYTES), b""):
                while chunk:
                    if out is None:
                        out = _Piece(folder / f"{len(pieces):05d}.zst")
                        pieces.append((str(out.path), line))
                        size = 0
                    cut = len(chunk)
                    if size + len(chunk) >= shard_bytes:  # end the piece after the first newline past shard_bytes
                        nl = chunk.find(b"\n", max(0, shard_bytes - size - 1))
                        cut = nl + 1 if nl >= 0 else len(chunk)
                    out.write(chunk[:cut])
                    size += cut
                    line += chunk.count(b"\n", 0, cut)
                    if cut < len(chunk) or (size >= shard_bytes and chunk[cut - 1:cut] == b"\n"):
                        out.close()
                        out = None
                    chunk = chunk[cut:]
    except BaseException:
        if out is not None:
            out.abort()
        for piece, _ in pieces:
            if os.path.exists(piece):
                os.unlink(piece)
        raise
    if out is not None:
        out.close()
    return pieces


class _Piece:
    """One zstd piece, written under a temporary name and renamed when closed."""

    def __init__(self, path: Path):
        self.path = path
        self.tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        self._file = open(self.tmp, "wb")
        self._writer = zstandard.ZstdCompressor(level=1).stream_writer(self._file, closefd=False)

    def write(self, data: bytes) -> None:
        self._writer.write(data)

    def close(self) -> None:
        self._writer.close()
        self._file.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self._writer.close()
        self._file.close()
        self.tmp.unlink(missing_ok=True)
