"""What a snapshot of the history costs: the time to take one and to restore one, by history size.

Builds histories of N candidates (one search evaluation each, spread over runs of 1,000) with
the History API, then times ``take_snapshot`` (copy under the shared lock, then one read of every
table of the copy) and ``restore_snapshot``, each the median of --repeat tries.

    python bench/snapshots.py --sizes 1000 10000 100000
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from agent.store.snapshots import restore_snapshot, take_snapshot
from history_fixture import build, timed

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    table = Table(title="history snapshots (median of %d)" % args.repeat, title_justify="left")
    for col in ("candidates", "file MB", "take s", "restore s"):
        table.add_column(col, justify="right")
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            h = build(Path(tmp) / "home", n)
            size = h.path.stat().st_size / 1e6
            take = timed(lambda: take_snapshot(h, "bench", keep=2), args.repeat)
            restore = timed(lambda: restore_snapshot(h), args.repeat)
            table.add_row(f"{n:,}", f"{size:.1f}", f"{take:.3f}", f"{restore:.3f}")
    Console().print(table)


if __name__ == "__main__":
    main()
