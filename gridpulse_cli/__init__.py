"""gridpulse: keep a database of EIA-930 hourly grid data complete and current."""

__version__ = "0.1.0"
