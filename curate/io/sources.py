"""Where input comes from: input specs, file discovery, shards and raw line streams.

An input spec (one entry of a config's ``inputs``) names files by path, glob or
directory. Each file becomes one or more :class:`Shard` s; large uncompressed
line-based files are split at newline boundaries so that workers share them.
"""
from __future__ import annotations

import bz2
import glob as globlib
import gzip
import io
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import xxhash

from curate.basics.errors import CurateError
from curate.io.zstdstream import ZstdReader
from curate.pipeline.params import flag, number, text

FORMATS = ("jsonl", "json", "parquet", "csv", "text", "hf", "mediawiki")
INPUT_KEYS = {
    "path", "format", "text_field", "id_field", "text_mode", "max_record_bytes",
    "shard_bytes", "namespaces", "keep_markup", "split", "encoding_errors", "fast_jsonl",
}
DEFAULT_MAX_RECORD_BYTES = 16 * 1024 * 1024
DEFAULT_SHARD_BYTES = 128 * 1024 * 1024


@dataclass
class InputSpec:
    """One input entry. ``path`` may be a file, a directory (all files in it,
    recursively) or a glob. ``format`` is guessed from the file name when omitted.

    text_field / id_field: which fields hold the text and the id (default
    ``text`` / ``id``; a missing id is derived from file and line).
    text_mode: for plain text, ``line`` (a document per line, default) or ``file``.
    max_record_bytes: longer records are rejected (default 16 MiB).
    shard_bytes: uncompressed JSONL/text files larger than this are split (default 128 MiB).
    namespaces / keep_markup: MediaWiki dumps only (default: articles, markup stripped).
    split: for ``hf`` inputs loaded from data files, the split to read (default ``train``).
    encoding_errors: ``strict`` (default: a record with invalid UTF-8 is rejected) or
    ``replace`` (invalid bytes become U+FFFD and the record is kept).
    fast_jsonl: parse clean JSONL blocks with pyarrow, line by line only where a block fails
    (default true; the output is the same either way).
    """

    path: str
    format: str | None = None
    text_field: str = "text"
    id_field: str = "id"
    text_mode: str = "line"
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    shard_bytes: int = DEFAULT_SHARD_BYTES
    namespaces: list[int] = field(default_factory=lambda: [0])
    keep_markup: bool = False
    split: str = "train"
    encoding_errors: str = "strict"
    fast_jsonl: bool = True

    @classmethod
    def parse(cls, raw) -> "InputSpec":
        if isinstance(raw, str):
            raw = {"path": raw}
        if not isinstance(raw, dict) or "path" not in raw:
            raise CurateError(f"input entry {raw!r} needs a 'path'")
        unknown = set(raw) - INPUT_KEYS
        if unknown:
            raise CurateError(f"input {raw['path']!r}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(INPUT_KEYS))}")
        spec = cls(**raw)
        _check_types(spec)
        if spec.format is not None and spec.format not in FORMATS:
            raise CurateError(f"input {spec.path!r}: unknown format {spec.format!r}; known: {', '.join(FORMATS)}")
        if spec.text_mode not in ("line", "file"):
            raise CurateError(f"input {spec.path!r}: text_mode must be 'line' or 'file'")
        if spec.encoding_errors not in ("strict", "replace"):
            raise CurateError(f"input {spec.path!r}: encoding_errors must be 'strict' or 'replace'")
        return spec


def _check_types(spec: InputSpec) -> None:
    """One-line CurateErrors for input keys of the wrong type or out of range."""
    if not isinstance(spec.path, str) or not spec.path:
        raise CurateError(f"input path must be a file, folder or glob, got {spec.path!r}")
    try:
        for key in ("text_field", "id_field", "text_mode", "split", "encoding_errors"):
            text(f"input {spec.path!r}: {key}", getattr(spec, key))
        text(f"input {spec.path!r}: format", spec.format, optional=True)
        for key in ("max_record_bytes", "shard_bytes"):
            number(f"input {spec.path!r}: {key}", getattr(spec, key), 1, integer=True)
        flag(f"input {spec.path!r}: keep_markup", spec.keep_markup)
        flag(f"input {spec.path!r}: fast_jsonl", spec.fast_jsonl)
        if not isinstance(spec.namespaces, list):
            raise ValueError(f"input {spec.path!r}: namespaces must be a list of integers, got {spec.namespaces!r}")
        for ns in spec.namespaces:
            number(f"input {spec.path!r}: namespaces", ns, integer=True)
    except ValueError as e:
        raise CurateError(str(e)) from None


@dataclass
class Shard:
    """A unit of work: a file, or a byte range [start, end) of one, starting at ``first_line``.
    ``origin``: for a piece of a split compressed file (:mod:`curate.io.spool`), that file."""

    index: int
    path: str  # as found on disk
    source: str  # stable name written into records: path relative to the spec's base
    format: str
    spec: InputSpec
    start: int = 0
    end: int | None = None
    first_line: int = 1
    origin: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Shard":
        d = dict(d)
        d["spec"] = InputSpec(**d["spec"])
        return cls(**d)


def guess_format(path: str) -> str:
    name = path.lower()
    for suffix in (".gz", ".zst", ".zstd", ".bz2"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if ".xml" in name:
        return "mediawiki"
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if name.endswith(".json"):
        return "json"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".csv", ".tsv")):
        return "csv"
    return "text"


def _is_hf_dataset_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "dataset_info.json").exists() or (path / "state.json").exists() or (path / "dataset_dict.json").exists())


def expand(spec: InputSpec) -> list[tuple[str, str]]:
    """Files named by a spec, as (path, source) pairs in sorted order."""
    p = Path(spec.path)
    if spec.format == "hf" or _is_hf_dataset_dir(p):
        if not p.exists() and not globlib.glob(spec.path):
            raise CurateError(f"input not found: {spec.path}")
        return [(spec.path, p.name)]
    if any(ch in spec.path for ch in "*?["):
        base = Path(spec.path.split("*")[0].split("?")[0].split("[")[0]).parent
        files = sorted(f for f in globlib.glob(spec.path, recursive=True) if os.path.isfile(f))
        if not files:
            raise CurateError(f"no input files match {spec.path}")
    elif p.is_dir():
        base = p
        files = sorted(str(f) for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
        if not files:
            raise CurateError(f"input directory is empty: {spec.path}")
    elif p.is_file():
        base = p.parent
        files = [str(p)]
    else:
        raise CurateError(f"input not found: {spec.path}")
    return [(f, os.path.relpath(f, base)) for f in files]


def plan_shards(specs: list[InputSpec]) -> list[Shard]:
    """Turn input specs into shards, splitting big uncompressed line files at newlines."""
    shards: list[Shard] = []
    for spec in specs:
        for path, source in expand(spec):
            fmt = spec.format or ("hf" if _is_hf_dataset_dir(Path(path)) else guess_format(path))
            if fmt in ("jsonl", "text") and spec.text_mode == "line" and not compression(path) and os.path.getsize(path) > spec.shard_bytes:
                for start, end, line in _split_points(path, spec.shard_bytes):
                    shards.append(Shard(len(shards), path, source, fmt, spec, start, end, line))
            else:
                shards.append(Shard(len(shards), path, source, fmt, spec))
    return shards


def _split_points(path: str, shard_bytes: int) -> list[tuple[int, int, int]]:
    """Byte ranges of about shard_bytes each, cut just after a newline, with the line number each starts at."""
    size = os.path.getsize(path)
    points, start, line = [], 0, 1
    with open(path, "rb") as f:
        while start < size:
            target = start + shard_bytes
            if target >= size:
                points.append((start, size, line))
                break
            f.seek(target)
            f.readline()  # finish the line that straddles the cut
            end = f.tell()
            f.seek(start)
            line_count = _count_newlines(f, end - start)
            points.append((start, end, line))
            start, line = end, line + line_count
    return points


def _count_newlines(f, nbytes: int, block: int = 1 << 24) -> int:
    """Newlines in the next ``nbytes`` of ``f``: read into one reused buffer and counted by numpy
    (twice as fast as ``bytes.count`` on fresh reads)."""
    buf = bytearray(min(block, max(nbytes, 1)))
    view = np.frombuffer(buf, np.uint8)
    count = 0
    while nbytes > 0:
        n = f.readinto(memoryview(buf)[: min(len(buf), nbytes)])
        if not n:
            break
        count += int(np.count_nonzero(view[:n] == 10))
        nbytes -= n
    return count


def compression(path: str) -> str | None:
    """'gzip', 'zstd' or 'bz2' from the file name, or None for an uncompressed file."""
    name = path.lower()
    if name.endswith(".gz"):
        return "gzip"
    if name.endswith((".zst", ".zstd")):
        return "zstd"
    if name.endswith(".bz2"):
        return "bz2"
    return None


def open_binary(path: str) -> io.BufferedIOBase:
    """Open a file for reading bytes, decompressing .gz, .zst and .bz2 on the fly."""
    kind = compression(path)
    if kind == "gzip":
        return gzip.open(path, "rb")
    if kind == "bz2":
        return bz2.open(path, "rb")
    if kind == "zstd":
        return io.BufferedReader(ZstdReader(path))
    return open(path, "rb")


class TruncatedInput(Exception):
    """The compressed stream ended early or is corrupt; carries the last good line number."""

    def __init__(self, line: int, detail: str):
        super().__init__(detail)
        self.line = line


def iter_lines(shard: Shard) -> Iterator[tuple[int, bytes]]:
    """(line number, raw bytes without the newline) for a line-based shard.
    A corrupt or truncated compressed stream raises TruncatedInput after the last good line."""
    line_no = shard.first_line - 1
    try:
        with open_binary(shard.path) as f:
            if shard.start:
                f.seek(shard.start)
            remaining = None if shard.end is None else shard.end - shard.start
            for raw in f:
                line_no += 1
                if remaining is not None:
                    remaining -= len(raw)
                yield line_no, raw.rstrip(b"\r\n") if raw.endswith(b"\n") else raw
                if remaining is not None and remaining <= 0:
                    break
    except (EOFError, OSError, ValueError) as e:  # gzip/bz2/zstd raise these on bad streams
        raise TruncatedInput(line_no + 1, f"{type(e).__name__}: {e}") from None


def fingerprint(path: str) -> dict:
    """Size and xxh3-128 of a file's bytes, for the manifest."""
    if os.path.isdir(path):
        h = xxhash.xxh3_128()
        for f in sorted(Path(path).rglob("*")):
            if f.is_file():
                h.update(str(f.relative_to(path)).encode())
                h.update(f.read_bytes())
        return {"path": path, "xxh3_128": h.hexdigest()}
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return {"path": path, "bytes": os.path.getsize(path), "xxh3_128": h.hexdigest()}
