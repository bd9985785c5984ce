"""EIA-930 six-month CSV files -> observations: real excerpts, both BALANCE layouts, flags, errors, size."""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from gridpulse_cli.bulkfiles import (
    IMPUTED_COLUMNS,
    canonical_column,
    detect_layout,
    read_bulk_chunks,
    read_bulk_file,
)
from gridpulse_cli.db import Store
from gridpulse_cli.errors import InputFormatError
from gridpulse_cli.normalize import FRAME_COLUMNS, drop_duplicate_observations, normalize_rows
from testing.bulk import BULK_DATA, imputed_copy, write_balance_file

DATA = BULK_DATA
AEC = DATA / "EIA930_BALANCE_2020_Jul_Dec-AEC-9rows.csv"  # real excerpt, pre-2024-H2 layout
AECI = DATA / "EIA930_INTERCHANGE_2022_Jan_Jun-AECI-9rows.csv"  # real excerpt
FLAGS = DATA / "EIA930_BALANCE_2020_Jul_Dec-flags.csv"  # real header, hand-made rows
CISO_2024 = DATA / "EIA930_BALANCE_2024_Jul_Dec-CISO-3rows.csv"  # post-2024-H2 header
PJM_SUB = DATA / "EIA930_SUBREGION_2022_Jan_Jun-PJM-6rows.csv"
ALL_FILES = [AEC, AECI, FLAGS, CISO_2024, PJM_SUB]

UTC_FORMAT = "%m/%d/%Y %I:%M:%S %p"
# The bulk header's fuel names -> the API's fuel-type-data codes, written out independently of the module.
API_FUEL = {
    "Coal": "COL",
    "Natural Gas": "NG",
    "Nuclear": "NUC",
    "All Petroleum Products": "OIL",
    "Hydropower and Pumped Storage": "WAT",
    "Solar": "SUN",
    "Wind": "WND",
    "Other Fuel Sources": "OTH",
    "Unknown Fuel Sources": "UNK",
    "Hydropower Excluding Pumped Storage": "WAT",
    "Pumped Storage": "PS",
    "Solar without Integrated Battery Storage": "SUN",
    "Solar with Integrated Battery Storage": "SNB",
    "Wind without Integrated Battery Storage": "WND",
    "Wind with Integrated Battery Storage": "WNB",
    "Battery Storage": "BAT",
    "Other Energy Storage": "OES",
    "Unknown Energy Storage": "UES",
    "Geothermal": "GEO",
}
API_TYPE = {
    "Demand (MW)": "D",
    "Demand Forecast (MW)": "DF",
    "Net Generation (MW)": "NG",
    "Total Interchange (MW)": "TI",
}


def read_all(path: Path, chunk_rows: int = 100_000) -> pd.DataFrame:
    frames = list(read_bulk_file(path, chunk_rows=chunk_rows))
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values(["series_id", "period_end_utc"]).reset_index(drop=True)


def read_imputed(path: Path, chunk_rows: int = 100_000) -> pd.DataFrame:
    """The hours of a file whose reported value EIA imputed (read_bulk_chunks), by series and hour."""
    frames = [chunk.imputed for chunk in read_bulk_chunks(path, chunk_rows=chunk_rows)]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=IMPUTED_COLUMNS)
    return frame.sort_values(["series_id", "period_end_utc"]).reset_index(drop=True)


def imputed_hours(path: Path) -> list[tuple[str, str, str]]:
    """(series_id, hour, detail) of each hour EIA imputed in a file."""
    frame = read_imputed(path)
    return [
        (sid, f"{stamp:%Y-%m-%dT%H}", detail)
        for sid, stamp, detail in zip(
            frame["series_id"], frame["period_end_utc"], frame["detail"], strict=True
        )
    ]


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def cell(frame: pd.DataFrame, sid: str, stamp: str) -> pd.Series:
    hit = frame[(frame["series_id"] == sid) & (frame["period_end_utc"] == utc(stamp))]
    assert len(hit) == 1, (sid, stamp, hit)
    return hit.iloc[0]


def header_of(path: Path) -> list[str]:
    with path.open(newline="") as f:
        return next(csv.reader(f))


def edited_copy(tmp_path: Path, source: Path, edit: Callable[[list[str]], list[str]]) -> Path:
    lines = source.read_text().splitlines(keepends=True)
    target = tmp_path / source.name
    target.write_text("".join(edit(lines)))
    return target


# ---- layouts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "layout"),
    [
        (AEC, "balance"),
        (FLAGS, "balance"),
        (CISO_2024, "balance"),
        (AECI, "interchange"),
        (PJM_SUB, "subregion"),
    ],
)
def test_detect_layout_of_each_header(path: Path, layout: str) -> None:
    assert detect_layout(header_of(path)) == layout


def test_detect_layout_goes_by_names_not_positions() -> None:
    header = [*reversed(header_of(AECI)), "Some Column EIA Adds Later"]
    assert detect_layout(header) == "interchange"
    # only the required BALANCE columns, spaced oddly, in another order
    assert (
        detect_layout(
            [
                " Total Interchange (MW)",
                "Net  Generation (MW)",
                "Demand (MW)",
                "Demand Forecast (MW)",
                "UTC Time at End of Hour",
                "Balancing Authority",
            ]
        )
        == "balance"
    )


def test_detect_layout_rejects_other_headers_saying_what_it_expected() -> None:
    with pytest.raises(InputFormatError) as caught:
        detect_layout(["series_id", "period_end_utc", "value", "quality_flag"])
    message = str(caught.value)
    for expected in ("BALANCE (", "INTERCHANGE (", "SUBREGION (", "UTC Time at End of Hour", "Sub-Region"):
        assert expected in message
    assert "series_id" in message


def test_canonical_column_mends_eia_header_typos() -> None:
    assert (
        canonical_column("Net Generation (MW) from Pumped Storage  (Adjusted)")
        == "Net Generation (MW) from Pumped Storage (Adjusted)"
    )
    assert (
        canonical_column("Net Generation (MW) from Solar witho Integrated Battery Storage (Adjusted)")
        == "Net Generation (MW) from Solar with Integrated Battery Storage (Adjusted)"
    )
    assert canonical_column("Solar without Integrated Battery Storage") == (
        "Solar without Integrated Battery Storage"
    )


# ---- the real BALANCE excerpt (pre-2024-H2 layout) ---------------------------------------------


def test_aec_excerpt_gives_the_api_series() -> None:
    frame = read_all(AEC)
    assert list(frame.columns) == FRAME_COLUMNS
    assert sorted(frame["series_id"].unique()) == [
        "EBA.AEC-ALL.D.H",
        "EBA.AEC-ALL.DF.H",
        "EBA.AEC-ALL.NG.COL.H",
        "EBA.AEC-ALL.NG.H",
        "EBA.AEC-ALL.NG.NG.H",
        "EBA.AEC-ALL.NG.OTH.H",
        "EBA.AEC-ALL.NG.WAT.H",
        "EBA.AEC-ALL.TI.H",
    ]
    assert len(frame) == 9 * 8
    assert set(frame["quality_flag"]) == {"good"}
    assert imputed_hours(AEC) == []  # EIA imputed none of these hours
    assert set(frame["area"]) == {"AEC"}
    datasets = frame.groupby("dataset").size().to_dict()
    assert datasets == {
        "demand": 9,
        "forecast": 9,
        "generation": 9,
        "total-interchange": 9,
        "fuel-mix": 36,
    }


def test_aec_utc_end_of_hour_is_period_end_utc() -> None:
    frame = read_all(AEC)
    demand = frame[frame["series_id"] == "EBA.AEC-ALL.D.H"]
    assert demand["period_end_utc"].iloc[0] == utc("2020-07-01T06:00:00Z")  # 07/01/2020 6:00:00 AM
    assert list(demand["period_end_utc"]) == list(
        pd.date_range("2020-07-01T06:00:00Z", periods=9, freq="h")
    )  # ... 12:00:00 PM is 12Z, 1:00:00 PM is 13Z
    assert str(frame["period_end_utc"].dtype) == "datetime64[ns, UTC]"


def test_aec_values_as_published_with_thousands_separators() -> None:
    frame = read_all(AEC)
    expected = {
        "EBA.AEC-ALL.DF.H": 1060.0,  # "1,060"
        "EBA.AEC-ALL.D.H": 497.0,
        "EBA.AEC-ALL.NG.H": 681.0,
        "EBA.AEC-ALL.TI.H": 184.0,
        "EBA.AEC-ALL.NG.COL.H": 139.0,
        "EBA.AEC-ALL.NG.NG.H": 536.0,
        "EBA.AEC-ALL.NG.WAT.H": 1.0,
        "EBA.AEC-ALL.NG.OTH.H": 5.0,
    }
    for sid, value in expected.items():
        assert cell(frame, sid, "2020-07-01T06:00:00Z")["value_mwh"] == value
    assert cell(frame, "EBA.AEC-ALL.DF.H", "2020-07-01T13:00:00Z")["value_mwh"] == 1061.0
    assert cell(frame, "EBA.AEC-ALL.DF.H", "2020-07-01T14:00:00Z")["value_mwh"] == 1170.0
    assert cell(frame, "EBA.AEC-ALL.NG.WAT.H", "2020-07-01T07:00:00Z")["value_mwh"] == 0.0


def test_fuels_a_ba_never_has_make_no_series() -> None:
    # AEC's nuclear, oil, solar, wind and unknown cells are empty in every column (reported,
    # imputed, adjusted): the API has no such series, so neither do we.
    frame = read_all(AEC)
    for fuel in ("NUC", "OIL", "SUN", "WND", "UNK"):
        assert f"EBA.AEC-ALL.NG.{fuel}.H" not in set(frame["series_id"])


# ---- INTERCHANGE and SUBREGION --------------------------------------------------------------


def test_aeci_interchange_excerpt() -> None:
    frame = read_all(AECI)
    assert len(frame) == 9
    first = cell(frame, "EBA.AECI-MISO.ID.H", "2022-01-01T07:00:00Z")
    assert (first["value_mwh"], first["dataset"], first["area"], first["counterpart"]) == (
        -391.0,
        "interchange",
        "AECI",
        "MISO",
    )
    assert cell(frame, "EBA.AECI-SPA.ID.H", "2022-01-01T07:00:00Z")["value_mwh"] == 114.0
    assert cell(frame, "EBA.AECI-TVA.ID.H", "2022-01-01T08:00:00Z")["value_mwh"] == 231.0
    assert cell(frame, "EBA.AECI-MISO.ID.H", "2022-01-01T09:00:00Z")["value_mwh"] == -276.0
    assert set(frame["quality_flag"]) == {"good"}


def test_subregion_demand() -> None:
    frame = read_all(PJM_SUB)
    assert len(frame) == 6
    ae = cell(frame, "EBA.PJM-AE.D.H", "2022-01-01T05:00:00Z")
    assert (ae["value_mwh"], ae["dataset"], ae["area"], ae["counterpart"]) == (
        1021.0,
        "subregion-demand",
        "PJM",
        "AE",
    )
    empty = cell(frame, "EBA.PJM-DOM.D.H", "2022-01-01T06:00:00Z")
    assert np.isnan(empty["value_mwh"]) and empty["quality_flag"] == "missing"


# ---- the post-2024-H2 BALANCE layout -----------------------------------------------------------


def test_post_2024_layout_maps_the_split_fuels_to_api_codes() -> None:
    frame = read_all(CISO_2024)
    fuels = set(frame.loc[frame["dataset"] == "fuel-mix", "counterpart"])
    assert fuels == {
        "NG",
        "NUC",
        "OIL",
        "WAT",
        "PS",
        "SUN",
        "SNB",
        "WND",
        "WNB",
        "BAT",
        "OES",
        "UES",
        "GEO",
        "OTH",
        "UNK",
    }
    hour = "2024-07-01T08:00:00Z"
    assert cell(frame, "EBA.CISO-ALL.NG.WAT.H", hour)["value_mwh"] == 3101.0  # hydro excluding pumped storage
    assert cell(frame, "EBA.CISO-ALL.NG.PS.H", hour)["value_mwh"] == -212.0
    assert cell(frame, "EBA.CISO-ALL.NG.BAT.H", hour)["value_mwh"] == 1874.0
    assert cell(frame, "EBA.CISO-ALL.NG.WND.H", hour)["value_mwh"] == 2734.0
    assert cell(frame, "EBA.CISO-ALL.NG.WNB.H", hour)["value_mwh"] == 41.0
    assert cell(frame, "EBA.CISO-ALL.NG.GEO.H", hour)["value_mwh"] == 822.0
    assert cell(frame, "EBA.CISO-ALL.D.H", hour)["value_mwh"] == 24981.0
    assert "EBA.CISO-ALL.NG.COL.H" not in set(frame["series_id"])  # CISO reports no coal


def test_post_2024_typo_headers_still_mark_series_that_exist() -> None:
    # Hour 2: SNB and PS reported cells are empty but EIA's Adjusted cells ("... Solar witho
    # Integrated ..." and "... Pumped Storage  (Adjusted)") are filled: missing, not absent.
    frame = read_all(CISO_2024)
    for sid in ("EBA.CISO-ALL.NG.SNB.H", "EBA.CISO-ALL.NG.PS.H"):
        row = cell(frame, sid, "2024-07-01T09:00:00Z")
        assert np.isnan(row["value_mwh"]) and row["quality_flag"] == "missing"


def test_imputed_storage_value_stays_as_reported_with_eia_value_beside_it() -> None:
    row = cell(read_all(CISO_2024), "EBA.CISO-ALL.NG.BAT.H", "2024-07-01T10:00:00Z")
    assert (row["value_mwh"], row["quality_flag"]) == (-9000.0, "good")
    assert imputed_hours(CISO_2024) == [
        (
            "EBA.CISO-ALL.NG.BAT.H",
            "2024-07-01T10",
            "eia-imputed: EIA's adjusted series has 1,650 MWh for this hour",
        )
    ]


# ---- quality flags, empty cells, duplicates --------------------------------------------------


def test_hours_eia_imputed_keep_the_reported_value_and_flag_and_carry_eia_value() -> None:
    frame = read_all(FLAGS)
    demand = cell(frame, "EBA.SEC-ALL.D.H", "2020-07-01T06:00:00Z")  # reported 0, imputed 1,010
    assert (demand["value_mwh"], demand["quality_flag"]) == (0.0, "good")
    gas = cell(frame, "EBA.SEC-ALL.NG.NG.H", "2020-07-01T05:00:00Z")  # reported 300, imputed 310
    assert (gas["value_mwh"], gas["quality_flag"]) == (300.0, "good")
    coal = cell(frame, "EBA.SEC-ALL.NG.COL.H", "2020-07-01T05:00:00Z")
    assert (coal["value_mwh"], coal["quality_flag"]) == (900.0, "good")
    # Each hour with a reported value EIA imputed, with EIA's value; not the 5:00 demand hour,
    # whose reported cell is empty (a gap, not a suspect value), nor the repeated row's cells.
    assert imputed_hours(FLAGS) == [
        (
            "EBA.SEC-ALL.D.H",
            "2020-07-01T06",
            "eia-imputed: EIA's adjusted series has 1,010 MWh for this hour",
        ),
        (
            "EBA.SEC-ALL.NG.NG.H",
            "2020-07-01T05",
            "eia-imputed: EIA's adjusted series has 310 MWh for this hour",
        ),
    ]
    assert list(read_imputed(FLAGS)["imputed_mwh"]) == [1010.0, 310.0]


def test_imputed_cells_in_the_real_excerpt_become_imputed_hours(tmp_path: Path) -> None:
    edited = imputed_copy(
        tmp_path / AEC.name,
        AEC,
        {(4, "Demand (MW)"): "470", (9, "Net Generation (MW) from Natural Gas"): "1,503"},
    )
    pd.testing.assert_frame_equal(read_all(edited), read_all(AEC))  # values and flags as reported
    assert imputed_hours(edited) == [
        ("EBA.AEC-ALL.D.H", "2020-07-01T09", "eia-imputed: EIA's adjusted series has 470 MWh for this hour"),
        (
            "EBA.AEC-ALL.NG.NG.H",
            "2020-07-01T14",
            "eia-imputed: EIA's adjusted series has 1,503 MWh for this hour",
        ),
    ]


def test_empty_reported_cells_are_missing() -> None:
    frame = read_all(FLAGS)
    demand = cell(frame, "EBA.SEC-ALL.D.H", "2020-07-01T05:00:00Z")  # empty; EIA imputed 1,050
    assert np.isnan(demand["value_mwh"]) and demand["quality_flag"] == "missing"
    forecast = cell(frame, "EBA.SEC-ALL.DF.H", "2020-07-01T06:00:00Z")  # empty while demand exists
    assert np.isnan(forecast["value_mwh"]) and forecast["quality_flag"] == "missing"
    assert ("EBA.SEC-ALL.D.H", "2020-07-01T05") not in {hour[:2] for hour in imputed_hours(FLAGS)}


def test_generation_only_ba_gets_no_demand_or_forecast_series() -> None:
    frame = read_all(FLAGS)
    deaa = set(frame.loc[frame["area"] == "DEAA", "series_id"])
    assert deaa == {"EBA.DEAA-ALL.NG.H", "EBA.DEAA-ALL.TI.H", "EBA.DEAA-ALL.NG.NG.H"}


def test_noon_and_midnight_on_the_twelve_hour_clock() -> None:
    frame = read_all(FLAGS)
    assert cell(frame, "EBA.SEC-ALL.D.H", "2020-07-01T12:00:00Z")["value_mwh"] == 1210.0  # 12:00:00 PM
    assert cell(frame, "EBA.SEC-ALL.D.H", "2020-07-02T00:00:00Z")["value_mwh"] == 1290.0  # 12:00:00 AM


def test_a_repeated_hour_in_a_file_keeps_the_first_row(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gridpulse_cli.bulkfiles"):
        frame = read_all(FLAGS)
    assert cell(frame, "EBA.SEC-ALL.DF.H", "2020-07-01T05:00:00Z")["value_mwh"] == 1100.0  # not 9,999
    assert cell(frame, "EBA.SEC-ALL.NG.COL.H", "2020-07-01T05:00:00Z")["value_mwh"] == 900.0
    assert "dropped 1 repeated (BA, hour) row" in caplog.text


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("chunk_rows", [1, 2, 100_000])
def test_chunks_are_observation_frames_with_keys_unique_across_the_file(path: Path, chunk_rows: int) -> None:
    chunks = list(read_bulk_chunks(path, chunk_rows=chunk_rows))
    frames = [chunk.observations for chunk in chunks]
    for chunk in chunks:
        assert list(chunk.observations.columns) == FRAME_COLUMNS
        assert set(chunk.observations["quality_flag"]) <= {"good", "missing"}
        assert list(chunk.imputed.columns) == IMPUTED_COLUMNS
        keys = ["series_id", "period_end_utc"]  # each imputed hour is one of the chunk's values
        assert len(chunk.imputed.merge(chunk.observations.dropna(subset=["value_mwh"]), on=keys)) == len(
            chunk.imputed
        )
    whole = pd.concat(frames, ignore_index=True)
    assert not whole.duplicated(["series_id", "period_end_utc"]).any()
    pd.testing.assert_frame_equal(read_all(path, chunk_rows), read_all(path))
    pd.testing.assert_frame_equal(read_imputed(path, chunk_rows), read_imputed(path))


def test_overlapping_files_are_deduplicated_by_the_caller(tmp_path: Path) -> None:
    lines = AEC.read_text().splitlines(keepends=True)
    first, second = tmp_path / "EIA930_BALANCE_A.csv", tmp_path / "EIA930_BALANCE_B.csv"
    first.write_text("".join(lines[:1] + lines[1:7]))  # hours 1-6
    second.write_text("".join(lines[:1] + lines[4:10]))  # hours 4-9: three hours overlap
    combined = pd.concat([*read_bulk_file(second), *read_bulk_file(first)], ignore_index=True)
    assert combined.duplicated(["series_id", "period_end_utc"]).sum() == 3 * 8
    unique = drop_duplicate_observations(combined)
    pd.testing.assert_frame_equal(
        unique.sort_values(["series_id", "period_end_utc"]).reset_index(drop=True), read_all(AEC)
    )


# ---- the same values the API path stores -----------------------------------------------------


def api_rows_for_balance(path: Path, period: str | None = None) -> list[dict[str, Any]]:
    """The API rows (region-data, fuel-type-data) carrying the same value strings as the file's cells."""
    rows: list[dict[str, Any]] = []
    with path.open(newline="") as f:
        for line in csv.DictReader(f):
            stamp = datetime.strptime(line["UTC Time at End of Hour"], UTC_FORMAT).strftime("%Y-%m-%dT%H")
            if period is not None and stamp != period:
                continue
            for column, text in line.items():
                if not text:
                    continue  # the API publishes no row for a series the BA does not report
                value = text.replace(",", "")
                if column in API_TYPE:
                    rows.append(
                        {
                            "period": stamp,
                            "respondent": line["Balancing Authority"],
                            "type": API_TYPE[column],
                            "value": value,
                        }
                    )
                elif column.startswith("Net Generation (MW) from ") and not column.endswith(")"):
                    fuel = API_FUEL[column.removeprefix("Net Generation (MW) from ")]
                    rows.append(
                        {
                            "period": stamp,
                            "respondent": line["Balancing Authority"],
                            "fueltype": fuel,
                            "value": value,
                        }
                    )
    return rows


def api_rows_for_pairs(path: Path) -> list[dict[str, Any]]:
    """The API rows (interchange-data or region-sub-ba-data) for an INTERCHANGE or SUBREGION file."""
    rows: list[dict[str, Any]] = []
    with path.open(newline="") as f:
        for line in csv.DictReader(f):
            stamp = datetime.strptime(line["UTC Time at End of Hour"], UTC_FORMAT).strftime("%Y-%m-%dT%H")
            if "Sub-Region" in line:
                value = line["Demand (MW)"].replace(",", "") or None
                rows.append(
                    {
                        "period": stamp,
                        "parent": line["Balancing Authority"],
                        "subba": line["Sub-Region"],
                        "value": value,
                    }
                )
            else:
                value = line["Interchange (MW)"].replace(",", "") or None
                rows.append(
                    {
                        "period": stamp,
                        "fromba": line["Balancing Authority"],
                        "toba": line["Directly Interconnected Balancing Authority"],
                        "value": value,
                    }
                )
    return rows


def sorted_frame(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["series_id", "period_end_utc"]).reset_index(drop=True)


def test_balance_values_equal_what_the_api_path_stores() -> None:
    api = sorted_frame(normalize_rows(api_rows_for_balance(AEC)))
    pd.testing.assert_frame_equal(read_all(AEC), api)


def test_post_2024_balance_values_equal_what_the_api_path_stores(caplog: pytest.LogCaptureFixture) -> None:
    bulk = read_all(CISO_2024)
    bulk = bulk[bulk["period_end_utc"] == utc("2024-07-01T08:00:00Z")].reset_index(drop=True)
    with caplog.at_level(logging.ERROR):  # the API path warns about OES and WNB too
        api = sorted_frame(normalize_rows(api_rows_for_balance(CISO_2024, period="2024-07-01T08")))
    pd.testing.assert_frame_equal(bulk, api)


@pytest.mark.parametrize("path", [AECI, PJM_SUB], ids=lambda p: p.name)
def test_pair_values_equal_what_the_api_path_stores(path: Path) -> None:
    pd.testing.assert_frame_equal(read_all(path), sorted_frame(normalize_rows(api_rows_for_pairs(path))))


# ---- files that are not what they should be -----------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "EIA930_BALANCE_2020_Jul_Dec.csv"
    with pytest.raises(InputFormatError, match=r"EIA930_BALANCE_2020_Jul_Dec\.csv: no such file"):
        read_bulk_file(path)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(InputFormatError, match="not a file"):
        read_bulk_file(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(InputFormatError, match=r"empty\.csv: empty file"):
        read_bulk_file(path)


def test_binary_file_is_not_csv(tmp_path: Path) -> None:
    path = tmp_path / "EIA930_BALANCE_2020_Jul_Dec.xlsx"
    path.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 40)
    with pytest.raises(InputFormatError, match=r"EIA930_BALANCE_2020_Jul_Dec\.xlsx: "):
        read_bulk_file(path)


def test_unknown_header_names_the_file_and_the_expected_layouts(tmp_path: Path) -> None:
    path = tmp_path / "observations.csv"
    path.write_text(
        "series_id,period_end_utc,value,quality_flag\nEBA.PJM-ALL.D.H,2024-01-01T05:00:00Z,1,good\n"
    )
    with pytest.raises(InputFormatError) as caught:
        read_bulk_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert "BALANCE (Balancing Authority, UTC Time at End of Hour" in message


def test_header_only_file_gives_no_frames(tmp_path: Path) -> None:
    path = edited_copy(tmp_path, AECI, lambda lines: lines[:1])
    assert list(read_bulk_file(path)) == []


def test_time_not_on_the_hour(tmp_path: Path) -> None:
    def edit(lines: list[str]) -> list[str]:
        lines[2] = lines[2].replace(",07/01/2020 7:00:00 AM,", ",07/01/2020 7:30:00 AM,")
        return lines

    path = edited_copy(tmp_path, AEC, edit)
    with pytest.raises(
        InputFormatError, match=r":3: UTC Time at End of Hour '07/01/2020 7:30:00 AM' is not on the hour"
    ):
        list(read_bulk_file(path))


def test_time_in_another_format(tmp_path: Path) -> None:
    def edit(lines: list[str]) -> list[str]:
        lines[3] = lines[3].replace(",07/01/2020 8:00:00 AM,", ",2020-07-01T08:00:00Z,")
        return lines

    path = edited_copy(tmp_path, AEC, edit)
    with pytest.raises(
        InputFormatError, match=r":4: UTC Time at End of Hour '2020-07-01T08:00:00Z' is not like"
    ):
        list(read_bulk_file(path))


def test_value_that_is_not_a_number_is_named_with_its_line(tmp_path: Path) -> None:
    def edit(lines: list[str]) -> list[str]:
        lines[3] = lines[3].replace(",943,466,", ",943,n/a,")
        return lines

    path = edited_copy(tmp_path, AEC, edit)
    with pytest.raises(InputFormatError, match=r":4: Demand \(MW\) 'n/a' is not a number"):
        list(read_bulk_file(path, chunk_rows=2))


def test_row_without_a_balancing_authority(tmp_path: Path) -> None:
    def edit(lines: list[str]) -> list[str]:
        lines[5] = lines[5].removeprefix("AEC")
        return lines

    path = edited_copy(tmp_path, AEC, edit)
    with pytest.raises(InputFormatError, match=r":6: empty Balancing Authority"):
        list(read_bulk_file(path))


def test_unclosed_quote_is_malformed_csv(tmp_path: Path) -> None:
    def edit(lines: list[str]) -> list[str]:
        lines[-1] = lines[-1].replace(",-276,", ',"-2,76,')
        return lines

    path = edited_copy(tmp_path, AECI, edit)
    with pytest.raises(InputFormatError, match="malformed CSV"):
        list(read_bulk_file(path))


def test_unmapped_fuel_column_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def edit(lines: list[str]) -> list[str]:
        lines[0] = lines[0].rstrip("\n") + ',"Net Generation (MW) from Hydrogen"\n'
        return [lines[0]] + [line.rstrip("\n") + ",7\n" for line in lines[1:]]

    path = edited_copy(tmp_path, AEC, edit)
    with caplog.at_level(logging.WARNING, logger="gridpulse_cli.bulkfiles"):
        frame = read_all(path)
    assert "Net Generation (MW) from Hydrogen" in caplog.text
    pd.testing.assert_frame_equal(frame, read_all(AEC))


def test_chunk_rows_must_be_positive() -> None:
    with pytest.raises(ValueError, match="chunk_rows"):
        read_bulk_file(AEC, chunk_rows=0)


# ---- a full-size file --------------------------------------------------------------------


def test_a_300k_row_balance_file_parses_in_chunks(tmp_path: Path) -> None:
    bas, hours = 75, 4000  # 300,000 rows, ~40 MB
    path = tmp_path / "EIA930_BALANCE_2021_Jan_Jun.csv"
    write_balance_file(path, bas, hours)

    sizes: list[int] = []
    datasets: dict[str, int] = {}
    flags: dict[str, int] = {}
    series: set[str] = set()
    imputed = 0
    for chunk in read_bulk_chunks(path, chunk_rows=100_000):
        frame = chunk.observations
        imputed += len(chunk.imputed)
        sizes.append(len(frame))
        assert not frame.duplicated(["series_id", "period_end_utc"]).any()
        for name, count in frame["dataset"].value_counts().items():
            datasets[str(name)] = datasets.get(str(name), 0) + int(count)
        for name, count in frame["quality_flag"].value_counts().items():
            flags[str(name)] = flags.get(str(name), 0) + int(count)
        series.update(frame["series_id"].unique())

    per_kind = bas // 3 * hours
    assert len(sizes) == 3 and max(sizes) <= 100_000 * 8
    assert sum(sizes) == per_kind * (8 + 8 + 6)
    assert datasets == {
        "demand": 2 * per_kind,
        "forecast": 2 * per_kind,
        "generation": 3 * per_kind,
        "total-interchange": 3 * per_kind,
        "fuel-mix": 3 * 4 * per_kind,
    }
    assert flags == {"good": sum(sizes)}
    assert imputed == per_kind  # the imputed BAs' demand, every hour
    assert len(series) == bas // 3 * (8 + 8 + 6)


def test_api_ingest_after_a_bulk_backfill_changes_nothing(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'gridpulse.db'}")
    try:
        with store.transaction() as conn:
            bulk = store.upsert(conn, read_all(AEC), None, datetime(2026, 1, 1, tzinfo=UTC))
        with store.transaction() as conn:
            api = store.upsert(
                conn, normalize_rows(api_rows_for_balance(AEC)), None, datetime(2026, 1, 2, tzinfo=UTC)
            )
    finally:
        store.close()
    assert (bulk.inserted, bulk.revised) == (72, 0)
    assert (api.inserted, api.revised, api.unchanged) == (0, 0, 72)
