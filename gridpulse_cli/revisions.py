"""Revision history: every value EIA changed after gridpulse first stored it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from gridpulse_cli.report import Column, format_optional
from gridpulse_cli.store import TIME_FORMAT, Store, series_query
from gridpulse_cli.text import short_hour


@dataclass(frozen=True)
class Revision:
    """One changed value (the JSON shape of `gridpulse revisions --json`)."""

    series_id: str
    period_end_utc: str
    old_value: float | None
    new_value: float | None
    changed_at: str
    run_id: int | None
    old_quality_flag: str
    new_quality_flag: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def table_row(self) -> list[str]:
        """The row under TABLE_COLUMNS: the hour as 2024-01-01T05Z, the change to the minute."""
        period = datetime.strptime(self.period_end_utc, TIME_FORMAT).replace(tzinfo=UTC)
        changed = datetime.strptime(self.changed_at, TIME_FORMAT).replace(tzinfo=UTC)
        return [
            self.series_id,
            short_hour(period),
            format_optional(self.old_value),
            format_optional(self.new_value),
            changed.strftime("%Y-%m-%d %H:%M"),
            "" if self.run_id is None else str(self.run_id),
        ]


# `gridpulse revisions` in 80 columns: series IDs and values are never cut (the change time may
# wrap after its date).
TABLE_COLUMNS = [
    Column("series_id"),
    Column("period_end"),
    Column("old", align="right"),
    Column("new", align="right"),
    Column("changed", wrap=True),
    Column("run", align="right"),
]


def _text(value: Any) -> str:
    return value.astimezone(UTC).strftime(TIME_FORMAT) if isinstance(value, datetime) else str(value)


def _query(
    store: Store,
    select: str,
    changed_since: datetime | None,
    bas: Sequence[str] | None,
    datasets: Sequence[str] | None,
    tail: str = "",
) -> tuple[sa.TextClause, dict[str, Any]]:
    """`SELECT {select}` over revisions joined to their series, narrowed by the options."""
    clauses: list[str] = ["1 = 1"]
    params: dict[str, Any] = {}
    if changed_since is not None:
        clauses.append("r.changed_at_utc >= :since")
        params["since"] = changed_since.strftime(TIME_FORMAT) if store.dialect == "sqlite" else changed_since
    stmt = series_query(
        f"SELECT {select} FROM revisions r JOIN series s ON s.series_key = r.series_key "
        f"WHERE {' AND '.join(clauses)}",
        params,
        bas,
        datasets,
        tail,
    )
    return stmt, params


def list_revisions(
    store: Store,
    changed_since: datetime | None,
    bas: Sequence[str] | None,
    datasets: Sequence[str] | None,
    limit: int | None = None,
) -> list[Revision]:
    """Return revisions, oldest change first, optionally only those changed since a moment."""
    stmt, params = _query(
        store,
        "s.series_id, r.period_end_utc, r.old_value_mwh, r.new_value_mwh, r.changed_at_utc, r.run_id, "
        "r.old_quality_flag, r.new_quality_flag",
        changed_since,
        bas,
        datasets,
        " ORDER BY r.changed_at_utc, r.revision_id" + (f" LIMIT {int(limit)}" if limit else ""),
    )
    with store.engine.connect() as conn:
        return [
            Revision(
                series_id=row[0],
                period_end_utc=_text(row[1]),
                old_value=row[2],
                new_value=row[3],
                changed_at=_text(row[4]),
                run_id=row[5],
                old_quality_flag=row[6],
                new_quality_flag=row[7],
            )
            for row in conn.execute(stmt, params)
        ]


def count_revisions(
    store: Store,
    changed_since: datetime | None,
    bas: Sequence[str] | None,
    datasets: Sequence[str] | None,
) -> int:
    """How many revisions `list_revisions` would return without a limit."""
    stmt, params = _query(store, "count(*)", changed_since, bas, datasets)
    with store.engine.connect() as conn:
        return int(conn.execute(stmt, params).scalar_one())
