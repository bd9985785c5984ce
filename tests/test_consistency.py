"""Consistency checks across series (consistency.py): real EIA days mostly pass, injected
inconsistencies are found on the series at fault, steady reporting conventions are not flagged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gridpulse_cli.consistency import BASeries, check_ba

SAMPLES = Path(__file__).resolve().parents[1] / "testing" / "data" / "eia-samples"
DAY = "allBA-2022-07-10T00_2022-07-11T00.csv"
HOURS = pd.date_range("2024-01-01T01:00Z", periods=21 * 24, freq="h")


def synthetic() -> dict[str, pd.Series]:
    """A BA whose series satisfy every identity (up to reporting noise), with a daily cycle."""
    rng = np.random.default_rng(7)
    hour = np.arange(len(HOURS))
    d = 1000 * (1 + 0.3 * np.sin(2 * np.pi * hour / 24)) * (1 + 0.01 * rng.standard_normal(len(hour)))
    ti = 50 + 10 * rng.standard_normal(len(hour))
    ng = d + ti
    out = {
        "D": d,
        "NG": ng,
        "TI": ti,
        "DF": d * (1 + 0.03 * rng.standard_normal(len(hour))),
        "COL": 0.4 * ng,
        "GAS": 0.4 * ng,
        "WND": 0.2 * ng,
        "A->B": 0.6 * ti,
        "A->C": 0.4 * ti,
        "B->A": -0.6 * ti + rng.standard_normal(len(hour)),
        "C->A": -0.4 * ti,
    }
    return {name: pd.Series(np.round(v), index=HOURS) for name, v in out.items()}


KEYS = {
    "D": 1,
    "NG": 2,
    "TI": 3,
    "DF": 4,
    "COL": 5,
    "GAS": 6,
    "WND": 7,
    "A->B": 8,
    "A->C": 9,
    "B->A": 10,
    "C->A": 11,
}
BA = BASeries(
    "A",
    region={"demand": 1, "generation": 2, "total-interchange": 3, "forecast": 4},
    fuels={"COL": 5, "NG": 6, "WND": 7},
    outward={"B": 8, "C": 9},
    inward={"B": 10, "C": 11},
)


def run(
    series: dict[str, pd.Series], explained: dict[str, list[int]] | None = None
) -> dict[str, dict[str, list[int]]]:
    """check_ba over named series: {series name: {check: [hour positions]}}, non-empty only."""
    values = {KEYS[name]: s for name, s in series.items()}
    masks = {}
    for name, positions in (explained or {}).items():
        mask = np.zeros(len(HOURS), dtype=bool)
        mask[positions] = True
        masks[KEYS[name]] = mask
    names = {key: name for name, key in KEYS.items()}
    out: dict[str, dict[str, list[int]]] = {}
    for key, frame in check_ba(BA, values, masks).items():
        for check, group in frame.groupby("check"):
            positions = sorted(HOURS.get_indexer(pd.DatetimeIndex(group["period_end_utc"])).tolist())
            out.setdefault(names[key], {})[str(check)] = positions
    return out


def test_consistent_series_have_no_findings() -> None:
    assert run(synthetic()) == {}


def test_demand_that_breaks_the_balance_alone_is_flagged() -> None:
    series = synthetic()
    series["D"].iloc[200:203] *= 0.7  # net generation and interchange carry on as before
    assert run(series) == {"D": {"energy-balance": [200, 201, 202]}}


def test_wrong_net_generation_is_named_by_the_fuel_sum_not_put_on_demand() -> None:
    series = synthetic()
    series["NG"].iloc[300] *= 1.4
    assert run(series) == {"NG": {"fuel-sum": [300]}}


def test_wrong_total_interchange_is_named_by_the_interchange_sum() -> None:
    series = synthetic()
    series["TI"].iloc[100] += 600
    assert run(series) == {"TI": {"interchange-sum": [100]}}


def test_a_flipped_link_is_named_by_its_pair_not_the_total() -> None:
    series = synthetic()
    series["A->B"].iloc[[150, 151]] *= -1
    assert run(series) == {"A->B": {"interchange-pair": [150, 151]}}


def test_a_forecast_in_the_wrong_unit_is_a_forecast_miss() -> None:
    series = synthetic()
    series["DF"].iloc[250] *= 10
    assert run(series) == {"DF": {"forecast-miss": [250]}}


def test_a_steady_reporting_gap_is_not_flagged() -> None:
    """BPAT on the real day: demand off net generation - interchange by 20-58% every hour."""
    series = synthetic()
    hour = np.arange(len(HOURS))
    series["D"] = (series["D"] * (1.2 + 0.38 * (0.5 + 0.5 * np.sin(2 * np.pi * hour / 24)))).round()
    series["DF"] = series["D"]
    assert run(series) == {}


def test_an_hour_already_flagged_on_a_member_is_explained() -> None:
    series = synthetic()
    series["D"].iloc[[200, 201]] *= 0.7
    assert run(series, explained={"NG": [200]}) == {"D": {"energy-balance": [201]}}


def test_missing_members_give_no_verdict() -> None:
    series = synthetic()
    series["D"].iloc[200:203] *= 0.7
    series["TI"].iloc[200:203] = np.nan
    series["COL"].iloc[300] = np.nan
    series["NG"].iloc[300] *= 1.4  # the fuel sum is incomplete there; the balance names demand
    found = run(series)
    assert "TI" not in found and "NG" not in found
    assert found["D"]["energy-balance"] == [300]


def _sample(route: str) -> pd.DataFrame:
    frame = pd.read_csv(SAMPLES / f"gridemissions-apirows-{route}-{DAY}")
    frame["period_end_utc"] = pd.to_datetime(frame["period"], utc=True)
    return frame


def test_the_real_all_ba_day_is_almost_all_consistent() -> None:
    """2022-07-10, every BA: AVRN's total interchange 0 MWh while its links add to 1,047 MWh (the
    hour AVRN's net generation also dropped to 0), and four hours where SCEG and CPLE both
    report importing ~27 MWh from each other. BPAT's steady 20-58% imbalance and NYIS/PJM's
    steadily different pair reports are not flagged."""
    region, fuel, links = _sample("region-data"), _sample("fuel-type-data"), _sample("interchange-data")
    hours = pd.date_range(region["period_end_utc"].min(), region["period_end_utc"].max(), freq="h")
    keys: dict[tuple[str, ...], int] = {}
    values: dict[int, pd.Series] = {}

    def add(name: tuple[str, ...], frame: pd.DataFrame) -> int:
        keys[name] = len(keys) + 1
        values[keys[name]] = frame.set_index("period_end_utc")["value"].astype(float).reindex(hours)
        return keys[name]

    datasets = {"D": "demand", "NG": "generation", "TI": "total-interchange", "DF": "forecast"}
    findings = []
    for area in sorted(region["respondent"].unique()):
        ba = BASeries(area)
        for typ, rows in region[region["respondent"] == area].groupby("type"):
            ba.region[datasets[str(typ)]] = add((area, str(typ)), rows)
        for fuel_code, rows in fuel[fuel["respondent"] == area].groupby("fueltype"):
            ba.fuels[str(fuel_code)] = add((area, "fuel", str(fuel_code)), rows)
        for nb, rows in links[links["fromba"] == area].groupby("toba"):
            ba.outward[str(nb)] = add((area, "to", str(nb)), rows)
            inward = links[(links["fromba"] == nb) & (links["toba"] == area)]
            if len(inward):
                ba.inward[str(nb)] = add((str(nb), "to", area), inward)
        for key, frame in check_ba(ba, {k: values[k] for k in ba.member_keys()}, {}).items():
            findings += [
                (area, key, check, detail)
                for check, detail in zip(frame["check"], frame["detail"], strict=True)
            ]
    assert [(area, check) for area, _, check, _ in findings] == [("AVRN", "interchange-sum")] + [
        ("SCEG", "interchange-pair")
    ] * 4
    assert findings[0][3] == "interchange-sum: links add to 1,047 MWh vs total interchange 0 (usual gap +0)"
    # both sides report an import from the other: a sign flipped for four hours (small, but real)
    assert findings[1][3] == "interchange-pair: SCEG->CPLE -28 MWh but CPLE->SCEG -28 (usual sum +6)"


def test_detail_names_the_values() -> None:
    series = synthetic()
    series["D"].iloc[200] = 500
    (detail,) = check_ba(BA, {KEYS[n]: s for n, s in series.items()}, {})[1]["detail"]
    assert detail.startswith("energy-balance: demand 500 MWh vs net generation ")
    assert "(usual gap " in detail
