"""`python -m gridpulse_cli` runs the CLI."""

from gridpulse_cli.entry import main

main()
