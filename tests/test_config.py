"""Unattended operation: the watched set (GRIDPULSE_BA / GRIDPULSE_DATASETS), env files, health
that grades only what this installation keeps current, and shell completion.

Time-dependent commands run with GRIDPULSE_NOW pinned, so what is fresh or stale is exact.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gridpulse_cli.catalog import DATASETS, MVP_BAS, balancing_authorities
from gridpulse_cli.cli import app
from gridpulse_cli.config import load_env_file, load_settings, parse_env_file
from gridpulse_cli.errors import ConfigError, ExitCode
from gridpulse_cli.health import behind_text, publishes
from testing.eia_stub import EIAStub, make_region_rows
from tests.conftest import TEST_KEY
from tests.helpers import (
    error_lines,
    full_env,
    gp,
    in_parallel,
    ok,
)

NOW = "2024-03-10T00:00:00Z"  # demand (2 h lag) is due through 2024-03-09T22
# The installed console script beside this interpreter (the venv's), as a user or cron runs it.
GRIDPULSE = Path(sys.executable).with_name("gridpulse")
HISTORY = ["--from", "2024-01-01", "--to", "2024-03-01"]


def serve_demand(stub: EIAStub) -> None:
    """PJM and CISO demand, 2024-01-01 to the last hour due at NOW."""
    stub.set_rows(
        "region-data", make_region_rows(["PJM", "CISO"], "2024-01-01T00", "2024-03-09T23", types=("D",))
    )


def health_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert "Traceback" not in result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def checks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["checks"]}


# ---- settings ---------------------------------------------------------------------------------


def test_the_watched_set_defaults_to_the_five_bas_and_every_dataset() -> None:
    settings = load_settings({})
    assert settings.watched_bas == MVP_BAS
    assert settings.watched_datasets == tuple(DATASETS)
    settings = load_settings({"GRIDPULSE_BA": "caiso, ERCOT,pjm", "GRIDPULSE_DATASETS": "fuel-mix,demand"})
    assert settings.watched_bas == ("CISO", "ERCO", "PJM")
    assert settings.watched_datasets == ("demand", "fuel-mix")  # catalog order
    assert len(load_settings({"GRIDPULSE_BA": "all"}).watched_bas) > 50
    assert load_settings({"GRIDPULSE_BA": "", "GRIDPULSE_DATASETS": "all"}).watched_bas == MVP_BAS


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("GRIDPULSE_BA", "PJM,CAISOO", "unknown BA 'CAISOO'"),
        ("GRIDPULSE_DATASETS", "demand,fuelmix", "unknown dataset 'fuelmix' (did you mean fuel-mix?)"),
    ],
)
def test_an_unknown_watched_value_is_a_configuration_error(
    name: str, value: str, expected: str, cli_env: dict[str, str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({name: value})
    message = str(caught.value)
    assert message.startswith(f"{name}={value!r}: {expected}"), message
    assert "valid: all, " in message

    result = gp("gaps", env={name: value})
    assert result.returncode == ExitCode.CONFIG, result.stderr
    assert result.stdout == "" and result.stderr.splitlines() == [f"gridpulse: error: {message}"]


# ---- env files --------------------------------------------------------------------------------


def test_env_files_are_read_in_the_shell_subset_they_are_written_in() -> None:
    text = "\n".join(
        [
            "# gridpulse settings",
            "",
            "EIA_API_KEY=abc123",
            "export GRIDPULSE_BA=PJM,CISO",
            'GRIDPULSE_DATABASE_URL="postgresql://gp:p#ss@db/grid"  # a comment',
            "GRIDPULSE_DATASETS='demand,fuel-mix'",
            "GRIDPULSE_EIA_URL=http://127.0.0.1:9/v2    # an inline comment",
            "GRIDPULSE_LOG_LEVEL=",
            'QUOTED="say \\"hi\\" to $HOME"',
            "  INDENTED=yes  ",
            "LITERAL=$HOME/x#y",
        ]
    )
    assert parse_env_file(text, "f") == {
        "EIA_API_KEY": "abc123",
        "GRIDPULSE_BA": "PJM,CISO",
        "GRIDPULSE_DATABASE_URL": "postgresql://gp:p#ss@db/grid",
        "GRIDPULSE_DATASETS": "demand,fuel-mix",
        "GRIDPULSE_EIA_URL": "http://127.0.0.1:9/v2",
        "GRIDPULSE_LOG_LEVEL": "",
        "QUOTED": 'say "hi" to $HOME',
        "INDENTED": "yes",
        "LITERAL": "$HOME/x#y",
    }


@pytest.mark.parametrize(
    "line",
    ["EIA_API_KEY secret-123", "set -a", "1KEY=x", "KEY = x", 'KEY="secret-123', "KEY='secret-123' trailing"],
)
def test_a_line_that_is_not_an_assignment_names_the_line_not_its_content(line: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_env_file(f"# first\nOK=1\n{line}\n", "/etc/gridpulse.env")
    assert str(caught.value) == "/etc/gridpulse.env, line 3: expected KEY=VALUE (optionally quoted)"


def test_load_env_file_keeps_variables_already_set(tmp_path: Path) -> None:
    path = tmp_path / "gridpulse.env"
    path.write_text("A=from-file\nB=from-file\n")
    environ = {"A": "from-environment"}
    assert load_env_file(path, environ) == ["B"]
    assert environ == {"A": "from-environment", "B": "from-file"}
    with pytest.raises(ConfigError, match="does not exist"):
        load_env_file(tmp_path / "missing.env", {})
    with pytest.raises(ConfigError, match="is a directory"):
        load_env_file(tmp_path, {})


def write_env(path: Path, lines: list[str], mode: int = 0o600) -> Path:
    path.write_text("\n".join(lines) + "\n")
    path.chmod(mode)
    return path


def test_env_file_option_and_variable_configure_a_bare_environment(
    stub: EIAStub, cli_env: dict[str, str], tmp_path: Path
) -> None:
    serve_demand(stub)
    db = tmp_path / "grid.db"
    env_file = write_env(
        tmp_path / "gridpulse.env",
        [
            "# what cron needs",
            f'export EIA_API_KEY="{TEST_KEY}"',
            f"GRIDPULSE_EIA_URL={stub.url}",
            f"GRIDPULSE_DATABASE_URL={db}   # SQLite",
            "GRIDPULSE_BA=CISO",
            "GRIDPULSE_DATASETS=demand",
            f"GRIDPULSE_NOW={NOW}",
        ],
    )
    bare: dict[str, str | None] = {name: None for name in ("EIA_API_KEY", "GRIDPULSE_EIA_URL")}
    other_db = str(tmp_path / "o.db")
    missing_key, ingested, _ = in_parallel(
        (["ingest"], bare),
        (["--env-file", str(env_file), "ingest", "--since", "24h"], bare),
        (["migrate", "--db", other_db], {}),
    )
    assert missing_key.returncode == ExitCode.CONFIG, missing_key.stderr
    ok(ingested)
    assert [r.params["facets"]["respondent"] for r in stub.requests] == [["CISO"]]

    # the variable works as the option does; a variable already set wins over the file: here,
    # another database (empty, so never ingested)
    health, other = in_parallel(
        (["health", "--json"], {**bare, "GRIDPULSE_ENV_FILE": str(env_file)}),
        (["--env-file", str(env_file), "health", "--json"], {"GRIDPULSE_DATABASE_URL": other_db}),
    )
    assert health.returncode == 0, health.stdout + health.stderr
    assert checks(health_json(health))["freshness CISO demand"]["status"] == "ok"
    assert other.returncode == ExitCode.CHECK_FAILED
    assert checks(health_json(other))["freshness CISO demand"]["behind_s"] is None


def test_a_bad_env_file_is_one_error_line_and_exit_3(cli_env: dict[str, str], tmp_path: Path) -> None:
    broken = write_env(tmp_path / "broken.env", ["EIA_API_KEY=ok", "EIA_API_KEY secret-value-123"])
    missing, result = in_parallel(
        (["--env-file", str(tmp_path / "nope.env"), "health"], {}),
        (["health"], {"GRIDPULSE_ENV_FILE": str(broken)}),
    )
    assert missing.returncode == ExitCode.CONFIG
    assert missing.stderr.splitlines() == [
        f"gridpulse: error: env file {tmp_path / 'nope.env'} does not exist"
    ]
    assert result.returncode == ExitCode.CONFIG
    assert result.stderr.splitlines() == [
        f"gridpulse: error: {broken}, line 2: expected KEY=VALUE (optionally quoted)"
    ]
    assert "secret-value-123" not in result.stderr

    if os.geteuid() != 0:  # root reads anything
        unreadable = write_env(tmp_path / "unreadable.env", ["A=1"], mode=0)
        result = gp("--env-file", str(unreadable), "health")
        assert result.returncode == ExitCode.CONFIG
        assert error_lines(result.stderr) == [
            f"gridpulse: error: env file {unreadable} is not readable by this user"
        ]


def test_an_env_file_others_can_read_gets_a_warning(cli_env: dict[str, str], tmp_path: Path) -> None:
    open_file = write_env(tmp_path / "open.env", ["GRIDPULSE_BA=PJM"], mode=0o644)
    assert os.stat(open_file).st_mode & stat.S_IROTH
    private = write_env(tmp_path / "private.env", ["GRIDPULSE_BA=PJM"])
    exposed, kept = in_parallel(
        (["--env-file", str(open_file), "migrate", "--db", str(tmp_path / "x.db")], {}),
        (["--env-file", str(private), "migrate", "--db", str(tmp_path / "y.db")], {}),
    )
    ok(exposed)
    assert "can be read by other users" in exposed.stderr and "chmod 600" in exposed.stderr
    ok(kept)
    assert "chmod" not in kept.stderr


# ---- the watched set as the default selection -------------------------------------------------


def test_ingest_fetch_and_backfill_default_to_the_watched_set(
    stub: EIAStub, cli_env: dict[str, str], tmp_path: Path
) -> None:
    serve_demand(stub)
    watched = {"GRIDPULSE_BA": "CISO", "GRIDPULSE_DATASETS": "demand", "GRIDPULSE_NOW": NOW}
    db = ["--db", str(tmp_path / "grid.db")]
    ok(gp("ingest", "--since", "24h", *db, env=watched))
    ok(gp("backfill", "--from", "2024-03-01", *db, env=watched))
    ok(gp("fetch", "--since", "24h", "-o", str(tmp_path / "raw.jsonl"), env=watched))
    assert {
        (r.route, tuple(r.params["facets"]["respondent"]), tuple(r.params["facets"]["type"]))
        for r in stub.requests
    } == {("region-data", ("CISO",), ("D",))}
    # an explicit --ba/--dataset still wins
    stub.reset_log()
    ok(gp("ingest", "--since", "24h", "--ba", "PJM", *db, env=watched))
    assert [r.params["facets"]["respondent"] for r in stub.requests] == [["PJM"]]


def test_gaps_and_backfill_gaps_default_to_the_watched_set(
    stub: EIAStub, cli_env: dict[str, str], tmp_path: Path
) -> None:
    serve_demand(stub)
    stub.drop("region-data", lambda r: r["period"] == "2024-02-10T05")  # a hole in both BAs
    db = ["--db", str(tmp_path / "grid.db")]
    watched = {"GRIDPULSE_BA": "CISO", "GRIDPULSE_DATASETS": "demand", "GRIDPULSE_NOW": NOW}
    window = ["--from", "2024-02-01", "--to", "2024-03-10"]
    ok(gp("ingest", "--ba", "PJM,CISO", "--dataset", "demand", *window, *db, env=watched))

    found_run, every_run = in_parallel(
        (["gaps", "--json", *db], watched), (["gaps", "--json", "--ba", "PJM,CISO", *db], watched)
    )
    found = json.loads(ok(found_run))
    assert [(g["series_id"], g["first_missing"]) for g in found] == [
        ("EBA.CISO-ALL.D.H", "2024-02-10T05:00:00Z")
    ]
    every = json.loads(ok(every_run))
    assert [g["series_id"] for g in every] == ["EBA.CISO-ALL.D.H", "EBA.PJM-ALL.D.H"]

    stub.set_rows(
        "region-data", make_region_rows(["PJM", "CISO"], "2024-01-01T00", "2024-03-09T23", types=("D",))
    )
    stub.reset_log()
    ok(gp("backfill", "--gaps", *db, env=watched))
    assert [r.params["facets"]["respondent"] for r in stub.requests] == [["CISO"]]


# ---- health -----------------------------------------------------------------------------------


def test_health_grades_the_watched_set_and_reports_other_stored_series_as_history(
    db_url: str, stub: EIAStub, cli_env: dict[str, str]
) -> None:
    """Defect: after `ingest --ba PJM --from 2024-01-01 --to 2024-03-01` health failed forever
    ('PJM … stale 24008h'). History that is not watched is reported, never graded."""
    serve_demand(stub)
    for result in in_parallel(
        (["ingest", "--ba", "PJM", "--dataset", "demand", *HISTORY, "--db", db_url], {}),
        (
            ["ingest", "--ba", "CISO", "--dataset", "demand", "--since", "48h", "--db", db_url],
            {"GRIDPULSE_NOW": NOW},
        ),
    ):
        ok(result)
    watched = {"GRIDPULSE_BA": "CISO", "GRIDPULSE_DATASETS": "demand", "GRIDPULSE_NOW": NOW}
    result, stale = in_parallel(
        (["health", "--json", "--db", db_url], watched),
        (["health", "--json", "--db", db_url], {**watched, "GRIDPULSE_BA": "CISO,PJM"}),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = health_json(result)
    assert report["status"] in ("ok", "warn")
    found = checks(report)
    assert found["freshness CISO demand"] == {
        "name": "freshness CISO demand",
        "status": "ok",
        "detail": "fresh: newest 2024-03-09T23:00:00Z, expected 2024-03-09T22:00:00Z",
        "behind_s": 0,
    }
    history = found["history PJM demand"]
    assert history["status"] == "ok" and "behind_s" not in history
    assert history["detail"].startswith("history") and history["detail"].endswith(
        "newest 2024-02-29T23:00:00Z"
    )
    assert not any(name.startswith("freshness PJM") for name in found)

    # the same database, watching PJM too: now it is stale, in days, and fails
    assert stale.returncode == ExitCode.CHECK_FAILED
    pjm = checks(health_json(stale))["freshness PJM demand"]
    assert pjm["status"] == "fail"
    assert pjm["behind_s"] == (9 * 24 - 1) * 3600  # 2024-02-29T23 -> 2024-03-09T22
    assert pjm["detail"].startswith("stale, 8 d behind: newest 2024-02-29T23:00:00Z")


def test_health_fails_a_watched_pair_never_ingested_but_not_one_eia_does_not_publish(
    stub: EIAStub, cli_env: dict[str, str], tmp_path: Path
) -> None:
    generation_only = next(c for c, ba in balancing_authorities().items() if ba.generation_only and ba.active)
    without_subregions = next(
        c
        for c, ba in balancing_authorities().items()
        if ba.active and not ba.has_subregions and not ba.generation_only
    )
    env = {
        "GRIDPULSE_BA": f"CISO,{generation_only},{without_subregions}",
        "GRIDPULSE_DATASETS": "demand,subregion-demand",
        "GRIDPULSE_NOW": NOW,
    }
    ok(gp("migrate", "--db", str(tmp_path / "empty.db")))
    result = gp("health", "--json", "--db", str(tmp_path / "empty.db"), env=env)
    assert result.returncode == ExitCode.CHECK_FAILED
    found = checks(health_json(result))
    freshness = {name: c for name, c in found.items() if name.startswith("freshness")}
    assert set(freshness) == {
        "freshness CISO demand",
        "freshness CISO subregion-demand",
        f"freshness {without_subregions} demand",
    }
    for check in freshness.values():
        assert check["status"] == "fail" and check["behind_s"] is None
        assert check["detail"].startswith("never ingested")
    now = datetime(2024, 3, 10, tzinfo=UTC)
    assert not publishes(generation_only, "demand", now) and publishes(generation_only, "generation", now)
    assert not publishes(without_subregions, "subregion-demand", now)
    assert not publishes("CAL", "subregion-demand", now) and publishes("CAL", "demand", now)


def test_behind_is_said_in_minutes_hours_or_days() -> None:
    assert behind_text(timedelta(minutes=45)) == "45 min"
    assert behind_text(timedelta(hours=3)) == "3 h"
    assert behind_text(timedelta(hours=47)) == "47 h"
    assert behind_text(timedelta(hours=24008)) == "1000 d"


def test_health_text_fits_80_columns_and_summarises_history_in_one_line(
    stub: EIAStub, cli_env: dict[str, str], tmp_path: Path
) -> None:
    many = ["PJM", "CISO", "MISO", "ERCO", "SWPP", "NYIS", "ISNE", "PACW", "BPAT", "TVA"]
    stub.set_rows("region-data", make_region_rows(many, "2024-02-20T00", "2024-03-01T00", types=("D", "NG")))
    db = ["--db", str(tmp_path / "grid.db")]
    ok(
        gp(
            "ingest",
            "--ba",
            ",".join(many),
            "--dataset",
            "demand,generation",
            "--from",
            "2024-02-20",
            "--to",
            "2024-03-01",
            *db,
        )
    )
    result = gp("health", *db, env={"GRIDPULSE_NOW": NOW, "GRIDPULSE_BA": "PJM,CISO"})
    assert result.returncode == ExitCode.CHECK_FAILED
    lines = result.stdout.splitlines()
    grid = lines[lines.index("freshness of the watched set") :]
    assert grid[1].split() == ["BA", "demand", "forecast", "gen", "TI", "fuel-mix", "interch", "sub-BA"]
    assert grid[2].split() == ["PJM", "stale", "never", "stale", "never", "never", "never", "never"]
    assert all(len(line) <= 80 for line in grid), grid
    words = " ".join(result.stdout.split())
    assert [line.split()[0] for line in lines].count("history") == 1, lines
    assert "history ok 16 stored BA/dataset pairs not watched" in words, lines
    # each failing pair once, with how far behind in human units
    assert words.count("freshness PJM demand fail stale, 8 d behind") == 1, lines


def test_health_brief_prints_nothing_while_healthy_and_one_line_when_failing(
    stub: EIAStub, cli_env: dict[str, str], tmp_path: Path
) -> None:
    serve_demand(stub)
    db = ["--db", str(tmp_path / "grid.db")]
    watched = {"GRIDPULSE_BA": "PJM,CISO", "GRIDPULSE_DATASETS": "demand", "GRIDPULSE_NOW": NOW}
    ok(gp("ingest", "--since", "7d", *db, env=watched))
    brief = ["-q", "health", "--brief", *db]
    never_env = {**watched, "GRIDPULSE_BA": "PJM,MISO", "GRIDPULSE_DATASETS": "demand,fuel-mix"}
    healthy, later, never, both = in_parallel(
        (brief, watched),
        (brief, {**watched, "GRIDPULSE_NOW": "2024-03-12T01:00:00Z", "EIA_API_KEY": None}),
        (brief, never_env),
        (["health", "--brief", "--json", *db], watched),
    )
    assert (healthy.returncode, healthy.stdout, healthy.stderr) == (0, "", "")
    assert later.returncode == ExitCode.CHECK_FAILED and later.stderr == ""
    assert later.stdout.splitlines() == [
        "gridpulse health: fail: api-key: EIA_API_KEY is not set: ingest cannot run; "
        "stale: PJM demand 2 d, CISO demand 2 d"
    ]
    assert never.stdout.splitlines() == [
        "gridpulse health: fail: never ingested: PJM (1 of 2 datasets), MISO"
    ]
    assert both.returncode == ExitCode.USAGE and len(error_lines(both.stderr)) == 1


# ---- shell completion -------------------------------------------------------------------------


@pytest.mark.skipif(not GRIDPULSE.exists(), reason="gridpulse is not installed beside this Python")
def test_show_completion_prints_the_script_for_the_shell_it_runs_in(cli_env: dict[str, str]) -> None:
    # The shell is detected from the parent process (`; true` keeps bash from exec'ing gridpulse).
    script = subprocess.run(
        ["bash", "-c", f"{GRIDPULSE} --show-completion; true"],
        env=full_env(None),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "complete -o default -F _gridpulse_completion gridpulse" in script
    assert "_GRIDPULSE_COMPLETE=complete_bash" in script


def complete(words: str) -> list[str]:
    """What bash's completion function gets back from `gridpulse` for the command line `words`."""
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    env = {"_GRIDPULSE_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
    result = CliRunner().invoke(app, [], env=env, prog_name="gridpulse")
    assert result.exit_code == 0, result.output
    return result.output.split()


def test_completion_knows_commands_options_bas_and_datasets() -> None:
    assert complete("gridpulse hea") == ["health"]
    assert complete("gridpulse --env") == ["--env-file"]
    assert complete("gridpulse health --br") == ["--brief"]
    assert complete("gridpulse ingest --dataset demand,fu") == ["demand,fuel-mix"]
    assert "CISO" in complete("gridpulse gaps --ba CI")
    assert complete("gridpulse export --ba ERC") == ["ERCO", "ERCOT"]  # codes and aliases
