"""`python -m gridpulse_cli` runs the CLI."""

from gridpulse_cli.cli import main

main()
