"""The installed archagent's version (``agent.__version__``), for what records or prints it."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("archagent")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
