"""EIA's six-month EIA-930 CSV files -> observations: the same series and hours the API path stores.

    BALANCE      Demand (MW)                     -> EBA.{BA}-ALL.D.H
                 Demand Forecast (MW)            -> EBA.{BA}-ALL.DF.H
                 Net Generation (MW)             -> EBA.{BA}-ALL.NG.H
                 Total Interchange (MW)          -> EBA.{BA}-ALL.TI.H
                 Net Generation (MW) from <fuel> -> EBA.{BA}-ALL.NG.{FUEL}.H   (FUEL_COLUMNS)
    INTERCHANGE  Interchange (MW)                -> EBA.{BA}-{DIBA}.ID.H
    SUBREGION    Demand (MW)                     -> EBA.{BA}-{Sub-Region}.D.H

The value is the REPORTED column (what the API serves); where EIA imputed a reported value (its
"(Imputed)" cell is filled) the hour is also returned as an `eia-imputed` finding carrying EIA's
value (read_bulk_chunks). "UTC Time at End of Hour" is already hour-ending. Layouts are told apart by column names. Which
column, which empty cells, the layouts' sources and the evidence: docs/bulk-files.md.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd

from gridpulse_cli.catalog import KNOWN_FUELS, MAX_CODE_LENGTH, is_code, series_id
from gridpulse_cli.errors import InputFormatError, quote
from gridpulse_cli.normalize import FRAME_COLUMNS, empty_observations
from gridpulse_cli.quality import mwh
from gridpulse_cli.text import plural
from gridpulse_cli.windows import HOUR_NS

log = logging.getLogger(__name__)

BA = "Balancing Authority"
UTC_END = "UTC Time at End of Hour"
DIBA = "Directly Interconnected Balancing Authority"
SUB_REGION = "Sub-Region"
INTERCHANGE_MW = "Interchange (MW)"
DEMAND = "Demand (MW)"
FORECAST = "Demand Forecast (MW)"
GENERATION = "Net Generation (MW)"
TOTAL_INTERCHANGE = "Total Interchange (MW)"
FUEL_PREFIX = "Net Generation (MW) from "
IMPUTED = " (Imputed)"
ADJUSTED = " (Adjusted)"
UTC_FORMAT = "%m/%d/%Y %I:%M:%S %p"
UTC_EXAMPLE = "07/01/2020 6:00:00 AM"

REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "balance": (BA, UTC_END, FORECAST, DEMAND, GENERATION, TOTAL_INTERCHANGE),
    "interchange": (BA, DIBA, UTC_END, INTERCHANGE_MW),
    "subregion": (BA, SUB_REGION, UTC_END, DEMAND),
}

# API fuel code -> what follows "Net Generation (MW) from " in the BALANCE header, newest layout
# first (a header carries one of them). Up to 2024 Jan_Jun hydro included pumped storage and solar
# and wind were single columns; from 2024 Jul_Dec they are split as the API's codes are.
FUEL_COLUMNS: dict[str, tuple[str, ...]] = {
    "COL": ("Coal",),
    "NG": ("Natural Gas",),
    "NUC": ("Nuclear",),
    "OIL": ("All Petroleum Products",),
    "WAT": ("Hydropower Excluding Pumped Storage", "Hydropower and Pumped Storage"),
    "PS": ("Pumped Storage",),
    "SUN": ("Solar without Integrated Battery Storage", "Solar"),
    "SNB": ("Solar with Integrated Battery Storage",),
    "WND": ("Wind without Integrated Battery Storage", "Wind"),
    "WNB": ("Wind with Integrated Battery Storage",),
    "BAT": ("Battery Storage",),
    "OES": ("Other Energy Storage",),
    "UES": ("Unknown Energy Storage",),
    "GEO": ("Geothermal",),
    "OTH": ("Other Fuel Sources",),
    "UNK": ("Unknown Fuel Sources",),
}

EIA_IMPUTED = "eia-imputed"  # the finding's check name (docs/quality.md)
IMPUTED_COLUMNS = ["series_id", "period_end_utc", "imputed_mwh", "detail"]
_FLAG_NAMES = np.array(["missing", "good"], dtype=object)
_warned_fuels: set[str] = set()


class BulkChunk(NamedTuple):
    """One chunk of a six-month file: its observations (FRAME_COLUMNS) and, among them, the hours
    whose reported value EIA imputed (IMPUTED_COLUMNS: EIA's value and the finding's detail)."""

    observations: pd.DataFrame
    imputed: pd.DataFrame


def imputed_detail(value: float) -> str:
    """The `eia-imputed` finding's detail for EIA's imputed value."""
    return f"{EIA_IMPUTED}: EIA's adjusted series has {mwh(value)} MWh for this hour"


def canonical_column(name: str) -> str:
    """Return a header name as compared: whitespace runs collapsed, EIA's typo "witho" read as "with"."""
    text = re.sub(r"\s+", " ", str(name)).strip()
    return text.replace(" witho Integrated", " with Integrated")


def detect_layout(header: list[str]) -> str:
    """Return the layout ("balance", "interchange", "subregion") of a six-month file header, or raise."""
    names = {canonical_column(column) for column in header}
    for layout in ("interchange", "subregion", "balance"):
        if names.issuperset(REQUIRED_COLUMNS[layout]):
            return layout
    expected = "; ".join(
        f"{layout.upper()} ({', '.join(columns)})" for layout, columns in REQUIRED_COLUMNS.items()
    )
    shown = ", ".join(map(str, header[:8])) + (", ..." if len(header) > 8 else "")
    raise InputFormatError(
        f"not an EIA-930 six-month file header: expected the columns of one of {expected}; got: {shown}"
    )


# ---- the read plan: which raw columns make which series ---------------------------------------


@dataclass(frozen=True)
class _Measure:
    """One value column of a layout and the columns that say whether its series exists."""

    dataset: str
    counterpart: str  # fuel code for fuel-mix; "" otherwise (neighbour / sub-region come from rows)
    value: str  # raw header name of the reported column
    imputed: str | None  # raw header name of its "(Imputed)" column
    adjusted: str | None  # raw header name of its "(Adjusted)" column


@dataclass(frozen=True)
class _Plan:
    layout: str
    area: str
    time: str
    other: str | None  # raw name of the neighbour / sub-region column
    measures: tuple[_Measure, ...]

    @property
    def text_columns(self) -> list[str]:
        return [c for c in (self.area, self.time, self.other) if c is not None]

    @property
    def number_columns(self) -> list[str]:
        columns = [c for m in self.measures for c in (m.value, m.imputed, m.adjusted) if c is not None]
        return list(dict.fromkeys(columns))


def _plan(layout: str, header: Sequence[str]) -> _Plan:
    raw = {canonical_column(column): column for column in reversed(header)}  # first spelling wins

    def measure(dataset: str, counterpart: str, name: str) -> _Measure:
        return _Measure(dataset, counterpart, raw[name], raw.get(name + IMPUTED), raw.get(name + ADJUSTED))

    if layout == "interchange":
        return _Plan(layout, raw[BA], raw[UTC_END], raw[DIBA], (measure("interchange", "", INTERCHANGE_MW),))
    if layout == "subregion":
        return _Plan(
            layout, raw[BA], raw[UTC_END], raw[SUB_REGION], (measure("subregion-demand", "", DEMAND),)
        )
    measures = [
        measure("demand", "", DEMAND),
        measure("forecast", "", FORECAST),
        measure("generation", "", GENERATION),
        measure("total-interchange", "", TOTAL_INTERCHANGE),
    ]
    used: set[str] = set()
    for code, labels in FUEL_COLUMNS.items():
        label = next((label for label in labels if FUEL_PREFIX + label in raw), None)
        if label is not None:
            measures.append(measure("fuel-mix", code, FUEL_PREFIX + label))
            used.add(FUEL_PREFIX + label)
    unmapped = sorted(
        name
        for name in raw
        if name.startswith(FUEL_PREFIX) and not name.endswith((IMPUTED, ADJUSTED)) and name not in used
    )
    if unmapped:
        log.warning("skipping fuel column(s) gridpulse has no EIA fuel code for: %s", "; ".join(unmapped))
    new_codes = sorted({m.counterpart for m in measures if m.counterpart} - KNOWN_FUELS - _warned_fuels)
    if new_codes:
        _warned_fuels.update(new_codes)
        log.warning("new fuel code(s) %s: stored as the API names them", ", ".join(new_codes))
    return _Plan(layout, raw[BA], raw[UTC_END], None, tuple(measures))


# ---- reading --------------------------------------------------------------------------------


def _read_header(path: Path) -> list[str]:
    if not path.exists():
        raise InputFormatError(f"{path}: no such file (expected an EIA-930 six-month CSV file)")
    if not path.is_file():
        raise InputFormatError(f"{path}: not a file (expected an EIA-930 six-month CSV file)")
    try:
        return [str(column) for column in pd.read_csv(path, nrows=0, encoding="utf-8-sig").columns]
    except pd.errors.EmptyDataError:
        raise InputFormatError(f"{path}: empty file (expected an EIA-930 six-month CSV file)") from None
    except (UnicodeDecodeError, pd.errors.ParserError, OSError) as exc:
        raise InputFormatError(f"{path}: not a readable CSV file ({type(exc).__name__})") from None


def read_bulk_file(path: Path, chunk_rows: int = 100_000) -> Iterator[pd.DataFrame]:
    """Return an iterator of observation frames (unique keys within the file) read from one six-month file.

    The file and its header are checked now (InputFormatError naming the file); rows are read as the
    iterator is consumed, `chunk_rows` at a time, so memory stays flat whatever the file size.
    """
    chunks = read_bulk_chunks(path, chunk_rows)
    return (chunk.observations for chunk in chunks)


def read_bulk_chunks(path: Path, chunk_rows: int = 100_000) -> Iterator[BulkChunk]:
    """read_bulk_file, each chunk with the hours EIA imputed (`backfill --from-file` stores them as
    `eia-imputed` findings)."""
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    path = Path(path)
    header = _read_header(path)
    try:
        layout = detect_layout(header)
    except InputFormatError as exc:
        raise InputFormatError(f"{path}: {exc}") from None
    return _observation_chunks(path, _plan(layout, header), chunk_rows)


def _observation_chunks(path: Path, plan: _Plan, chunk_rows: int) -> Iterator[BulkChunk]:
    seen = _SeenKeys()
    rows = observations = 0
    for first_row, chunk in _raw_chunks(path, plan, chunk_rows):
        frame = _chunk_observations(chunk, plan, seen, f"{path}", first_row + 2)
        rows += len(chunk)
        observations += len(frame)
        if len(frame):
            yield _split_imputed(frame)
    if seen.dropped:
        log.warning("%s: dropped %s", path, plural(seen.dropped, f"repeated ({_key_name(plan)}, hour) row"))
    log.info(
        "%s: %s file, %s -> %s", path, plan.layout, plural(rows, "row"), plural(observations, "observation")
    )


def _key_name(plan: _Plan) -> str:
    return {"interchange": "BA, neighbour", "subregion": "BA, sub-region"}.get(plan.layout, "BA")


def _raw_chunks(path: Path, plan: _Plan, chunk_rows: int) -> Iterator[tuple[int, pd.DataFrame]]:
    """Yield (index of the chunk's first data row, chunk): text columns as str, value columns as float."""
    dtypes: dict[str, str | type] = {column: object for column in plan.text_columns}
    dtypes.update({column: "float64" for column in plan.number_columns})
    reader = pd.read_csv(
        path,
        usecols=list(dtypes),
        dtype=dtypes,
        thousands=",",
        keep_default_na=False,
        na_values=[""],
        encoding="utf-8-sig",
        chunksize=chunk_rows,
    )
    first_row = 0
    try:
        with reader:
            for chunk in reader:
                yield first_row, chunk
                first_row += len(chunk)
    except pd.errors.ParserError as exc:
        raise InputFormatError(f"{path}: malformed CSV: {str(exc).strip()}") from None
    except UnicodeDecodeError:
        raise InputFormatError(f"{path}: not a readable CSV file (not UTF-8 text)") from None
    except ValueError as exc:  # a value cell the C reader could not turn into a number
        raise _not_a_number(path, plan, first_row, chunk_rows, exc) from None


def _not_a_number(
    path: Path, plan: _Plan, first_row: int, chunk_rows: int, exc: ValueError
) -> InputFormatError:
    """Find the cell that is not a number (re-reading the failed chunk as text) and name it."""
    text = pd.read_csv(
        path,
        usecols=plan.number_columns,
        dtype=str,
        keep_default_na=False,
        na_filter=False,
        encoding="utf-8-sig",
        skiprows=range(1, first_row + 1),
        nrows=chunk_rows,
    )
    for position, row in enumerate(text.itertuples(index=False)):
        for column, cell in zip(text.columns, row, strict=True):
            cleaned = str(cell).replace(",", "").strip()
            if cleaned:
                try:
                    float(cleaned)
                except ValueError:
                    return InputFormatError(
                        f"{path}:{first_row + position + 2}: {column} {cell!r} is not a number "
                        "(EIA writes numbers like 1,060 or leaves the cell empty)"
                    )
    return InputFormatError(f"{path}: a value is not a number near data row {first_row + 1}: {exc}")


class _SeenKeys:
    """The (entity, hour) row keys already read from one file, kept as int64 so memory stays small."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.keys: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)
        self.dropped = 0

    def first_seen(
        self, entities: npt.NDArray[np.object_], codes: npt.NDArray[np.intp], hours: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        """Return which rows carry a key not seen before in this file (the first of repeats counts)."""
        ids = np.array([self.ids.setdefault(e, len(self.ids)) for e in entities], dtype=np.int64)
        keys = (ids[codes] << 32) + hours
        repeated = pd.Index(keys).duplicated(keep="first") | np.isin(keys, self.keys)
        self.dropped += int(repeated.sum())
        self.keys = np.concatenate([self.keys, keys[~repeated]])
        return ~repeated


def _text_codes(
    column: pd.Series, name: str, source: str, first_line: int, eia_codes: bool = False
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.object_]]:
    """Return per-row codes and the stripped distinct texts of a text column; an empty cell is an
    error, and so, with `eia_codes`, is a text that cannot be an EIA-930 code (it becomes a series ID)."""
    codes, uniques = pd.factorize(column.to_numpy(dtype=object, na_value=""))
    texts = np.array([str(u).strip() for u in uniques], dtype=object)
    empty = np.flatnonzero(texts == "")
    if len(empty):
        position = int(np.flatnonzero(codes == empty[0])[0])
        raise InputFormatError(f"{source}:{first_line + position}: empty {name}")
    bad = [i for i, text in enumerate(texts) if not is_code(text)] if eia_codes else []
    if bad:
        position = int(np.flatnonzero(codes == bad[0])[0])
        raise InputFormatError(
            f"{source}:{first_line + position}: {name} {quote(texts[bad[0]])} is not an EIA-930 code "
            f"(1 to {MAX_CODE_LENGTH} letters, digits or _)"
        )
    return codes.astype(np.intp), texts


def _hours(column: pd.Series, source: str, first_line: int) -> npt.NDArray[np.int64]:
    """Return UTC hour-ending stamps as int64 ns, parsing each distinct text once."""
    codes, texts = _text_codes(column, UTC_END, source, first_line)
    parsed = pd.to_datetime(pd.Series(texts), format=UTC_FORMAT, errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        position = int(np.flatnonzero(codes == np.flatnonzero(bad)[0])[0])
        raise InputFormatError(
            f"{source}:{first_line + position}: {UTC_END} {quote(texts[codes[position]])} "
            f"is not like {UTC_EXAMPLE!r}"
        )
    stamps = parsed.astype("datetime64[ns]").to_numpy().astype(np.int64)
    off_hour = stamps % HOUR_NS != 0
    if off_hour.any():
        position = int(np.flatnonzero(codes == np.flatnonzero(off_hour)[0])[0])
        raise InputFormatError(
            f"{source}:{first_line + position}: {UTC_END} {quote(texts[codes[position]])} is not on the hour"
        )
    return np.asarray(stamps[codes], dtype=np.int64)


def _filled(chunk: pd.DataFrame, column: str | None) -> npt.NDArray[np.bool_]:
    if column is None:
        return np.zeros(len(chunk), dtype=bool)
    return chunk[column].notna().to_numpy()


def _imputed_values(chunk: pd.DataFrame, column: str | None) -> npt.NDArray[np.float64]:
    if column is None:
        return np.full(len(chunk), np.nan)
    return chunk[column].to_numpy(dtype=np.float64)


class _Part(NamedTuple):
    """One measure's observations in a chunk: which rows, their values, flags and EIA's imputed
    values (NaN where EIA did not impute, or where nothing was reported: a gap, not a suspect value)."""

    measure: _Measure
    rows: npt.NDArray[np.intp]
    values: npt.NDArray[np.float64]
    flags: npt.NDArray[np.object_]
    imputed: npt.NDArray[np.float64]


def _chunk_observations(
    chunk: pd.DataFrame, plan: _Plan, seen: _SeenKeys, source: str, first_line: int
) -> pd.DataFrame:
    """Return the observations of one chunk of rows (rows already seen in the file are dropped)."""
    if chunk.empty:
        return empty_observations()
    area_codes, areas = _text_codes(chunk[plan.area], BA, source, first_line, eia_codes=True)
    if plan.other is None:
        entity_codes, entity_area, entity_other = area_codes, areas, None
        entity_names = areas
    else:
        other_codes, others = _text_codes(
            chunk[plan.other], canonical_column(plan.other), source, first_line, eia_codes=True
        )
        pairs = area_codes.astype(np.int64) * len(others) + other_codes
        codes, unique_pairs = pd.factorize(pairs)
        entity_codes = codes.astype(np.intp)
        entity_area = areas[unique_pairs // len(others)]
        entity_other = others[unique_pairs % len(others)]
        entity_names = entity_area + "\x1f" + entity_other
    stamps = _hours(chunk[plan.time], source, first_line)
    fresh = seen.first_seen(entity_names, entity_codes, stamps // HOUR_NS)

    parts: list[_Part] = []
    has_demand = np.zeros(len(chunk), dtype=bool)
    for m in plan.measures:
        values = chunk[m.value].to_numpy(dtype=np.float64)
        imputed = _imputed_values(chunk, m.imputed)
        if plan.layout == "balance":  # an empty cell counts only where EIA shows the series exists
            exists = ~np.isnan(values) | ~np.isnan(imputed) | _filled(chunk, m.adjusted)
            if m.dataset == "demand":
                has_demand = exists
            elif m.dataset == "forecast":
                exists = exists | has_demand
        else:  # INTERCHANGE and SUBREGION rows exist only for real pairs
            exists = np.ones(len(chunk), dtype=bool)
        rows = np.flatnonzero(exists & fresh)
        values = values[rows]
        values = np.where(np.isfinite(values), values, np.nan)
        reported = ~np.isnan(values)
        eia = np.where(reported, imputed[rows], np.nan)
        parts.append(_Part(m, rows, values, _FLAG_NAMES[reported.astype(np.intp)], eia))
    return _assemble(parts, entity_codes, entity_area, entity_other, stamps)


def _assemble(
    parts: list[_Part],
    entity_codes: npt.NDArray[np.intp],
    entity_area: npt.NDArray[np.object_],
    entity_other: npt.NDArray[np.object_] | None,
    stamps: npt.NDArray[np.int64],
) -> pd.DataFrame:
    """Concatenate per-measure columns into one observation frame; texts are built per entity, not per row."""
    rows = np.concatenate([part.rows for part in parts])
    if not len(rows):
        return empty_observations()
    measures = [part.measure for part in parts]
    measure_codes = np.repeat(np.arange(len(parts)), [len(part.rows) for part in parts])
    entities = entity_codes[rows]
    # one series ID per (measure, entity), looked up at measure * len(entity_area) + entity
    ids = np.array(
        [
            series_id(m.dataset, area, m.counterpart if entity_other is None else entity_other[k])
            for m in measures
            for k, area in enumerate(entity_area)
        ],
        dtype=object,
    )
    if entity_other is None:
        counterparts = np.array([m.counterpart for m in measures], dtype=object)[measure_codes]
    else:
        counterparts = entity_other[entities]
    frame = pd.DataFrame(
        {
            "series_id": ids[measure_codes * len(entity_area) + entities],
            "period_end_utc": pd.DatetimeIndex(stamps[rows].view("datetime64[ns]"), tz="UTC"),
            "value_mwh": np.concatenate([part.values for part in parts]),
            "quality_flag": np.concatenate([part.flags for part in parts]),
            "dataset": np.array([m.dataset for m in measures], dtype=object)[measure_codes],
            "area": entity_area[entities],
            "counterpart": counterparts,
            "imputed_mwh": np.concatenate([part.imputed for part in parts]),
        }
    )
    return frame


def _split_imputed(frame: pd.DataFrame) -> BulkChunk:
    """An assembled frame as its observations and the hours EIA imputed, with their details."""
    imputed = frame.loc[frame["imputed_mwh"].notna(), ["series_id", "period_end_utc", "imputed_mwh"]]
    imputed = imputed.reset_index(drop=True)
    details = [imputed_detail(value) for value in imputed["imputed_mwh"]]
    imputed["detail"] = pd.Series(details, index=imputed.index, dtype="str")  # the same dtype when empty
    return BulkChunk(frame[FRAME_COLUMNS], imputed[IMPUTED_COLUMNS])
