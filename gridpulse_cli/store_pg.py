"""PostgreSQL bulk path: COPY rows into a per-connection staging table (or, for keys never
stored before, straight into observations)."""

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
    suffix: str = "",
) -> str:
    """Tab-separated COPY text; `suffix` (already tab-led) is appended to every line."""
    value_text = list(map(repr, values.tolist()))  # repr: the shortest exact text of a float
    for missing in np.flatnonzero(np.isnan(values)):
        value_text[missing] = r"\N"
    distinct_sources = set(source_ids)
    if len(distinct_sources) == 1:  # the usual case: one response or one input per chunk
        only = distinct_sources.pop()
        source_text = [r"\N" if only is None else str(only)] * len(source_ids)
    else:
        source_text = [r"\N" if s is None else str(s) for s in source_ids]
    lines = map("\t".join, zip(map(str, series_key), periods, value_text, flags, source_text, strict=True))
    return (suffix + "\n").join(lines) + suffix + "\n"


def _copy(conn: Connection, statement: str, text: str) -> None:
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.copy_expert(statement, io.StringIO(text))
    finally:
        cursor.close()


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
    _copy(conn, "COPY gp_staging FROM STDIN", _copy_text(series_key, periods, values, flags, source_ids))


def none_stored(conn: Connection, keys: list[int], lows: list[str], highs: list[str]) -> bool:
    """True when no series `keys[i]` has any hour stored between `lows[i]` and `highs[i]`."""
    found = conn.exec_driver_sql(
        "SELECT EXISTS (SELECT 1 FROM unnest(%(keys)s::int[], %(lows)s::timestamptz[], %(highs)s::timestamptz[]) "
        "AS span(series_key, low, high) JOIN observations o ON o.series_key = span.series_key "
        "AND o.period_end_utc BETWEEN span.low AND span.high)",
        {"keys": keys, "lows": lows, "highs": highs},
    ).scalar()
    return not found


def copy_new_observations(
    conn: Connection,
    series_key: list[int],
    periods: list[str],
    values: np.ndarray[Any, Any],
    flags: list[str],
    source_ids: list[int | None],
    now: str,
    run_id: int | None,
) -> None:
    """COPY rows whose keys are not stored yet straight into observations (no merge needed).

    Only for a chunk `none_stored` cleared, under the writer lock; if a key did exist after all,
    the primary key rejects the COPY and the chunk's transaction rolls back.
    """
    run = r"\N" if run_id is None else str(run_id)
    _copy(
        conn,
        "COPY observations (series_key, period_end_utc, value_mwh, quality_flag, source_id, "
        "first_seen_utc, last_changed_utc, run_id) FROM STDIN",
        _copy_text(series_key, periods, values, flags, source_ids, suffix=f"\t{now}\t{now}\t{run}"),
    )
