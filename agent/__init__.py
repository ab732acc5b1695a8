"""archagent: an LLM agent that designs neural network architectures.

The Python API mirrors the CLI: ``search``, ``evaluate``, ``history``, ``show``, ``report``, ``export``, ``sql``.
"""

from __future__ import annotations

from agent.api import evaluate, export, history, report, search, show, sql
from agent.version import __version__

__all__ = ["__version__", "evaluate", "export", "history", "report", "search", "show", "sql"]
