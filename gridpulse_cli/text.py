"""Wording for people: plurals, short lists, compact counts, durations and times.

Pure functions shared by log lines, tables and error messages, so every count reads the same way
everywhere ("1 chunk", "12.3k rows", "2m05s", "PJM,CISO,MISO and 57 more").
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """'1 chunk', '2 chunks', '1,620 revisions'; `nouns` for irregular plurals ('1 series')."""
    return f"{count:,} {noun if count == 1 else (nouns or noun + 's')}"


def short_list(names: Sequence[str], shown: int = 3, limit: int = 6) -> str:
    """Names comma-joined; beyond `limit`, the first `shown` and how many more.

    `--ba all` is about 60 BAs: a log line says 'PJM,CISO,MISO and 57 more', not all of them.
    """
    if len(names) <= limit:
        return ",".join(names)
    return f"{','.join(names[:shown])} and {len(names) - shown} more"


def compact_count(count: int) -> str:
    """A count in at most 5 characters: 987, 12.3k, 456k, 1.2M."""
    for divisor, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if abs(count) >= divisor:
            scaled = count / divisor
            return f"{scaled:.1f}{suffix}" if abs(scaled) < 99.95 else f"{scaled:.0f}{suffix}"
    return str(count)


def human_duration(seconds: float) -> str:
    """'0.4s', '42s', '2m05s', '1h02m', '3d04h': short and unambiguous."""
    if seconds < 9.95:
        return f"{max(seconds, 0.0):.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def short_hour(moment: datetime) -> str:
    """An hour as '2024-03-02T08Z' (the minutes and seconds of an hour are always :00:00)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%HZ")


def short_time(moment: datetime) -> str:
    """A recent moment as 'MM-DD HH:MM' (UTC), for timelines."""
    return moment.astimezone(UTC).strftime("%m-%d %H:%M")


def shorten(text: str, width: int) -> str:
    """`text` on one line of at most `width` characters, cut with '…' when longer."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: max(0, width - 1)].rstrip() + "…"
