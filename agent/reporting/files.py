"""Where a report goes, and writing it there: the HTML page and the Markdown beside it.

Default: ``$AGENT_HOME/reports/<run>.html`` and ``<run>.md``. ``out`` may name a folder (the
files go inside it, named after the run) or a file ending in ``.html`` (the Markdown takes
its name with ``.md``). Each file is written to a temporary name in the same folder and then
renamed into place, so a browser or a second report never sees half a file. The history is
only read.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agent.store import History
from evaluator.errors import UserInputError

HTML_SUFFIXES = (".html", ".htm")


def report_paths(out: str | Path | None, home: Path, run_id: str) -> tuple[Path, Path]:
    """The HTML and Markdown paths for ``out`` (None: the home's reports folder)."""
    if out is None:
        html = Path(home) / "reports" / f"{run_id}.html"
    else:
        target = Path(out).expanduser()
        html = target if target.suffix.lower() in HTML_SUFFIXES and not target.is_dir() else target / f"{run_id}.html"
    return html, html.with_suffix(".md")


def _unwritable(path: Path, exc: OSError, given: bool) -> UserInputError:
    where = "--out " if given else ""
    return UserInputError(
        f"cannot write the report to {where}{path}: {exc.strerror or exc}",
        hint=("pass --out a folder you can write to (or a path ending in .html), or make that folder writable"
              if given else "make $AGENT_HOME/reports writable, or pass --out a folder you can write to"))


def _write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(history: History, run: str, *, out: str | Path | None = None) -> dict[str, Any]:
    """Write the report of ``run`` (an id or 'latest'); ``{"run_id", "html", "markdown", "figures"}``
    (the figures' names). NotFoundError for an unknown run, UserInputError for a folder that
    cannot be written, ArchAgentError naming the extra when matplotlib is missing."""
    from agent.version import __version__
    from agent.reporting.data import gather
    from agent.reporting.figures import make_figures, require_matplotlib
    from agent.reporting.render import render_html, render_markdown

    require_matplotlib()
    run_id = history.resolve_run_id(run)
    html_path, md_path = report_paths(out, history.home, run_id)
    try:  # before the work: a folder that cannot be made fails now, not after the figures
        html_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(html_path.parent, exc, out is not None) from None
    data = gather(history, run_id)
    figures = make_figures(data)
    generated = datetime.now(timezone.utc)
    page = render_html(data, figures, markdown_name=md_path.name, generated=generated, version=__version__)
    summary = render_markdown(data, figures, html_name=html_path.name)
    try:
        _write(html_path, page)
        _write(md_path, summary)
    except OSError as exc:
        raise _unwritable(html_path.parent, exc, out is not None) from None
    return {"run_id": run_id, "html": str(html_path.resolve()), "markdown": str(md_path.resolve()),
            "figures": [f.name for f in figures]}
