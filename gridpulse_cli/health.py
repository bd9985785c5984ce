"""Health: is the database usable, is the data fresh, are runs succeeding? One verdict for monitors.

Checks (each ok / warn / fail):
- database: reachable and its schema is the version this gridpulse writes;
- api-key: EIA_API_KEY is configured (ingest cannot run without it);
- freshness <BA> <dataset>: the newest stored hour against the newest hour EIA should have published
  by now (now - the dataset's lag): fresh (within 1 h), late (warn, within max(3 h, lag/2)), stale (fail);
- runs: the last run's status; 3 or more consecutive failed runs fail;
- gaps: missing hours in the last 7 days (warn).
The overall status is the worst check; `gridpulse health` exits non-zero only on a fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from gridpulse_cli.catalog import DATASETS
from gridpulse_cli.errors import GridpulseError
from gridpulse_cli.gaps import find_gaps, stored_series
from gridpulse_cli.schema import SCHEMA_VERSION
from gridpulse_cli.store import Store
from gridpulse_cli.windows import HOUR, Window, floor_hour, format_utc

ORDER = {"ok": 0, "warn": 1, "fail": 2}
FAILED_RUNS_TO_FAIL = 3


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    # For the human table only (not in --json): freshness checks' BA, dataset and short state.
    area: str = ""
    dataset: str = ""
    state: str = ""

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail}


@dataclass
class HealthReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def status(self) -> str:
        return max((c.status for c in self.checks), key=ORDER.__getitem__, default="ok")

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "checks": [c.as_json() for c in self.checks]}

    def freshness_grid(self) -> tuple[list[str], list[list[str]]]:
        """BA x dataset table of freshness states (e.g. 'fresh', 'late 3h'), for the terminal."""
        cells = {(c.area, c.dataset): c.state for c in self.checks if c.area}
        datasets = [d for d in DATASETS if any(key[1] == d for key in cells)]
        areas = sorted({key[0] for key in cells})
        return ["BA", *datasets], [[a, *(cells.get((a, d), "") for d in datasets)] for a in areas]


def check_freshness(
    store: Store, bas: Sequence[str] | None, datasets: Sequence[str] | None, now: datetime
) -> list[Check]:
    """One check per stored (BA, dataset): newest hour stored versus what the lag allows."""
    newest: dict[tuple[str, str], datetime] = {}
    for span in stored_series(store, bas, datasets):
        key = (span.area, span.dataset)
        newest[key] = max(newest.get(key, span.last), span.last)
    checks = []
    for (area, dataset), last in sorted(newest.items()):
        lag = DATASETS[dataset].lag
        expected = floor_hour(now - lag)
        behind = expected - last
        late_limit = max(timedelta(hours=3), lag / 2)
        if behind <= HOUR:
            status, state = "ok", "fresh"
        elif behind <= late_limit:
            status, state = "warn", "late"
        else:
            status, state = "fail", "stale"
        hours_behind = max(0, int(behind / HOUR))
        checks.append(
            Check(
                f"freshness {area} {dataset}",
                status,
                f"{state}: newest {format_utc(last)}, expected {format_utc(expected)}"
                + (f" ({hours_behind} h behind)" if hours_behind else ""),
                area=area,
                dataset=dataset,
                state=state if state == "fresh" else f"{state} {hours_behind}h",
            )
        )
    if not checks:
        checks.append(Check("freshness", "fail", "no data stored for the selected BAs and datasets"))
    return checks


def check_runs(store: Store) -> Check:
    """The last run's outcome; several failures in a row fail."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT run_id, command, status, error FROM runs WHERE status <> 'running' ORDER BY run_id DESC LIMIT 20"
            )
        ).all()
    if not rows:
        return Check("runs", "warn", "no finished runs recorded yet")
    failures = 0
    for row in rows:
        if row[2] == "ok":
            break
        failures += 1
    run_id, command, status, error = rows[0]
    if failures == 0:
        return Check("runs", "ok", f"last run {run_id} ({command}) ok")
    detail = f"{failures} consecutive unsuccessful run(s); last: run {run_id} ({command}) {status}: {error or ''}".strip()
    return Check("runs", "fail" if failures >= FAILED_RUNS_TO_FAIL else "warn", detail[:300])


def run_health(
    database_url: str,
    api_key_configured: bool,
    bas: Sequence[str] | None,
    datasets: Sequence[str] | None,
    now: datetime,
) -> HealthReport:
    """Run every check; a database that cannot be opened is a failed check, not a crash."""
    report = HealthReport()
    try:
        store = Store.open(database_url, migrate=False)
    except GridpulseError as exc:
        report.checks.append(Check("database", "fail", str(exc)))
        report.checks.append(_key_check(api_key_configured))
        return report
    try:
        with store.engine.connect() as conn:
            version = store.schema_version(conn)
        if version != SCHEMA_VERSION:
            report.checks.append(
                Check(
                    "database",
                    "fail",
                    f"schema version {version}, expected {SCHEMA_VERSION} (run `gridpulse migrate`)",
                )
            )
            report.checks.append(_key_check(api_key_configured))
            return report
        report.checks.append(Check("database", "ok", f"reachable, schema version {version}"))
        report.checks.append(_key_check(api_key_configured))
        report.checks.extend(check_freshness(store, bas, datasets, now))
        report.checks.append(check_runs(store))
        week = Window(floor_hour(now) + HOUR - timedelta(days=7), floor_hour(now) + HOUR)
        gaps = find_gaps(store, bas, datasets, week, now)
        hours = sum(g.hours for g in gaps)
        report.checks.append(
            Check(
                "gaps",
                "warn" if gaps else "ok",
                f"{hours} missing hours in {len({g.series_id for g in gaps})} series over the last 7 days"
                if gaps
                else "no missing hours in the last 7 days",
            )
        )
    except sa.exc.SQLAlchemyError as exc:
        report.checks.append(Check("database", "fail", f"query failed: {str(exc).splitlines()[0]}"))
    finally:
        store.close()
    return report


def _key_check(configured: bool) -> Check:
    return (
        Check("api-key", "ok", "EIA_API_KEY is set")
        if configured
        else Check("api-key", "fail", "EIA_API_KEY is not set: ingest cannot run")
    )
