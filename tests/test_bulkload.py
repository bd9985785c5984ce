"""`gridpulse backfill --from-file`: EIA's six-month CSV files through the CLI into the database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from gridpulse_cli import bulkload
from gridpulse_cli.bulkfiles import read_bulk_file
from gridpulse_cli.bulkload import run_bulk_files
from gridpulse_cli.db import Store
from gridpulse_cli.errors import ExitCode, InputFormatError
from gridpulse_cli.windows import format_utc, parse_utc
from testing.bulk import AEC, imputed_copy

ROOT = Path(__file__).resolve().parents[1]
BULK = ROOT / "testing" / "data" / "bulk"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def read_all(path: Path) -> pd.DataFrame:
    return pd.concat(list(read_bulk_file(path)), ignore_index=True)


def gridpulse(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridpulse_cli", *args],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_balance_interchange_and_subregion_files_load_and_export(
    cli_env: dict[str, str], db_url: str
) -> None:
    env = {**cli_env, "GRIDPULSE_DATABASE_URL": db_url}
    files = [
        BULK / "EIA930_BALANCE_2020_Jul_Dec-AEC-9rows.csv",
        BULK / "EIA930_INTERCHANGE_2022_Jan_Jun-AECI-9rows.csv",
        BULK / "EIA930_SUBREGION_2022_Jan_Jun-PJM-6rows.csv",
    ]
    args = [arg for path in files for arg in ("--from-file", str(path))]
    loaded = gridpulse("backfill", *args, env=env)
    assert loaded.returncode == 0, loaded.stderr
    exported = gridpulse("export", env=env)
    assert exported.returncode == 0, exported.stderr
    lines = exported.stdout.splitlines()
    assert lines[0].startswith("series_id,period_end_utc,value,quality_flag")
    # AEC 07/01/2020 hour 1 ends 6:00 UTC: forecast "1,060", demand 497 (the reported column).
    assert "EBA.AEC-ALL.DF.H,2020-07-01T06:00:00Z,1060,good,forecast,AEC," in lines
    assert "EBA.AEC-ALL.D.H,2020-07-01T06:00:00Z,497,good,demand,AEC," in lines
    assert any(line.startswith("EBA.AECI-MISO.ID.H,2022-01-01T07:00:00Z,-391,") for line in lines)
    assert any(line.startswith("EBA.PJM-") and ".D.H," in line for line in lines)

    again = gridpulse("backfill", *args, env=env)  # idempotent: the same files change nothing
    assert again.returncode == 0, again.stderr
    assert gridpulse("export", env=env).stdout == exported.stdout


def test_unknown_header_is_rejected_with_one_line_and_nothing_stored(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    odd = tmp_path / "EIA930_SOMETHING_2024_Jan_Jun.csv"
    odd.write_text('"Balancing Authority","When","Megawatts"\nPJM,01/01/2024,5\n')
    result = gridpulse("backfill", "--from-file", str(odd), env=cli_env)
    assert result.returncode == ExitCode.BAD_INPUT
    assert result.stderr.strip().splitlines()[-1].startswith("gridpulse: error:")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert odd.name in result.stderr
    assert "Traceback" not in result.stderr
    exported = gridpulse("export", env=cli_env)
    assert exported.stdout.splitlines()[1:] == []


@pytest.mark.parametrize("missing", ["no-such-file.csv"])
def test_missing_file_is_a_bad_input(cli_env: dict[str, str], tmp_path: Path, missing: str) -> None:
    result = gridpulse("backfill", "--from-file", str(tmp_path / missing), env=cli_env)
    assert result.returncode == ExitCode.BAD_INPUT
    assert missing in result.stderr


# ---- EIA's imputed hours: `eia-imputed` findings (docs/quality.md) --------------------------------

AEC_DEMAND_09Z = {(4, "Demand (MW)"): "470"}  # reported 455 at 07/01/2020 9:00:00 AM UTC
DEMAND_DETAIL = "eia-imputed: EIA's adjusted series has 470 MWh for this hour"


def eia_imputed(store: Store) -> list[tuple[str, str, str, int | None]]:
    """(series_id, hour, detail, run_id) of the stored `eia-imputed` findings."""
    rows = store.read(
        "SELECT s.series_id, f.period_end_utc, f.detail, f.run_id FROM findings f "
        "JOIN series s ON s.series_key = f.series_key WHERE f.check_name = 'eia-imputed' "
        "ORDER BY s.series_id, f.period_end_utc"
    )
    return [(r[0], format_utc(store._utc(r[1])), r[2], r[3]) for r in rows]


def stored(store: Store, series_id: str, hour: str) -> tuple[float | None, str]:
    row = store.read(
        "SELECT o.value_mwh, o.quality_flag FROM observations o JOIN series s ON s.series_key = o.series_key "
        "WHERE s.series_id = :sid AND o.period_end_utc = :p",
        {"sid": series_id, "p": store.encode_time(parse_utc(hour))},
    )
    return row[0][0], row[0][1]


def test_imputed_hour_exports_as_suspect_with_eia_value_in_its_finding(
    cli_env: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    env = {**cli_env, "GRIDPULSE_DATABASE_URL": db_url}
    edited = imputed_copy(tmp_path / AEC.name, AEC, AEC_DEMAND_09Z)
    loaded = gridpulse("backfill", "--from-file", str(edited), env=env)
    assert loaded.returncode == 0, loaded.stderr
    exported = gridpulse("export", env=env)
    assert exported.returncode == 0, exported.stderr
    suspect = [line for line in exported.stdout.splitlines() if ",suspect," in line]
    assert suspect == ["EBA.AEC-ALL.D.H,2020-07-01T09:00:00Z,455,suspect,demand,AEC,"]  # the reported value
    checked = gridpulse("check", "--json", env=env)
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout) == [
        {
            "series_id": "EBA.AEC-ALL.D.H",
            "period_end_utc": "2020-07-01T09:00:00Z",
            "check": "eia-imputed",
            "detail": DEMAND_DETAIL,
            "checks": [{"check": "eia-imputed", "detail": DEMAND_DETAIL}],
        }
    ]
    again = gridpulse("backfill", "--from-file", str(edited), env=env)  # `check` above cleared nothing
    assert again.returncode == 0, again.stderr
    assert gridpulse("export", env=env).stdout == exported.stdout


def test_imputed_hours_are_findings_of_the_run_and_a_reload_adds_nothing(
    store: Store, tmp_path: Path
) -> None:
    edited = imputed_copy(
        tmp_path / AEC.name, AEC, {**AEC_DEMAND_09Z, (9, "Net Generation (MW) from Natural Gas"): "1,503"}
    )
    first = run_bulk_files(store, [edited], now=lambda: NOW)
    assert stored(store, "EBA.AEC-ALL.D.H", "2020-07-01T09:00:00Z") == (455.0, "good")
    expected = [
        ("EBA.AEC-ALL.D.H", "2020-07-01T09:00:00Z", DEMAND_DETAIL, first.run_id),
        (
            "EBA.AEC-ALL.NG.NG.H",
            "2020-07-01T14:00:00Z",
            "eia-imputed: EIA's adjusted series has 1,503 MWh for this hour",
            first.run_id,
        ),
    ]
    assert eia_imputed(store) == expected
    assert first.findings == 2
    assert store.read("SELECT findings FROM runs WHERE run_id = :r", {"r": first.run_id})[0][0] == 2

    again = run_bulk_files(store, [edited], now=lambda: NOW + timedelta(hours=1))
    assert again.findings == 0
    assert eia_imputed(store) == expected  # first run and found_at kept
    assert store.read("SELECT count(*) FROM revisions")[0][0] == 0


def test_a_reloaded_file_replaces_its_eia_imputed_findings(store: Store, tmp_path: Path) -> None:
    run_bulk_files(store, [imputed_copy(tmp_path / "a.csv", AEC, AEC_DEMAND_09Z)], now=lambda: NOW)
    # EIA re-published the half-year: 09Z no longer imputed, 10Z imputed at another value
    revised = imputed_copy(tmp_path / "b.csv", AEC, {(5, "Demand (MW)"): "1,234.5"})
    report = run_bulk_files(store, [revised], now=lambda: NOW)
    assert report.findings == 1
    assert eia_imputed(store) == [
        (
            "EBA.AEC-ALL.D.H",
            "2020-07-01T10:00:00Z",
            "eia-imputed: EIA's adjusted series has 1,234 MWh for this hour",  # quality.mwh: no decimals
            report.run_id,
        )
    ]


def test_replace_eia_imputed_keeps_other_checks_and_hours_outside_the_span(store: Store) -> None:
    frame = read_all(AEC)
    with store.transaction() as conn:
        store.upsert(conn, frame, None, NOW)
    hour = pd.Timestamp("2020-07-01T09:00:00Z")
    found = pd.DataFrame(
        {"series_id": ["EBA.AEC-ALL.D.H"], "period_end_utc": [hour], "detail": ["eia-imputed: x"]}
    )
    spans = {"EBA.AEC-ALL.D.H": (hour, hour)}
    with store.transaction() as conn:
        assert store.replace_eia_imputed(conn, spans, found, None, NOW) == 1
        series_key = int(
            store.read("SELECT series_key FROM series WHERE series_id = 'EBA.AEC-ALL.D.H'")[0][0]
        )
        outside = store.encode_time(parse_utc("2020-07-01T10:00:00Z"))
        conn.execute(
            sa.text(
                "INSERT INTO findings VALUES (:k, :p, 'eia-imputed', 'older file', :t, NULL), "
                "(:k, :h, 'spike', 'spike: …', :t, NULL)"
            ),
            {
                "k": series_key,
                "p": outside,
                "h": store.encode_time(hour.to_pydatetime()),
                "t": store.encode_time(NOW),
            },
        )
    empty = found.iloc[:0]
    with store.transaction() as conn:  # the span says: no imputed hour at 09Z
        assert store.replace_eia_imputed(conn, spans, empty, None, NOW) == 0
    rows = store.findings(None, None, None)
    assert [(f[1].hour, f[2], f[3]) for f in rows] == [
        (9, "spike", "spike: …"),
        (10, "eia-imputed", "older file"),
    ]


def test_a_failed_file_leaves_no_findings(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    edited = imputed_copy(tmp_path / AEC.name, AEC, AEC_DEMAND_09Z)
    lines = edited.read_text().splitlines(keepends=True)
    lines[9] = lines[9].replace(",569,", ",n/a,")  # the last row: after the imputed hour's chunk
    edited.write_text("".join(lines))
    monkeypatch.setattr(bulkload, "BULK_CHUNK_ROWS", 4)
    with pytest.raises(InputFormatError, match="is not a number"):
        run_bulk_files(store, [edited], now=lambda: NOW)
    assert store.read("SELECT count(*) FROM findings")[0][0] == 0
    assert store.read("SELECT count(*) FROM observations")[0][0] == 0
