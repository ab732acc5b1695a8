"""Where results are kept: the DuckDB history (one declared schema, short transactions, many
processes) and the in-memory recorder used by benchmarks."""

from agent.store.history import DB_NAME, History, HistoryError

__all__ = ["DB_NAME", "History", "HistoryError"]
