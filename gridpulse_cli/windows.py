"""Time windows over `period_end_utc`: parsing `--since/--from/--to` and EIA's period strings.

EIA's hourly `period` ("2024-01-01T00") is the UTC hour *ending* at that instant. gridpulse
windows are half-open over that instant: [start, end).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gridpulse_cli.errors import UsageError

HOUR = timedelta(hours=1)
_DURATION_RE = re.compile(r"^\s*(\d+)\s*([hdw])\s*$", re.IGNORECASE)
_UNITS = {"h": 1, "d": 24, "w": 24 * 7}
_TIME_FORMATS = ("%Y-%m-%d", "%Y-%m-%dT%H", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S")


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


def floor_hour(moment: datetime) -> datetime:
    """Return the UTC hour at or before `moment`."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def parse_duration(text: str) -> timedelta:
    """Parse `24h`, `7d`, `2w` into a whole number of hours."""
    match = _DURATION_RE.match(text)
    if not match or int(match[1]) == 0:
        raise UsageError(
            f"invalid duration '{text}': use a positive number of hours, days or weeks, e.g. 24h, 7d, 2w"
        )
    return timedelta(hours=int(match[1]) * _UNITS[match[2].lower()])


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
        return moment
    raise UsageError(f"invalid {option} '{text}': use YYYY-MM-DD or YYYY-MM-DDTHH in UTC, on the hour")


def resolve_window(
    since: str | None,
    start: str | None,
    end: str | None,
    now: datetime,
    default_since: str | None = "24h",
) -> Window | None:
    """Return the window `--since` or `--from/--to` names, `default_since` if neither is given.

    `--since 24h` is the 24 hours whose period ends at or before now. `--from` alone runs to now.
    Returns None only when nothing is given and there is no default (meaning: all time).
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
        return window
    if since is None:
        if default_since is None:
            return None
        since = default_since
    return Window(latest_end - parse_duration(since), latest_end)


def format_utc(moment: datetime) -> str:
    """Format like 2024-01-01T05:00:00Z (the export format)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def eia_period(moment: datetime) -> str:
    """Format an hour for EIA's `start`/`end` parameters (YYYY-MM-DDTHH, UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H")


def split_window(window: Window, hours: int) -> list[Window]:
    """Split a window into consecutive slices of at most `hours` hours."""
    step = timedelta(hours=max(1, hours))
    slices, cursor = [], window.start
    while cursor < window.end:
        slices.append(Window(cursor, min(cursor + step, window.end)))
        cursor += step
    return slices
