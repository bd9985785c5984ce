"""Logging to stderr: rich on a terminal, plain timestamped lines under cron, or JSON lines.

Every handler carries the RedactingFilter, so the API key never reaches a log sink.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO

from gridpulse_cli.redact import RedactingFilter

LOG_FORMATS = ("auto", "plain", "json", "rich")


class UTCFormatter(logging.Formatter):
    converter = time.gmtime  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%SZ")


class JSONFormatter(logging.Formatter):
    converter = time.gmtime  # type: ignore[assignment]

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%SZ"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry)


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
