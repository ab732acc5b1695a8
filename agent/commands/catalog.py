"""`agent tasks` and `agent spaces`: what can be searched, and how proposals look."""

from __future__ import annotations

import argparse
import json

from agent.commands.options import print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    if parser.prog.endswith("spaces"):
        parser.add_argument("name", nargs="?", help="one space: also print its proposal JSON schema")
    parser.add_argument("--json", action="store_true", help="print JSON on stdout")


def run(args: argparse.Namespace) -> int:
    from evaluator.spaces import get_space, SPACES
    from evaluator.tasks import describe_tasks

    if args.command == "tasks":
        rows = describe_tasks()
        if args.json:
            print_json({"tasks": rows})
        else:
            for r in rows:
                print(f"{r['task']:<18} space {r['space']:<6} {r['kind']:<8} {r['data']}")
        return 0
    names = [args.name] if args.name else sorted(SPACES)
    spaces = {n: get_space(n) for n in names}
    out = {n: {"description": s.describe(), "schema": s.proposal_schema.model_json_schema()} for n, s in spaces.items()}
    if args.json:
        print_json({"spaces": out})
        return 0
    for n, info in out.items():
        print(f"{n}: {info['description']}")
        if args.name:
            print(json.dumps(info["schema"], indent=2))
    return 0
