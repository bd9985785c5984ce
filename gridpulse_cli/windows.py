"""Time windows over `period_end_utc`: parsing `--since/--from/--to` and EIA's period strings.

EIA's hourly `period` ("2024-01-01T00") is the UTC hour *ending* at that instant. gridpulse
windows are half-open over that instant: [start, end).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gridpulse_cli.catalog import FIRST_HOUR
from gridpulse_cli.errors import UsageError, quote

HOUR = timedelta(hours=1)
HOUR_NS = 3_600_000_000_000  # an hour in nanoseconds (pandas' and numpy's datetime64[ns] unit)
# Stored and exported times: 2024-01-01T05:00:00Z (the observation CSV, the database's text times).
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# EIA's hourly `period` and its `start`/`end` parameters: 2024-01-01T05 (UTC hour ending).
PERIOD_FORMAT = "%Y-%m-%dT%H"
# Times from EIA-930's first hour to 2100: every window's arithmetic stays in datetime's (and
# pandas') range, and a mistyped year is an error rather than a crash or a request EIA rejects.
LATEST_TIME = datetime(2100, 1, 1, tzinfo=UTC)
MAX_DURATION_HOURS = 20 * 8766  # 20 years of 365.25 days: longer than EIA-930 has existed
_DURATION_RE = re.compile(r"^\s*([0-9]+)\s*([hdw])\s*$", re.IGNORECASE)
_UNITS = {"h": 1, "d": 24, "w": 24 * 7}
_TIME_FORMATS = ("%Y-%m-%d", PERIOD_FORMAT, "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S")


@dataclass(frozen=True)
class Window:
    """Hours whose period_end_utc is in [start, end)."""

    start: datetime
    end: datetime

    @property
    def hours(self) -> int:
        return int((self.end - self.start) / HOUR)

    def __str__(self) -> str:
        return f"{format_utc(self.start)}..{format_utc(self.end)}"

    def widened(self, margin: timedelta) -> Window:
        """The window with `margin` more on either side."""
        return Window(self.start - margin, self.end + margin)

    def covers(self, other: Window) -> bool:
        return self.start <= other.start and other.end <= self.end


def floor_hour(moment: datetime) -> datetime:
    """Return the UTC hour at or before `moment`."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def parse_duration(text: str) -> timedelta:
    """Parse `24h`, `7d`, `2w` into a whole number of hours."""
    match = _DURATION_RE.match(text)
    if match is None or not match[1].lstrip("0"):
        raise UsageError(
            f"invalid duration {quote(text)}: use a positive number of hours, days or weeks, e.g. 24h, 7d, 2w"
        )
    digits = match[1].lstrip("0")  # int() of thousands of digits is itself an error: check length first
    hours = int(digits) * _UNITS[match[2].lower()] if len(digits) <= 9 else MAX_DURATION_HOURS + 1
    if hours > MAX_DURATION_HOURS:
        raise UsageError(
            f"duration {quote(text)} is too long: at most 20 years ({MAX_DURATION_HOURS}h, "
            f"{MAX_DURATION_HOURS // 24}d)"
        )
    return timedelta(hours=hours)


def parse_time(text: str, option: str = "--from") -> datetime:
    """Parse YYYY-MM-DD or YYYY-MM-DDTHH (UTC; a trailing Z or :00 minutes are accepted)."""
    cleaned = text.strip().removesuffix("Z").removesuffix("+00:00").replace(" ", "T")
    for fmt in _TIME_FORMATS:
        try:
            moment = datetime.strptime(cleaned, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
        if moment != floor_hour(moment):
            break
        if not FIRST_HOUR <= moment <= LATEST_TIME:
            raise UsageError(
                f"{option} {quote(text)} is out of range: times run from {eia_period(FIRST_HOUR)} "
                f"(EIA-930's first hour) to {eia_period(LATEST_TIME)} UTC"
            )
        return moment
    raise UsageError(f"invalid {option} {quote(text)}: use YYYY-MM-DD or YYYY-MM-DDTHH in UTC, on the hour")


def resolve_window(
    since: str | None,
    start: str | None,
    end: str | None,
    now: datetime,
    default_since: str = "24h",
    earliest: datetime | None = None,
) -> Window:
    """Return the window `--since` or `--from/--to` names, `default_since` if neither is given.

    `--since 24h` is the 24 hours whose period ends at or before now. `--from` alone runs to now.
    A window starting before `earliest` (for the commands that ask EIA: its first hour) is an error.
    """
    latest_end = floor_hour(now) + HOUR
    if since and (start or end):
        raise UsageError("use either --since or --from/--to, not both")
    if start is None and end is not None:
        raise UsageError("--to needs --from")
    if start is not None:
        window = Window(parse_time(start, "--from"), parse_time(end, "--to") if end else latest_end)
        if window.end <= window.start:
            raise UsageError(f"--to {format_utc(window.end)} is not after --from {format_utc(window.start)}")
    else:
        duration = parse_duration(default_since if since is None else since)
        window = Window(latest_end - duration, latest_end)
    if earliest is not None and window.start < earliest:
        raise UsageError(
            f"the window starts at {eia_period(window.start)}, before {eia_period(earliest)}, "
            f"EIA-930's first hour: EIA has no earlier data (use --from {eia_period(earliest)} "
            "or a shorter --since)"
        )
    return window


def window_or_all_time(since: str | None, start: str | None, end: str | None, now: datetime) -> Window | None:
    """The window `--since` or `--from/--to` names, or None (all time) when neither is given."""
    if since is None and start is None and end is None:
        return None
    return resolve_window(since, start, end, now)


def format_utc(moment: datetime) -> str:
    """Format like 2024-01-01T05:00:00Z (the export format)."""
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def parse_utc(text: str) -> datetime:
    """Parse a time format_utc wrote (2024-01-01T05:00:00Z) back into an aware UTC datetime."""
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)


def eia_period(moment: datetime) -> str:
    """Format an hour for EIA's `start`/`end` parameters (YYYY-MM-DDTHH, UTC)."""
    return moment.astimezone(UTC).strftime(PERIOD_FORMAT)


def split_window(window: Window, hours: int) -> list[Window]:
    """Split a window into consecutive slices of at most `hours` hours."""
    step = timedelta(hours=max(1, hours))
    slices, cursor = [], window.start
    while cursor < window.end:
        slices.append(Window(cursor, min(cursor + step, window.end)))
        cursor += step
    return slices
