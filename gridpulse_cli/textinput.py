"""Text input for `normalize` and `load`: a file or stdin read as strict UTF-8.

A byte that is not UTF-8 is an InputFormatError naming the input, the line and the byte offset,
raised while reading, so the run reading it is recorded `failed` like any other bad input.
"""

from __future__ import annotations

import io
from typing import BinaryIO

from gridpulse_cli.errors import InputFormatError

BLOCK_BYTES = 1 << 16


class _CountingReader(io.BufferedIOBase):
    """Passes a binary stream through, counting bytes and newlines (to place a decoding error).

    Closing it leaves the stream open: stdin stays stdin, a file is closed by whoever opened it.
    """

    def __init__(self, raw: BinaryIO, name: str) -> None:
        super().__init__()
        self._raw = raw
        self.name = name
        self.total = 0  # bytes read so far
        self.newlines = 0  # b"\n" in them
        self.last = b""  # the most recent block

    def readable(self) -> bool:
        return True

    def _count(self, data: bytes) -> bytes:
        self.total += len(data)
        self.newlines += data.count(b"\n")
        self.last = data
        return data

    def read(self, size: int | None = -1) -> bytes:
        return self._count(self._raw.read(-1 if size is None else size))

    def read1(self, size: int = -1) -> bytes:
        read1 = getattr(self._raw, "read1", None)
        return self._count(read1(size) if read1 else self._raw.read(size))


class Utf8Reader(io.TextIOWrapper):
    """A binary stream as strict UTF-8 text, newlines untranslated (like `open(..., newline="")`)."""

    def __init__(self, raw: BinaryIO, name: str) -> None:
        self._counter = _CountingReader(raw, name)
        super().__init__(self._counter, encoding="utf-8", errors="strict", newline="")
        self._CHUNK_SIZE = BLOCK_BYTES
        self._label = name

    def _not_utf8(self, exc: UnicodeDecodeError) -> InputFormatError:
        # The decoder failed on the bytes of a character left over from the previous block plus
        # the block just read: exc.object. Everything before it was decoded.
        counter, decoded = self._counter, exc.object[: exc.start]
        offset = counter.total - len(exc.object) + exc.start
        line = counter.newlines - counter.last.count(b"\n") + decoded.count(b"\n") + 1
        byte = exc.object[exc.start : exc.start + 1].hex()
        return InputFormatError(
            f"{self._label}:{line}: not UTF-8 text (byte 0x{byte} at byte offset {offset}); "
            "convert it to UTF-8 first"
        )

    def read(self, size: int | None = -1) -> str:
        try:
            return super().read(size)
        except UnicodeDecodeError as exc:
            raise self._not_utf8(exc) from None

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        # Iterating a TextIOWrapper subclass calls this method too, so `for line in …` is covered.
        try:
            return super().readline(-1 if size is None else size)
        except UnicodeDecodeError as exc:
            raise self._not_utf8(exc) from None
