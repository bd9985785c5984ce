"""Usage errors (an unknown option or command, a missing or bad option value) as one line.

Click prints a usage error as a block (Usage:, Try 'gridpulse -h', Error: …). gridpulse prints
every failure as one `gridpulse: error: …` line, these included, and exits 2.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

from gridpulse_cli.errors import ExitCode, one_line

try:  # typer vendors click from 0.2x on
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer depends on click itself
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

USAGE_LIMIT = 250  # characters: the message quotes what was typed, which may be anything

# click < 8.2 has no NoArgsIsHelpError (it prints the help itself): then nothing is caught here.
_NO_ARGS_IS_HELP: Any = getattr(click_exceptions, "NoArgsIsHelpError", ())


def usage_message(exc: Any) -> str:
    """One line for a click usage error: its message and, for an unknown option, the likely one."""
    possibilities = getattr(exc, "possibilities", None)
    if possibilities:
        return one_line(f"{exc.message} (did you mean {' or '.join(sorted(possibilities))}?)", USAGE_LIMIT)
    return one_line(exc.format_message(), USAGE_LIMIT)


def _exit(message: str, code: int) -> NoReturn:
    typer.echo(f"gridpulse: error: {message}", err=True)
    sys.exit(code)


class OneLineErrorGroup(TyperGroup):
    """The root command: click's usage errors become one `gridpulse: error:` line, exit 2.

    Run standalone (the console script, CliRunner) it runs click non-standalone and reports
    what click would have printed as a block; `--help`, `--version` and exit codes are unchanged.
    """

    def main(  # type: ignore[override]
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NO_ARGS_IS_HELP as exc:
            exc.show()  # bare `gridpulse`: the help (on stderr, exit 2), as click does
            sys.exit(exc.exit_code)
        except click_exceptions.UsageError as exc:
            _exit(usage_message(exc), int(ExitCode.USAGE))
        except click_exceptions.ClickException as exc:  # e.g. a file option that cannot be opened
            _exit(one_line(exc.format_message()), exc.exit_code)
        except typer.Abort:
            _exit("aborted", 1)
        # Non-standalone click returns a command's exit code (typer.Exit) or its return value.
        sys.exit(code if isinstance(code, int) else 0)
