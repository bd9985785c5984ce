"""Raw EIA-930 rows -> observations: one row per (EIA series ID, UTC hour ending).

Observation columns (the CSV that `normalize` writes, `export` writes and `load` reads):

    series_id        EIA's series ID, e.g. EBA.CISO-ALL.D.H
    period_end_utc   end of the hour, UTC (EIA's hourly `period` is hour-ending)
    value            MWh (float); empty when EIA published no usable value
    quality_flag     good | missing | estimated | suspect
    dataset, area, counterpart   what the series ID names, for readers

Raw EIA field names (`respondent`, `fueltype`, `type-name`, …) appear only in this module.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

import numpy as np
import pandas as pd

from gridpulse_cli.catalog import KNOWN_FUELS, MAX_CODE_LENGTH, TYPE_CODE_DATASET, is_code, parse_series_id
from gridpulse_cli.errors import InputFormatError, one_line, quote
from gridpulse_cli.text import plural

log = logging.getLogger(__name__)

# The observation frame: what normalize produces and the store loads (units and zone in the names).
FRAME_COLUMNS = ["series_id", "period_end_utc", "value_mwh", "quality_flag", "dataset", "area", "counterpart"]
# The observation CSV (`normalize`, `export`, `load`): the interface DESIGN.md fixes, `value` in MWh.
CSV_COLUMNS = ["series_id", "period_end_utc", "value", "quality_flag", "dataset", "area", "counterpart"]
REQUIRED_COLUMNS = CSV_COLUMNS[:4]
QUALITY_FLAGS = ("good", "missing", "estimated", "suspect")
PERIOD_FORMAT = "%Y-%m-%dT%H"
CSV_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def row_kind(row: dict[str, Any]) -> str:
    """Which route a raw row came from, told by its fields."""
    if "fromba" in row:
        return "interchange-data"
    if "subba" in row:
        return "region-sub-ba-data"
    if "fueltype" in row:
        return "fuel-type-data"
    if "type" in row and "respondent" in row:
        return "region-data"
    raise InputFormatError(f"not an EIA-930 row (no respondent/fromba/subba field): {quote(json.dumps(row))}")


def empty_observations() -> pd.DataFrame:
    frame = pd.DataFrame({column: pd.Series(dtype=object) for column in FRAME_COLUMNS})
    frame["period_end_utc"] = pd.Series(dtype="datetime64[ns, UTC]")
    frame["value_mwh"] = pd.Series(dtype="float64")
    return frame


def _periods(raw: pd.Series) -> pd.Series:
    """Parse EIA hourly periods; each distinct hour is parsed once (a page repeats each many times)."""
    try:
        codes, uniques = pd.factorize(raw)
        parsed = pd.DatetimeIndex(
            pd.to_datetime(pd.Series(uniques, dtype=object), format=PERIOD_FORMAT, utc=True)
        )
        return pd.Series(parsed.take(codes), index=raw.index)
    except (ValueError, TypeError):
        bad = next((p for p in raw if not _is_hourly_period(p)), raw.iloc[0])
        raise InputFormatError(
            f"period {quote(bad)} is not an hourly UTC period (YYYY-MM-DDTHH); "
            "gridpulse reads frequency=hourly data, not local-hourly"
        ) from None


def _is_hourly_period(text: Any) -> bool:
    try:
        pd.to_datetime(text, format=PERIOD_FORMAT)
    except (ValueError, TypeError):
        return False
    return True


# The two fields besides `period` that, with it, identify a row on each route.
_KEY_FIELDS = {
    "region-data": ("respondent", "type"),
    "fuel-type-data": ("respondent", "fueltype"),
    "interchange-data": ("fromba", "toba"),
    "region-sub-ba-data": ("parent", "subba"),
}
_TYPE_SUFFIX = {"demand": "D", "forecast": "DF", "generation": "NG", "total-interchange": "TI"}
# The fields holding EIA codes (BA, region, sub-BA, fuel): they become series IDs and stored codes.
_CODE_FIELDS = ("respondent", "fromba", "toba", "parent", "subba", "fueltype")


def bad_code(field: str, value: Any) -> str | None:
    """Why `value` cannot be the EIA code in `field` (None when it can)."""
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None
    if text is not None and is_code(text):
        return None
    return f"{field} {quote(value)} is not an EIA-930 code (1 to {MAX_CODE_LENGTH} letters, digits or _)"


def _check_codes(kind: str, keys: Iterable[tuple[Any, Any]]) -> None:
    """Raise InputFormatError for the first (area, counterpart) key holding something not a code."""
    first, second = _KEY_FIELDS[kind]
    for area, other in keys:
        reason = bad_code(first, area) or (None if second == "type" else bad_code(second, other))
        if reason:
            raise InputFormatError(f"{kind} rows: {reason}")


def normalize_rows(
    rows: Sequence[dict[str, Any]], warned_fuels: set[str] | None = None, kind: str | None = None
) -> pd.DataFrame:
    """Return observations for raw EIA rows; `kind` (the route) skips telling it row by row."""
    if not rows:
        return empty_observations()
    warned = warned_fuels if warned_fuels is not None else set()
    if kind is not None:
        return drop_duplicate_observations(_normalize_kind(kind, rows, warned))
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_kind.setdefault(row_kind(row), []).append(row)
    frames = [_normalize_kind(k, group, warned) for k, group in by_kind.items()]
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty_observations()
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return drop_duplicate_observations(frame)


def _fields(rows: Sequence[dict[str, Any]], kind: str) -> tuple[list[Any], list[Any], list[tuple[Any, Any]]]:
    """period, value and the (area, counterpart) key of every row, in one pass each."""
    first, second = _KEY_FIELDS[kind]
    try:
        periods = [row["period"] for row in rows]
        values = [row["value"] for row in rows]
        keys = [(row[first], row[second]) for row in rows]
    except KeyError as missing:
        raise InputFormatError(f"{kind} rows have no '{missing.args[0]}' field") from None
    return periods, values, keys


def _describe_series(kind: str, area: str, other: str) -> tuple[str, str, str] | None:
    """(series_id, dataset, counterpart) for one key; None for a region-data type we do not know."""
    if kind == "region-data":
        dataset = TYPE_CODE_DATASET.get(other)
        if dataset is None:
            return None
        return f"EBA.{area}-ALL.{_TYPE_SUFFIX[dataset]}.H", dataset, ""
    if kind == "fuel-type-data":
        return f"EBA.{area}-ALL.NG.{other}.H", "fuel-mix", other
    if kind == "interchange-data":
        return f"EBA.{area}-{other}.ID.H", "interchange", other
    return f"EBA.{area}-{other}.D.H", "subregion-demand", other


def _normalize_kind(kind: str, rows: Sequence[dict[str, Any]], warned: set[str]) -> pd.DataFrame:
    periods, raw_values, keys = _fields(rows, kind)
    # A page holds a few dozen series over many hours: describe each series once, then broadcast.
    codes, uniques = pd.factorize(pd.Series(keys, dtype=object))
    _check_codes(kind, uniques)  # once per distinct key: rows from EIA as well as from files
    described = [_describe_series(kind, str(area), str(other)) for area, other in uniques]
    unknown = sorted({str(other) for (_, other), d in zip(uniques, described, strict=True) if d is None})
    if unknown:
        log.warning(
            "skipping region-data rows with unknown type code(s): %s",
            ", ".join(quote(code, 40) for code in unknown[:20]),
        )
    if kind == "fuel-type-data":
        new = sorted({str(other) for _, other in uniques} - KNOWN_FUELS - warned)
        if new:
            warned.update(new)
            log.warning("new fuel code(s) %s: stored as published", ", ".join(new))
    table = np.array(
        [
            (d[0], d[1], str(area), d[2]) if d else ("", "", "", "")
            for (area, _), d in zip(uniques, described, strict=True)
        ],
        dtype=object,
    ).reshape(len(uniques), 4)
    keep = np.array([d is not None for d in described], dtype=bool)[codes]
    value = pd.to_numeric(pd.Series(raw_values, dtype=object), errors="coerce").astype("float64")
    finite = value.where(np.isfinite(value)).to_numpy()
    period = _periods(pd.Series(periods, dtype=object)).array  # DatetimeArray: no per-row objects
    rows_of = table[codes]
    if not keep.all():
        rows_of, finite, period = rows_of[keep], finite[keep], period[keep]
    return pd.DataFrame(
        {
            "series_id": rows_of[:, 0],
            "period_end_utc": period,
            "value_mwh": finite,
            "quality_flag": np.where(np.isnan(finite), "missing", "good").astype(object),
            "dataset": rows_of[:, 1],
            "area": rows_of[:, 2],
            "counterpart": rows_of[:, 3],
        }
    ).astype({"period_end_utc": "datetime64[ns, UTC]"})


def drop_duplicate_observations(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep the first row per (series_id, period_end_utc); a repeated key cannot be upserted twice."""
    duplicated = frame.duplicated(["series_id", "period_end_utc"], keep="first")
    if duplicated.any():
        log.warning("dropped %s", plural(int(duplicated.sum()), "repeated (series, hour) row"))
        frame = frame[~duplicated].reset_index(drop=True)
    return frame


# ---- raw JSON lines in -------------------------------------------------------------------


def read_raw_rows(lines: Iterable[str], source: str = "<stdin>") -> Iterator[dict[str, Any]]:
    """Yield raw EIA rows from JSON lines; a bad line is an InputFormatError naming it."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputFormatError(f"{source}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise InputFormatError(f"{source}:{number}: expected a JSON object per line (an EIA row)")
        for field in _CODE_FIELDS:  # checked here too, to name the line
            reason = bad_code(field, row[field]) if field in row else None
            if reason:
                raise InputFormatError(f"{source}:{number}: {reason}")
        yield row


# ---- observation CSV out / in ------------------------------------------------------------


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
    times = frame["period_end_utc"].dt.strftime(CSV_TIME_FORMAT)
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


def read_observations_csv(
    stream: IO[str], source: str = "<stdin>", chunk_rows: int = 200_000
) -> Iterator[pd.DataFrame]:
    """Yield validated observation chunks from CSV (the export/normalize format)."""
    try:
        reader = pd.read_csv(
            stream,
            dtype=str,
            keep_default_na=False,
            chunksize=chunk_rows,
            skipinitialspace=True,
            skip_blank_lines=False,  # keep line numbers in error messages true
            index_col=False,  # a row with an extra field is an error, not an index
        )
        line = 1
        for chunk in reader:
            if [str(c).strip() for c in chunk.columns[:4]] != REQUIRED_COLUMNS:
                raise InputFormatError(
                    f"{source}: header must start with {','.join(REQUIRED_COLUMNS)} "
                    f"(got {quote(','.join(map(str, chunk.columns[:4])))})"
                )
            if chunk.empty:
                continue
            blank = (chunk == "").all(axis=1).to_numpy()
            offsets = pd.Index(np.arange(len(chunk))[~blank])
            yield _validate_chunk(chunk[~blank], source, line, offsets)
            line += len(chunk)
    except pd.errors.EmptyDataError:
        raise InputFormatError(
            f"{source}: empty input; expected CSV with header {','.join(REQUIRED_COLUMNS)}"
        ) from None
    except pd.errors.ParserError as exc:
        raise InputFormatError(f"{source}: malformed CSV: {one_line(str(exc).strip(), 200)}") from None


_SERIES_CACHE: dict[str, tuple[str, str, str]] = {}


def _validate_chunk(
    chunk: pd.DataFrame, source: str, first_line: int, offsets: pd.Index | None = None
) -> pd.DataFrame:
    """Check and convert one chunk; `offsets` are each row's line offset within the chunk."""

    def fail(position: int, message: str) -> InputFormatError:
        offset = int(offsets[position]) if offsets is not None else position
        return InputFormatError(f"{source}:{first_line + 1 + offset}: {message}")

    periods = pd.to_datetime(chunk["period_end_utc"], format=CSV_TIME_FORMAT, utc=True, errors="coerce")
    if periods.isna().any():
        pos = int(np.flatnonzero(periods.isna().to_numpy())[0])
        raise fail(
            pos, f"period_end_utc {quote(chunk['period_end_utc'].iloc[pos])} is not like 2024-01-01T05:00:00Z"
        )
    if (periods.dt.minute != 0).any() or (periods.dt.second != 0).any():
        pos = int(np.flatnonzero(((periods.dt.minute != 0) | (periods.dt.second != 0)).to_numpy())[0])
        raise fail(pos, f"period_end_utc {quote(chunk['period_end_utc'].iloc[pos])} is not on the hour")
    raw_values = chunk["value"].str.strip()
    values = pd.to_numeric(raw_values.where(raw_values != ""), errors="coerce")
    unparsable = (values.isna() | ~np.isfinite(values.astype("float64"))) & (raw_values != "")
    if unparsable.any():
        pos = int(np.flatnonzero(unparsable.to_numpy())[0])
        raise fail(pos, f"value {quote(raw_values.iloc[pos])} is not a number (leave it empty when missing)")
    flags = chunk["quality_flag"].str.strip()
    bad_flags = ~flags.isin(QUALITY_FLAGS)
    if bad_flags.any():
        pos = int(np.flatnonzero(bad_flags.to_numpy())[0])
        raise fail(pos, f"quality_flag {quote(flags.iloc[pos])} is not one of {', '.join(QUALITY_FLAGS)}")
    series = chunk["series_id"].str.strip()
    parts = []
    for sid in series.unique():
        if sid not in _SERIES_CACHE:
            try:
                key = parse_series_id(sid)
            except ValueError as exc:
                pos = int(np.flatnonzero((series == sid).to_numpy())[0])
                raise fail(pos, str(exc)) from None
            _SERIES_CACHE[sid] = (key.dataset, key.area, key.counterpart)
        parts.append((sid, *_SERIES_CACHE[sid]))
    lookup = pd.DataFrame(parts, columns=["series_id", "dataset", "area", "counterpart"]).set_index(
        "series_id"
    )
    frame = pd.DataFrame(
        {
            "series_id": series.to_numpy(dtype=object),
            "period_end_utc": periods.array,
            "value_mwh": values.astype("float64").to_numpy(),
            "quality_flag": flags.to_numpy(dtype=object),
        }
    ).astype({"period_end_utc": "datetime64[ns, UTC]"})
    joined = lookup.reindex(frame["series_id"])
    for column in ("dataset", "area", "counterpart"):
        frame[column] = joined[column].to_numpy(dtype=object)
    return drop_duplicate_observations(frame)
