"""`gridpulse report`: one self-contained HTML file of what is stored for a window.

Sections: coverage (series x day: complete / partial / missing / suspect / not yet due), freshness
of the watched set against each dataset's publication lag, the run timeline, per BA demand with
the day-ahead forecast, generation by fuel (stacked) and interchange with each neighbour, then the
revisions, the quality findings and the lineage (routes and stored responses) of every series.

Charts are Plotly figures; plotly.js (from the plotly package, no network) is inlined once, so the
file opens offline. Why Plotly: docs/report.md.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from gridpulse_cli.catalog import DATASETS
from gridpulse_cli.config import Settings
from gridpulse_cli.db import Store
from gridpulse_cli.windows import HOUR, Window, floor_hour, format_utc

TABLE_ROWS = 300  # revisions / findings shown; the commands list them all
RUNS_SHOWN = 500
# coverage states, in colour-scale order
STATES = ("not due", "missing", "partial", "complete", "suspect")
STATE_COLOURS = ("#eeeeee", "#d62728", "#ffbf00", "#2ca02c", "#9467bd")
PLOT_CONFIG = {"displaylogo": False, "responsive": True, "scrollZoom": False}


@dataclass
class ReportData:
    """Everything the report shows, read once from the store."""

    window: Window
    now: datetime
    bas: list[str]
    observations: pd.DataFrame  # series_id, period (datetime UTC), value, flag, dataset, area, counterpart
    suspect: set[tuple[str, datetime]]
    freshness: list[Any]  # health.Check
    runs: list[Any]  # ledger.RunRow
    revisions: list[Any]  # store.RevisionRow
    findings: list[tuple[Any, ...]]
    lineage: list[Any]  # store.LineageRow


def gather(store: Store, window: Window, bas: Sequence[str], settings: Settings) -> ReportData:
    """Read what the report shows for `bas` over `window`."""
    from gridpulse_cli.health import check_freshness
    from gridpulse_cli.ledger import recent_runs

    now = settings.now()
    findings = store.findings(window, bas, None)  # series, hour, check, detail
    runs = [r for r in recent_runs(store, RUNS_SHOWN) if r.started_at_utc >= window.start - timedelta(days=1)]
    return ReportData(
        window=window,
        now=now,
        bas=list(bas),
        observations=read_observations(store, window, bas),
        suspect={(f[0], f[1]) for f in findings},
        freshness=[c for c in check_freshness(store, bas, settings.watched_datasets, now) if c.graded],
        runs=runs,
        revisions=store.revisions(window.start, bas, None, TABLE_ROWS),
        findings=findings[:TABLE_ROWS],
        lineage=store.lineage(window, bas),
    )


def read_observations(store: Store, window: Window, bas: Sequence[str]) -> pd.DataFrame:
    """The window's observations of these BAs as one frame (a 30-day report holds ~10^5 rows)."""
    columns = ["series_id", "period", "value", "flag", "dataset", "area", "counterpart"]
    rows = [row for batch in store.iter_observations(window, bas, None) for row in batch]
    frame = pd.DataFrame(rows, columns=columns)
    frame["period"] = pd.to_datetime(frame["period"], utc=True, format="%Y-%m-%dT%H:%M:%SZ")
    frame["value"] = frame["value"].astype("float64")
    return frame


def write_report(store: Store, path: Path, window: Window, bas: Sequence[str], settings: Settings) -> int:
    """Write the report to `path` atomically; return its size in bytes."""
    from gridpulse_cli.files import atomic_output

    page = render_html(gather(store, window, bas, settings))
    with atomic_output(path) as out:
        out.write(page)
    if str(path) != "-":
        path.chmod(0o666 & ~_umask())  # a page to share (the temporary file it was is private)
    return len(page.encode())


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# ---- coverage -------------------------------------------------------------------------------


def coverage_grid(data: ReportData) -> pd.DataFrame:
    """Series x day of state codes (index into STATES): hours with a value against the day's hours
    that are due (inside the window and older than the dataset's publication lag)."""
    obs = data.observations
    days = pd.date_range(floor_hour(data.window.start).replace(hour=0), data.window.end - HOUR, freq="D")
    if obs.empty:
        return pd.DataFrame(index=pd.Index([], name="series_id"), columns=days, dtype="float64")
    have = obs[obs["value"].notna()].assign(day=lambda f: f["period"].dt.floor("D"))
    counts = (
        have.groupby(["series_id", "day"]).size().unstack(fill_value=0).reindex(columns=days, fill_value=0)
    )
    datasets = obs.groupby("series_id")["dataset"].first()
    counts = counts.reindex(datasets.index, fill_value=0)
    suspect_days = {(sid, pd.Timestamp(moment).floor("D")) for sid, moment in data.suspect}
    grid = pd.DataFrame(index=counts.index, columns=days, dtype="float64")
    for sid in counts.index:
        due_end = (
            floor_hour(data.now - DATASETS[datasets[sid]].lag) + HOUR
            if datasets[sid] in DATASETS
            else data.now
        )
        for day in days:
            due = _due_hours(day.to_pydatetime(), data.window, due_end)
            grid.at[sid, day] = _state(int(counts.at[sid, day]), due, (sid, day) in suspect_days)  # type: ignore[arg-type]
    return grid


def _due_hours(day: datetime, window: Window, due_end: datetime) -> int:
    start, end = max(day, window.start), min(day + timedelta(days=1), window.end, due_end)
    return max(0, int((end - start) / HOUR))


def _state(have: int, due: int, suspect: bool) -> int:
    if suspect:
        return STATES.index("suspect")
    if due == 0:
        return STATES.index("complete") if have else STATES.index("not due")
    if have == 0:
        return STATES.index("missing")
    return STATES.index("complete") if have >= due else STATES.index("partial")


def coverage_figure(data: ReportData) -> Any:
    """The coverage heatmap, one row per series, one column per day."""
    import plotly.graph_objects as go

    grid = coverage_grid(data)
    n = len(STATES)
    scale = [[edge, STATE_COLOURS[i]] for i in range(n) for edge in (i / n, (i + 1) / n)]
    labels = [[STATES[int(v)] if v == v else "" for v in row] for row in grid.to_numpy()]
    figure = go.Figure(
        go.Heatmap(
            z=grid.to_numpy(),
            x=[pd.Timestamp(d).strftime("%Y-%m-%d") for d in grid.columns],
            y=list(grid.index),
            customdata=labels,
            zmin=-0.5,
            zmax=n - 0.5,
            colorscale=scale,
            xgap=1,
            ygap=1,
            hovertemplate="%{y}<br>%{x}: %{customdata}<extra></extra>",
            colorbar={"tickvals": list(range(n)), "ticktext": list(STATES), "title": "day"},
        )
    )
    figure.update_layout(height=max(260, 120 + 14 * len(grid)), margin={"l": 10, "r": 10, "t": 30, "b": 10})
    figure.update_yaxes(autorange="reversed", tickfont={"size": 10})
    figure.update_xaxes(type="category")  # one labelled column per day
    return figure


# ---- per BA ---------------------------------------------------------------------------------


def ba_figures(data: ReportData, area: str) -> list[tuple[str, Any]]:
    """(title, figure) of demand vs forecast, generation by fuel, interchange: those with data."""
    import plotly.graph_objects as go

    obs = data.observations[data.observations["area"] == area]
    charts: list[tuple[str, Any]] = []
    demand = obs[obs["dataset"].isin(["demand", "forecast"])]
    if not demand.empty:
        fig = go.Figure([_line(part, str(name)) for name, part in demand.groupby("dataset")])
        charts.append((f"{area}: demand and day-ahead forecast (MWh)", fig))
    fuels = obs[obs["dataset"] == "fuel-mix"]
    if not fuels.empty:
        fig = go.Figure([_line(part, str(fuel), stack=True) for fuel, part in fuels.groupby("counterpart")])
        charts.append((f"{area}: generation by fuel, stacked (MWh)", fig))
    interchange = obs[obs["dataset"] == "interchange"]
    if not interchange.empty:
        fig = go.Figure([_line(part, f"to {to}") for to, part in interchange.groupby("counterpart")])
        charts.append((f"{area}: interchange with neighbours (MWh, + = export)", fig))
    for _, fig in charts:
        fig.update_layout(
            height=340,
            hovermode="x unified",
            margin={"l": 10, "r": 10, "t": 10, "b": 10},
            legend={"orientation": "h"},
        )
        fig.update_xaxes(type="date", rangeslider={"visible": True, "thickness": 0.08})
    return charts


def _line(part: pd.DataFrame, name: str, stack: bool = False) -> Any:
    import plotly.graph_objects as go

    part = part.sort_values("period")
    extra: dict[str, Any] = {"stackgroup": "fuel"} if stack else {}
    return go.Scatter(
        # epoch milliseconds go into the page as base64 int64, a third the size of ISO strings
        x=part["period"].dt.as_unit("ms").astype("int64").to_numpy(),
        y=part["value"].to_numpy(),
        name=name,
        mode="lines",
        **extra,
    )


def runs_figure(data: ReportData) -> Any:
    """Each run: when it started, rows written (inserted + revised), coloured by status."""
    import plotly.graph_objects as go

    colours = {"ok": "#2ca02c", "failed": "#d62728", "interrupted": "#ff7f0e", "running": "#1f77b4"}
    traces = []
    for status in sorted({r.status for r in data.runs}):
        runs = [r for r in data.runs if r.status == status]
        traces.append(
            go.Scatter(
                x=[r.started_at_utc.replace(tzinfo=None) for r in runs],
                y=[r.rows_inserted + r.rows_revised for r in runs],
                mode="markers",
                name=status,
                marker={"color": colours.get(status, "#7f7f7f"), "size": 9},
                text=[_run_hover(r) for r in runs],
                hovertemplate="%{text}<extra></extra>",
            )
        )
    figure = go.Figure(traces)
    figure.update_layout(height=280, margin={"l": 10, "r": 10, "t": 10, "b": 10}, yaxis_title="rows written")
    return figure


def _run_hover(run: Any) -> str:
    from gridpulse_cli.text import human_duration

    took = "" if run.elapsed_s is None else f", {human_duration(run.elapsed_s)}"
    error = f"<br>{html.escape(run.error[:200])}" if run.error else ""
    return (
        f"run {run.run_id} {run.command}: {run.status}{took}<br>{format_utc(run.started_at_utc)}"
        f"<br>{run.rows_inserted:,} new, {run.rows_revised:,} revised{error}"
    )


# ---- tables and page ------------------------------------------------------------------------


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], empty: str) -> str:
    """A plain HTML table (cells escaped unless given as Markup), or `empty` as a note."""
    if not rows:
        return f'<p class="note">{html.escape(empty)}</p>'
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class Markup(str):
    """HTML that html_table puts in as it is (links, state badges)."""


def _cell(value: Any) -> str:
    if isinstance(value, Markup):
        return str(value)
    if isinstance(value, datetime):
        return html.escape(format_utc(value))
    if isinstance(value, float):
        return f"{value:,.1f}"
    return html.escape("" if value is None else str(value))


def _hour_link(series_id: str, moment: datetime, area: str) -> Markup:
    """A revised or flagged hour, linked to its BA's charts."""
    return Markup(f'<a href="#ba-{html.escape(area)}">{html.escape(format_utc(moment))}</a>')


def _area_of(series_id: str) -> str:
    from gridpulse_cli.catalog import parse_series_id

    try:
        return parse_series_id(series_id).area
    except Exception:  # a series ID this catalog cannot parse still gets a row, without a link
        return ""


TABLE_HEADERS = {
    "freshness": ["BA", "dataset", "state", "newest hour", "detail"],
    "runs": ["run", "command", "status", "started", "seconds", "new rows", "revised", "error"],
    "revisions": ["series", "hour", "old MWh", "new MWh", "changed at", "run"],
    "findings": ["series", "hour", "check", "detail"],
    "lineage": ["series", "route", "source", "stored responses", "observations", "newest fetch"],
}
TABLE_EMPTY = {
    "freshness": "no watched BA in this report",
    "runs": "no runs",
    "revisions": "no revisions in the window",
    "findings": "no quality findings (none flagged, or the database has not been screened: gridpulse check)",
    "lineage": "nothing stored in the window",
}


def tables(data: ReportData) -> dict[str, str]:
    """The freshness, runs, revisions, findings and lineage tables as HTML."""
    runs = [
        [
            r.run_id,
            r.command,
            r.status,
            r.started_at_utc,
            r.elapsed_s,
            r.rows_inserted,
            r.rows_revised,
            r.error or "",
        ]
        for r in data.runs
    ]
    rows: dict[str, list[list[Any]]] = {
        "freshness": [
            [c.area, c.dataset, Markup(f'<span class="st {c.state}">{c.state}</span>'), c.newest, c.detail]
            for c in data.freshness
        ],
        "runs": runs,
        "revisions": [
            [sid, _hour_link(sid, hour, _area_of(sid)), old, new, changed, run]
            for sid, hour, old, new, changed, run, *_ in data.revisions
        ],
        "findings": [
            [sid, _hour_link(sid, hour, _area_of(sid)), check, detail]
            for sid, hour, check, detail in data.findings
        ],
        "lineage": [list(row) for row in data.lineage],
    }
    return {name: html_table(TABLE_HEADERS[name], rows[name], TABLE_EMPTY[name]) for name in TABLE_HEADERS}


def _figure_html(figure: Any, div_id: str) -> str:
    """The chart's div and its drawing script, held back (a non-JS type) until plotly.js is unpacked."""
    markup = str(figure.to_html(full_html=False, include_plotlyjs=False, config=PLOT_CONFIG, div_id=div_id))
    return markup.replace("<script>", f'<script type="{DEFERRED_CHART}">', 1)


def packed_plotly() -> str:
    """plotly.js gzipped and base64-encoded: 1.9 MB in the page instead of 4.8 MB.

    The browser unpacks it with DecompressionStream (no network, no library), then runs the charts.
    """
    import base64
    import gzip

    from plotly.offline import get_plotlyjs

    return base64.b64encode(gzip.compress(get_plotlyjs().encode(), compresslevel=9, mtime=0)).decode()


def render_html(data: ReportData) -> str:
    """The whole page: each section, then plotly.js once (packed) and the loader that draws the charts."""
    parts = [
        f"<h2>Coverage</h2><p class='note'>{_legend()}</p>",
        _figure_html(coverage_figure(data), "coverage"),
    ]
    found = tables(data)
    parts += ["<h2>Freshness of the watched set</h2>", found["freshness"]]
    parts += [
        "<h2>Runs</h2>",
        _figure_html(runs_figure(data), "runs"),
        "<details><summary>run table</summary>",
    ]
    parts += [found["runs"], "</details>"]
    for area in data.bas:
        parts.append(f'<h2 id="ba-{html.escape(area)}">{html.escape(area)}</h2>')
        charts = ba_figures(data, area)
        parts += [
            f"<h3>{html.escape(t)}</h3>" + _figure_html(f, f"{area}-{i}") for i, (t, f) in enumerate(charts)
        ]
        if not charts:
            parts.append('<p class="note">nothing stored for this BA in the window</p>')
    parts += ["<h2>Revisions</h2>", found["revisions"], "<h2>Quality findings</h2>", found["findings"]]
    parts += ["<h2>Lineage</h2>", found["lineage"]]
    title = f"gridpulse report {data.window}"
    return PAGE.format(
        title=html.escape(title),
        plotly=packed_plotly(),
        deferred=DEFERRED_CHART,
        generated=html.escape(format_utc(data.now)),
        bas=html.escape(", ".join(data.bas)),
        body="\n".join(parts),
    )


def _legend() -> str:
    return (
        "One row per series, one column per UTC day (hours ending that day). complete: every due hour has "
        "a value; partial: some do; missing: none do; suspect: the quality screen flagged an hour; not due: "
        "inside the dataset's publication lag. Hover for details."
    )


DEFERRED_CHART = "text/x-gridpulse-chart"
PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1300px; padding: 0 1rem; color: #222; }}
h1 {{ font-size: 1.5rem; }} h2 {{ border-bottom: 1px solid #ccc; margin-top: 2rem; }} h3 {{ font-size: 1rem; }}
table {{ border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }}
th, td {{ border: 1px solid #ddd; padding: 2px 6px; text-align: left; vertical-align: top; }}
th {{ background: #f4f4f4; }} .note {{ color: #555; font-size: 0.9rem; }}
.st {{ padding: 0 4px; border-radius: 3px; }} .fresh {{ background: #c7eac7; }} .late {{ background: #ffe7a0; }}
.stale, .never {{ background: #f5b5b5; }}
</style>
</head><body>
<h1>{title}</h1>
<p class="note">Generated {generated} for {bas}. Times are UTC, hour ending. Drag on a chart to zoom,
double-click to reset, hover for the hour's values.</p>
{body}
<script>
(async () => {{
  const packed = "{plotly}";
  const bytes = Uint8Array.from(atob(packed), (c) => c.charCodeAt(0));
  const unpacked = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  const library = document.createElement("script");
  library.text = await new Response(unpacked).text();
  document.head.appendChild(library);
  for (const chart of document.querySelectorAll('script[type="{deferred}"]')) {{
    const run = document.createElement("script");
    run.text = chart.text;
    chart.replaceWith(run);
  }}
}})();
</script>
</body></html>
"""
