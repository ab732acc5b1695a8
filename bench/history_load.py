"""The history under load: the reads a search and a person make, on a history of many candidates.

Builds a history of --candidates candidates (runs of 1,000, each with a 12-epoch curve; see
history_fixture.py), then times, on its last run: the queries behind one LLM prompt
(History.prompt_history; target under 50 ms), one run's candidates (History.run_candidates, and
`agent history --run` as a command, Python's start-up included; target under 1 s) and
`agent report` (the HTML report with its figures; target under 10 s). Medians of --repeat.

    python bench/history_load.py --candidates 100000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from agent.api import report
from history_fixture import build, timed

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--home", type=Path, help="build the history here and keep it (reused when it is there)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = args.home or Path(tmp) / "home"
        h = build(home, args.candidates)
        run_id = h.list_runs()[0]["run_id"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")} | {"AGENT_HOME": str(home)}

        def cli_history() -> None:
            subprocess.run([sys.executable, "-m", "agent", "history", "--run", run_id, "--json"], env=env, cwd=ROOT,
                           check=True, capture_output=True)

        rows = [
            ("prompt_history (one LLM prompt's queries)", timed(lambda: h.prompt_history(run_id), args.repeat), 0.05),
            ("run_candidates (one run, 1,000 candidates)", timed(lambda: h.run_candidates(run_id), args.repeat), 1.0),
            ("agent history --run RUN --json (a command)", timed(cli_history, args.repeat), 1.0),
            ("agent report RUN (HTML and figures)",
             timed(lambda: report(run_id, out=Path(tmp) / "report", home=home), max(1, args.repeat // 2)), 10.0),
        ]
        size = h.path.stat().st_size / 1e6
    table = Table(title=f"history of {args.candidates:,} candidates ({size:.0f} MB), medians", title_justify="left")
    for col in ("read", "seconds", "target", "met"):
        table.add_column(col, justify="left" if col == "read" else "right")
    for name, seconds, target in rows:
        table.add_row(name, f"{seconds:.3f}", f"< {target:g}", "yes" if seconds < target else "NO")
    Console().print(table)


if __name__ == "__main__":
    main()
