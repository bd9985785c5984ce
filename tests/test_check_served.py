"""The quality screen end to end, as an operator meets it: an EIA-compatible server serves a
month and a half of the five default BAs (region data, fuel mix, interchange) with known errors
injected into otherwise clean demand; `backfill` stores it, `check --json` must report every
injected hour and under 1% of the clean ones, and `export` must show exactly those hours as
`suspect` with the served values unchanged."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gridpulse_cli.catalog import MVP_BAS
from testing.eia_stub import EIAStub, make_fuel_rows, make_interchange_rows, make_region_rows
from tests.helpers import gp, ok, parse_export

START, END = "2024-01-01T01", "2024-02-15T00"  # inclusive hour-ending, 45 days
DATASETS = "demand,forecast,generation,total-interchange,fuel-mix,interchange"


def _hour(period: str) -> str:
    return f"{period}:00:00Z"


def inject(rows: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """Errors of each kind in the served demand rows; {(series_id, hour): what was injected}."""
    demand = {(r["respondent"], r["period"]): r for r in rows if r["type"] == "D"}
    hours = sorted({period for _, period in demand})
    plan = {
        ("CISO", 300): ("spike", lambda v: v * 8),
        ("CISO", 301): None,
        ("ERCO", 500): ("negative demand", lambda v: -v / 10),
        ("PJM", 700): ("zero run", lambda v: 0),
        ("PJM", 701): ("zero run", lambda v: 0),
        ("PJM", 702): ("zero run", lambda v: 0),
        ("PJM", 703): ("zero run", lambda v: 0),
        ("MISO", 400): ("double spike", lambda v: v * 3),
        ("MISO", 401): ("double spike", lambda v: v * 3),
    }
    injected: dict[tuple[str, str], str] = {}
    for (ba, at), change in plan.items():
        if change is None:
            continue
        row = demand[(ba, hours[at])]
        row["value"] = str(round(change[1](float(row["value"]))))
        injected[(f"EBA.{ba}-ALL.D.H", _hour(hours[at]))] = change[0]
    frozen = demand[("SWPP", hours[600])]["value"]
    for at in range(600, 606):  # a feed frozen for six hours
        demand[("SWPP", hours[at])]["value"] = frozen
        injected[("EBA.SWPP-ALL.D.H", _hour(hours[at]))] = "frozen"
    return injected


@pytest.fixture
def served(stub: EIAStub) -> tuple[dict[tuple[str, str], str], dict[tuple[str, str], str]]:
    """Serve the data; return the injected hours and every served (series_id, hour) -> value."""
    region = make_region_rows(MVP_BAS, START, END)
    injected = inject(region)
    stub.set_rows("region-data", region)
    stub.set_rows("fuel-type-data", make_fuel_rows(MVP_BAS, START, END))
    stub.set_rows("interchange-data", make_interchange_rows(None, START, END))
    values = {(f"EBA.{r['respondent']}-ALL.{r['type']}.H", _hour(r["period"])): r["value"] for r in region}
    return injected, values


def test_check_reports_every_injected_hour_and_export_shows_exactly_them(
    served: tuple[dict[tuple[str, str], str], dict[tuple[str, str], str]], cli_env: dict[str, str]
) -> None:
    injected, served_values = served
    ok(gp("backfill", "--from", "2024-01-01", "--to", "2024-02-16", "--dataset", DATASETS, timeout=180))
    found = json.loads(ok(gp("check", "--json")))
    flagged = {(f["series_id"], f["period_end_utc"]) for f in found}
    assert set(injected) <= flagged, f"missed: {sorted(set(injected) - flagged)}"
    rows = parse_export(ok(gp("export", "--from", "2024-01-01", "--to", "2024-02-16", timeout=120)))
    clean = len(rows) - len(injected)
    false_alarms = flagged - set(injected)
    assert len(false_alarms) < 0.01 * clean, sorted(false_alarms)[:20]
    suspect = {key for key, (_, flag) in rows.items() if flag == "suspect"}
    assert suspect == flagged
    for key, value in served_values.items():  # every served region value, unchanged
        assert float(rows[key][0]) == float(value), key
