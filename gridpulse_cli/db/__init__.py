"""The database: one Store over a SQLite or PostgreSQL backend chosen when it opens."""

from gridpulse_cli.db.backend import LoadCounts, describe_db_error, display_url
from gridpulse_cli.db.store import Store

__all__ = ["LoadCounts", "Store", "describe_db_error", "display_url"]
