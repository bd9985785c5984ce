"""What EIA-930 publishes: balancing authorities, regions, datasets, routes, series IDs and rows per hour.

BA codes are EIA's (CISO, ERCO, SWPP, …); the familiar market names are accepted as aliases.
The reference table in `data/balancing_authorities.csv` is EIA's EIA-930 BA reference plus the
BAs EIA added since (SIKE, BHBA, SWPW).
"""

from __future__ import annotations

import csv
import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from importlib import resources

from gridpulse_cli.errors import UsageError, quote

MVP_BAS: tuple[str, ...] = ("PJM", "CISO", "MISO", "ERCO", "SWPP")

# EIA's aggregate respondents: 13 regions and the Lower 48. Never sum them with BAs.
REGIONS: dict[str, str] = {
    "CAL": "California",
    "CAR": "Carolinas",
    "CENT": "Central",
    "FLA": "Florida",
    "MIDA": "Mid-Atlantic",
    "MIDW": "Midwest",
    "NE": "New England",
    "NY": "New York",
    "NW": "Northwest",
    "SE": "Southeast",
    "SW": "Southwest",
    "TEN": "Tennessee",
    "TEX": "Texas",
    "US48": "United States Lower 48",
}

ALIASES: dict[str, str] = {
    "CAISO": "CISO",
    "ERCOT": "ERCO",
    "SPP": "SWPP",
    "NYISO": "NYIS",
    "ISO-NE": "ISNE",
    "ISONE": "ISNE",
    "ISO NE": "ISNE",
    "BPA": "BPAT",
    "LADWP": "LDWP",
    "US": "US48",
    "LOWER48": "US48",
}

# Fuel codes EIA has published; anything else is stored as data and warned about once.
KNOWN_FUELS: frozenset[str] = frozenset(
    {"COL", "NG", "NUC", "OIL", "OTH", "SUN", "WAT", "WND", "UNK"}
    # added in 2024: storage, and solar/wind with integrated batteries
    | {"BAT", "PS", "SNB", "WNB", "OES", "UES", "GEO"}
)


PAGE_SIZE = 5000  # EIA's hard cap on rows per JSON response


@dataclass(frozen=True)
class Route:
    """One EIA API v2 data route, the columns that make a row unique and the series it serves."""

    name: str
    area_facet: str  # the row field (and request facet) naming the BA or region
    code_column: str  # the row field naming the series within the area: type, fuel, neighbour, sub-BA
    history_start: datetime
    series: str  # EIA's series ID of a row, from its {area} and {code}

    @property
    def key_columns(self) -> tuple[str, str, str]:
        return ("period", self.area_facet, self.code_column)


_JULY_2015, _JULY_2018 = datetime(2015, 7, 1, tzinfo=UTC), datetime(2018, 7, 1, tzinfo=UTC)
REGION_DATA = Route("region-data", "respondent", "type", _JULY_2015, "EBA.{area}-ALL.{code}.H")
FUEL_TYPE_DATA = Route("fuel-type-data", "respondent", "fueltype", _JULY_2018, "EBA.{area}-ALL.NG.{code}.H")
INTERCHANGE_DATA = Route("interchange-data", "fromba", "toba", _JULY_2015, "EBA.{area}-{code}.ID.H")
SUBBA_DATA = Route("region-sub-ba-data", "parent", "subba", _JULY_2018, "EBA.{area}-{code}.D.H")
ROUTES: dict[str, Route] = {r.name: r for r in (REGION_DATA, FUEL_TYPE_DATA, INTERCHANGE_DATA, SUBBA_DATA)}
FIRST_HOUR: datetime = min(r.history_start for r in ROUTES.values())  # EIA-930's first hour ending


@dataclass(frozen=True)
class Dataset:
    """A gridpulse dataset: which route serves it and how late EIA publishes it."""

    name: str
    route: Route
    type_code: str | None  # region-data `type` facet value
    lag: timedelta  # typical publication lag: hours newer than this are not yet due
    description: str


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset("demand", REGION_DATA, "D", timedelta(hours=2), "hourly demand"),
        Dataset("forecast", REGION_DATA, "DF", timedelta(hours=0), "day-ahead demand forecast"),
        Dataset("generation", REGION_DATA, "NG", timedelta(hours=26), "net generation"),
        Dataset("total-interchange", REGION_DATA, "TI", timedelta(hours=26), "total interchange"),
        Dataset("fuel-mix", FUEL_TYPE_DATA, None, timedelta(hours=26), "net generation by fuel"),
        Dataset("interchange", INTERCHANGE_DATA, None, timedelta(hours=50), "BA-to-BA interchange"),
        Dataset("subregion-demand", SUBBA_DATA, None, timedelta(days=31), "demand by BA subregion"),
    )
}


# Dataset names short enough that a table of all seven fits 80 columns (health, status).
SHORT_NAMES: dict[str, str] = {
    "demand": "demand",
    "forecast": "forecast",
    "generation": "gen",
    "total-interchange": "TI",
    "fuel-mix": "fuel-mix",
    "interchange": "interch",
    "subregion-demand": "sub-BA",
}

# An observation's quality flag (the README says what each means).
QUALITY_FLAGS = ("good", "missing", "estimated", "suspect")


def routes_for(datasets: Sequence[str]) -> list[tuple[Route, list[str]]]:
    """The routes serving these datasets, each with the region-data `type` codes it needs."""
    routes: dict[str, tuple[Route, list[str]]] = {}
    for name in datasets:
        dataset = DATASETS[name]
        _, types = routes.setdefault(dataset.route.name, (dataset.route, []))
        if dataset.type_code:
            types.append(dataset.type_code)
    return list(routes.values())


TYPE_CODE_DATASET: dict[str, str] = {
    d.type_code: d.name for d in DATASETS.values() if d.type_code is not None
}
# The one dataset each route without a `type` facet serves (fuel-mix, interchange, ...).
ROUTE_DATASET: dict[str, str] = {d.route.name: d.name for d in DATASETS.values() if d.type_code is None}


def dataset_of(route_name: str, code: str) -> str | None:
    """The dataset a row of this route with this code (its key's last column) belongs to;
    None for a region-data `type` gridpulse does not know."""
    if route_name == REGION_DATA.name:
        return TYPE_CODE_DATASET.get(code)
    return ROUTE_DATASET[route_name]


# Rows per hour a BA publishes on each route, to pack requests into full pages. Fuel mix: EIA's
# eight classic fuels (COL NG NUC OIL OTH SUN WAT WND; no BA published more than eight in the 2022
# all-BA sample, most publish fewer); a BA publishing the 2024 storage codes too outgrows its
# estimate, and the chunk costs a second page, never a lost row. Sub-BA: EIA's subregions per
# parent (the rest of the parents: a generous 25).
CLASSIC_FUELS = 8
_SUBBA_COUNTS: dict[str, int] = {
    "CISO": 4, "ERCO": 8, "ISNE": 8, "MISO": 6, "NYIS": 11, "PJM": 20, "PNM": 3, "SWPP": 17,
}  # fmt: skip
_SUBBA_UNKNOWN = 25
_NEIGHBOURS_UNKNOWN = 4  # a BA (or region) the connections table does not list
_DEMAND_TYPES = frozenset({"D", "DF"})  # what generation-only BAs do not publish


def rows_per_hour(route_name: str, ba: str, type_codes: Sequence[str]) -> int:
    """Estimated rows per hour for one BA on one route (0: it publishes nothing there)."""
    info = balancing_authorities().get(ba)
    if route_name == REGION_DATA.name:
        if info is not None and info.generation_only:
            return len([t for t in type_codes if t not in _DEMAND_TYPES])
        return len(type_codes)
    if route_name == FUEL_TYPE_DATA.name:
        return CLASSIC_FUELS
    if route_name == INTERCHANGE_DATA.name:
        return len(neighbours(ba)) or _NEIGHBOURS_UNKNOWN
    if ba in REGIONS or (info is not None and not info.has_subregions):
        return 0
    return _SUBBA_COUNTS.get(ba, _SUBBA_UNKNOWN)


def active_span(ba: str) -> tuple[datetime | None, datetime | None]:
    """When a BA publishes: a day before its activation to a day after its retirement (the
    reference table's dates are days; the margin keeps an edge hour from going unasked)."""
    info = balancing_authorities().get(ba)
    if info is None:
        return None, None
    return _midnight(info.activation_date, -1), _midnight(info.retirement_date, 1)


def _midnight(day: date | None, shift_days: int) -> datetime | None:
    if day is None:
        return None
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=shift_days)


@dataclass(frozen=True)
class BalancingAuthority:
    """One row of EIA's EIA-930 balancing-authority reference table."""

    code: str
    name: str
    region: str
    generation_only: bool
    has_subregions: bool
    us_ba: bool
    active: bool
    activation_date: date | None
    retirement_date: date | None


def _parse_date(text: str) -> date | None:
    return date.fromisoformat(text) if text else None


@cache
def balancing_authorities() -> dict[str, BalancingAuthority]:
    """Return the reference table keyed by BA code."""
    text = resources.files("gridpulse_cli").joinpath("data/balancing_authorities.csv").read_text()
    bas: dict[str, BalancingAuthority] = {}
    for row in csv.DictReader(text.splitlines()):
        bas[row["code"]] = BalancingAuthority(
            code=row["code"],
            name=row["name"],
            region=row["region"],
            generation_only=row["generation_only"] == "yes",
            has_subregions=row["has_subregions"] == "yes",
            us_ba=row["us_ba"] == "yes",
            active=row["active"] == "yes",
            activation_date=_parse_date(row["activation_date"]),
            retirement_date=_parse_date(row["retirement_date"]),
        )
    return bas


@cache
def _connections() -> dict[str, list[str]]:
    text = resources.files("gridpulse_cli").joinpath("data/ba_connections.csv").read_text()
    links: dict[str, list[str]] = {}
    for row in csv.DictReader(text.splitlines()):
        if row["active"] == "yes":
            links.setdefault(row["ba"], []).append(row["neighbour"])
    return links


def neighbours(code: str) -> list[str]:
    """BAs directly interconnected with `code` (EIA's reference table, active connections)."""
    return list(_connections().get(code, []))


def active_us_bas() -> list[str]:
    """Return the codes `--ba all` stands for: every active U.S. balancing authority."""
    return sorted(code for code, ba in balancing_authorities().items() if ba.active and ba.us_ba)


def area_type(code: str) -> str:
    """Return 'region' for EIA's aggregate respondents (regions, US48), 'ba' otherwise."""
    return "region" if code in REGIONS else "ba"


def _split_values(values: Iterable[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _suggest(bad: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(bad, list(valid), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def resolve_bas(values: Sequence[str] | None, default: Sequence[str] = MVP_BAS) -> list[str]:
    """Return EIA codes for `--ba` values: codes or aliases, comma-separated or repeated, or `all`."""
    items = _split_values(values or [])
    if not items:
        return list(default)
    known = set(balancing_authorities()) | set(REGIONS)
    codes: list[str] = []
    for item in items:
        upper = item.upper()
        if upper == "ALL":
            codes.extend(active_us_bas())
            continue
        code = ALIASES.get(upper, upper)
        if code not in known:
            valid = ", ".join(sorted(known))
            aliases = ", ".join(f"{a}={c}" for a, c in sorted(ALIASES.items()))
            raise UsageError(
                f"unknown BA {quote(item)}{_suggest(upper, known | set(ALIASES))}; "
                f"valid: all, {valid}; aliases: {aliases}"
            )
        codes.append(code)
    return list(dict.fromkeys(codes))


def resolve_datasets(values: Sequence[str] | None) -> list[str]:
    """Return dataset names for `--dataset` values (comma-separated or repeated, or `all`)."""
    items = _split_values(values or [])
    if not items or any(item.lower() == "all" for item in items):
        return list(DATASETS)
    names: list[str] = []
    for item in items:
        name = item.lower()
        if name not in DATASETS:
            raise UsageError(
                f"unknown dataset {quote(item)}{_suggest(name, DATASETS)}; valid: all, {', '.join(DATASETS)}"
            )
        names.append(name)
    return [name for name in DATASETS if name in names]


# ---- EIA series IDs -------------------------------------------------------------------------

# Every EIA-930 code (BA, region, sub-BA, fuel) is a few letters or digits; the limits keep a
# malformed input from storing megabyte-long "codes".
MAX_CODE_LENGTH = 16
MAX_SERIES_ID_LENGTH = 64
_CODE = rf"[A-Za-z0-9_]{{1,{MAX_CODE_LENGTH}}}"
_CODE_RE = re.compile(_CODE)

_SERIES_RE = re.compile(
    rf"^EBA\.(?P<area>[A-Z0-9_]{{1,{MAX_CODE_LENGTH}}})-(?P<other>{_CODE}(?:-{_CODE})*)"
    rf"\.(?P<kind>{'|'.join(TYPE_CODE_DATASET)}|ID)(?:\.(?P<fuel>{_CODE}))?\.H$"
)


def is_code(text: str) -> bool:
    """Whether `text` can be an EIA-930 code: 1 to 16 letters, digits or underscores."""
    return _CODE_RE.fullmatch(text) is not None


@dataclass(frozen=True)
class SeriesKey:
    """What an EIA series ID names: dataset, area (BA or region) and counterpart."""

    dataset: str
    area: str
    counterpart: str  # fuel code, neighbouring BA or sub-BA; "" for the BA-level series


def series_id(dataset: str, area: str, counterpart: str = "") -> str:
    """Return EIA's series ID, e.g. EBA.CISO-ALL.D.H or EBA.PJM-MISO.ID.H."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}")
    described = DATASETS[dataset]
    return described.route.series.format(area=area, code=described.type_code or counterpart)


def parse_series_id(text: str) -> SeriesKey:
    """Return the dataset, area and counterpart an EIA series ID names; ValueError if it is not one."""
    if len(text) > MAX_SERIES_ID_LENGTH:
        raise ValueError(f"series ID {quote(text, 80)} is longer than {MAX_SERIES_ID_LENGTH} characters")
    match = _SERIES_RE.match(text)
    if not match:
        raise ValueError(f"not an EIA-930 hourly series ID: {quote(text)}")
    area, other, kind, fuel = match["area"], match["other"], match["kind"], match["fuel"]
    if kind == "ID" and fuel is None:
        return SeriesKey("interchange", area, other)
    if other == "ALL":
        if kind == "NG" and fuel is not None:
            return SeriesKey("fuel-mix", area, fuel)
        if fuel is None:
            return SeriesKey(TYPE_CODE_DATASET[kind], area, "")
    elif kind == "D" and fuel is None:
        return SeriesKey("subregion-demand", area, other)
    raise ValueError(f"not an EIA-930 hourly series ID: {quote(text)}")
