"""Observations out of the database as CSV, JSON lines or Parquet, long or wide.

Long (the default): one row per stored observation, sorted by series_id then time, with the same
leading fields in every format: series_id, period_end_utc, value (MWh, empty/null when missing),
quality_flag; then dataset, area, counterpart. Parquet is typed: period_end_utc a timestamp in
UTC, value float64, quality_flag categorical.

Wide (`--wide`): one row per hour, period_end_utc then one value column per series (in series_id
order); flags are left out. Read hour by hour (Store.iter_observations(by_time=True)) and pivoted
one batch at a time.

Every format streams: rows go out batch by batch, so memory does not grow with the window.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from gridpulse_cli.db import Store
from gridpulse_cli.errors import UsageError, quote
from gridpulse_cli.files import CSV_COLUMNS, format_value
from gridpulse_cli.windows import Window

FORMATS = ("csv", "jsonl", "parquet")
BATCH_ROWS = 50_000
WideWriter = Generator[None, Any, None]  # receives one pivoted batch of hours per send()


def export_csv(
    store: Store,
    out: IO[str],
    window: Window | None,
    bas: Sequence[str] | None,
    datasets: Sequence[str] | None,
) -> int:
    """Write stored observations sorted by series_id then time; return the row count."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    count = 0
    for batch in store.iter_observations(window, bas, datasets):
        writer.writerows(
            (
                sid,
                period,
                "" if value is None else format_value(float(value)),
                flag,
                dataset,
                area,
                counterpart,
            )
            for sid, period, value, flag, dataset, area, counterpart in batch
        )
        count += len(batch)
    return count


def export_jsonl(
    store: Store,
    out: IO[str],
    window: Window | None,
    bas: Sequence[str] | None,
    datasets: Sequence[str] | None,
) -> int:
    """Write one JSON object per observation (the CSV's fields, in its order; value a number or
    null); return the row count."""
    import orjson

    count = 0
    for batch in store.iter_observations(window, bas, datasets, BATCH_ROWS):
        out.write(
            "".join(
                orjson.dumps(dict(zip(CSV_COLUMNS, _typed(row), strict=True))).decode() + "\n"
                for row in batch
            )
        )
        count += len(batch)
    return count


def _typed(row: tuple[Any, ...]) -> tuple[Any, ...]:
    sid, period, value, *rest = row
    return (sid, period, None if value is None else float(value), *rest)


def parquet_schema() -> Any:
    """The long Parquet schema: typed time, float64 MWh, categorical flags and labels."""
    import pyarrow as pa

    label = pa.dictionary(pa.int32(), pa.string())
    return pa.schema(
        [
            ("series_id", pa.string()),
            ("period_end_utc", pa.timestamp("us", tz="UTC")),
            ("value", pa.float64()),
            ("quality_flag", label),
            ("dataset", label),
            ("area", label),
            ("counterpart", label),
        ]
    )


def export_parquet(
    store: Store,
    out: IO[bytes],
    window: Window | None,
    bas: Sequence[str] | None,
    datasets: Sequence[str] | None,
) -> int:
    """Write stored observations as Parquet, one row group per batch; return the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema()
    count = 0
    with pq.ParquetWriter(out, schema) as writer:
        for batch in store.iter_observations(window, bas, datasets, BATCH_ROWS):
            columns = list(zip(*batch, strict=True))
            arrays = [
                pa.array(columns[0], pa.string()),
                _timestamps(columns[1]),
                pa.array([None if v is None else float(v) for v in columns[2]], pa.float64()),
                *(pa.array(c, pa.string()).dictionary_encode() for c in columns[3:]),
            ]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            count += len(batch)
        if count == 0:
            writer.write_table(schema.empty_table())
    return count


def _timestamps(texts: Sequence[str]) -> Any:
    """'2024-01-01T05:00:00Z' texts as a UTC timestamp array."""
    import pyarrow as pa
    import pyarrow.compute as pc

    parsed = pc.strptime(pa.array(texts, pa.string()), format="%Y-%m-%dT%H:%M:%SZ", unit="us")
    return parsed.cast(pa.timestamp("us", tz="UTC"))


# ---- wide: one row per hour, one column per series ------------------------------------------


def hour_batches(
    store: Store, window: Window | None, bas: Sequence[str] | None, datasets: Sequence[str] | None
) -> Iterator[list[tuple[Any, ...]]]:
    """Batches of rows ordered by time, each holding whole hours: a batch's last hour, which the
    next batch may continue, is carried over to it."""
    carry: list[tuple[Any, ...]] = []
    for batch in store.iter_observations(window, bas, datasets, BATCH_ROWS, by_time=True):
        rows = carry + batch
        last = rows[-1][1]
        cut = len(rows)
        while cut > 0 and rows[cut - 1][1] == last:
            cut -= 1
        carry = rows[cut:]
        if cut:
            yield rows[:cut]
    if carry:
        yield carry


def wide_columns(store: Store, bas: Sequence[str] | None, datasets: Sequence[str] | None) -> list[str]:
    """The series columns of a wide export: every stored series of the selection, by series_id."""
    return [row[1] for row in store.series_spans(bas, datasets)]


def _pivot(rows: list[tuple[Any, ...]], series: list[str]) -> Any:
    """Rows of whole hours → a frame indexed by hour text, one float column per series."""
    import pandas as pd

    frame = pd.DataFrame(
        {"series_id": [r[0] for r in rows], "period": [r[1] for r in rows], "value": [r[2] for r in rows]}
    )
    frame["value"] = frame["value"].astype("float64")
    return frame.pivot(index="period", columns="series_id", values="value").reindex(columns=series)


def export_wide(
    store: Store,
    out: IO[Any],
    fmt: str,
    window: Window | None,
    bas: Sequence[str] | None,
    datasets: Sequence[str] | None,
) -> int:
    """Write one row per hour, a column per series, in `fmt`; return the number of hours."""
    series = wide_columns(store, bas, datasets)
    writer = _WIDE_WRITERS[fmt](out, series)
    hours = 0
    try:
        for rows in hour_batches(store, window, bas, datasets):
            table = _pivot(rows, series)
            writer.send(table)
            hours += len(table)
    finally:
        writer.close()
    return hours


def _wide_csv(out: IO[str], series: list[str]) -> WideWriter:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["period_end_utc", *series])
    while True:
        table = yield
        for period, values in zip(table.index, table.to_numpy(dtype="float64"), strict=True):
            writer.writerow([period, *(format_value(v) for v in values)])


def _wide_jsonl(out: IO[str], series: list[str]) -> WideWriter:
    import orjson

    while True:
        table = yield
        for period, values in zip(table.index, table.to_numpy(dtype="float64"), strict=True):
            fields = {s: (None if v != v else float(v)) for s, v in zip(series, values, strict=True)}
            out.write(orjson.dumps({"period_end_utc": period, **fields}).decode() + "\n")


def _wide_parquet(out: IO[bytes], series: list[str]) -> WideWriter:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [("period_end_utc", pa.timestamp("us", tz="UTC")), *((s, pa.float64()) for s in series)]
    )
    with pq.ParquetWriter(out, schema) as writer:
        try:
            while True:
                table = yield
                arrays = [
                    _timestamps(list(table.index)),
                    *(pa.array(table[s].to_numpy(), pa.float64(), from_pandas=True) for s in series),
                ]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
        except GeneratorExit:
            return


def _started(make: Callable[[Any, list[str]], WideWriter]) -> Callable[[Any, list[str]], WideWriter]:
    """A writer factory whose writers are ready for their first `send` (header written)."""

    def start(out: Any, series: list[str]) -> WideWriter:
        writer = make(out, series)
        next(writer)
        return writer

    return start


_WIDE_WRITERS = {
    "csv": _started(_wide_csv),
    "jsonl": _started(_wide_jsonl),
    "parquet": _started(_wide_parquet),
}


def check_format(fmt: str) -> None:
    """An unknown --format is a usage error (before any database is opened)."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown --format {quote(fmt)}: use one of {', '.join(FORMATS)}")


def export_observations(
    store: Store,
    path: Path | None,
    fmt: str,
    wide: bool,
    window: Window | None,
    bas: Sequence[str] | None,
    datasets: Sequence[str] | None,
) -> int:
    """`gridpulse export`: write to `path` (stdout when None), atomically; return rows (hours if wide)."""
    from gridpulse_cli.files import atomic_binary_output, atomic_output

    check_format(fmt)
    if fmt == "parquet":
        with atomic_binary_output(path) as binary:
            if wide:
                return export_wide(store, binary, fmt, window, bas, datasets)
            return export_parquet(store, binary, window, bas, datasets)
    with atomic_output(path) as text:
        if wide:
            return export_wide(store, text, fmt, window, bas, datasets)
        return (export_csv if fmt == "csv" else export_jsonl)(store, text, window, bas, datasets)
