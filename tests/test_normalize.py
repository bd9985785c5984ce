"""Pure functions: raw EIA rows -> observations, the observation CSV, the catalog, time windows."""

from __future__ import annotations

import csv
import io
import logging
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
import pytest

from gridpulse_cli.catalog import (
    ALIASES,
    DATASETS,
    KNOWN_FUELS,
    MVP_BAS,
    REGIONS,
    SeriesKey,
    active_us_bas,
    area_type,
    balancing_authorities,
    parse_series_id,
    resolve_bas,
    resolve_datasets,
    series_id,
)
from gridpulse_cli.errors import InputFormatError, UsageError
from gridpulse_cli.files import CSV_COLUMNS, read_observations_csv, read_raw_rows, write_observations_csv
from gridpulse_cli.normalize import FRAME_COLUMNS, normalize_rows
from gridpulse_cli.windows import Window, parse_time, resolve_window, window_or_all_time
from testing.eia_stub import load_sample_rows, make_subba_rows, samples_dir

needs_samples = pytest.mark.skipif(not samples_dir().is_dir(), reason="shared/eia-samples not available")
HEADER = "series_id,period_end_utc,value,quality_flag"


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def region(period: str, respondent: str, typ: str, value: Any) -> dict[str, Any]:
    return {
        "period": period,
        "respondent": respondent,
        "respondent-name": respondent,
        "type": typ,
        "type-name": typ,
        "value": value,
        "value-units": "megawatthours",
    }


def fuel(period: str, respondent: str, code: str, value: Any) -> dict[str, Any]:
    return {
        "period": period,
        "respondent": respondent,
        "respondent-name": respondent,
        "fueltype": code,
        "type-name": code.title(),
        "value": value,
        "value-units": "megawatthours",
    }


def interchange(period: str, frm: str, to: str, value: Any) -> dict[str, Any]:
    return {
        "period": period,
        "fromba": frm,
        "fromba-name": frm,
        "toba": to,
        "toba-name": to,
        "value": value,
        "value-units": "megawatthours",
    }


def subba(period: str, parent: str, sub: str, value: Any) -> dict[str, Any]:
    return {
        "period": period,
        "subba": sub,
        "subba-name": sub,
        "parent": parent,
        "parent-name": parent,
        "value": value,
        "value-units": "megawatthours",
    }


def as_records(frame: pd.DataFrame) -> dict[tuple[str, datetime], tuple[float, str]]:
    return {
        (s, t.to_pydatetime()): (v, q)
        for s, t, v, q in frame[["series_id", "period_end_utc", "value_mwh", "quality_flag"]].itertuples(
            index=False
        )
    }


# ---- normalize_rows: series IDs, times, values ------------------------------------------------


def test_series_ids_for_all_four_routes() -> None:
    p = "2024-01-01T05"
    rows = [
        region(p, "CISO", "D", "1"),
        region(p, "CISO", "DF", "2"),
        region(p, "CISO", "NG", "3"),
        region(p, "CISO", "TI", "-4"),
        fuel(p, "CISO", "SUN", "5"),
        interchange(p, "CISO", "BPAT", "-6"),
        interchange(p, "CISO", "MEX", "7"),
        subba(p, "CISO", "PGAE", "8"),
    ]
    frame = normalize_rows(rows)
    assert list(frame.columns) == FRAME_COLUMNS
    assert frame[["series_id", "dataset", "area", "counterpart"]].values.tolist() == [
        ["EBA.CISO-ALL.D.H", "demand", "CISO", ""],
        ["EBA.CISO-ALL.DF.H", "forecast", "CISO", ""],
        ["EBA.CISO-ALL.NG.H", "generation", "CISO", ""],
        ["EBA.CISO-ALL.TI.H", "total-interchange", "CISO", ""],
        ["EBA.CISO-ALL.NG.SUN.H", "fuel-mix", "CISO", "SUN"],
        ["EBA.CISO-BPAT.ID.H", "interchange", "CISO", "BPAT"],
        ["EBA.CISO-MEX.ID.H", "interchange", "CISO", "MEX"],
        ["EBA.CISO-PGAE.D.H", "subregion-demand", "CISO", "PGAE"],
    ]
    assert frame["value_mwh"].tolist() == [1, 2, 3, -4, 5, -6, 7, 8]
    for sid, dataset, area, counterpart in frame[["series_id", "dataset", "area", "counterpart"]].values:
        assert parse_series_id(sid) == SeriesKey(dataset, area, counterpart)


def test_period_end_utc_is_the_hour_ending_instant() -> None:
    # EIA's hourly 2024-01-01T00 is 23:00-24:00 UTC on Dec 31: it *ends* at 2024-01-01T00:00Z.
    frame = normalize_rows(
        [region("2024-01-01T00", "PJM", "D", "1"), region("2024-03-10T23", "PJM", "D", "2")]
    )
    assert str(frame["period_end_utc"].dtype) == "datetime64[ns, UTC]"
    assert frame["period_end_utc"].tolist() == [
        pd.Timestamp("2024-01-01T00:00Z"),
        pd.Timestamp("2024-03-10T23:00Z"),
    ]
    buf = io.StringIO()
    write_observations_csv(frame, buf)
    assert [line.split(",")[1] for line in buf.getvalue().splitlines()[1:]] == [
        "2024-01-01T00:00:00Z",
        "2024-03-10T23:00:00Z",
    ]


@pytest.mark.parametrize(
    ("raw", "value", "flag"),
    [
        ("-3", -3.0, "good"),
        (".3", 0.3, "good"),
        ("4225.3001", 4225.3001, "good"),
        ("0", 0.0, "good"),
        (12, 12.0, "good"),
        (-0.5, -0.5, "good"),
        (None, None, "missing"),
        ("", None, "missing"),
        ("abc", None, "missing"),
        ("NaN", None, "missing"),
        ("inf", None, "missing"),
    ],
)
def test_string_and_numeric_values(raw: Any, value: float | None, flag: str) -> None:
    frame = normalize_rows([region("2024-01-01T05", "ERCO", "D", raw)])
    got = frame["value_mwh"].iloc[0]
    if value is None:
        assert math.isnan(got)
    else:
        assert got == value
    assert frame["quality_flag"].iloc[0] == flag


def test_mixed_value_types_in_one_batch() -> None:
    values = ["-3", ".3", "4225.3001", 12, None, "abc", 1956]
    rows = [region(f"2024-01-01T{h:02d}", "MISO", "NG", v) for h, v in enumerate(values)]
    frame = normalize_rows(rows)
    assert frame["value_mwh"].tolist()[:4] == [-3.0, 0.3, 4225.3001, 12.0]
    assert np.isnan(frame["value_mwh"].iloc[4]) and np.isnan(frame["value_mwh"].iloc[5])
    assert frame["value_mwh"].iloc[6] == 1956.0
    assert frame["quality_flag"].tolist() == ["good"] * 4 + ["missing"] * 2 + ["good"]


def test_unknown_fuel_code_is_stored_and_warned_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gridpulse_cli.normalize")
    warned: set[str] = set()
    first = normalize_rows(
        [fuel("2024-11-01T00", "CISO", "XYZ", "10"), fuel("2024-11-01T00", "CISO", "BAT", "-20")], warned
    )
    second = normalize_rows([fuel("2024-11-01T01", "CISO", "XYZ", "11")], warned)
    assert first["series_id"].tolist() == ["EBA.CISO-ALL.NG.XYZ.H", "EBA.CISO-ALL.NG.BAT.H"]
    assert second["series_id"].tolist() == ["EBA.CISO-ALL.NG.XYZ.H"]
    assert first["value_mwh"].tolist() == [10.0, -20.0] and second["value_mwh"].tolist() == [11.0]
    messages = [r.getMessage() for r in caplog.records if "XYZ" in r.getMessage()]
    assert len(messages) == 1
    assert not any("BAT" in r.getMessage() for r in caplog.records)  # known since late 2024
    assert warned == {"XYZ"}
    assert {"BAT", "PS", "SNB", "UES", "UNK"} <= KNOWN_FUELS


def test_regions_and_us48_are_normalised_like_bas() -> None:
    frame = normalize_rows(
        [region("2024-04-01T00", "US48", "D", "400000"), region("2024-04-01T00", "CAL", "NG", "30000")]
    )
    assert frame["series_id"].tolist() == ["EBA.US48-ALL.D.H", "EBA.CAL-ALL.NG.H"]
    assert [area_type(a) for a in frame["area"]] == ["region", "region"]
    assert area_type("CISO") == "ba" and area_type("PJM") == "ba"
    assert {area_type(code) for code in REGIONS} == {"region"}
    assert len(REGIONS) == 14


def test_duplicates_are_dropped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gridpulse_cli.normalize")
    rows = [region("2024-01-01T05", "PJM", "D", "100"), region("2024-01-01T05", "PJM", "D", "101")]
    frame = normalize_rows([*rows, region("2024-01-01T06", "PJM", "D", "102")])
    assert frame["value_mwh"].tolist() == [100.0, 102.0]  # the first occurrence wins
    assert any("dropped 1 repeated" in r.getMessage() for r in caplog.records)


def test_unknown_region_type_codes_are_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gridpulse_cli.normalize")
    frame = normalize_rows(
        [region("2024-01-01T05", "PJM", "D", "1"), region("2024-01-01T05", "PJM", "XX", "2")]
    )
    assert frame["series_id"].tolist() == ["EBA.PJM-ALL.D.H"]
    assert any("XX" in r.getMessage() for r in caplog.records)


@needs_samples
def test_local_hourly_periods_are_rejected() -> None:
    path = samples_dir() / "jonoxia-cache-region-data-CISO-local-hourly-2024-04.csv"
    with path.open(newline="") as fh:
        rec = next(csv.DictReader(fh))
    row = region(rec["period"], rec["respondent"], rec["type"], rec["Demand (MWh)"])
    assert row["period"].endswith("-07")
    with pytest.raises(InputFormatError, match="local-hourly") as caught:
        normalize_rows([row])
    assert rec["period"] in str(caught.value)
    with pytest.raises(InputFormatError, match="2024-04-01T13-07"):
        normalize_rows(
            [region("2024-04-01T12", "CISO", "D", "1"), region("2024-04-01T13-07", "CISO", "D", "1")]
        )


@pytest.mark.parametrize("period", ["2024-04-01", "2024-04-01T13:00", "2024-04-01 13", "20240401T13Z"])
def test_other_period_shapes_are_rejected(period: str) -> None:
    with pytest.raises(InputFormatError, match="hourly UTC period"):
        normalize_rows([region(period, "CISO", "D", "1")])


def test_rows_that_are_not_eia930_rows_are_rejected() -> None:
    with pytest.raises(InputFormatError, match="not an EIA-930 row"):
        normalize_rows([{"period": "2024-01-01T00", "value": "1"}])
    with pytest.raises(InputFormatError, match="'value'"):
        normalize_rows([{"period": "2024-01-01T00", "respondent": "PJM", "type": "D"}])


def test_no_rows_give_an_empty_frame_with_the_columns() -> None:
    frame = normalize_rows([])
    assert list(frame.columns) == FRAME_COLUMNS and frame.empty
    buf = io.StringIO()
    write_observations_csv(frame, buf)
    assert buf.getvalue() == ",".join(CSV_COLUMNS) + "\n"


def test_generated_subba_rows() -> None:
    rows = make_subba_rows({"ERCO": ["COAS", "FWES"]}, "2024-01-01T00", "2024-01-01T23")
    frame = normalize_rows(rows)
    assert len(frame) == 48
    assert set(frame["series_id"]) == {"EBA.ERCO-COAS.D.H", "EBA.ERCO-FWES.D.H"}
    assert frame["value_mwh"].tolist() == [float(r["value"]) for r in rows]


TYPE_DATASET = {"D": "demand", "DF": "forecast", "NG": "generation", "TI": "total-interchange"}


def expected_series_id(row: dict[str, Any]) -> str:
    """The series ID a raw row belongs to, built with catalog.series_id (not normalize's code)."""
    if "fromba" in row:
        return series_id("interchange", row["fromba"], row["toba"])
    if "fueltype" in row:
        return series_id("fuel-mix", row["respondent"], row["fueltype"])
    return series_id(TYPE_DATASET[row["type"]], row["respondent"])


@needs_samples
@pytest.mark.parametrize("route", ["region-data", "fuel-type-data", "interchange-data"])
def test_real_sample_rows_normalise_exactly(route: str) -> None:
    rows = load_sample_rows(route)
    frame = normalize_rows(rows)
    assert len(frame) == len(rows)
    got = as_records(frame)
    for row in rows:
        when = datetime.strptime(row["period"], "%Y-%m-%dT%H").replace(tzinfo=UTC)
        value, flag = got[(expected_series_id(row), when)]
        if row["value"] is None:
            assert math.isnan(value) and flag == "missing"
        else:
            assert value == float(row["value"]) and flag == "good"  # to the last digit
    for sid in frame["series_id"].unique():
        assert series_id(*_key_tuple(parse_series_id(sid))) == sid


def _key_tuple(key: SeriesKey) -> tuple[str, str, str]:
    return key.dataset, key.area, key.counterpart


@needs_samples
def test_real_sample_rows_keep_negatives_and_decimals() -> None:
    region_frame = normalize_rows(load_sample_rows("region-data"))
    fuel_frame = normalize_rows(load_sample_rows("fuel-type-data"))
    assert int((region_frame["value_mwh"] < 0).sum()) == 831
    recorded = as_records(region_frame)
    assert recorded[("EBA.LGEE-ALL.D.H", utc(2022, 7, 10, 2))] == (4225.3001, "good")
    assert as_records(fuel_frame)[("EBA.LGEE-ALL.NG.SUN.H", utc(2022, 7, 10, 1))] == (0.3, "good")
    assert region_frame["period_end_utc"].min() == utc(2022, 7, 10)
    assert region_frame["period_end_utc"].max() == utc(2022, 7, 11)
    assert set(region_frame["dataset"]) == {"demand", "generation", "total-interchange"}  # no DF asked


def test_read_raw_rows_names_the_bad_line() -> None:
    lines = ['{"period": "2024-01-01T00"}', "", "[1, 2]"]
    assert next(read_raw_rows(lines, "raw.jsonl")) == {"period": "2024-01-01T00"}
    with pytest.raises(InputFormatError, match=r"raw\.jsonl:3: expected a JSON object"):
        list(read_raw_rows(lines, "raw.jsonl"))
    with pytest.raises(InputFormatError, match=r"raw\.jsonl:2: not JSON"):
        list(read_raw_rows(["{}", "{oops"], "raw.jsonl"))


# ---- the observation CSV ----------------------------------------------------------------------


def _round_trip(frame: pd.DataFrame, **kw: Any) -> tuple[str, pd.DataFrame]:
    buf = io.StringIO()
    write_observations_csv(frame, buf)
    text = buf.getvalue()
    chunks = list(read_observations_csv(io.StringIO(text), source="obs.csv", **kw))
    return text, pd.concat(chunks, ignore_index=True) if chunks else chunks


def test_csv_round_trip_is_exact() -> None:
    rows = [
        region("2024-01-01T00", "CISO", "D", "-3"),
        region("2024-01-01T00", "CISO", "NG", ".3"),
        region("2024-01-01T00", "CISO", "TI", "4225.3001"),
        region("2024-01-01T01", "CISO", "D", None),
        region("2024-01-01T01", "CISO", "NG", 0.1 + 0.2),  # needs all 17 digits
        fuel("2024-01-01T00", "CISO", "WND", "-2"),
        interchange("2024-01-01T00", "CISO", "CFE", "-250.5"),
        subba("2024-01-01T00", "CISO", "SDGE", "1e3"),
    ]
    frame = normalize_rows(rows)
    text, back = _round_trip(frame)
    lines = text.splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS) and lines[0].startswith(HEADER)
    assert lines[1] == "EBA.CISO-ALL.D.H,2024-01-01T00:00:00Z,-3,good,demand,CISO,"
    assert "EBA.CISO-ALL.D.H,2024-01-01T01:00:00Z,,missing,demand,CISO," in lines
    assert "EBA.CISO-ALL.NG.H,2024-01-01T00:00:00Z,0.3,good,generation,CISO," in lines
    assert "EBA.CISO-SDGE.D.H,2024-01-01T00:00:00Z,1000,good,subregion-demand,CISO,SDGE" in lines
    pd.testing.assert_frame_equal(back, frame, check_exact=True)


@needs_samples
def test_csv_round_trip_of_real_rows_in_chunks() -> None:
    frame = normalize_rows(load_sample_rows("fuel-type-data"))
    _, back = _round_trip(frame, chunk_rows=999)
    assert len(back) == len(frame) == 7000
    pd.testing.assert_frame_equal(back, frame, check_exact=True)


def test_csv_extra_columns_and_spaces_are_allowed() -> None:
    text = f"{HEADER},note\nEBA.PJM-ALL.D.H, 2024-01-01T05:00:00Z, 90000.5 ,good,hello\n"
    (chunk,) = list(read_observations_csv(io.StringIO(text)))
    assert chunk["value_mwh"].tolist() == [90000.5]
    assert chunk[["dataset", "area", "counterpart"]].values.tolist() == [["demand", "PJM", ""]]


GOOD = "EBA.PJM-ALL.D.H,2024-01-01T05:00:00Z,1,good"


@pytest.mark.parametrize(
    ("text", "where", "fragment"),
    [
        (f"{HEADER}\n{GOOD}\nEBA.PJM-ALL.D.H,2024-01-01 06:00,1,good\n", "in.csv:3:", "period_end_utc"),
        (f"{HEADER}\nEBA.PJM-ALL.D.H,2024-01-01T05:30:00Z,1,good\n", "in.csv:2:", "not on the hour"),
        (f"{HEADER}\nEBA.PJM-ALL.D.H,2024-01-01T05:00:00+01:00,1,good\n", "in.csv:2:", "period_end_utc"),
        (f"{HEADER}\n{GOOD}\nEBA.PJM-ALL.D.H,2024-01-01T06:00:00Z,1.2.3,good\n", "in.csv:3:", "not a number"),
        (f"{HEADER}\nEBA.PJM-ALL.D.H,2024-01-01T05:00:00Z,nan,good\n", "in.csv:2:", "not a number"),
        (
            f"{HEADER}\n{GOOD}\n{GOOD}\nEBA.PJM-ALL.D.H,2024-01-01T07:00:00Z,1,ok\n",
            "in.csv:4:",
            "quality_flag 'ok'",
        ),
        (f"{HEADER}\n{GOOD}\nPJM demand,2024-01-01T05:00:00Z,1,good\n", "in.csv:3:", "series ID"),
        (f"{HEADER}\nEBA.PJM-ALL.XX.H,2024-01-01T05:00:00Z,1,good\n", "in.csv:2:", "series ID"),
        (f"{HEADER}\n{GOOD}\n{GOOD},a,b\n", "in.csv: malformed CSV", "line 3"),
        ("sid,time,value,flag\n" + GOOD + "\n", "in.csv:", "header must start with " + HEADER),
        ("series_id,value,period_end_utc,quality_flag\n", "in.csv:", "header must start with"),
        ("", "in.csv:", "empty input"),
        ("\n\n", "in.csv:", "empty input"),
    ],
    ids=[
        "bad-time",
        "half-hour",
        "offset",
        "bad-value",
        "nan-value",
        "bad-flag",
        "bad-series",
        "bad-series-kind",
        "ragged",
        "wrong-header",
        "header-order",
        "empty",
        "blank",
    ],
)
def test_malformed_csv_names_the_line(text: str, where: str, fragment: str) -> None:
    with pytest.raises(InputFormatError) as caught:
        list(read_observations_csv(io.StringIO(text), source="in.csv"))
    message = str(caught.value)
    assert message.startswith(where), message
    assert fragment in message
    assert "\n" not in message


def test_line_numbers_count_across_chunks() -> None:
    good = [f"EBA.PJM-ALL.D.H,2024-01-01T{h:02d}:00:00Z,{h},good" for h in range(7)]
    text = "\n".join([HEADER, *good, "EBA.PJM-ALL.D.H,2024-01-01T07:00:00Z,x,good"]) + "\n"
    with pytest.raises(InputFormatError, match=r"^in\.csv:9: value 'x'"):
        list(read_observations_csv(io.StringIO(text), source="in.csv", chunk_rows=3))


def test_line_numbers_survive_blank_lines() -> None:
    text = f"{HEADER}\n{GOOD}\n\nEBA.PJM-ALL.D.H,2024-01-01T06:00:00Z,x,good\n"
    with pytest.raises(InputFormatError, match=r"^in\.csv:4: "):
        list(read_observations_csv(io.StringIO(text), source="in.csv"))


@pytest.mark.parametrize("value", ["inf", "-inf", "Infinity"])
def test_non_finite_csv_values_are_rejected(value: str) -> None:
    text = f"{HEADER}\nEBA.PJM-ALL.D.H,2024-01-01T05:00:00Z,{value},good\n"
    with pytest.raises(InputFormatError, match=r"^in\.csv:2: "):
        list(read_observations_csv(io.StringIO(text), source="in.csv"))


def test_rows_with_an_extra_leading_field_are_rejected() -> None:
    text = f"{HEADER}\njunk,{GOOD}\n"
    with pytest.raises(InputFormatError):
        list(read_observations_csv(io.StringIO(text), source="in.csv"))


def test_header_only_is_no_rows() -> None:
    assert sum(len(c) for c in read_observations_csv(io.StringIO(HEADER + "\n"))) == 0


# ---- catalog ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (None, list(MVP_BAS)),
        ([], list(MVP_BAS)),
        (["caiso"], ["CISO"]),
        (
            ["ERCOT", "spp", "NYISO", "iso-ne", "ISONE", "bpa", "ladwp"],
            ["ERCO", "SWPP", "NYIS", "ISNE", "BPAT", "LDWP"],
        ),
        (["pjm,ciso", "MISO"], ["PJM", "CISO", "MISO"]),
        (["PJM, caiso ,", "CISO", "pjm"], ["PJM", "CISO"]),
        (["US48", "cal"], ["US48", "CAL"]),
        (["Us"], ["US48"]),
    ],
)
def test_resolve_bas_aliases_case_commas_repeats(values: list[str] | None, expected: list[str]) -> None:
    assert resolve_bas(values) == expected


def test_resolve_bas_all_is_every_active_us_ba() -> None:
    every = resolve_bas(["all"])
    assert every == active_us_bas() == sorted(every)
    assert set(MVP_BAS) <= set(every)
    assert not set(every) & set(REGIONS)
    bas = balancing_authorities()
    assert all(bas[c].active and bas[c].us_ba for c in every)
    assert "AEC" in bas and "AEC" not in every  # retired 2021-09-01
    assert {"SWPW", "BHBA", "SIKE"} <= set(bas)  # added after the 2024 reference table
    assert resolve_bas(["ALL", "cal"]) == [*every, "CAL"]


@pytest.mark.parametrize("bad", ["FOO", "CAISOO", "PJM,XYZ"])
def test_unknown_ba_names_the_value_and_lists_the_valid_ones(bad: str) -> None:
    with pytest.raises(UsageError) as caught:
        resolve_bas([bad])
    message = str(caught.value)
    wrong = bad.split(",")[-1]
    assert f"'{wrong}'" in message
    assert "valid: all," in message
    for code in ("CISO", "ERCO", "PJM", "SWPP", "US48"):
        assert code in message
    assert "CAISO=CISO" in message
    if bad == "CAISOO":
        assert "did you mean CAISO?" in message


def test_aliases_point_at_known_codes() -> None:
    known = set(balancing_authorities()) | set(REGIONS)
    assert set(ALIASES.values()) <= known


def test_resolve_datasets() -> None:
    assert resolve_datasets(None) == list(DATASETS)
    assert resolve_datasets(["all"]) == list(DATASETS)
    assert resolve_datasets(["Fuel-Mix,demand", "demand"]) == ["demand", "fuel-mix"]
    assert resolve_datasets(["interchange", "subregion-demand"]) == ["interchange", "subregion-demand"]
    with pytest.raises(UsageError) as caught:
        resolve_datasets(["demnd"])
    message = str(caught.value)
    assert "'demnd'" in message and "did you mean demand?" in message
    assert "valid: all, " + ", ".join(DATASETS) in message
    assert list(DATASETS) == [
        "demand",
        "forecast",
        "generation",
        "total-interchange",
        "fuel-mix",
        "interchange",
        "subregion-demand",
    ]


SERIES_CASES = [
    ("demand", "CISO", "", "EBA.CISO-ALL.D.H"),
    ("forecast", "PJM", "", "EBA.PJM-ALL.DF.H"),
    ("generation", "US48", "", "EBA.US48-ALL.NG.H"),
    ("total-interchange", "ERCO", "", "EBA.ERCO-ALL.TI.H"),
    ("fuel-mix", "PACW", "WND", "EBA.PACW-ALL.NG.WND.H"),
    ("fuel-mix", "CISO", "BAT", "EBA.CISO-ALL.NG.BAT.H"),
    ("interchange", "PJM", "MISO", "EBA.PJM-MISO.ID.H"),
    ("interchange", "BPAT", "CAN", "EBA.BPAT-CAN.ID.H"),
    ("subregion-demand", "CISO", "PGAE", "EBA.CISO-PGAE.D.H"),
    ("subregion-demand", "MISO", "0001", "EBA.MISO-0001.D.H"),
    ("subregion-demand", "PNM", "Acoma", "EBA.PNM-Acoma.D.H"),
]


@pytest.mark.parametrize(("dataset", "area", "counterpart", "text"), SERIES_CASES)
def test_series_id_round_trip(dataset: str, area: str, counterpart: str, text: str) -> None:
    assert series_id(dataset, area, counterpart) == text
    assert parse_series_id(text) == SeriesKey(dataset, area, counterpart)


def test_every_dataset_has_a_series_id() -> None:
    assert {case[0] for case in SERIES_CASES} == set(DATASETS)


@pytest.mark.parametrize(
    "text",
    [
        "EBA.CISO-ALL.D",
        "EBA.CISO-ALL.D.HL",
        "EBA.CISO-ALL.XX.H",
        "EBA.CISO-PGAE.NG.H",
        "EIA.CISO-ALL.D.H",
        "",
        "CISO",
    ],
)
def test_parse_series_id_rejects_other_text(text: str) -> None:
    with pytest.raises(ValueError, match="not an EIA-930 hourly series ID"):
        parse_series_id(text)
    with pytest.raises(ValueError):
        series_id("prices", "CISO")


# ---- windows ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "now",
    [
        utc(2024, 3, 10, 5) + timedelta(minutes=30, seconds=12),
        utc(2024, 3, 10, 5),
        utc(2024, 3, 10, 5) + timedelta(minutes=59),
    ],
)
def test_since_24h_is_exactly_24_hours_ending_after_now(now: datetime) -> None:
    window = resolve_window("24h", None, None, now)
    assert window == Window(utc(2024, 3, 9, 6), utc(2024, 3, 10, 6))
    assert window.hours == 24
    # half-open over period_end_utc: hour-ending stamps 06:00 yesterday .. 05:00 today (<= now)
    assert window.end - timedelta(hours=1) <= now < window.end


def test_since_defaults_and_units() -> None:
    now = utc(2024, 3, 10, 5) + timedelta(minutes=1)
    assert resolve_window(None, None, None, now) == resolve_window("24h", None, None, now)
    assert window_or_all_time(None, None, None, now) is None
    assert resolve_window("7d", None, None, now).hours == 168
    assert resolve_window("2w", None, None, now).hours == 336
    assert resolve_window(" 3H ", None, None, now).hours == 3
    local = datetime(2024, 3, 9, 14, 30, tzinfo=timezone(timedelta(hours=-8)))  # 22:30Z
    assert resolve_window("1h", None, None, local) == Window(utc(2024, 3, 9, 22), utc(2024, 3, 9, 23))


def test_from_to_is_half_open() -> None:
    now = utc(2025, 1, 1)
    january = resolve_window(None, "2024-01-01", "2024-02-01", now)
    assert january == Window(utc(2024, 1, 1), utc(2024, 2, 1))
    assert january.hours == 744
    assert str(january) == "2024-01-01T00:00:00Z..2024-02-01T00:00:00Z"
    assert resolve_window(None, "2024-02-01", "2024-03-01", now).hours == 29 * 24  # leap year
    assert resolve_window(None, "2024-01-01T05", "2024-01-01T06:00:00Z", now).hours == 1
    assert resolve_window(None, "2024-12-31T22", None, now) == Window(
        utc(2024, 12, 31, 22), utc(2025, 1, 1, 1)
    )


@pytest.mark.parametrize(
    ("since", "start", "end", "fragment"),
    [
        (None, "2024-02-01", "2024-01-01", "is not after"),
        (None, "2024-01-01", "2024-01-01", "is not after"),
        (None, "2024-13-01", "2024-12-01", "invalid --from"),
        (None, "2024-01-01", "2024-02-30", "invalid --to"),
        (None, "yesterday", None, "invalid --from"),
        (None, "2024-01-01T05:30", None, "on the hour"),
        (None, "2024-01-01T24", None, "invalid --from"),
        (None, "01/02/2024", None, "invalid --from"),
        (None, None, "2024-01-01", "--to needs --from"),
        ("24h", "2024-01-01", None, "either --since or --from/--to"),
        ("0h", None, None, "invalid duration"),
        ("24", None, None, "invalid duration"),
        ("-1d", None, None, "invalid duration"),
        ("1y", None, None, "invalid duration"),
    ],
)
def test_bad_windows_are_usage_errors(
    since: str | None, start: str | None, end: str | None, fragment: str
) -> None:
    with pytest.raises(UsageError, match=fragment):
        resolve_window(since, start, end, utc(2024, 6, 1))


def test_parse_time_accepts_the_documented_shapes() -> None:
    for text in (
        "2024-01-01T05",
        "2024-01-01T05:00",
        "2024-01-01T05:00:00Z",
        "2024-01-01 05",
        "2024-01-01T05+00:00",
    ):
        assert parse_time(text) == utc(2024, 1, 1, 5)
    assert parse_time("2024-01-01") == utc(2024, 1, 1)
