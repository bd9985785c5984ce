"""The `gridpulse` executable: take over SIGINT/SIGTERM first, then load the CLI.

Loading the CLI imports its libraries, which takes a moment; a signal in that moment must
already end the process the documented way (one line, exit 130), not with a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys

from gridpulse_cli import __version__
from gridpulse_cli.errors import ExitCode
from gridpulse_cli.stopping import STOP


def main() -> None:
    """Console-script entry point."""
    if sys.argv[1:] == ["--version"]:  # as the CLI answers it, without loading the CLI
        sys.stdout.write(f"gridpulse {__version__}\n")
        sys.stdout.flush()
        raise SystemExit(0)
    STOP.install()
    # A signal while the libraries load is noted and acted on once loading is done, rather
    # than raised half-way through some module's import.
    with STOP.polling():
        from gridpulse_cli.cli import main as cli_main
    if STOP.requested.is_set():
        sys.stderr.write("gridpulse: error: interrupted\n")
        raise SystemExit(int(ExitCode.INTERRUPTED))
    try:
        cli_main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    else:
        code = 0
    # End with exactly the status gridpulse decided. Everything is recorded, committed and
    # flushed by now; the interpreter's own shutdown adds only ways to lose that status: after
    # an interrupt it sometimes re-kills itself with SIGINT (seen as exit -2 instead of 130 in
    # about 1 of 150 random signals), and it would wait for a fetch thread stuck in a read.
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
