"""`agent restore [SNAPSHOT]`: put a snapshot of the history back when the file is damaged.

Snapshots are taken when a run ends and every ``snapshot_every`` evaluations (agent.store.snapshots).
The damaged file is moved aside, never deleted; what was recorded after the snapshot is lost.
"""

from __future__ import annotations

import argparse

from agent.commands.options import console as make_console, print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("snapshot", nargs="?", help="a snapshot file (from --list); default: the newest that opens")
    parser.add_argument("--list", action="store_true", help="list the snapshots, newest first, and change nothing")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def run(args: argparse.Namespace) -> int:
    from agent.api import restore, snapshots

    console = make_console()
    if args.list:
        listed = snapshots(home=args.home)
        if args.json:
            print_json({"snapshots": listed})
        elif not listed:
            console.print("no snapshots yet: a run makes one when it ends", highlight=False)
        for s in [] if args.json else listed:
            console.print(f"{s['taken'][:19]}  {s['label']:<40} {s['size'] / 1e6:8.1f} MB  {s['path']}", highlight=False)
        return 0
    out = restore(args.snapshot, home=args.home)
    if args.json:
        print_json(out)
        return 0
    console.print(f"restored the snapshot of {out['restored']['taken'][:19]} ({out['restored']['label']})",
                  highlight=False)
    if out["moved_aside"]:
        console.print(f"the replaced file is kept as {out['moved_aside']}", highlight=False)
    return 0
