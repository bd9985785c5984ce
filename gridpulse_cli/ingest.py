"""`gridpulse ingest`: the recent window of every watched BA and dataset, fetched and stored."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from gridpulse_cli.engine import Now, ProgressCallback, RunOptions, run_recorded, utc_now
from gridpulse_cli.planner import plan_chunks

if TYPE_CHECKING:
    from gridpulse_cli.db import Store
    from gridpulse_cli.eia import EIAClient
    from gridpulse_cli.ledger import RunReport
    from gridpulse_cli.stopping import StopSignal
    from gridpulse_cli.windows import Window


def run_ingest(
    store: Store,
    client: EIAClient,
    bas: Sequence[str],
    datasets: Sequence[str],
    window: Window,
    *,
    command: str = "ingest",
    workers: int = 1,
    now: Now = utc_now,
    progress: ProgressCallback | None = None,
    stop: StopSignal | None = None,
) -> RunReport:
    """Fetch, normalize and load every chunk of the window; record the run in the ledger."""
    chunks = plan_chunks(bas, datasets, window)
    options = RunOptions(workers, now, progress, stop)
    return run_recorded(store, client, command, bas, datasets, window, chunks, options)
