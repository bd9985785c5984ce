"""The quality screen over stored data: findings stored, idempotent, cleared by revisions, shown
as `suspect` by export (values unchanged), counted in the run ledger; `gridpulse check`."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from gridpulse_cli.check import run_check
from gridpulse_cli.db import Store
from gridpulse_cli.export import export_csv
from gridpulse_cli.health import run_health
from gridpulse_cli.ledger import recorded_run
from gridpulse_cli.windows import Window, format_utc
from tests.helpers import demand, gp, inject, ok, parse_export, run_rows

NOW = datetime(2024, 3, 1, tzinfo=UTC)
SID = "EBA.CISO-ALL.D.H"


def frame_of(values: pd.Series, series_id: str = SID) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "series_id": series_id,
            "period_end_utc": values.index,
            "value_mwh": values.to_numpy(),
            "quality_flag": "good",
            "dataset": "demand",
            "area": "CISO",
            "counterpart": "",
        }
    )


def load(store: Store, frame: pd.DataFrame, command: str = "load test") -> int:
    """Upsert a frame inside a recorded run (as `load` does); return the run id."""
    ledgered = recorded_run(store, command, None, [], [], lambda: NOW, None, lambda _: "interrupted")
    with ledgered as (report, _), store.transaction() as conn:
        report.counts = store.upsert(conn, frame, report.run_id, NOW)
    assert report.run_id is not None
    return report.run_id


def injected_hours(values: pd.Series, injected: dict[str, set[int]]) -> set[str]:
    return {format_utc(values.index[i].to_pydatetime()) for i in set().union(*injected.values())}


def exported(store: Store) -> dict[tuple[str, str], tuple[str, str]]:
    out = io.StringIO()
    export_csv(store, out, None, None, None)
    return parse_export(out.getvalue())


def test_a_run_screens_what_it_wrote_and_export_shows_suspect(db_url: str) -> None:
    clean = demand(days=70)
    values, injected = inject(clean)
    store = Store.open(db_url)
    try:
        run_id = load(store, frame_of(values))
        findings = store.findings(None, None, None)
        flagged = {format_utc(p) for _, p, _, _ in findings}
        assert injected_hours(values, injected) <= flagged
        assert len(flagged - injected_hours(values, injected)) < 0.01 * len(values)
        rows = exported(store)
    finally:
        store.close()
    ledger = {r["run_id"]: r for r in run_rows(db_url)}
    assert ledger[run_id]["findings"] == len(findings)
    for (sid, hour), (value, flag) in rows.items():
        assert sid == SID
        stamp = pd.Timestamp(hour)
        assert float(value) == values[stamp]  # the served value, unchanged
        assert flag == ("suspect" if hour in flagged else "good")


def test_rescreening_adds_nothing_and_a_revision_clears_what_no_longer_holds(db_url: str) -> None:
    clean = demand(days=30)
    values = clean.copy()
    values.iloc[400] = 644_600
    store = Store.open(db_url)
    try:
        load(store, frame_of(values))
        first = store.findings(None, None, None)
        assert {p for _, p, _, _ in first} == {values.index[400].to_pydatetime()}
        again = run_check(store, None, None, None, now=lambda: NOW)
        assert [f.period_end_utc for f in again] == [values.index[400].to_pydatetime()]
        assert again[0].as_json()["check"] == "spike"
        assert store.findings(None, None, None) == first
        load(store, frame_of(clean))  # EIA revises the spike away
        assert store.findings(None, None, None) == []
        rows = exported(store)
    finally:
        store.close()
    assert {flag for _, flag in rows.values()} == {"good"}
    checks = [r for r in run_rows(db_url) if r["command"] == "check"]
    assert [r["findings"] for r in checks] == [0]  # the check found nothing new


def test_check_cli_json_and_table(tmp_path: Path) -> None:
    values, injected = inject(demand(days=70))
    csv_path = tmp_path / "obs.csv"
    frame = frame_of(values)
    frame["period_end_utc"] = [format_utc(p.to_pydatetime()) for p in frame["period_end_utc"]]
    frame.rename(columns={"value_mwh": "value"}).to_csv(csv_path, index=False)
    env = {"GRIDPULSE_DATABASE_URL": f"sqlite:///{tmp_path / 'gp.db'}", "GRIDPULSE_NOW": format_utc(NOW)}
    ok(gp("load", str(csv_path), env=env))
    result = gp("check", "--json", "--from", "2024-01-01", "--to", "2024-03-11", env=env)
    found = json.loads(ok(result))
    assert result.returncode == 0
    assert all(set(f) >= {"series_id", "period_end_utc", "check", "detail"} for f in found)
    assert injected_hours(values, injected) <= {f["period_end_utc"] for f in found}
    spike_hour = format_utc(values.index[500].to_pydatetime())
    [spiked] = [f for f in found if f["period_end_utc"] == spike_hour]
    assert spiked["check"] == "spike" and spiked["detail"].startswith("spike: ")
    table = ok(gp("check", "--ba", "ciso", "--since", "90d", env=env))
    assert "flagged hour" in table and all(len(line) <= 80 for line in table.splitlines())
    exported_rows = parse_export(ok(gp("export", env=env)))
    assert exported_rows[(SID, spike_hour)] == (f"{values.iloc[500]:.0f}", "suspect")


def test_health_warns_on_a_high_suspect_share(db_url: str) -> None:
    values = demand(days=10, seed=3)
    values.index = values.index + (NOW - values.index[-1].to_pydatetime())  # ends now
    values.iloc[-60:-20] = 0.0  # 40 zero hours: a third of the last week flagged
    store = Store.open(db_url)
    try:
        load(store, frame_of(values))
    finally:
        store.close()
    report = run_health(db_url, True, ["CISO"], ["demand"], NOW)
    [suspect] = [c for c in report.checks if c.name == "suspect"]
    assert suspect.status == "warn" and "CISO" in suspect.detail


def test_migration_v4_adds_findings_and_run_counts(db_url: str) -> None:
    store = Store.open(db_url)
    try:
        inspector = sa.inspect(store.engine)
        assert {c["name"] for c in inspector.get_columns("findings")} >= {
            "series_key",
            "period_end_utc",
            "check_name",
            "detail",
            "found_at_utc",
            "run_id",
        }
        assert {"findings", "throttled"} <= {c["name"] for c in inspector.get_columns("runs")}
    finally:
        store.close()


def test_window_limits_what_check_screens(db_url: str) -> None:
    values = demand(days=30)
    values.iloc[100] = 644_600
    values.iloc[600] = 644_600
    store = Store.open(db_url)
    try:
        with store.transaction() as conn:  # outside a run: nothing screened yet
            store.upsert(conn, frame_of(values), None, NOW)
        store.written.clear()
        window = Window(values.index[500].to_pydatetime(), values.index[700].to_pydatetime())
        found = run_check(store, window, ["CISO"], ["demand"], now=lambda: NOW)
        assert [f.period_end_utc for f in found] == [values.index[600].to_pydatetime()]
        assert {p for _, p, _, _ in store.findings(None, None, None)} == {values.index[600].to_pydatetime()}
    finally:
        store.close()


def region_frames(d: pd.Series) -> pd.DataFrame:
    """CISO demand, net generation and total interchange that balance (NG = D + TI)."""
    ti = pd.Series(np.round(1_500 + 300 * np.sin(np.arange(len(d)) / 7)), index=d.index)
    parts = []
    for sid, dataset, values in (
        (SID, "demand", d),
        ("EBA.CISO-ALL.NG.H", "generation", d + ti),
        ("EBA.CISO-ALL.TI.H", "total-interchange", ti),
    ):
        frame = frame_of(values, sid)
        frame["dataset"] = dataset
        parts.append(frame)
    return pd.concat(parts, ignore_index=True)


def test_consistency_findings_are_stored_on_the_series_at_fault_and_cleared(db_url: str) -> None:
    """Demand 25% low for three hours while net generation and interchange carry on: no per-series
    screen sees it (a smooth dip), the energy balance does; EIA revising it clears the findings."""
    clean = demand(days=30)
    values = clean.copy()
    values.iloc[400:403] = np.round(values.iloc[400:403] * 0.75)
    frame = region_frames(clean)
    frame.loc[frame["series_id"] == SID, "value_mwh"] = values.to_numpy()
    store = Store.open(db_url)
    try:
        run_id = load(store, frame)
        found = store.findings(None, None, None)
        assert {(s, p, c) for s, p, c, _ in found} == {
            (SID, values.index[i].to_pydatetime(), "energy-balance") for i in range(400, 403)
        }
        assert found[0][3].startswith("energy-balance: demand ")
        assert run_check(store, None, None, None, now=lambda: NOW)[0].checks[0][0] == "energy-balance"
        load(store, region_frames(clean))
        assert store.findings(None, None, None) == []
    finally:
        store.close()
    ledger = {r["run_id"]: r for r in run_rows(db_url)}
    assert ledger[run_id]["findings"] == 3


def test_a_run_screens_in_steps_while_it_writes_and_finds_the_same(db_url: str) -> None:
    """RunScreen.step screens a BA once three weeks are written (a long backfill waiting for EIA);
    finish screens the rest. Findings are those of screening everything at the end."""
    values, injected = inject(demand(days=70))
    frame = frame_of(values)
    store = Store.open(db_url)
    steps = []
    try:
        ledgered = recorded_run(store, "load test", None, [], [], lambda: NOW, None, lambda _: "interrupted")
        with ledgered as (report, _):
            assert report.screen is not None
            for part in range(0, len(frame), 10 * 24):  # ten days per commit
                with store.transaction() as conn:
                    report.counts += store.upsert(conn, frame.iloc[part : part + 240], report.run_id, NOW)
                steps.append(report.screen.step())
        stepped = {(p, c) for _, p, c, _ in store.findings(None, None, None)}
    finally:
        store.close()
    assert steps.count(True) == 2  # after 30 and 60 days; the last ten are left to finish
    assert injected_hours(values, injected) <= {format_utc(p) for p, _ in stepped}
    whole = Store.open(db_url)
    try:  # the same hours screened in one go find the same
        run_check(whole, None, None, None, now=lambda: NOW)
        assert {(p, c) for _, p, c, _ in whole.findings(None, None, None)} == stepped
    finally:
        whole.close()
