"""Files in and out: atomic output, strict UTF-8 input, raw JSON lines and the observation CSV.

The observation CSV (`normalize` and `export` write it, `load` reads it) is the interface DESIGN.md
fixes: the columns below, `value` in MWh, times as `2024-01-01T05:00:00Z` (UTC hour ending).
pandas is imported only by the functions that need it, so commands that write no CSV start fast.
"""

from __future__ import annotations

import csv
import io
import json
import os
import queue
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, TextIO, TypeVar, cast

from gridpulse_cli.errors import InputFormatError, UsageError, file_problem, one_line, quote
from gridpulse_cli.windows import TIME_FORMAT

if TYPE_CHECKING:
    import pandas as pd

T = TypeVar("T")

# The observation CSV (`normalize`, `export`, `load`): the interface DESIGN.md fixes, `value` in MWh.
CSV_COLUMNS = ["series_id", "period_end_utc", "value", "quality_flag", "dataset", "area", "counterpart"]
REQUIRED_COLUMNS = CSV_COLUMNS[:4]
BLOCK_BYTES = 1 << 16


# ---- output ------------------------------------------------------------------------------


@contextmanager
def atomic_output(path: Path | None) -> Iterator[IO[str]]:
    """stdout, or a file written atomically (no partial file is left on failure)."""
    if path is None or str(path) == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    directory = path.resolve().parent
    try:
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, renamed into place
            "w", dir=directory, prefix=f".{path.name}.", suffix=".tmp", delete=False, newline=""
        )
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with handle:
            yield handle
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_binary_output(path: Path | None) -> Iterator[IO[bytes]]:
    """stdout's bytes, or a file written atomically, for binary formats (Parquet)."""
    if path is None or str(path) == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with atomic_output(path) as handle:
        yield cast(TextIO, handle).buffer  # nothing goes through the text layer: bytes straight on


# ---- input: a file or stdin as strict UTF-8 ------------------------------------------------


@contextmanager
def input_stream(name: str) -> Iterator[tuple[IO[str], str]]:
    """stdin or a file, read as strict UTF-8 alike (a bad byte is an InputFormatError naming it)."""
    if name in ("", "-"):
        if sys.stdin.isatty():
            raise UsageError("no input: give a FILE or pipe data into stdin")
        raw = getattr(sys.stdin, "buffer", None)  # bytes, not the locale's (lenient) decoding
        yield (sys.stdin if raw is None else Utf8Reader(raw, "<stdin>")), "<stdin>"
        return
    try:
        handle = open(name, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InputFormatError(f"input file {name} {file_problem(exc)}") from None
    with handle:
        yield Utf8Reader(handle, name), name


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
    """A binary stream as strict UTF-8 text, newlines untranslated (like `open(..., newline="")`).

    A byte that is not UTF-8 is an InputFormatError naming the input, the line and the byte offset,
    raised while reading, so the run reading it is recorded `failed` like any other bad input.
    """

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


# ---- raw JSON lines in -------------------------------------------------------------------


def read_raw_rows(lines: Iterable[str], source: str = "<stdin>") -> Iterator[dict[str, Any]]:
    """Yield raw EIA rows from JSON lines; a bad line is an InputFormatError naming it."""
    from gridpulse_cli.normalize import CODE_FIELDS, bad_code

    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputFormatError(f"{source}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise InputFormatError(f"{source}:{number}: expected a JSON object per line (an EIA row)")
        for field in CODE_FIELDS:  # checked here too, to name the line
            reason = bad_code(field, row[field]) if field in row else None
            if reason:
                raise InputFormatError(f"{source}:{number}: {reason}")
        yield row


# ---- observation CSV out -----------------------------------------------------------------


def format_value(value: float) -> str:
    """MWh as EIA wrote it: integers without '.0', decimals in the shortest exact form."""
    if value != value:  # NaN
        return ""
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(float(value))


def write_observations_csv(frame: pd.DataFrame, out: IO[str], header: bool = True) -> None:
    """Write observations as CSV (the export format)."""
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(CSV_COLUMNS)
    if frame.empty:
        return
    times = frame["period_end_utc"].dt.strftime(TIME_FORMAT)
    values = [format_value(v) for v in frame["value_mwh"].to_numpy(dtype="float64")]
    writer.writerows(
        zip(
            frame["series_id"],
            times,
            values,
            frame["quality_flag"],
            frame["dataset"],
            frame["area"],
            frame["counterpart"],
            strict=True,
        )
    )


# ---- observation CSV in ------------------------------------------------------------------


def read_observations_csv(
    stream: IO[str], source: str = "<stdin>", chunk_rows: int = 200_000
) -> Generator[pd.DataFrame, None, None]:
    """Yield validated observation chunks from CSV (the export/normalize format).

    The next chunk is read and checked in a helper thread while the caller writes this one: the
    database works in its own process (or, for SQLite, without the GIL) meanwhile."""
    return _read_ahead(_observation_chunks(stream, source, chunk_rows))


def _read_ahead(items: Iterator[T]) -> Generator[T, None, None]:
    """Yield `items`, producing the next one in a thread meanwhile; its errors are raised here, in
    order. Closing this generator (the caller failed or stopped) stops and joins the thread."""
    handoff: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)
    closed = threading.Event()

    def hand(entry: tuple[bool, Any]) -> bool:
        while not closed.is_set():
            try:
                handoff.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not hand((True, item)):
                    return
            hand((False, None))
        except BaseException as exc:  # handed to the consumer, raised there
            hand((False, exc))

    thread = threading.Thread(target=produce, name="gridpulse-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            more, item = handoff.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        closed.set()
        thread.join()


def _observation_chunks(stream: IO[str], source: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    import pandas as pd

    try:
        reader = pd.read_csv(
            stream,
            dtype=object,  # plain str objects: no per-value StringDtype checks
            na_filter=False,  # every field is text, "" included
            chunksize=chunk_rows,
            skipinitialspace=True,
            skip_blank_lines=False,  # keep line numbers in error messages true
            index_col=False,  # a row with an extra field is an error, not an index
        )
        line = 1
        for chunk in reader:
            _check_header(list(chunk.columns[:4]), source)
            if not chunk.empty:
                yield _validate_chunk(chunk, source, line)
            line += len(chunk)
    except pd.errors.EmptyDataError:
        raise InputFormatError(
            f"{source}: empty input; expected CSV with header {','.join(REQUIRED_COLUMNS)}"
        ) from None
    except pd.errors.ParserError as exc:
        raise InputFormatError(f"{source}: malformed CSV: {one_line(str(exc).strip(), 200)}") from None


def _check_header(first: list[Any], source: str) -> None:
    if [str(c).strip() for c in first] != REQUIRED_COLUMNS:
        raise InputFormatError(
            f"{source}: header must start with {','.join(REQUIRED_COLUMNS)} "
            f"(got {quote(','.join(map(str, first)))})"
        )


class _Column:
    """One CSV column of a chunk as (codes, distinct texts): a CSV repeats each series, hour and flag
    many times, so every check and conversion runs once per distinct text, then is broadcast."""

    def __init__(self, chunk: pd.DataFrame, name: str) -> None:
        import pandas as pd

        self.name = name
        codes, uniques = pd.factorize(chunk[name].to_numpy(dtype=object))
        self.codes, self.uniques = codes, list(uniques)

    def first_row(self, bad: Any) -> int:
        """Position of the first row whose distinct text is flagged in the boolean array `bad`."""
        import numpy as np

        return int(np.flatnonzero(np.asarray(bad, dtype=bool)[self.codes])[0])


def _validate_chunk(chunk: pd.DataFrame, source: str, first_line: int) -> pd.DataFrame:
    """Check and convert one chunk read from line `first_line` on; the first bad row is the error."""
    import numpy as np

    from gridpulse_cli.normalize import drop_duplicate_observations

    blank = _blank_rows(chunk)
    offsets = np.flatnonzero(~blank) if blank.any() else None  # each kept row's line offset
    if offsets is not None:
        chunk = chunk[~blank]

    def fail(position: int, message: str) -> InputFormatError:
        offset = int(offsets[position]) if offsets is not None else position
        return InputFormatError(f"{source}:{first_line + 1 + offset}: {message}")

    periods, period_codes = _periods_utc(_Column(chunk, "period_end_utc"), fail)
    values = _values_mwh(_Column(chunk, "value"), fail)
    flags = _quality_flags(_Column(chunk, "quality_flag"), fail)
    series, series_codes = _series(_Column(chunk, "series_id"), fail)
    frame = _frame(series, periods, values, flags)
    # (series, hour) pairs as one int64 each: a cheap exact test before pandas' slower duplicated()
    if _has_duplicates(series_codes, period_codes):
        frame = drop_duplicate_observations(frame)
    return frame


def _blank_rows(chunk: pd.DataFrame) -> Any:
    """A boolean array: the rows that are blank lines (every field empty)."""
    import numpy as np

    maybe = chunk.iloc[:, 0].to_numpy(dtype=object) == ""
    if not maybe.any():
        return maybe
    blank = np.zeros(len(chunk), dtype=bool)
    blank[maybe] = (chunk[maybe] == "").all(axis=1).to_numpy()
    return blank


_HOUR_SHAPE = re.compile(r"(?:1[7-9]|2[01])\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ")  # years 1700-2199


def _parse_times(texts: list[Any]) -> Any:
    """datetime64[ns] (UTC, naive) for each text like 2024-01-01T05:00:00Z; NaT where it is not.

    The strict shape is parsed by numpy in one call; anything else (or a shape numpy rejects) is
    judged by pandas with the documented format, as it always was."""
    import numpy as np
    import pandas as pd

    out = np.full(len(texts), np.datetime64("NaT"), dtype="datetime64[ns]")
    strict = np.array(
        [isinstance(t, str) and _HOUR_SHAPE.fullmatch(t) is not None for t in texts], dtype=bool
    )
    try:
        out[strict] = np.array(
            [t[:-1] for t, s in zip(texts, strict, strict=True) if s], dtype="datetime64[s]"
        )
        rest = np.flatnonzero(~strict)
    except ValueError:  # e.g. 2024-02-30: let pandas judge every text
        rest = np.arange(len(texts))
    if len(rest):
        judged = pd.to_datetime(
            pd.Series([texts[i] for i in rest], dtype=object),
            format=TIME_FORMAT,
            utc=True,
            errors="coerce",
        )
        out[rest] = judged.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    return out


def _periods_utc(column: _Column, fail: Callable[[int, str], InputFormatError]) -> tuple[Any, Any]:
    """(period_end_utc per row as a UTC DatetimeArray, its distinct-hour codes)."""
    import numpy as np
    import pandas as pd

    parsed = _parse_times(column.uniques)
    if np.isnat(parsed).any():
        pos = column.first_row(np.isnat(parsed))
        text = column.uniques[column.codes[pos]]
        raise fail(pos, f"period_end_utc {quote(text)} is not like 2024-01-01T05:00:00Z")
    off_hour = parsed.astype("int64") % (3600 * 10**9) != 0
    if off_hour.any():
        pos = column.first_row(off_hour)
        raise fail(pos, f"period_end_utc {quote(column.uniques[column.codes[pos]])} is not on the hour")
    hours = pd.DatetimeIndex(parsed).tz_localize("UTC")
    hour_codes, _ = pd.factorize(parsed)  # two texts may name one hour (05 and 5)
    return hours.take(column.codes).array, hour_codes[column.codes]


def _values_mwh(column: _Column, fail: Callable[[int, str], InputFormatError]) -> Any:
    """value in MWh per row (NaN where empty); a text that is not a finite number is the error."""
    import numpy as np
    import pandas as pd

    texts = pd.Series(column.uniques, dtype=object)
    numbers = pd.to_numeric(texts, errors="coerce").to_numpy(dtype="float64", copy=True)
    doubtful = ~np.isfinite(numbers) & (texts != "").to_numpy()
    if doubtful.any():  # a number with trailing spaces, spaces only, or not a number at all
        stripped = texts[doubtful].str.strip()
        retried = pd.to_numeric(stripped.where(stripped != ""), errors="coerce").to_numpy(dtype="float64")
        numbers[doubtful] = retried
        bad = np.zeros(len(texts), dtype=bool)
        bad[doubtful] = ~np.isfinite(retried) & (stripped != "").to_numpy()
        if bad.any():
            pos = column.first_row(bad)
            text = str(column.uniques[column.codes[pos]]).strip()
            raise fail(pos, f"value {quote(text)} is not a number (leave it empty when missing)")
    return numbers[column.codes]


def _quality_flags(column: _Column, fail: Callable[[int, str], InputFormatError]) -> Any:
    """quality_flag per row (an object array); a flag not in QUALITY_FLAGS is the error."""
    import numpy as np

    from gridpulse_cli.catalog import QUALITY_FLAGS

    flags = np.array([str(u).strip() for u in column.uniques], dtype=object)
    bad = ~np.isin(flags, QUALITY_FLAGS)
    if bad.any():
        pos = column.first_row(bad)
        raise fail(
            pos, f"quality_flag {quote(flags[column.codes[pos]])} is not one of {', '.join(QUALITY_FLAGS)}"
        )
    return flags[column.codes]


_SERIES_CACHE: dict[str, tuple[str, str, str, str]] = {}


def _series(column: _Column, fail: Callable[[int, str], InputFormatError]) -> tuple[Any, Any]:
    """(rows x [series_id, dataset, area, counterpart] object array, series codes per row)."""
    import numpy as np

    from gridpulse_cli.catalog import parse_series_id

    described = []
    for index, raw in enumerate(column.uniques):
        sid = str(raw).strip()
        if sid not in _SERIES_CACHE:
            try:
                key = parse_series_id(sid)
            except ValueError as exc:
                raise fail(column.first_row(np.arange(len(column.uniques)) == index), str(exc)) from None
            _SERIES_CACHE[sid] = (sid, key.dataset, key.area, key.counterpart)
        described.append(_SERIES_CACHE[sid])
    table = np.array(described, dtype=object).reshape(len(described), 4)
    # two raw texts may name one series (" X" and "X"): code rows by the stripped ID
    ids = {sid: i for i, sid in enumerate(dict.fromkeys(d[0] for d in described))}
    remap = np.array([ids[d[0]] for d in described], dtype=np.int64)
    return table[column.codes], remap[column.codes]


def _frame(series: Any, periods: Any, values: Any, flags: Any) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(
        {
            "series_id": series[:, 0],
            "period_end_utc": periods,
            "value_mwh": values,
            "quality_flag": flags,
            "dataset": series[:, 1],
            "area": series[:, 2],
            "counterpart": series[:, 3],
        }
    )


def _has_duplicates(series_codes: Any, period_codes: Any) -> bool:
    import numpy as np
    import pandas as pd

    pairs = series_codes.astype(np.int64) << 32 | period_codes.astype(np.int64)
    return bool(pd.Index(pairs).has_duplicates)
