"""`gridpulse backfill --from-file`: EIA's six-month CSV files through the CLI into the database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gridpulse_cli.errors import ExitCode

ROOT = Path(__file__).resolve().parents[1]
BULK = ROOT / "testing" / "data" / "bulk"


def gridpulse(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridpulse_cli", *args],
        env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True, check=False,
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
