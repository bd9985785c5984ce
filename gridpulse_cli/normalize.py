"""Raw EIA-930 rows -> observations: one row per (EIA series ID, UTC hour ending).

The observation frame (FRAME_COLUMNS; files.py writes it as the observation CSV):

    series_id        EIA's series ID, e.g. EBA.CISO-ALL.D.H (catalog.series_id)
    period_end_utc   end of the hour, UTC (EIA's hourly `period` is hour-ending)
    value_mwh        MWh (float); NaN when EIA published no usable value
    quality_flag     good | missing | estimated | suspect
    dataset, area, counterpart   what the series ID names, for readers

Raw EIA row fields (`respondent`, `fueltype`, …) are read only here; catalog's routes name them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from gridpulse_cli.catalog import (
    FUEL_TYPE_DATA,
    KNOWN_FUELS,
    MAX_CODE_LENGTH,
    REGION_DATA,
    ROUTES,
    dataset_of,
    is_code,
    series_id,
)
from gridpulse_cli.errors import InputFormatError, quote
from gridpulse_cli.text import plural
from gridpulse_cli.windows import PERIOD_FORMAT

log = logging.getLogger(__name__)

# The observation frame: what normalize produces and the store loads (units and zone in the names).
FRAME_COLUMNS = ["series_id", "period_end_utc", "value_mwh", "quality_flag", "dataset", "area", "counterpart"]


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


# The two fields besides `period` that, with it, identify a row on each route (area, code).
_KEY_FIELDS: dict[str, tuple[str, str]] = {
    name: (route.area_facet, route.code_column) for name, route in ROUTES.items()
}
# The fields holding EIA codes (BA, region, sub-BA, fuel): they become series IDs and stored codes.
CODE_FIELDS = ("respondent", "fromba", "toba", "parent", "subba", "fueltype")


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
    dataset = dataset_of(kind, other)
    if dataset is None:
        return None
    counterpart = "" if kind == REGION_DATA.name else other  # region-data: `other` is the type code
    return series_id(dataset, area, counterpart), dataset, counterpart


def _warn_unknown_codes(
    kind: str, uniques: Iterable[tuple[Any, Any]], described: Sequence[Any], warned: set[str]
) -> None:
    """Warn once about type codes skipped and about fuel codes not seen before (stored as published)."""
    unknown = sorted({str(other) for (_, other), d in zip(uniques, described, strict=True) if d is None})
    if unknown:
        log.warning(
            "skipping region-data rows with unknown type code(s): %s",
            ", ".join(quote(code, 40) for code in unknown[:20]),
        )
    if kind == FUEL_TYPE_DATA.name:
        new = sorted({str(other) for _, other in uniques} - KNOWN_FUELS - warned)
        if new:
            warned.update(new)
            log.warning("new fuel code(s) %s: stored as published", ", ".join(new))


def _normalize_kind(kind: str, rows: Sequence[dict[str, Any]], warned: set[str]) -> pd.DataFrame:
    periods, raw_values, keys = _fields(rows, kind)
    # A page holds a few dozen series over many hours: describe each series once, then broadcast.
    codes, uniques = pd.factorize(pd.Series(keys, dtype=object))
    _check_codes(kind, uniques)  # once per distinct key: rows from EIA as well as from files
    described = [_describe_series(kind, str(area), str(other)) for area, other in uniques]
    _warn_unknown_codes(kind, uniques, described, warned)
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
