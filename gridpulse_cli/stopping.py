"""Clean stops on SIGINT and SIGTERM.

Python raises KeyboardInterrupt wherever the main thread happens to be. Inside a database
transaction that can leave a connection half-committed: on SQLite the next write then waits
out the busy timeout and fails with "database is locked". So a signal never interrupts a
transaction. The process moves through three phases:

- ``interruptible`` (start-up, waiting for the writer lock, reading): the signal raises
  KeyboardInterrupt at once, unless a transaction is open (``shielded``); then it is raised
  as soon as the transaction has ended.
- ``polling`` (a run is writing): the signal only sets ``requested``; the run's loops look at
  it between commits, stop their fetch threads, join them, and record the run interrupted.
- ``finished`` (the run is recorded): the signal is noted and ignored; the command exits 0.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

INTERRUPTIBLE, POLLING, FINISHED = "interruptible", "polling", "finished"


class StopSignal:
    """The process's answer to SIGINT/SIGTERM; one instance, `STOP`, shared by everything."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.signum: int | None = None
        self.phase = INTERRUPTIBLE
        self._shield_depth = 0
        self._installed = False

    def install(self) -> None:
        """Handle SIGINT and SIGTERM (Python's default SIGTERM skips every `finally`)."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)
        self._installed = True

    def reset(self) -> None:
        """Forget earlier signals and phases (a new command in the same process, e.g. tests)."""
        self.requested.clear()
        self.signum, self.phase, self._shield_depth = None, INTERRUPTIBLE, 0

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.signum = signum
        self.requested.set()
        if self.phase == INTERRUPTIBLE and self._shield_depth == 0:
            raise KeyboardInterrupt(f"signal {signum}")

    def check(self) -> None:
        """Raise KeyboardInterrupt if a stop was requested (call at safe points)."""
        if self.requested.is_set():
            raise KeyboardInterrupt(f"signal {self.signum}")

    @contextmanager
    def shielded(self) -> Iterator[None]:
        """Defer an interrupt until the block (a transaction) has ended, committed or rolled back."""
        self._shield_depth += 1
        try:
            yield
        finally:
            self._shield_depth -= 1
        if self._shield_depth == 0 and self.phase == INTERRUPTIBLE:
            self.check()

    @contextmanager
    def polling(self) -> Iterator[threading.Event]:
        """A writing run: signals only set the returned event, which the run polls."""
        previous, self.phase = self.phase, POLLING
        try:
            yield self.requested
        finally:
            if self.phase == POLLING:
                self.phase = previous

    def finish(self) -> None:
        """The run's outcome is recorded: a signal from now on changes nothing.

        Installed handlers become SIG_IGN, which the interpreter keeps while it shuts down
        (it puts its own handlers back to the default, which would end the process by signal).
        """
        self.phase = FINISHED
        if self._installed and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_IGN)


STOP = StopSignal()


class Cancelled(Exception):
    """A fetch thread gave up its work because the run is stopping."""


def wait_or_cancel(seconds: float, cancel: threading.Event | None) -> None:
    """Sleep `seconds`, waking at once (with Cancelled) when `cancel` is set."""
    if cancel is None:
        if seconds > 0:
            threading.Event().wait(seconds)
        return
    if cancel.wait(max(0.0, seconds)) or cancel.is_set():
        raise Cancelled("the run is stopping")
