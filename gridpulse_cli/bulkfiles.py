"""EIA's six-month EIA-930 CSV files -> observations: the same series and hours the API path stores.

EIA publishes every half year of EIA-930 as three CSV files (Grid Monitor "sixMonthFiles"):

    EIA930_BALANCE_<year>_<Jan_Jun|Jul_Dec>.csv      one row per BA and hour: demand, day-ahead
                                                     forecast, net generation, total interchange and
                                                     net generation by fuel, each as reported,
                                                     "(Imputed)" and "(Adjusted)"
    EIA930_INTERCHANGE_<year>_<half>.csv             one row per BA, neighbour and hour
    EIA930_SUBREGION_<year>_<half>.csv               one row per BA, sub-region and hour

`read_bulk_file` turns any of them into observation frames (`normalize.FRAME_COLUMNS`) with
EIA's series IDs, exactly as `normalize.normalize_rows` does for API rows:

    BALANCE      Demand (MW)                     -> EBA.{BA}-ALL.D.H
                 Demand Forecast (MW)            -> EBA.{BA}-ALL.DF.H
                 Net Generation (MW)             -> EBA.{BA}-ALL.NG.H
                 Total Interchange (MW)          -> EBA.{BA}-ALL.TI.H
                 Net Generation (MW) from <fuel> -> EBA.{BA}-ALL.NG.{FUEL}.H   (FUEL_COLUMNS)
    INTERCHANGE  Interchange (MW)                -> EBA.{BA}-{DIBA}.ID.H
    SUBREGION    Demand (MW)                     -> EBA.{BA}-{Sub-Region}.D.H

Time: "UTC Time at End of Hour" (`07/01/2020 6:00:00 AM`) is already hour-ENDING, which is what
gridpulse stores as `period_end_utc` (the API's `period` 2020-07-01T06 is the same hour). A stamp
that is not on the hour, or not in that format, is an InputFormatError naming the file and line.
Numbers carry thousands separators inside quotes ("1,060"); an empty cell is no value.

Which column becomes the value -- reported, not adjusted
-------------------------------------------------------
The value stored is the REPORTED column (`Demand (MW)`, `Net Generation (MW)`, ...,
`Net Generation (MW) from Coal`), because that is what the EIA API serves for the same hour, so a
bulk backfill followed by API ingests of the same hours records no spurious revisions. Evidence:

* domoench/prefect-df, notebooks/bulk_eia_data_extract.ipynb
  (commit 3be4c6b5e1e8e7b2217af8fd40d7b2156078aa2e) fetched region-data type D for PJM for every
  hour 2015-07-01T05..2024-06-28T04 (78,839 rows) and compared it with EIA's published per-BA file
  (gridmonitor/knownissues/xls/PJM.xlsx, the same reported / Imputed / Adjusted columns as the
  six-month files): the API value equals the reported `D` on every hour, nulls included (194),
  while `Adjusted D` is filled in where EIA imputed (27 nulls left) -- "The API gives the raw values
  found in the spreadsheet - not the adjusted values".
* EIA's column notes (quoted in that notebook): Imputed -- "EIA imputes for anomalous values ... if
  the value is missing or reported as negative, zero, or at least 1.5 times greater than the maximum
  of past ... values"; Adjusted -- the reported value, or the imputed one where imputation was
  required. PUDL names them `demand_reported_mwh` ("Originally reported"), `demand_imputed_eia_mwh`
  ("with outliers and missing values imputed by EIA") and `demand_adjusted_mwh`
  (catalyst-cooperative/pudl src/pudl/metadata/fields.py).
* jdechalendar/gridemissions src/gridemissions/eia_bulk_grid_monitor.py converts these files "to the
  format that is output by eia_api_v2.scrape" from the reported columns.
* DESIGN.md §1.9: about 2% of hours are missing from the API, as in the reported columns; the
  Adjusted columns have those hours filled.
The direct comparison covers demand; net generation, total interchange and fuel mix have the same
reported/Imputed/Adjusted structure and are read the same way.

Quality flags: `missing` when the reported cell is empty (or the hour is otherwise without a
value); `estimated` when a value is present and the "(Imputed)" cell is not empty, meaning EIA
judged that hour's reported value anomalous and put an estimate in its Adjusted series (the stored
value stays the reported one the API serves; the flag carries EIA's judgement); `good` otherwise.
The post-2024-H2 files mark imputation the same way (an "(Imputed)" column per measure).

Which empty cells become observations
-------------------------------------
Every BALANCE row has a cell for every fuel, and most are empty because the BA has no such fuel
(AEC has no nuclear); the API has no such series at all. So an empty BALANCE cell becomes a
`missing` observation only when EIA shows the series exists at that hour: its "(Imputed)" or
"(Adjusted)" cell is filled (the forecast: the row has demand). An hour for which EIA's file holds
nothing at all is not emitted, like an hour the API does not publish. INTERCHANGE and SUBREGION rows
exist only for real pairs, so their empty cells are always `missing` observations.

Layouts (told apart by column names, never positions; header text is compared with whitespace runs
collapsed and EIA's typo "Solar witho Integrated" read as "Solar with Integrated")
------------------------------------------------------------------------------------------------
* BALANCE up to 2024 Jan_Jun: 42 columns, fuels Coal, Natural Gas, Nuclear, All Petroleum Products,
  Hydropower and Pumped Storage, Solar, Wind, Other Fuel Sources, Unknown Fuel Sources (real header:
  tests/data/bulk/EIA930_BALANCE_2020_Jul_Dec-AEC-9rows.csv). Files before 2018 Jul_Dec have no
  fuel columns; they are read the same way.
* BALANCE from 2024 Jul_Dec: hydro, solar and wind split and storage added -- Hydropower Excluding
  Pumped Storage, Pumped Storage, Solar without / with Integrated Battery Storage, Wind without /
  with Integrated Battery Storage, Battery Storage, Other Energy Storage, Unknown Energy Storage,
  Geothermal. Sources: PUDL's raw column map src/pudl/package_data/eia930/column_maps/balance.csv
  (column `2024half2`, commit 00255e09b9586dad2705907b3c658f59bdee9cce), public code reading the 2025
  files by exact header text, and several public readers of EIA930_BALANCE_2024_Jul_Dec.csv that
  document EIA's header typos "... from Solar witho Integrated Battery Storage (Adjusted)" and
  "... from Pumped Storage  (Adjusted)" (two spaces). The fuel codes are the API's fuel-type-data
  codes (BAT, PS, SNB, WNB, OES, UES, GEO).
* INTERCHANGE: Balancing Authority, Data Date, Hour Number, Directly Interconnected Balancing
  Authority, Interchange (MW), Local Time at End of Hour, UTC Time at End of Hour, Region,
  DIBA_Region (real header: tests/data/bulk/EIA930_INTERCHANGE_2022_Jan_Jun-AECI-9rows.csv).
* SUBREGION: Balancing Authority, Data Date, Hour Number, Sub-Region, Demand (MW), Local Time at
  End of Hour, UTC Time at End of Hour (PUDL column_maps/subregion.csv).
A header that holds the required columns of a layout is read as that layout, extra columns and all;
an unmapped "Net Generation (MW) from ..." column is skipped with a warning.

Duplicates
----------
Within one file the first row for a (BA[, neighbour | sub-region], hour) wins; later repeats are
dropped and counted in a warning, across chunks too, so every key is unique within the file.
Consecutive six-month files are cut on local dates, so their UTC hours can overlap: a caller that
combines files de-duplicates across them -- concatenate the frames and pass them through
`normalize.drop_duplicate_observations` (first occurrence wins, so pass the newest file first), or
load file by file and let the store's upsert record a changed value as a revision.

Speed: value columns are parsed by pandas' C reader (`thousands=","`), only the needed columns are
read (`usecols`), rows come in chunks of `chunk_rows`, and times are parsed once per distinct stamp:
a 300,000-row BALANCE file (3.2M observations) loads in about 2.5 s on a 2-core machine, and memory
stays flat (one chunk at a time).
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
from gridpulse_cli.text import plural

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

_FLAG_NAMES = np.array(["missing", "estimated", "good"], dtype=object)
_HOUR_NS = 3_600_000_000_000
_warned_fuels: set[str] = set()


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
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    path = Path(path)
    header = _read_header(path)
    try:
        layout = detect_layout(header)
    except InputFormatError as exc:
        raise InputFormatError(f"{path}: {exc}") from None
    return _observation_chunks(path, _plan(layout, header), chunk_rows)


def _observation_chunks(path: Path, plan: _Plan, chunk_rows: int) -> Iterator[pd.DataFrame]:
    seen = _SeenKeys()
    rows = observations = 0
    for first_row, chunk in _raw_chunks(path, plan, chunk_rows):
        frame = _chunk_observations(chunk, plan, seen, f"{path}", first_row + 2)
        rows += len(chunk)
        observations += len(frame)
        if len(frame):
            yield frame
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
    off_hour = stamps % _HOUR_NS != 0
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


class _Part(NamedTuple):
    """One measure's observations in a chunk: which rows, their values and flags."""

    measure: _Measure
    rows: npt.NDArray[np.intp]
    values: npt.NDArray[np.float64]
    flags: npt.NDArray[np.object_]


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
    fresh = seen.first_seen(entity_names, entity_codes, stamps // _HOUR_NS)

    parts: list[_Part] = []
    has_demand = np.zeros(len(chunk), dtype=bool)
    for m in plan.measures:
        values = chunk[m.value].to_numpy(dtype=np.float64)
        imputed = _filled(chunk, m.imputed)
        if plan.layout == "balance":  # an empty cell counts only where EIA shows the series exists
            exists = ~np.isnan(values) | imputed | _filled(chunk, m.adjusted)
            if m.dataset == "demand":
                has_demand = exists
            elif m.dataset == "forecast":
                exists = exists | has_demand
        else:  # INTERCHANGE and SUBREGION rows exist only for real pairs
            exists = np.ones(len(chunk), dtype=bool)
        rows = np.flatnonzero(exists & fresh)
        values = values[rows]
        values = np.where(np.isfinite(values), values, np.nan)
        flag_codes = np.where(np.isnan(values), 0, np.where(imputed[rows], 1, 2))
        parts.append(_Part(m, rows, values, _FLAG_NAMES[flag_codes]))
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
        }
    )
    return frame[FRAME_COLUMNS]
