"""The quality screens (quality.py): injected errors found, real EIA rows mostly left alone."""

from __future__ import annotations

import csv
from typing import Any

import numpy as np
import pandas as pd
import pytest

from gridpulse_cli.catalog import parse_series_id
from gridpulse_cli.normalize import normalize_rows
from gridpulse_cli.quality import (
    eia_rule,
    global_outlier,
    identical_run,
    local_outlier,
    negative_generation,
    negative_or_zero,
    screen_series,
    spike,
)
from testing.eia_stub import (
    DEFAULT_NEIGHBOURS,
    make_fuel_rows,
    make_interchange_rows,
    make_region_rows,
    samples_dir,
)
from tests.helpers import MVP_BAS, demand, inject, pacw_rows

ALL_BA_DAY = "gridemissions-apirows-{}-allBA-2022-07-10T00_2022-07-11T00.csv"


def flagged_positions(x: pd.Series, found: pd.DataFrame) -> set[int]:
    return {int(i) for i in x.index.get_indexer(pd.DatetimeIndex(found["period_end_utc"]))}


def test_every_injected_error_is_found_and_few_clean_hours_are() -> None:
    x, injected = inject(demand())
    found = screen_series(x, "demand")
    flagged = flagged_positions(x, found)
    for kind, positions in injected.items():
        assert positions <= flagged, f"{kind}: {sorted(positions - flagged)} not flagged"
    everything = set().union(*injected.values())
    clean_flagged = flagged - everything
    assert len(clean_flagged) < 0.01 * (len(x) - len(everything)), sorted(clean_flagged)


def test_a_clean_series_is_left_alone() -> None:
    for seed in range(5):
        assert screen_series(demand(seed=seed), "demand").empty


def test_spike_detail_names_the_neighbours() -> None:
    x = demand(days=20)
    x.iloc[300] = 644_600
    found = spike(x, load_like=True)
    assert np.flatnonzero(found.mask).tolist() == [300]
    (detail,) = found.details
    before, after = x.iloc[299], x.iloc[301]
    assert detail == f"spike: 644,600 MWh vs neighbours {before:,.0f} and {after:,.0f}"


def test_negative_or_zero_and_the_sign_of_generation() -> None:
    index = pd.date_range("2024-01-01", periods=6, freq="h", tz="UTC")
    x = pd.Series([100.0, 0.0, -3.0, 50.0, np.nan, -40.0], index=index)
    assert np.flatnonzero(negative_or_zero(x).mask).tolist() == [1, 2, 5]
    # station service: a little below zero is real; zero is real (all plants off)
    assert np.flatnonzero(negative_generation(x, "COL").mask).tolist() == [5]
    assert negative_generation(x, "COL").details == ["negative: -40 MWh of COL"]


def test_identical_runs_flag_every_hour_but_not_zero_where_zero_is_real() -> None:
    index = pd.date_range("2024-01-01", periods=10, freq="h", tz="UTC")
    x = pd.Series([5.0, 7, 7, 7, 9, 0, 0, 0, 0, 3], index=index)
    assert np.flatnonzero(identical_run(x, flag_zero=False).mask).tolist() == []  # 7 < 10 MWh
    x = x * 100
    assert np.flatnonzero(identical_run(x, flag_zero=False).mask).tolist() == [1, 2, 3]
    assert np.flatnonzero(identical_run(x, flag_zero=True).mask).tolist() == [1, 2, 3, 5, 6, 7, 8]
    assert (
        identical_run(x, flag_zero=False).details[0]
        == "identical-run: 700 MWh for 3 hours from 2024-01-01T01Z"
    )
    gap = x.copy()
    gap.iloc[2] = np.nan  # a missing hour breaks the run
    assert not identical_run(gap, flag_zero=False).mask.any()


def test_global_outlier_rules() -> None:
    x = demand(days=10)
    x.iloc[50] = 11 * x.median()
    assert np.flatnonzero(global_outlier(x, consumption=True).mask).tolist() == [50]
    peaker = pd.Series(np.where(np.arange(240) % 24 == 20, 45.0, 0.0), index=x.index[:240])
    assert not global_outlier(peaker, consumption=False).mask.any()


def test_local_outlier_needs_history_and_finds_a_dip() -> None:
    x = demand(days=30)
    x.iloc[400] *= 0.3  # Ruggles' local screen is coarse: its IQR spans the daily swing
    assert 400 in np.flatnonzero(local_outlier(x).mask)
    assert not local_outlier(x.iloc[:30]).mask.any()  # under 60 hours: no verdict


def test_eia_rule_waits_for_a_week_of_history() -> None:
    x = demand(days=10)
    x.iloc[10] = 1.6 * x.iloc[:10].max()  # no week of history yet
    x.iloc[200] = 1.6 * x.iloc[:200].max()
    found = eia_rule(x)
    assert np.flatnonzero(found.mask).tolist() == [200]
    assert found.details[0].startswith("eia-rule: ") and ">= 1.5 x largest earlier value" in found.details[0]


def screen_frame(frame: pd.DataFrame) -> tuple[int, pd.DataFrame]:
    """Stored values and findings (with series_id) of every series in an observation frame."""
    parts, total = [], 0
    for series_id, group in frame.groupby("series_id"):
        key = parse_series_id(str(series_id))
        values = pd.Series(group["value_mwh"].to_numpy(), index=pd.DatetimeIndex(group["period_end_utc"]))
        total += int(values.notna().sum())
        parts.append(screen_series(values, key.dataset, key.counterpart).assign(series_id=series_id))
    return total, pd.concat(parts, ignore_index=True)


def all_ba_rows(route: str) -> list[dict[str, Any]]:
    path = samples_dir() / ALL_BA_DAY.format(route)
    if not path.is_file():
        pytest.skip(f"{path.name} not available")
    with path.open(newline="") as fh:
        return [{**row, "value": row["value"] or None} for row in csv.DictReader(fh)]


def test_pacw_negative_wind_is_not_an_error() -> None:
    frame = normalize_rows(pacw_rows())
    assert (frame.loc[frame["series_id"] == "EBA.PACW-ALL.NG.WND.H", "value_mwh"] < 0).any()
    assert screen_frame(frame)[1].empty


@pytest.mark.parametrize("route", ["region-data", "fuel-type-data", "interchange-data"])
def test_the_all_ba_day_is_mostly_clean(route: str) -> None:
    total, found = screen_frame(normalize_rows(all_ba_rows(route)))
    flagged_hours = found.drop_duplicates(["series_id", "period_end_utc"])
    assert len(flagged_hours) < 0.01 * total


def test_the_all_ba_day_flags_what_a_person_would() -> None:
    _, found = screen_frame(normalize_rows(all_ba_rows("region-data")))
    avrn = found[found["series_id"] == "EBA.AVRN-ALL.NG.H"]
    assert "spike: 0 MWh vs neighbours 1,115 and 966" in set(avrn["detail"])
    # HST reports zero net generation all day, SEPA (hydro) half of it: real, not flagged
    assert not found["series_id"].isin(["EBA.HST-ALL.NG.H", "EBA.SEPA-ALL.NG.H"]).any()


def test_the_stub_s_synthetic_data_is_clean() -> None:
    """Other tests ingest the stub's data and expect every exported hour `good`."""
    rows = (
        make_region_rows([*MVP_BAS, "TVA", "NYIS"], "2024-01-01", "2024-03-01", null_fraction=0.04)
        + make_fuel_rows([*MVP_BAS, "TVA"], "2024-01-01", "2024-03-01", null_fraction=0.04)
        + make_interchange_rows(DEFAULT_NEIGHBOURS, "2024-01-01", "2024-03-01")
    )
    assert screen_frame(normalize_rows(rows))[1].empty
