"""Keeping EIA_API_KEY out of logs, exceptions and stored payloads."""

from __future__ import annotations

import logging
import re
from typing import Any

REDACTED = "REDACTED"
_KEY_IN_URL = re.compile(r"(api_key=)[^&\s\"']+")


def redact(text: str, secret: str | None = None) -> str:
    """Return `text` with the key (and any `api_key=` query value) replaced by REDACTED."""
    if secret:
        text = text.replace(secret, REDACTED)
    return _KEY_IN_URL.sub(rf"\g<1>{REDACTED}", text)


def strip_key(body: Any) -> Any:
    """Remove the key EIA echoes in `request.params.api_key` from a parsed response (in place)."""
    if isinstance(body, dict):
        params = body.get("request", {}).get("params") if isinstance(body.get("request"), dict) else None
        if isinstance(params, dict):
            params.pop("api_key", None)
    return body


_ECHOED_KEY = re.compile(rb',\s*"api_key"\s*:\s*"[^"]*"|"api_key"\s*:\s*"[^"]*"\s*,?')


def strip_key_bytes(raw: bytes, secret: str | None) -> bytes | None:
    """The raw response body without the echoed `"api_key": "…"` member.

    Returns None when the key would still be in the body (then the caller re-serialises the
    parsed, stripped body instead): the archive must never hold it.
    """
    stripped = raw
    at = raw.rfind(b'"api_key"')  # EIA echoes the request after the data: search from the end
    while at >= 0:
        # Run the pattern only around the member: scanning a whole 1 MB page costs ~20 ms.
        low, high = max(0, at - 64), at + 1024
        window = _ECHOED_KEY.sub(b"", stripped[low:high], count=1)
        stripped = stripped[:low] + window + stripped[high:]
        at = stripped.rfind(b'"api_key"', 0, at)
    if secret and secret.encode() in stripped:
        return None
    return stripped


class RedactingFilter(logging.Filter):
    """A handler filter that rewrites every record so the key never reaches a log sink.

    It sits on handlers, not loggers, because records from third-party loggers (urllib3's
    DEBUG lines carry the full URL) propagate to handlers without passing logger filters.
    """

    def __init__(self, secret: str | None) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message, self.secret)
        if record.exc_info and record.exc_info[1] is not None:
            exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(exc_text, self.secret)
            record.exc_info = None
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True
