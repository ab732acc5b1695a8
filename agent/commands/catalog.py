"""`agent tasks` and `agent spaces`: what can be searched, and how proposals look."""

from __future__ import annotations

import argparse
import json

from agent.commands.options import print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    if parser.prog.endswith("spaces"):
        parser.add_argument("name", nargs="?", help="one space: also print its proposal JSON schema")
        parser.add_argument("--space-file", dest="space_file", metavar="FILE",
                            help="check a space file (docs/spaces.md): print what the LLM is shown, its schema and, "
                                 "with a lookup, what the tables hold")
        parser.add_argument("--table", dest="tables", action="append", metavar="TABLE",
                            help="--space-file: the tables to check instead of the file's own (repeatable)")
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
    if getattr(args, "space_file", None):
        return _check_space_file(args)
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


def _check_space_file(args: argparse.Namespace) -> int:
    """`agent spaces --space-file FILE`: load and check the file (and its tables), say what it holds."""
    from pathlib import Path

    from evaluator.spaces.declared import DeclaredSpace
    from evaluator.spaces.declared.file import load_space_file

    file = load_space_file(Path(args.space_file))
    space = DeclaredSpace(file)
    out: dict = {"name": file.name, "file": str(file.path), "slots": len(file.slots), "combinations": file.size,
                 "constraints": [r.explain() for r in file.rules], "objectives": list(file.objectives or ("accuracy",)),
                 "description": space.describe(), "schema": space.llm_schema.model_json_schema(), "notes": list(file.notes)}
    if file.lookup is not None and (args.tables or file.lookup.tables):
        from evaluator.pools.lookup import Lookup

        lookup = Lookup(space, file.lookup, [Path(t) for t in args.tables] if args.tables else None)
        held = lookup.combinations()
        allowed = [c for c in held if space.allows(dict(zip(space.names, c)))]
        out["lookup"] = {"tables": [str(t.path) for t in lookup.tables], "signal": lookup.describe(),
                         "combinations": len(held), "allowed": len(allowed),
                         "best_signal": max(lookup.signal.values()) if lookup.signal else None}
    if file.train is not None:
        out["train"] = {"builder": str(file.train.builder), "task": file.train.task}
    if args.json:
        print_json(out)
        return 0
    print(space.describe())
    print(f"\nfile {file.path}: {len(file.slots)} slots, {file.size:,} combinations, objectives "
          + ", ".join(out["objectives"]))
    for note in file.notes:
        print(f"note: {note}")
    if "lookup" in out:
        lk = out["lookup"]
        print(f"lookup: {lk['signal']}; the tables hold {lk['combinations']:,} combinations "
              f"({lk['allowed']:,} allowed by the constraints)")
    if "train" in out:
        print(f"train: builder {out['train']['builder']}" + (f" on {out['train']['task']}" if out["train"]["task"] else ""))
    return 0
