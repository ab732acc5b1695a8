"""`agent eval`: evaluate one candidate exactly as a search would, and record it."""

from __future__ import annotations

import argparse
import json

from agent.commands.options import TRAINING_FLAGS, add_task_data, print_json, settings_flags
from evaluator.errors import UserInputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_task_data(parser)
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--arch", help="an nb201 arch string, e.g. '|nor_conv_3x3~0|+|...|+|...|'")
    what.add_argument("--spec", help="a spec as a JSON object (the space's proposal schema)")
    parser.add_argument("--final", action="store_true", help="also report the test accuracy (the final report)")


def run(args: argparse.Namespace) -> int:
    from agent.config import load_settings
    from agent.engine.runner import evaluate_one

    if args.arch is None and args.spec is None:
        raise UserInputError("nothing to evaluate", hint="pass --arch ARCH_STRING or --spec JSON")
    spec = args.arch
    if args.spec is not None:
        try:
            spec = json.loads(args.spec)
        except json.JSONDecodeError as exc:
            raise UserInputError(f"--spec is not valid JSON: {exc}", hint="pass a JSON object, quoted for the shell") from None
    settings = load_settings(settings_flags(args, "task", "space", "benchmark_dir", "signal_table", "final_table",
                                            *TRAINING_FLAGS)).settings
    out = evaluate_one(settings, spec, final=args.final)
    code = 0 if out["status"] == "ok" else 1
    if args.json:
        print_json(out)
        return code
    val = f"{out['val_accuracy']:.4f}" if out["val_accuracy"] is not None else "n/a"
    print(f"{out['candidate_id']}: {out['status']}, validation accuracy {val} at {out['fidelity']:g} epochs")
    if out.get("error"):
        print(f"error: {out['error']}")
    if "test_accuracy" in out:
        print(f"test accuracy {out['test_accuracy']:.4f} ({out['test_source']})")
    return code
