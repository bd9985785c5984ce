"""Error hierarchy: every failure gridpulse reports is one of these, mapped to an exit code once, in cli.py."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit statuses; documented in the README's "Exit codes" table."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    CONFIG = 3
    EIA_AUTH = 4
    EIA_UNAVAILABLE = 5
    DATABASE = 6
    BAD_INPUT = 7
    CHECK_FAILED = 8
    LOCKED = 9
    INTERRUPTED = 130


QUOTE_LIMIT = 100  # characters of user input an error message shows (a legitimate value is shorter)
MESSAGE_LIMIT = 1000  # characters of a whole error line (the unknown-BA list of valid codes is ~700)


def _shorten(text: object, limit: int) -> tuple[str, str]:
    """(the start of `text` with control characters escaped, cut to `limit`; a note if it was cut).

    Only the first `limit` characters are looked at, so a 50 MB value costs nothing to quote.
    """
    raw = str(text)
    escaped = "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in raw[:limit]
    )
    if len(raw) <= limit and len(escaped) <= limit:
        return escaped, ""
    return escaped[:limit] + "…", f" ({len(raw):,} characters)" if len(raw) > limit else ""


def quote(text: object, limit: int = QUOTE_LIMIT) -> str:
    """User input as an error message shows it: `'text'`, on one line, at most `limit` characters
    (a longer value is cut with `…` and its length given)."""
    head, note = _shorten(text, limit)
    return f"'{head}'{note}"


def one_line(message: object, limit: int = MESSAGE_LIMIT) -> str:
    """A message as one printable line of at most `limit` characters (the last line of defence)."""
    head, note = _shorten(message, limit)
    return head + note


class GridpulseError(Exception):
    """Base class: a condition gridpulse explains in one line."""

    exit_code: ExitCode = ExitCode.INTERNAL


class UsageError(GridpulseError):
    """An option value is malformed or not one of the allowed values."""

    exit_code = ExitCode.USAGE


class ConfigError(GridpulseError):
    """A required setting is missing or malformed (EIA_API_KEY, database URL)."""

    exit_code = ExitCode.CONFIG


class EIAError(GridpulseError):
    """The EIA API could not give us the data."""

    exit_code = ExitCode.EIA_UNAVAILABLE


class EIAKeyError(EIAError):
    """EIA rejected or did not receive the API key (HTTP 403); retrying cannot help."""

    exit_code = ExitCode.EIA_AUTH


class EIARequestError(EIAError):
    """EIA rejected the request itself (HTTP 400); retrying cannot help."""


class EIAUnavailableError(EIAError):
    """EIA stayed unreachable or kept failing after every retry."""


class EIARetryableError(EIAError):
    """A transient failure (429, 5xx, reset, timeout, bad body) that the client retries."""


class DatabaseError(GridpulseError):
    """The database cannot be opened, created or written."""

    exit_code = ExitCode.DATABASE


class SchemaTooNewError(DatabaseError):
    """The database was written by a newer gridpulse than this one."""


class InputFormatError(GridpulseError):
    """An input file for normalize/load/backfill is not in the expected format."""

    exit_code = ExitCode.BAD_INPUT


class LockedError(GridpulseError):
    """Another gridpulse writer holds the database lock."""

    exit_code = ExitCode.LOCKED


class Interrupted(GridpulseError):
    """The run was stopped by SIGINT or SIGTERM."""

    exit_code = ExitCode.INTERRUPTED


def file_problem(exc: OSError) -> str:
    """What is wrong with a path that could not be opened, in words ("does not exist", …)."""
    if isinstance(exc, FileNotFoundError):
        return "does not exist"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a file"
    if isinstance(exc, PermissionError):
        return "is not readable by this user"
    return f"cannot be read: {exc.strerror or exc}"
