"""archagent: an LLM agent that designs neural network architectures.

The Python API mirrors the CLI: ``search``, ``evaluate``, ``history``, ``show``, ``report``, ``export``, ``sql``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("archagent")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

from agent.api import evaluate, export, history, report, search, show, sql  # noqa: E402

__all__ = ["__version__", "evaluate", "export", "history", "report", "search", "show", "sql"]
