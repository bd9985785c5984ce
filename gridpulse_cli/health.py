"""Health: is the database usable, is the data fresh, are runs succeeding? One verdict for monitors.

Checks (each ok / warn / fail):
- database: reachable and its schema is the version this gridpulse writes;
- api-key: EIA_API_KEY is configured (ingest cannot run without it);
- freshness <BA> <dataset>, for each watched pair (GRIDPULSE_BA x GRIDPULSE_DATASETS, or --ba and
  --dataset) that EIA publishes: the newest stored hour against the newest hour EIA should have
  published by now (now - the dataset's lag): fresh (within 1 h), late (warn, within
  max(3 h, lag/2)), stale (fail), never ingested (fail);
- history <BA> <dataset>, for each stored pair outside the watched set: always ok (history is not
  expected to move), with its newest hour;
- runs: the last run's status; 3 or more consecutive failed runs fail;
- gaps: missing hours in the last 7 days (warn).
- suspect: the share of each watched BA's stored values of the last 7 days that the quality
  screen flagged (docs/quality.md); above SUSPECT_WARN_SHARE (2%) warns.
The overall status is the worst check; `gridpulse health` exits non-zero only on a fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from gridpulse_cli.catalog import DATASETS, REGIONS, SHORT_NAMES, balancing_authorities
from gridpulse_cli.db import Store
from gridpulse_cli.db.schema import SCHEMA_VERSION
from gridpulse_cli.errors import GridpulseError
from gridpulse_cli.gaps import find_gaps
from gridpulse_cli.ledger import finished_outcomes
from gridpulse_cli.text import plural
from gridpulse_cli.windows import HOUR, Window, floor_hour, format_utc

ORDER = {"ok": 0, "warn": 1, "fail": 2}
FAILED_RUNS_TO_FAIL = 3
GRADED = ("fresh", "late", "stale", "never")  # freshness states of a watched (BA, dataset)
BRIEF_ITEMS = 5  # series or BAs named per kind of failure on the --brief line, then "and N more"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    behind_s: int | None = None  # freshness: seconds behind what the lag allows; None: nothing stored
    # For the human output only (not in --json): the (BA, dataset) of freshness and history
    # checks, their state (one of GRADED, or "history") and newest stored hour.
    area: str = ""
    dataset: str = ""
    state: str = ""
    newest: datetime | None = None

    @property
    def graded(self) -> bool:
        return self.state in GRADED

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "status": self.status, "detail": self.detail}
        if self.graded:
            out["behind_s"] = self.behind_s
        return out


@dataclass
class HealthReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def status(self) -> str:
        return max((c.status for c in self.checks), key=ORDER.__getitem__, default="ok")

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "checks": [c.as_json() for c in self.checks]}

    def summary_checks(self) -> list[Check]:
        """The checks as a person reads them: the plain ones, then freshness as one summary line
        plus one line per watched pair that is not fresh (one per BA with nothing stored at all),
        then history as one line. `--json` has every pair."""
        rows = [c for c in self.checks if not c.area]
        graded = [c for c in self.checks if c.graded]
        if graded:
            counts = {state: sum(c.state == state for c in graded) for state in GRADED}
            detail = ", ".join(
                f"{n} {'never ingested' if state == 'never' else state}" for state, n in counts.items() if n
            )
            worst = max((c.status for c in graded), key=ORDER.__getitem__)
            pairs = plural(len(graded), "watched BA/dataset pair")
            rows.append(Check("freshness", worst, f"{pairs}: {detail}"))
            rows.extend(_problems(graded))
        history = [c for c in self.checks if c.state == "history"]
        if history:
            areas = list(dict.fromkeys(c.area for c in history))
            shown = ", ".join(areas[:8]) + (f" and {len(areas) - 8} more" if len(areas) > 8 else "")
            newest = format_utc(max(c.newest for c in history if c.newest is not None))
            rows.append(
                Check(
                    "history",
                    "ok",
                    f"{plural(len(history), 'stored BA/dataset pair')} not watched, kept as history "
                    f"({shown}); newest {newest}",
                )
            )
        return rows

    def freshness_grid(self) -> tuple[list[str], list[list[str]]]:
        """Watched BA x dataset table of states: fresh, late, stale, never ('-': EIA publishes none)."""
        graded = [c for c in self.checks if c.graded]
        cells = {(c.area, c.dataset): c.state for c in graded}
        areas = list(dict.fromkeys(c.area for c in graded))
        datasets = [d for d in DATASETS if any(c.dataset == d for c in graded)]
        return (
            ["BA", *(SHORT_NAMES[d] for d in datasets)],
            [[a, *(cells.get((a, d), "-") for d in datasets)] for a in areas],
        )

    def brief(self) -> str:
        """One line naming what fails (for cron, whose MAILTO mails any output); '' unless failing.

        'gridpulse health: fail: runs: 3 consecutive unsuccessful runs; …; stale: PJM demand
        2 d, PJM fuel-mix 30 h; never ingested: MISO, ERCO (2 of 7 datasets)'
        """
        if self.status != "fail":
            return ""
        parts = [f"{c.name}: {c.detail}" for c in self.checks if not c.area and c.status == "fail"]
        graded = [c for c in self.checks if c.graded]
        stale = [
            f"{c.area} {c.dataset} {behind_text(timedelta(seconds=c.behind_s or 0))}"
            for c in graded
            if c.state == "stale"
        ]
        if stale:
            parts.append(f"stale: {_first(stale)}")
        never: list[str] = []
        for area in dict.fromkeys(c.area for c in graded if c.state == "never"):
            own = [c for c in graded if c.area == area]
            count = sum(c.state == "never" for c in own)
            never.append(area if count == len(own) else f"{area} ({count} of {len(own)} datasets)")
        if never:
            parts.append(f"never ingested: {_first(never)}")
        return f"gridpulse health: fail: {'; '.join(parts)}"


def _first(items: Sequence[str], shown: int = BRIEF_ITEMS) -> str:
    return ", ".join(items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")


def _problems(graded: Sequence[Check]) -> list[Check]:
    """Watched pairs that are not fresh, per BA: late and stale ones, then those never ingested
    as one line."""
    rows: list[Check] = []
    for area in dict.fromkeys(c.area for c in graded):
        own = [c for c in graded if c.area == area]
        rows.extend(c for c in own if c.state in ("late", "stale"))
        never = [c.dataset for c in own if c.state == "never"]
        if never:
            detail = f"never ingested: {', '.join(never)}"
            if len(never) == len(own) > 1:
                detail = f"never ingested: none of its {len(own)} watched datasets is stored"
            rows.append(Check(f"freshness {area}", "fail", detail, area=area, state="never"))
    return rows


def behind_text(delta: timedelta) -> str:
    """45 min, 3 h, 2 d: a delay in the unit a person would use."""
    minutes = max(0, int(delta.total_seconds()) // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours = minutes // 60
    return f"{hours} h" if hours < 48 else f"{hours // 24} d"


def publishes(area: str, dataset: str, now: datetime) -> bool:
    """Whether EIA publishes `dataset` for `area` now, so a watched pair with no data is a failure:
    no sub-BA demand for BAs without subregions (or regions), no demand or forecast for
    generation-only BAs, nothing for a retired BA."""
    if area in REGIONS:
        return dataset != "subregion-demand"
    ba = balancing_authorities().get(area)
    if ba is None:
        return True
    if ba.retirement_date is not None and ba.retirement_date <= now.date():
        return False
    if dataset == "subregion-demand":
        return ba.has_subregions
    if dataset in ("demand", "forecast"):
        return not ba.generation_only
    return True


def newest_hours(store: Store) -> dict[tuple[str, str], datetime]:
    """The newest stored hour per (area, dataset)."""
    newest: dict[tuple[str, str], datetime] = {}
    for area, dataset, moment in store.newest_hours():
        newest[(area, dataset)] = max(newest.get((area, dataset), moment), moment)
    return newest


def check_freshness(store: Store, bas: Sequence[str], datasets: Sequence[str], now: datetime) -> list[Check]:
    """One check per watched (BA, dataset) EIA publishes, then one `history` check (always ok) per
    stored (BA, dataset) outside the watched set: history is not expected to move."""
    newest = newest_hours(store)
    watched = [(area, dataset) for area in bas for dataset in datasets if publishes(area, dataset, now)]
    checks = [_freshness(area, dataset, newest.get((area, dataset)), now) for area, dataset in watched]
    graded = set(watched)
    for (area, dataset), last in sorted(newest.items()):
        if (area, dataset) not in graded:
            checks.append(
                Check(
                    f"history {area} {dataset}",
                    "ok",
                    f"history (not watched: see GRIDPULSE_BA, GRIDPULSE_DATASETS); newest {format_utc(last)}",
                    area=area,
                    dataset=dataset,
                    state="history",
                    newest=last,
                )
            )
    return checks


def _freshness(area: str, dataset: str, last: datetime | None, now: datetime) -> Check:
    """Newest stored hour against the newest EIA should have published by now (now - lag)."""
    name = f"freshness {area} {dataset}"
    if last is None:
        detail = "never ingested: nothing stored (run `gridpulse ingest`, or leave it out of GRIDPULSE_BA or GRIDPULSE_DATASETS)"
        return Check(name, "fail", detail, None, area, dataset, "never")
    lag = DATASETS[dataset].lag
    expected = floor_hour(now - lag)
    behind = max(expected - last, timedelta(0))  # a forecast runs ahead of now
    if behind <= HOUR:
        status, state = "ok", "fresh"
    elif behind <= max(timedelta(hours=3), lag / 2):
        status, state = "warn", "late"
    else:
        status, state = "fail", "stale"
    detail = f"newest {format_utc(last)}, expected {format_utc(expected)}"
    detail = f"{state}: {detail}" if state == "fresh" else f"{state}, {behind_text(behind)} behind: {detail}"
    return Check(name, status, detail, int(behind.total_seconds()), area, dataset, state, last)


def check_runs(store: Store) -> Check:
    """The last run's outcome; several failures in a row fail."""
    rows = finished_outcomes(store, 20)
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
    detail = f"{failures} consecutive unsuccessful {'run' if failures == 1 else 'runs'}; last: run {run_id} ({command}) {status}: {error or ''}".strip()
    return Check("runs", "fail" if failures >= FAILED_RUNS_TO_FAIL else "warn", detail[:300])


# Real EIA data: about 0.5% of a day's values are flagged (docs/quality.md); four times that
# over a week means a BA is sending broken data, worth a look.
SUSPECT_WARN_SHARE = 0.02


def check_suspect(store: Store, bas: Sequence[str], since: datetime) -> Check:
    """The share of each watched BA's values since `since` that have a quality finding."""
    shares = {
        area: flagged / total for area, (flagged, total) in store.suspect_shares(bas, since).items() if total
    }
    high = sorted(
        (area for area, share in shares.items() if share > SUSPECT_WARN_SHARE), key=lambda a: -shares[a]
    )
    if high:
        listed = ", ".join(f"{area} {shares[area]:.1%}" for area in high[:5])
        return Check(
            "suspect", "warn", f"suspect values over the last 7 days above {SUSPECT_WARN_SHARE:.0%}: {listed}"
        )
    worst = max(shares.values(), default=0.0)
    return Check(
        "suspect", "ok", f"at most {worst:.1%} of a watched BA's values suspect over the last 7 days"
    )


def run_health(
    database_url: str,
    api_key_configured: bool,
    bas: Sequence[str],
    datasets: Sequence[str],
    now: datetime,
) -> HealthReport:
    """Run every check on the watched `bas` x `datasets`; a database that cannot be opened is a
    failed check, not a crash."""
    report = HealthReport()
    try:
        store = Store.open(database_url, read_only=True)  # never creates or migrates a database
    except GridpulseError as exc:
        report.checks.append(Check("database", "fail", str(exc)))
        report.checks.append(_key_check(api_key_configured))
        return report
    try:
        version = store.current_schema_version()
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
        report.checks.append(check_suspect(store, bas, week.start))
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
