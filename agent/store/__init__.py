"""Where results are kept, and the only place SQL is written: the DuckDB history (``history``:
the records, on ``database``: connections, transactions, the schema declared once in
``schema``), the reads behind reports (``report_rows``), the ``Recorder`` protocol a search
writes through and its in-memory implementation (``recorder``), and DuckDB values as JSON
(``json_values``)."""

from agent.store.history import DB_NAME, History, HistoryError

__all__ = ["DB_NAME", "History", "HistoryError"]
