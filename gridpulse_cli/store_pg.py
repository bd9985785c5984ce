"""PostgreSQL bulk path: COPY rows into a per-connection staging table."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from sqlalchemy.engine import Connection

STAGING_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS gp_staging (series_key INTEGER NOT NULL, "
    "period_end_utc TIMESTAMPTZ NOT NULL, value_mwh DOUBLE PRECISION, quality_flag TEXT NOT NULL, "
    "source_id BIGINT) ON COMMIT DELETE ROWS"
)


def _copy_text(
    series_key: list[int],
    periods: list[str],
    values: np.ndarray[Any, Any],
    flags: list[str],
    source_ids: list[int | None],
) -> str:
    value_text = [r"\N" if v != v else repr(float(v)) for v in values.tolist()]
    source_text = [r"\N" if s is None else str(s) for s in source_ids]
    lines = map("\t".join, zip(map(str, series_key), periods, value_text, flags, source_text, strict=True))
    return "\n".join(lines) + "\n"


def copy_to_staging(
    conn: Connection,
    series_key: list[int],
    periods: list[str],
    values: np.ndarray[Any, Any],
    flags: list[str],
    source_ids: list[int | None],
) -> None:
    """COPY one chunk into `gp_staging` (created on first use in this session)."""
    conn.exec_driver_sql(STAGING_DDL)
    buffer = io.StringIO(_copy_text(series_key, periods, values, flags, source_ids))
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.copy_expert("COPY gp_staging FROM STDIN", buffer)
    finally:
        cursor.close()
