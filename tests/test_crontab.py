"""crontab.example works as shipped: each schedule line, run exactly as cron runs it.

Cron runs a line's command with `$SHELL -c` (here /bin/sh) in an environment holding only the
crontab's variables plus HOME, LOGNAME and PATH=/usr/bin:/bin. The tests do the same with `env -i`,
after pointing the variables at the top (the only lines a user edits) at a temporary directory,
the venv's `gridpulse` and a loopback EIA stub. Anything a line prints would be mailed to MAILTO,
so a healthy setup must print nothing at all.
"""

from __future__ import annotations

import fcntl
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from gridpulse_cli.errors import ExitCode
from testing.eia_stub import EIAStub, make_fuel_rows, make_region_rows
from tests.conftest import TEST_KEY

ROOT = Path(__file__).resolve().parents[1]
GRIDPULSE = Path(sys.executable).with_name("gridpulse")  # the venv's console script
CRON_PATH = "/usr/bin:/bin"  # what cron gives a job
NOW = "2024-03-10T00:00:00Z"
BAS = ["PJM", "CISO"]
HOLE = "2024-02-25T05"  # an hour EIA publishes late: inside the 30-day windows

pytestmark = pytest.mark.skipif(
    not (GRIDPULSE.exists() and shutil.which("flock", path=CRON_PATH) and Path("/bin/sh").exists()),
    reason="needs the installed gridpulse, /bin/sh and util-linux flock",
)


@dataclass
class Crontab:
    variables: dict[str, str]
    commands: list[str]  # each schedule line without its five time fields


def parse_crontab(text: str) -> Crontab:
    variables: dict[str, str] = {}
    commands: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if assignment := re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$", line):
            variables[assignment[1]] = assignment[2]
            continue
        fields = line.split(None, 5)
        assert len(fields) == 6, f"not a schedule line: {line!r}"
        commands.append(fields[5])
    return Crontab(variables, commands)


SHIPPED = parse_crontab((ROOT / "crontab.example").read_text())


def command(part: str) -> str:
    """The one schedule line whose command contains `part`."""
    (found,) = [c for c in SHIPPED.commands if part in c]
    return found


def test_the_crontab_is_variables_then_plain_commands() -> None:
    assert SHIPPED.variables["SHELL"] == "/bin/sh"
    assert {"MAILTO", "GP", "GRIDPULSE_ENV_FILE", "LOG", "LOCK"} <= set(SHIPPED.variables)
    for line in SHIPPED.commands:
        used = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", line))
        assert used <= set(SHIPPED.variables), f"{line!r} uses a variable the crontab does not set"
        assert not re.search(r"[;%`]|&&|\|\|", line), f"{line!r} is not one plain command"
        assert "/etc/" not in line and "/var/" not in line, "paths belong in the variables"
    assert command("ingest --since 48h").startswith("flock -n $LOCK $GP ")
    assert command("ingest --since 35d").startswith("flock -w ")
    assert command("backfill --gaps --since 35d").startswith("flock -w ")
    assert all("$LOCK" in c for c in SHIPPED.commands if " ingest " in c or " backfill " in c)
    assert command("health") == "$GP -q health --brief"
    assert command("report") == "$GP report --since 30d -o $REPORT >>$LOG 2>&1"


class Cron:
    """The shipped crontab with its variables pointed at `home`, run line by line as cron would."""

    def __init__(self, home: Path, stub: EIAStub) -> None:
        self.home = home
        self.db = home / "grid.db"
        self.log = home / "log" / "gridpulse.log"
        self.log.parent.mkdir()
        self.env_file = home / "gridpulse.env"
        self.variables = {
            **SHIPPED.variables,
            "MAILTO": "",
            "GP": str(GRIDPULSE),
            "GRIDPULSE_ENV_FILE": str(self.env_file),
            "LOG": str(self.log),
            "LOCK": str(home / "gridpulse.lock"),
            "REPORT": str(home / "report.html"),
        }
        self.settings = {
            "EIA_API_KEY": TEST_KEY,
            "GRIDPULSE_EIA_URL": stub.url,
            "GRIDPULSE_DATABASE_URL": str(self.db),
            "GRIDPULSE_BA": ",".join(BAS),
            "GRIDPULSE_DATASETS": "demand,fuel-mix",
            "GRIDPULSE_NOW": NOW,
            "GRIDPULSE_RETRY_BASE": "0",
        }
        self.write_env_file()

    def write_env_file(self, **changes: str) -> None:
        self.settings.update(changes)
        lines = ["# gridpulse settings for cron", *(f"{k}={v}" for k, v in self.settings.items())]
        self.env_file.write_text("\n".join(lines) + "\n")
        self.env_file.chmod(0o600)

    def run(self, line: str) -> subprocess.CompletedProcess[str]:
        cron_env = {"HOME": str(self.home), "LOGNAME": "gridpulse", "PATH": CRON_PATH, **self.variables}
        return subprocess.run(
            ["env", "-i", *(f"{k}={v}" for k, v in cron_env.items()), self.variables["SHELL"], "-c", line],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    def runs(self) -> list[tuple[str, str, int]]:
        with sqlite3.connect(self.db) as conn:
            return conn.execute("SELECT command, status, rows_fetched FROM runs ORDER BY run_id").fetchall()

    def observations(self) -> int:
        with sqlite3.connect(self.db) as conn:
            return int(conn.execute("SELECT count(*) FROM observations").fetchone()[0])


def serve(stub: EIAStub) -> None:
    """35 days of demand and fuel mix up to NOW's newest hour, for PJM and CISO."""
    stub.set_rows("region-data", make_region_rows(BAS, "2024-02-04T00", "2024-03-09T23", types=("D",)))
    stub.set_rows("fuel-type-data", make_fuel_rows(BAS, "2024-02-04T00", "2024-03-09T23"))


@pytest.fixture
def cron(tmp_path: Path, stub: EIAStub) -> Cron:
    serve(stub)
    return Cron(tmp_path, stub)


def test_every_schedule_line_runs_as_cron_runs_it_and_mails_nothing(cron: Cron, stub: EIAStub) -> None:
    published = stub.rows("region-data")
    stub.drop("region-data", lambda r: r["period"] == HOLE)  # not published yet

    hourly = cron.run(command("ingest --since 48h"))
    assert (hourly.returncode, hourly.stdout, hourly.stderr) == (0, "", "")
    assert cron.runs() == [("ingest", "ok", cron.observations())]
    assert cron.observations() > 0

    sweep = cron.run(command("ingest --since 35d"))
    assert (sweep.returncode, sweep.stdout, sweep.stderr) == (0, "", "")
    (command_, status, fetched) = cron.runs()[-1]
    assert (command_, status) == ("ingest", "ok") and fetched > 30 * 24 * len(BAS)
    stored = cron.observations()

    stub.set_rows("region-data", published)  # EIA fills the hole
    gaps = cron.run(command("backfill --gaps --since 35d"))
    assert (gaps.returncode, gaps.stdout, gaps.stderr) == (0, "", "")
    assert cron.runs()[-1][:2] == ("backfill --gaps", "ok")
    assert cron.observations() == stored + len(BAS)

    health = cron.run(command("health"))
    assert (health.returncode, health.stdout, health.stderr) == (0, "", "")

    report = cron.run(command("report"))
    assert (report.returncode, report.stdout, report.stderr) == (0, "", "")
    assert "Plotly.newPlot" in Path(cron.variables["REPORT"]).read_text()

    log = cron.log.read_text()
    assert "run 1 ok" in log and "filled 2 of 2 missing hours" in log, log
    assert TEST_KEY not in log


def test_the_health_line_is_silent_while_healthy_and_one_line_when_not(cron: Cron) -> None:
    health = command("health")
    ok(cron.run(command("ingest --since 48h")))
    healthy = cron.run(health)
    assert (healthy.returncode, healthy.stdout, healthy.stderr) == (0, "", "")

    cron.write_env_file(GRIDPULSE_NOW="2024-03-12T01:00:00Z")  # two days without an ingest
    stale = cron.run(health)
    assert stale.returncode == ExitCode.CHECK_FAILED and stale.stderr == ""
    assert stale.stdout.splitlines() == [
        "gridpulse health: fail: stale: PJM demand 2 d, PJM fuel-mix 24 h, CISO demand 2 d, CISO fuel-mix 24 h"
    ], stale.stdout

    cron.env_file.unlink()  # a broken setup is one line too
    broken = cron.run(health)
    assert broken.returncode == ExitCode.CONFIG and broken.stdout == ""
    assert broken.stderr.splitlines() == [f"gridpulse: error: env file {cron.env_file} does not exist"]


def test_the_hourly_line_skips_quietly_while_another_job_holds_the_lock(cron: Cron) -> None:
    with open(cron.variables["LOCK"], "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        skipped = cron.run(command("ingest --since 48h"))
    assert (skipped.returncode, skipped.stdout, skipped.stderr) == (1, "", "")  # flock -n: nothing mailed
    assert not cron.db.exists() and not cron.log.read_text()


def ok(result: subprocess.CompletedProcess[str]) -> None:
    assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), result


@pytest.mark.skipif(
    shutil.which("logrotate", path="/usr/sbin:/usr/bin:/sbin:/bin") is None, reason="no logrotate"
)
def test_the_readme_logrotate_stanza_rotates_the_crontab_log(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    (block,) = re.findall(r"```\n( *?/var/log/gridpulse\S* \{\n.*?\n *\})\n *```", readme, re.S)
    stanza = textwrap.dedent(block)
    log_path = stanza.split()[0]
    assert log_path == SHIPPED.variables["LOG"]
    log = tmp_path / "gridpulse.log"
    log.write_text("a line\n")
    config = tmp_path / "gridpulse.logrotate"
    config.write_text(stanza.replace(log_path, str(log)) + "\n")
    logrotate = shutil.which("logrotate", path="/usr/sbin:/usr/bin:/sbin:/bin")
    assert logrotate is not None
    args = [logrotate, "-s", str(tmp_path / "state"), str(config)]
    checked = subprocess.run([*args[:1], "-d", *args[1:]], capture_output=True, text=True, check=True)
    assert "Handling 1 log" in checked.stdout + checked.stderr, checked
    subprocess.run([args[0], "-f", *args[1:]], capture_output=True, text=True, check=True)
    assert (tmp_path / "gridpulse.log.1").read_text() == "a line\n"
