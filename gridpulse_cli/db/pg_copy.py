"""PostgreSQL bulk path: binary COPY into a per-connection staging table, or — for hours never
stored before — straight into observations.

Rows are encoded in PostgreSQL's binary COPY format with numpy (one structured array per
(flag, null-pattern) group, so every record in a group has the same layout): no per-row Python.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.engine import Connection

STAGING_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS gp_staging (series_key INTEGER NOT NULL, "
    "period_end_utc TIMESTAMPTZ NOT NULL, value_mwh DOUBLE PRECISION, quality_flag TEXT NOT NULL, "
    "source_id BIGINT) ON COMMIT DELETE ROWS"
)
_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_TRAILER = (-1).to_bytes(2, "big", signed=True)
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z in Unix microseconds


def to_pg_micros(unix_us: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Unix microseconds -> PostgreSQL timestamptz (microseconds since 2000-01-01 UTC)."""
    return unix_us - _PG_EPOCH_US


def encode_rows(
    series_key: np.ndarray[Any, Any],
    period_us: np.ndarray[Any, Any],
    values: np.ndarray[Any, Any],
    flags: np.ndarray[Any, Any],
    source_ids: np.ndarray[Any, Any],
    extra: tuple[int, int | None] | None = None,
) -> bytes:
    """Binary COPY data for (series_key, period_end_utc, value_mwh, quality_flag, source_id
    [, first_seen_utc, last_changed_utc, run_id]). `source_ids` < 0 means NULL; NaN values are
    NULL; `extra` is (stamp in PG microseconds, run_id or None) for the direct COPY."""
    parts = [_HEADER]
    for (flag, nv, ns), index in _groups(values, flags, source_ids).items():
        flag_bytes = flag.encode()
        records = np.empty(len(index), dtype=_record_type(len(flag_bytes), nv, ns, extra))
        records["count"] = 8 if extra is not None else 5
        records["l_key"], records["key"] = 4, series_key[index]
        records["l_ts"], records["ts"] = 8, period_us[index]
        records["l_val"] = -1 if nv else 8
        if not nv:
            records["val"] = values[index]
        records["l_flag"], records["flag"] = len(flag_bytes), flag_bytes
        records["l_src"] = -1 if ns else 8
        if not ns:
            records["src"] = source_ids[index]
        if extra is not None:
            _fill_extra(records, *extra)
        parts.append(records.tobytes())
    parts.append(_TRAILER)
    return b"".join(parts)


def _groups(
    values: np.ndarray[Any, Any], flags: np.ndarray[Any, Any], source_ids: np.ndarray[Any, Any]
) -> dict[tuple[str, bool, bool], np.ndarray[Any, Any]]:
    """Row positions per (flag, value is null, source is null): one record layout each."""
    null_value = np.isnan(values)
    null_source = source_ids < 0
    groups: dict[tuple[str, bool, bool], np.ndarray[Any, Any]] = {}
    flag_codes, flag_names = pd.factorize(np.asarray(flags, dtype=object))
    for code, flag in enumerate(flag_names):
        in_flag = flag_codes == code
        for nv in (False, True):
            for ns in (False, True):
                mask = in_flag & (null_value == nv) & (null_source == ns)
                if mask.any():
                    groups[(str(flag), nv, ns)] = np.flatnonzero(mask)
    return groups


def _record_type(flag_len: int, nv: bool, ns: bool, extra: tuple[int, int | None] | None) -> np.dtype[Any]:
    """The big-endian record of one group: each field's length word, then its value unless null."""
    fields = [
        ("count", ">i2"),
        ("l_key", ">i4"),
        ("key", ">i4"),
        ("l_ts", ">i4"),
        ("ts", ">i8"),
        ("l_val", ">i4"),
    ]
    if not nv:
        fields.append(("val", ">f8"))
    fields += [("l_flag", ">i4"), ("flag", f"S{flag_len}"), ("l_src", ">i4")]
    if not ns:
        fields.append(("src", ">i8"))
    if extra is not None:
        fields += [("l_first", ">i4"), ("first", ">i8"), ("l_last", ">i4"), ("last", ">i8"), ("l_run", ">i4")]
        if extra[1] is not None:
            fields.append(("run", ">i4"))
    return np.dtype(fields)


def _fill_extra(records: np.ndarray[Any, Any], stamp: int, run_id: int | None) -> None:
    """first_seen_utc, last_changed_utc (both `stamp`) and run_id of the direct COPY."""
    records["l_first"], records["first"] = 8, stamp
    records["l_last"], records["last"] = 8, stamp
    records["l_run"] = -1 if run_id is None else 4
    if run_id is not None:
        records["run"] = run_id


def _copy(conn: Connection, statement: str, payload: bytes) -> None:
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.copy_expert(statement, io.BytesIO(payload))
    finally:
        cursor.close()


def copy_to_staging(conn: Connection, payload: bytes) -> None:
    """COPY one chunk (encode_rows without `extra`) into `gp_staging`, created on first use."""
    conn.exec_driver_sql(STAGING_DDL)
    _copy(conn, "COPY gp_staging FROM STDIN WITH (FORMAT binary)", payload)


def none_stored(conn: Connection, keys: list[int], lows: list[str], highs: list[str]) -> bool:
    """True when no series `keys[i]` has any hour stored between `lows[i]` and `highs[i]`."""
    # LATERAL … LIMIT 1: one primary-key probe per series. A plain join lets the planner pick a
    # hash join over all of observations, which grows slower with every chunk stored.
    found = conn.exec_driver_sql(
        "SELECT EXISTS (SELECT 1 FROM unnest(%(keys)s::int[], %(lows)s::timestamptz[], %(highs)s::timestamptz[]) "
        "AS span(series_key, low, high) CROSS JOIN LATERAL (SELECT 1 FROM observations o "
        "WHERE o.series_key = span.series_key AND o.period_end_utc BETWEEN span.low AND span.high LIMIT 1) hit)",
        {"keys": keys, "lows": lows, "highs": highs},
    ).scalar()
    return not found


def copy_new_observations(conn: Connection, payload: bytes) -> None:
    """COPY rows whose keys are not stored yet (encode_rows with `extra`) straight into observations.

    Only for a chunk `none_stored` cleared, under the writer lock; if a key did exist after all,
    the primary key rejects the COPY and the chunk's transaction rolls back.
    """
    _copy(
        conn,
        "COPY observations (series_key, period_end_utc, value_mwh, quality_flag, source_id, "
        "first_seen_utc, last_changed_utc, run_id) FROM STDIN WITH (FORMAT binary)",
        payload,
    )
