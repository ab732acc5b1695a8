"""The DuckDB history: one declared schema, short transactions, many processes."""

from agent.history.store import DB_NAME, History, HistoryError

__all__ = ["DB_NAME", "History", "HistoryError"]
