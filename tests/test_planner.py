"""The gap planner: gap windows merged per dataset and BA, gap chunks of at most a page each."""

from __future__ import annotations

from datetime import UTC, datetime

from gridpulse_cli.gaps import Gap
from gridpulse_cli.planner import gap_windows, plan_gap_chunks
from gridpulse_cli.windows import Window
from tests.helpers import gap_json


def gap(series_id: str, first: str, last: str, reason: str = "absent") -> Gap:
    return Gap(**gap_json(series_id, first, last, reason))


def window(first: str, end: str) -> Window:
    return Window(
        datetime.strptime(first, "%Y-%m-%dT%H").replace(tzinfo=UTC),
        datetime.strptime(end, "%Y-%m-%dT%H").replace(tzinfo=UTC),
    )


def test_gap_windows_merge_overlapping_and_touching_runs_per_dataset_and_ba() -> None:
    gaps = [
        gap("EBA.PJM-ALL.NG.COL.H", "2024-01-01T05", "2024-01-01T07"),
        gap("EBA.PJM-ALL.NG.NG.H", "2024-01-01T06", "2024-01-01T09"),  # overlaps
        gap("EBA.PJM-ALL.NG.SUN.H", "2024-01-01T10", "2024-01-01T10", "null value"),  # touches
        gap("EBA.PJM-ALL.NG.WND.H", "2024-01-03T00", "2024-01-03T00"),  # two days later
        gap("EBA.CISO-ALL.NG.SUN.H", "2024-01-01T05", "2024-01-01T07"),  # another BA
        gap("EBA.PJM-ALL.D.H", "2024-01-01T05", "2024-01-01T05"),  # another dataset
        gap("EBA.PJM-MISO.ID.H", "2024-01-01T05", "2024-01-01T06"),
        gap("EBA.PJM-NYIS.ID.H", "2024-01-01T05", "2024-01-01T06"),  # the same hours, another series
    ]
    assert gap_windows(gaps) == [
        ("demand", "PJM", window("2024-01-01T05", "2024-01-01T06")),
        ("fuel-mix", "CISO", window("2024-01-01T05", "2024-01-01T08")),
        ("fuel-mix", "PJM", window("2024-01-01T05", "2024-01-01T11")),
        ("fuel-mix", "PJM", window("2024-01-03T00", "2024-01-03T01")),
        ("interchange", "PJM", window("2024-01-01T05", "2024-01-01T07")),
    ]


def test_plan_gap_chunks_asks_once_per_ba_and_route_for_overlapping_gaps() -> None:
    gaps = [
        gap("EBA.PJM-ALL.D.H", "2024-01-01T05", "2024-01-01T06"),
        gap("EBA.PJM-ALL.NG.H", "2024-01-01T06", "2024-01-01T08"),  # same route, other type
        gap("EBA.PJM-ALL.TI.H", "2024-01-01T09", "2024-01-01T09"),  # touches
        gap("EBA.CISO-ALL.D.H", "2024-01-01T05", "2024-01-01T05"),
        gap("EBA.PJM-ALL.NG.COL.H", "2024-01-01T05", "2024-01-01T05"),
        gap("EBA.PJM-ALL.NG.NUC.H", "2024-01-01T05", "2024-01-01T05"),
    ]
    chunks = plan_gap_chunks(gaps)
    described = sorted(
        (c.route.name, tuple(c.facets[c.route.area_facet]), tuple(sorted(c.facets.get("type", []))), c.window)
        for c in chunks
    )
    assert described == [
        ("fuel-type-data", ("PJM",), (), window("2024-01-01T05", "2024-01-01T06")),
        ("region-data", ("CISO",), ("D",), window("2024-01-01T05", "2024-01-01T06")),
        ("region-data", ("PJM",), ("D", "NG", "TI"), window("2024-01-01T05", "2024-01-01T10")),
    ]
    # a month-long gap is split into page-sized requests (fuel mix: 500 hours each)
    long = plan_gap_chunks([gap("EBA.PJM-ALL.NG.COL.H", "2024-01-01T00", "2024-01-31T23")])
    assert [c.window.hours for c in long] == [500, 244]


def test_plan_gap_chunks_covers_nearby_gaps_of_one_ba_and_route_in_one_request() -> None:
    # four single missing hours of PJM demand, every other hour: 7 hours in all, one page
    gaps = [gap("EBA.PJM-ALL.D.H", f"2024-01-01T{h:02d}", f"2024-01-01T{h:02d}") for h in (5, 7, 9, 11)]
    chunks = plan_gap_chunks(gaps)
    assert len(chunks) == 1
    assert chunks[0].window == window("2024-01-01T05", "2024-01-01T12")
