"""Logging to stderr: rich on a terminal, plain timestamped lines under cron, or JSON lines.

Every handler carries the RedactingFilter, so the API key never reaches a log sink.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from enum import StrEnum
from typing import IO, TYPE_CHECKING, Any

from gridpulse_cli.redact import RedactingFilter

if TYPE_CHECKING:
    from rich.console import Console


class LogFormat(StrEnum):
    """`--log-format`: auto is rich on a terminal and plain otherwise (cron)."""

    AUTO = "auto"
    PLAIN = "plain"
    JSON = "json"
    RICH = "rich"


class LogLevel(StrEnum):
    """`--log-level` (and GRIDPULSE_LOG_LEVEL), any case."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


LOG_FORMATS = tuple(f.value for f in LogFormat)


class UTCFormatter(logging.Formatter):
    converter = time.gmtime  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%SZ")


# Structured fields a log call may pass with `extra={...}`; JSON lines carry them as keys, so a
# log shipper need not parse counts out of the message (plain and rich lines show the message).
LOG_FIELDS = (
    "run_id",
    "status",
    "chunk",
    "chunks",
    "rows",
    "rows_fetched",
    "inserted",
    "revised",
    "unchanged",
    "requests",
    "retries",
    "throttled",
    "findings",
    "elapsed_s",
    "filled_hours",
    "missing_hours",
    "still_missing_hours",
    "still_missing_series",
)


class JSONFormatter(logging.Formatter):
    converter = time.gmtime  # type: ignore[assignment]

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%SZ"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in LOG_FIELDS:
            if name in record.__dict__:
                entry[name] = record.__dict__[name]
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str)


def rich_console() -> Console | None:
    """The console the rich log handler writes to, if logging is rich: a progress bar must draw
    on this same console, so log lines printed while it is live appear above it, not through it."""
    rich_logging = sys.modules.get("rich.logging")  # not imported: no rich handler (cheap under cron)
    if rich_logging is None:
        return None
    for handler in logging.getLogger().handlers:
        if isinstance(handler, rich_logging.RichHandler):
            return handler.console
    return None


def setup_logging(
    level: str = "INFO",
    log_format: str = "auto",
    secret: str | None = None,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Install one stderr handler on the root logger (replacing earlier ones); return it."""
    stream = stream or sys.stderr
    if log_format == "auto":
        log_format = "rich" if stream.isatty() else "plain"
    handler: logging.Handler
    if log_format == "rich":
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(console=Console(file=stream), show_path=False, log_time_format="%H:%M:%S")
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JSONFormatter() if log_format == "json" else UTCFormatter())
    handler.addFilter(RedactingFilter(secret))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    numeric = logging.getLevelName(level.upper())
    root.setLevel(numeric if isinstance(numeric, int) else logging.INFO)
    # urllib3 logs full URLs (with the key, which the filter redacts) at DEBUG; keep it quieter.
    logging.getLogger("urllib3").setLevel(logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING)
    return handler
