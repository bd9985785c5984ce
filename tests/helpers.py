"""Helpers the test modules share: running the CLI, reading the database, what the stub serves.

Shared fixtures live in conftest.py; the stub itself in testing/ (bench/ uses it too).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from gridpulse_cli.catalog import DATASETS, MVP_BAS, REGION_DATA
from gridpulse_cli.db import Store, schema
from gridpulse_cli.db import store as store_module
from gridpulse_cli.eia import EIAClient, RateLimiter
from gridpulse_cli.export import export_csv
from gridpulse_cli.ingest import run_ingest
from gridpulse_cli.ledger import finish_run, start_run
from gridpulse_cli.lock import writer_lock
from gridpulse_cli.planner import Chunk
from gridpulse_cli.windows import Window, floor_hour
from testing.eia_stub import (
    DEFAULT_NEIGHBOURS,
    DEFAULT_SUBBAS,
    ROUTES,
    EIAStub,
    RequestRecord,
    make_fuel_rows,
    make_interchange_rows,
    make_region_rows,
    make_subba_rows,
    samples_dir,
)
from tests.conftest import TEST_KEY

# ---- running the command -------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
GP = [sys.executable, "-m", "gridpulse_cli"]
HOUR = timedelta(hours=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def full_env(env: Mapping[str, str | None] | None) -> dict[str, str]:
    """The (monkeypatched) environment plus `env`; a None value unsets the variable."""
    out = dict(os.environ)
    for name, value in (env or {}).items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def gp(
    *args: str, env: Mapping[str, str | None] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """Run `python -m gridpulse_cli ARGS` to completion."""
    return subprocess.run(
        [*GP, *args],
        env=full_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


def gp_start(*args: str, env: Mapping[str, str | None] | None = None) -> subprocess.Popen[str]:
    """Start `python -m gridpulse_cli ARGS` in the background."""
    return subprocess.Popen(
        [*GP, *args],
        env=full_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    assert "Traceback" not in result.stderr
    return result.stdout


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("gridpulse: error:")]


def in_parallel(
    *calls: tuple[Sequence[str], Mapping[str, str | None]],
) -> list[subprocess.CompletedProcess[str]]:
    """Run several `gp(args, env=...)` at once (start-up dominates their cost)."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda call: gp(*call[0], env=call[1]), calls))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def restored_process_state() -> Iterator[None]:
    """The CLI installs a root log handler and a SIGTERM handler; put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        signal.signal(signal.SIGTERM, sigterm)


# ---- the database, read directly -----------------------------------------------------------------


def run_rows(db_url: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.text("SELECT * FROM runs ORDER BY run_id")).mappings()]
    finally:
        engine.dispose()


def stored(db_url: str) -> dict[tuple[str, str], tuple[str, str]]:
    """What `export` writes for the whole database: (series_id, period) -> (value, flag)."""
    store = Store.open(db_url)
    try:
        out = io.StringIO()
        export_csv(store, out, None, None, None)
    finally:
        store.close()
    return parse_export(out.getvalue())


def parse_export(text: str) -> dict[tuple[str, str], tuple[str, str]]:
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    assert header[:4] == ["series_id", "period_end_utc", "value", "quality_flag"]
    out: dict[tuple[str, str], tuple[str, str]] = {}
    previous: tuple[str, str] | None = None
    for row in reader:
        key = (row[0], row[1])
        assert key not in out, f"{key} exported twice"
        assert previous is None or previous < key, f"export not sorted by series_id, time at {key}"
        previous = key
        out[key] = (row[2], row[3])
    return out


# ---- what the stub serves and what must therefore be stored --------------------------------------

ALL_DATASETS = list(DATASETS)
PACW_CASSETTE = "ring-cassette-fuel-type-PACW-2024-01-01_07.yaml"
TYPE_DATASET = {"D": "demand", "DF": "forecast", "NG": "generation", "TI": "total-interchange"}
PJM_SUBBAS = ["AE", "AEP", "ATSI", "BC", "COMD", "DOM"]
AREA_FIELD = {
    "region-data": "respondent",
    "fuel-type-data": "respondent",
    "interchange-data": "fromba",
    "region-sub-ba-data": "parent",
}


def serve_all(stub: EIAStub, start: datetime | str, end: datetime | str, null_fraction: float = 0.04) -> None:
    """Serve every route for the MVP BAs and for areas gridpulse was not asked for (inclusive hours)."""
    others = ["TVA", "NYIS", "US48", "CAL"]
    stub.set_rows(
        "region-data", make_region_rows([*MVP_BAS, *others], start, end, null_fraction=null_fraction)
    )
    stub.set_rows(
        "fuel-type-data",
        make_fuel_rows([*MVP_BAS, "TVA"], start, end, null_fraction=null_fraction)
        + make_fuel_rows(["CISO"], start, end, fuels=("BAT", "GEO"), seed=3),
    )
    stub.set_rows(
        "interchange-data",
        make_interchange_rows({**DEFAULT_NEIGHBOURS, "TVA": ["PJM", "MISO"], "MEX": ["CISO"]}, start, end),
    )
    stub.set_rows(
        "region-sub-ba-data",
        make_subba_rows({**DEFAULT_SUBBAS, "PJM": PJM_SUBBAS, "NYIS": ["ZONA", "ZONB"]}, start, end),
    )


def raw_series_id(route: str, row: Mapping[str, Any]) -> tuple[str, str]:
    """EIA's series ID and gridpulse dataset of a raw row, written out independently of the code."""
    if route == "region-data":
        return f"EBA.{row['respondent']}-ALL.{row['type']}.H", TYPE_DATASET[row["type"]]
    if route == "fuel-type-data":
        return f"EBA.{row['respondent']}-ALL.NG.{row['fueltype']}.H", "fuel-mix"
    if route == "interchange-data":
        return f"EBA.{row['fromba']}-{row['toba']}.ID.H", "interchange"
    return f"EBA.{row['parent']}-{row['subba']}.D.H", "subregion-demand"


def expected_observations(
    served: Mapping[str, Iterable[Mapping[str, Any]]],
    bas: Sequence[str],
    window: Window,
    datasets: Sequence[str] = ALL_DATASETS,
) -> dict[tuple[str, str], str | None]:
    """(series_id, period_end_utc text) -> the served value string (None when EIA sent null)."""
    out: dict[tuple[str, str], str | None] = {}
    for route, rows in served.items():
        for row in rows:
            if row[AREA_FIELD[route]] not in bas:
                continue
            end = datetime.strptime(row["period"], "%Y-%m-%dT%H").replace(tzinfo=UTC)
            if not window.start <= end < window.end:
                continue
            sid, dataset = raw_series_id(route, row)
            if dataset not in datasets:
                continue
            key = (sid, end.strftime("%Y-%m-%dT%H:%M:%SZ"))
            assert key not in out, f"the test serves {key} twice"
            value = row["value"]
            out[key] = None if value is None else str(value)
    return out


def served_rows(stub: EIAStub) -> dict[str, list[dict[str, Any]]]:
    return {route: stub.rows(route) for route in ROUTES}


def pacw_rows() -> list[dict[str, Any]]:
    """The 725 fuel-type rows EIA returned for PACW, 2024-01-01T00..2024-01-07T00."""
    path = samples_dir() / PACW_CASSETTE
    if not path.is_file():
        pytest.skip(f"{PACW_CASSETTE} not available")
    cassette = yaml.safe_load(path.read_text())
    [interaction] = cassette["interactions"]
    body = json.loads(interaction["response"]["body"]["string"])
    rows = body["response"]["data"]
    assert len(rows) == int(body["response"]["total"]) == 725
    return rows


def eia_hour(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H")


def expected_for(
    stub: EIAStub, selections: Iterable[tuple[str, str, Sequence[str] | None, Window]]
) -> dict[tuple[str, str], str | None]:
    """Served (series_id, period) -> value for each (route, area, region-data types or None, window);
    `area` may be several, comma-separated (a packed chunk)."""
    by_route: dict[str, dict[str, list[dict[str, Any]]]] = {}
    out: dict[tuple[str, str], str | None] = {}
    for route, area, types, window in selections:
        if route not in by_route:
            grouped: dict[str, list[dict[str, Any]]] = {}
            for row in stub.rows(route):
                grouped.setdefault(row[AREA_FIELD[route]], []).append(row)
            by_route[route] = grouped
        # EIA periods ("2024-01-01T05") compare as text in time order
        first, end = eia_hour(window.start), eia_hour(window.end)
        for row in (r for one in area.split(",") for r in by_route[route].get(one, [])):
            period = row["period"]
            if not first <= period < end or (types is not None and row["type"] not in types):
                continue
            key = (raw_series_id(route, row)[0], f"{period}:00:00Z")
            assert key not in out, f"{key} expected twice"
            out[key] = None if row["value"] is None else str(row["value"])
    return out


def chunk_selection(chunk: Chunk) -> tuple[str, str, Sequence[str] | None, Window]:
    route = chunk.route.name
    area = ",".join(sorted(chunk.facets[chunk.route.area_facet]))  # a packed chunk: several
    return route, area, chunk.facets.get("type") if chunk.route is REGION_DATA else None, chunk.window


def assert_exact(
    exported: Mapping[tuple[str, str], tuple[str, str]], expected: Mapping[tuple[str, str], str | None]
) -> None:
    """Every expected observation stored with exactly the served value; null is empty + missing; no extras."""
    missing = sorted(set(expected) - set(exported))
    extra = sorted(set(exported) - set(expected))
    assert not missing, f"{len(missing)} served observations not stored, e.g. {missing[:5]}"
    assert not extra, f"{len(extra)} stored observations were not expected, e.g. {extra[:5]}"
    wrong = []
    for key, served in expected.items():
        value, flag = exported[key]
        if served is None:
            good = (value, flag) == ("", "missing")
        else:
            good = flag == "good" and value != "" and Decimal(value) == Decimal(served)
        if not good:
            wrong.append((key, served, value, flag))
    assert not wrong, f"{len(wrong)} stored values differ from the served ones: {wrong[:5]}"


def request_identity(record: RequestRecord) -> tuple[str, str, str, str]:
    """(route, areas comma-separated, start, end) of one stub request."""
    assert record.route is not None
    facet = AREA_FIELD[record.route]
    area = ",".join(sorted(record.params["facets"][facet]))
    return record.route, area, record.params["start"], record.params["end"]


def chunk_identity(chunk: Chunk) -> tuple[str, str, str, str]:
    route, area, _types, window = chunk_selection(chunk)
    return route, area, eia_hour(window.start), eia_hour(window.end - HOUR)


def client_for(stub: EIAStub, max_tries: int = 2) -> EIAClient:
    """A library client for the stub: no rate limit to speak of, no backoff."""
    return EIAClient(
        stub.url, TEST_KEY, limiter=RateLimiter(1000, 1_000_000), timeout=5, max_tries=max_tries, retry_base=0
    )


# ---- the operations scenario: four days for PJM and CISO, with holes -----------------------------

OPS_BAS = ["PJM", "CISO"]
OPS_DATASETS = ["demand", "fuel-mix", "interchange"]
# What these tests keep current: health grades exactly these pairs (the default is 5 BAs x 7 datasets).
WATCHED = {"GRIDPULSE_BA": ",".join(OPS_BAS), "GRIDPULSE_DATASETS": ",".join(OPS_DATASETS)}
OPS_WINDOW = Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 5, tzinfo=UTC))
FIRST_HOUR, LAST_HOUR = "2024-01-01T00", "2024-01-04T23"  # served, inclusive
NOW = datetime(2024, 1, 5, tzinfo=UTC)  # the data's end: the newest hour is just published
NOW_TEXT = "2024-01-05T00:00:00Z"
WINDOW_ARGS = ["--from", "2024-01-01", "--to", "2024-01-05"]
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")  # a UTC time as gridpulse writes it
PAIRS = {"PJM": ["MISO", "NYIS"], "CISO": ["BPAT"]}


def hours(first: str, last: str) -> set[str]:
    """EIA periods from `first` to `last` inclusive."""
    start = datetime.strptime(first, "%Y-%m-%dT%H")
    count = int((datetime.strptime(last, "%Y-%m-%dT%H") - start) / HOUR) + 1
    return {(start + i * HOUR).strftime("%Y-%m-%dT%H") for i in range(count)}


def serve_ops(stub: EIAStub) -> None:
    """Four days (2024-01-01T00..01-04T23) of demand, fuel mix and interchange for PJM and CISO."""
    stub.set_rows("region-data", make_region_rows(OPS_BAS, FIRST_HOUR, LAST_HOUR, types=("D",)))
    stub.set_rows("fuel-type-data", make_fuel_rows(OPS_BAS, FIRST_HOUR, LAST_HOUR))
    stub.set_rows("interchange-data", make_interchange_rows(PAIRS, FIRST_HOUR, LAST_HOUR))


def library_ingest(db_url: str, stub: EIAStub, now: datetime = NOW) -> None:
    store = Store.open(db_url)
    try:
        run_ingest(store, client_for(stub), OPS_BAS, OPS_DATASETS, OPS_WINDOW, now=lambda: now)
    finally:
        store.close()


# What the stub leaves out, as (route, area field value, facet column, facet value, first, last):
DROPS: list[tuple[str, str, str, str, str, str]] = [
    ("region-data", "PJM", "type", "D", "2024-01-02T05", "2024-01-02T07"),
    ("region-data", "CISO", "type", "D", "2024-01-03T10", "2024-01-03T10"),
    ("region-data", "CISO", "type", "D", "2024-01-03T12", "2024-01-03T13"),
    ("fuel-type-data", "PJM", "fueltype", "COL", "2024-01-01T00", "2024-01-01T02"),  # the series' start
    ("fuel-type-data", "PJM", "fueltype", "NG", "2024-01-01T20", "2024-01-02T01"),
    ("fuel-type-data", "CISO", "fueltype", "SUN", "2024-01-02T14", "2024-01-02T14"),
    # fuel mix is published about a day late: the last 22 hours are not due yet
    ("fuel-type-data", "CISO", "fueltype", "WND", "2024-01-04T02", "2024-01-04T23"),
    ("interchange-data", "PJM", "toba", "NYIS", "2024-01-02T03", "2024-01-02T04"),
    ("interchange-data", "CISO", "toba", "BPAT", "2024-01-02T20", "2024-01-02T20"),
    # interchange is published about two days late: only the start of this run is due
    ("interchange-data", "PJM", "toba", "MISO", "2024-01-02T20", "2024-01-04T23"),
]
# The last interchange hour due at NOW: 2024-01-02T22 with gridpulse's 50 h lag (48 h in the README).
LAST_DUE_INTERCHANGE = floor_hour(NOW - DATASETS["interchange"].lag).strftime("%Y-%m-%dT%H")
NULLS = [("fuel-type-data", "CISO", "fueltype", "SUN", "2024-01-02T12", "2024-01-02T13")]
AREA = {"region-data": "respondent", "fuel-type-data": "respondent", "interchange-data": "fromba"}


def make_holes(stub: EIAStub) -> None:
    for route, area, column, value, first, last in DROPS:
        wanted = hours(first, last)
        dropped = stub.drop(
            route,
            lambda r, a=area, c=column, v=value, w=wanted, f=AREA[route]: (
                r[f] == a and r[c] == v and r["period"] in w
            ),
        )
        assert dropped == len(wanted)
    for route, area, column, value, first, last in NULLS:
        wanted = hours(first, last)
        changed = stub.revise(
            route,
            lambda r, a=area, c=column, v=value, w=wanted, f=AREA[route]: (
                r[f] == a and r[c] == v and r["period"] in w
            ),
            None,
        )
        assert changed == len(wanted)


def gap_json(series_id: str, first: str, last: str, reason: str = "absent") -> dict[str, Any]:
    return {
        "series_id": series_id,
        "first_missing": f"{first}:00:00Z",
        "last_missing": f"{last}:00:00Z",
        "hours": len(hours(first, last)),
        "reason": reason,
    }


EXPECTED_GAPS = [
    gap_json("EBA.CISO-ALL.D.H", "2024-01-03T10", "2024-01-03T10"),
    gap_json("EBA.CISO-ALL.D.H", "2024-01-03T12", "2024-01-03T13"),
    gap_json("EBA.CISO-ALL.NG.SUN.H", "2024-01-02T12", "2024-01-02T13", "null value"),
    gap_json("EBA.CISO-ALL.NG.SUN.H", "2024-01-02T14", "2024-01-02T14"),
    gap_json("EBA.CISO-BPAT.ID.H", "2024-01-02T20", "2024-01-02T20"),
    gap_json("EBA.PJM-ALL.D.H", "2024-01-02T05", "2024-01-02T07"),
    gap_json("EBA.PJM-ALL.NG.COL.H", "2024-01-01T00", "2024-01-01T02"),
    gap_json("EBA.PJM-ALL.NG.NG.H", "2024-01-01T20", "2024-01-02T01"),
    gap_json("EBA.PJM-MISO.ID.H", "2024-01-02T20", LAST_DUE_INTERCHANGE),
    gap_json("EBA.PJM-NYIS.ID.H", "2024-01-02T03", "2024-01-02T04"),
]


class Holder:
    """Holds the writer lock from a thread, inside a 'running' run, as a live writer would."""

    def __init__(self, db_url: str) -> None:
        self.store = Store.open(db_url)
        self.acquired, self.release = threading.Event(), threading.Event()
        self.run_id = 0
        self.released_at = 0.0
        self.thread = threading.Thread(target=self._hold)

    def _hold(self) -> None:
        with writer_lock(self.store, 5):
            self.run_id = start_run(self.store, "ingest", OPS_WINDOW, ["PJM"], ["demand"], NOW)
            self.acquired.set()
            self.release.wait(30)
            finish_run(self.store, self.run_id, "ok", NOW)
            self.released_at = time.monotonic()

    def __enter__(self) -> Holder:
        self.thread.start()
        assert self.acquired.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.thread.join(10)
        self.store.close()


# ---- a database made by release 1 --------------------------------------------------------------

V1_NOW = datetime(2024, 2, 1, tzinfo=UTC)  # when its rows were first seen


def v1_database(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Create the schema exactly as release 1 did, with data in it."""
    with monkeypatch.context() as patch:
        patch.setattr(store_module, "MIGRATIONS", schema.MIGRATIONS[:1])
        patch.setattr(store_module, "SCHEMA_VERSION", 1)
        old = Store.open(url)
        with old.transaction() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO series (series_id, dataset, area, area_type, counterpart, first_seen_utc) "
                    "VALUES ('EBA.CISO-ALL.D.H', 'demand', 'CISO', 'ba', '', :now)"
                ),
                {"now": old.encode_time(V1_NOW)},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO observations (series_key, period_end_utc, value_mwh, quality_flag, "
                    "first_seen_utc, last_changed_utc) VALUES (1, :p, 25055, 'good', :now, :now)"
                ),
                {"p": old.encode_time(datetime(2024, 1, 1, 5, tzinfo=UTC)), "now": old.encode_time(V1_NOW)},
            )
            conn.execute(
                sa.text("INSERT INTO runs (command, status, started_at_utc) VALUES ('ingest', 'ok', :now)"),
                {"now": old.encode_time(V1_NOW)},
            )
        with old.engine.connect() as conn:
            assert old.schema_version(conn) == 1
        old.close()


# ---- quality screening (test_quality.py, test_check.py) -----------------------------------------


def demand(days: int = 60, level: float = 80_000, seed: int = 1) -> pd.Series:
    """A clean demand-like series: daily cycle, weekday effect, smooth noise, integer MWh."""
    index = pd.date_range("2024-01-01T01", periods=days * 24, freq="h", tz="UTC", name="period_end_utc")
    hour, day = index.hour.to_numpy(), index.day_of_week.to_numpy()
    rng = np.random.default_rng(seed)
    noise = pd.Series(rng.normal(0, 0.02, len(index))).rolling(6, min_periods=1).mean().to_numpy()
    shape = 0.85 + 0.15 * np.cos(2 * np.pi * (hour - 22) / 24) - 0.05 * (day >= 5)
    return pd.Series(np.round(level * shape * (1 + noise)), index=index)


def inject(x: pd.Series) -> tuple[pd.Series, dict[str, set[int]]]:
    """Errors of each kind at known positions; returns the series and the injected positions."""
    v = x.to_numpy().copy()
    injected = {
        "spike": {500},
        "double spike": {700, 701},
        "zero run": set(range(900, 904)),
        "negative": {1100},
        "frozen": set(range(1200, 1206)),
        "dip": {1300},
        "eia-rule": {1400},
    }
    v[500] *= 8
    v[[700, 701]] *= 3
    v[900:904] = 0
    v[1100] = -500
    v[1200:1206] = 81_234
    v[1300] *= 0.55
    v[1400] = 1.6 * v[:1400].max()
    return pd.Series(v, index=x.index), injected
