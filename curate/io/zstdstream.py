"""Reading ``.zst`` files so that damage is reported exactly as ``gzip`` and ``bz2`` report it.

``zstandard``'s stream reader ends quietly when a file stops inside a frame (records are
lost without a word) and raises its own ``ZstdError`` on corrupt bytes. This reader
decompresses frame by frame and raises ``EOFError`` for a file cut inside a frame and
``OSError`` for a corrupt or non-zstd one, after yielding every byte decoded before.
"""
from __future__ import annotations

import io


class ZstdReader(io.RawIOBase):
    """A raw, read-only stream of the decompressed bytes of a ``.zst`` file (any number
    of frames). Reads ``chunk_bytes`` of compressed input at a time."""

    def __init__(self, path: str, chunk_bytes: int = 1 << 17):
        import zstandard

        self._error = zstandard.ZstdError
        self._decompressor = zstandard.ZstdDecompressor()
        self._file = open(path, "rb")
        self._frame = None  # the decompressor of the frame being read, None between frames
        self._out, self._pos, self._done = b"", 0, False
        self.chunk_bytes = chunk_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._pos >= len(self._out) and not self._done:
            self._out, self._pos = self._decompress_chunk(), 0
        n = min(len(buffer), len(self._out) - self._pos)
        buffer[:n] = self._out[self._pos:self._pos + n]
        self._pos += n
        return n

    def _decompress_chunk(self) -> bytes:
        data = self._file.read(self.chunk_bytes)
        if not data:
            self._done = True
            if self._frame is not None:
                raise EOFError("compressed file ended before the end-of-stream marker was reached")
            return b""
        out = []
        while data:
            if self._frame is None:
                self._frame = self._decompressor.decompressobj()
            try:
                out.append(self._frame.decompress(data))
            except self._error as e:
                self._done = True
                raise OSError(f"corrupt zstd stream: {e}") from None
            if self._frame.eof:  # a frame ended; what follows starts the next one
                data, self._frame = self._frame.unused_data, None
            else:
                data = b""
        return b"".join(out)

    def close(self) -> None:
        self._file.close()
        super().close()
