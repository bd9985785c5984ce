"""The gap planner: gap windows merged per dataset and BA, gap chunks of at most a page each."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from gridpulse_cli.catalog import DATASETS, MVP_BAS, PAGE_SIZE, active_us_bas, rows_per_hour
from gridpulse_cli.gaps import Gap
from gridpulse_cli.planner import (
    Chunk,
    chunk_key,
    gap_windows,
    pack,
    plan_backfill,
    plan_chunks,
    plan_gap_chunks,
)
from gridpulse_cli.windows import Window
from tests.helpers import gap_json


def gap(series_id: str, first: str, last: str, reason: str = "absent") -> Gap:
    return Gap(**gap_json(series_id, first, last, reason))


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


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
    # a month-long gap is split into page-sized requests (fuel mix, 8 fuels: two even halves)
    long = plan_gap_chunks([gap("EBA.PJM-ALL.NG.COL.H", "2024-01-01T00", "2024-01-31T23")])
    assert [c.window.hours for c in long] == [372, 372]


def test_plan_gap_chunks_covers_nearby_gaps_of_one_ba_and_route_in_one_request() -> None:
    # four single missing hours of PJM demand, every other hour: 7 hours in all, one page
    gaps = [gap("EBA.PJM-ALL.D.H", f"2024-01-01T{h:02d}", f"2024-01-01T{h:02d}") for h in (5, 7, 9, 11)]
    chunks = plan_gap_chunks(gaps)
    assert len(chunks) == 1
    assert chunks[0].window == window("2024-01-01T05", "2024-01-01T12")


# ---- packing ------------------------------------------------------------------------------------

SIX = ["demand", "forecast", "generation", "total-interchange", "fuel-mix", "interchange"]


def estimated_rows(chunk: Chunk) -> int:
    areas = chunk.facets[chunk.route.area_facet]
    return chunk.window.hours * sum(
        rows_per_hour(chunk.route.name, a, chunk.facets.get("type", [])) for a in areas
    )


def minimum_pages(chunks: Sequence[Chunk]) -> int:
    """The full-page floor by the estimates: per route, ceil(rows / 5,000)."""
    rows: dict[str, int] = {}
    for chunk in chunks:
        rows[chunk.route.name] = rows.get(chunk.route.name, 0) + estimated_rows(chunk)
    return sum(math.ceil(n / PAGE_SIZE) for n in rows.values())


def test_pack_fills_pages_with_several_areas_and_hours() -> None:
    # 20 rows an hour in all: one group, 250 hours a request
    assert pack([("A", 4), ("B", 4), ("C", 4), ("D", 4), ("E", 4)], 8760) == [
        (["A", "B", "C", "D", "E"], 250)
    ]
    # a window shorter than a page: one request of every area
    assert pack([("A", 40), ("B", 9)], 24) == [(["A", "B"], 24)]
    # more than a page an hour: an hour a request each, paging takes the rest
    assert pack([("A", 6000)], 10) == [(["A"], 1)]
    assert pack([], 100) == []


@pytest.mark.parametrize(
    ("bas", "start", "end"),
    [
        (active_us_bas(), utc(2024, 1, 1), utc(2024, 2, 1)),
        (list(MVP_BAS), utc(2023, 1, 1, 1), utc(2024, 1, 1, 1)),
    ],
    ids=["ba-all-month", "five-bas-year"],
)
def test_plan_backfill_packs_to_the_full_page_floor(bas: list[str], start: datetime, end: datetime) -> None:
    window = Window(start, end)
    chunks = plan_backfill(bas, SIX, window)
    assert all(estimated_rows(c) <= PAGE_SIZE for c in chunks)
    assert len(chunks) <= 1.02 * minimum_pages(chunks)
    assert any(len(c.facets[c.route.area_facet]) > 1 for c in chunks)  # several BAs per request
    # every route and BA tiles the window exactly once
    for route_name in {c.route.name for c in chunks}:
        for ba in bas:
            parts = sorted(
                (
                    c.window
                    for c in chunks
                    if c.route.name == route_name and ba in c.facets[c.route.area_facet]
                ),
                key=lambda w: w.start,
            )
            assert parts[0].start == window.start and parts[-1].end == window.end, (route_name, ba)
            assert all(a.end == b.start for a, b in itertools.pairwise(parts)), (route_name, ba)


def test_plan_backfill_is_the_same_plan_for_the_same_arguments() -> None:
    window = Window(utc(2024, 1, 1), utc(2024, 3, 1))
    one = [chunk_key(c) for c in plan_backfill(["PJM", "CISO", "ERCO"], SIX, window)]
    assert one == [chunk_key(c) for c in plan_backfill(["ERCO", "PJM", "CISO", "PJM"], SIX, window)]


def test_plan_leaves_out_what_a_ba_does_not_publish() -> None:
    window = Window(utc(2024, 1, 1), utc(2024, 1, 2))
    # AVRN is generation-only: no demand or forecast; PJM has subregions, MISO's are asked too, AECI has none
    chunks = plan_chunks(["AVRN", "PJM", "AECI"], ["demand", "generation", "subregion-demand"], window)
    by_route = {c.route.name: c for c in chunks}
    assert sorted(by_route["region-data"].facets["respondent"]) == ["AECI", "AVRN", "PJM"]
    demand_only = plan_chunks(["AVRN", "PJM"], ["demand"], window)
    assert [c.facets["respondent"] for c in demand_only] == [["PJM"]]
    assert by_route["region-sub-ba-data"].facets["parent"] == ["PJM"]


def test_plan_asks_for_a_ba_only_while_it_publishes() -> None:
    # GLHB published from 2020-02-29 to 2022-09-01 (a day's margin either side); AEC until 2021-09-01
    chunks = plan_backfill(["GLHB", "AEC", "PJM"], ["generation"], Window(utc(2019, 1, 1), utc(2023, 1, 1)))
    glhb = [c.window for c in chunks if "GLHB" in c.facets["respondent"]]
    aec = [c.window for c in chunks if "AEC" in c.facets["respondent"]]
    assert min(w.start for w in aec) == utc(2019, 1, 1) and max(w.end for w in aec) == utc(2021, 9, 2)
    assert min(w.start for w in glhb) == utc(2020, 2, 28)
    assert max(w.end for w in glhb) == utc(2022, 9, 2)
    assert not plan_backfill(["GLHB"], ["generation"], Window(utc(2023, 1, 1), utc(2023, 2, 1)))


def test_ingest_asks_every_ba_in_one_request_per_route() -> None:
    chunks = plan_chunks(list(MVP_BAS), list(DATASETS), Window(utc(2024, 1, 1), utc(2024, 1, 2)))
    assert sorted(c.route.name for c in chunks) == sorted({d.route.name for d in DATASETS.values()})


def test_plan_gap_chunks_packs_bas_missing_the_same_hours() -> None:
    gaps = [gap(f"EBA.{ba}-ALL.D.H", "2024-01-01T05", "2024-01-01T07") for ba in ("PJM", "CISO", "ERCO")]
    gaps.append(gap("EBA.MISO-ALL.D.H", "2024-01-02T05", "2024-01-02T05"))  # other hours: its own request
    chunks = plan_gap_chunks(gaps)
    assert sorted((tuple(c.facets["respondent"]), c.window) for c in chunks) == [
        (("CISO", "ERCO", "PJM"), window("2024-01-01T05", "2024-01-01T08")),
        (("MISO",), window("2024-01-02T05", "2024-01-02T06")),
    ]
