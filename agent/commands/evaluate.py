"""`agent eval`: evaluate one candidate exactly as a search would, and record it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from agent.commands.options import TRAINING_FLAGS, add_task_data, print_json, settings_flags
from evaluator.errors import UserInputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_task_data(parser)
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--arch", help="an nb201 arch string, e.g. '|nor_conv_3x3~0|+|...|+|...|'")
    what.add_argument("--spec", help="a spec as a JSON object (the space's proposal schema)")
    what.add_argument("--file", help="a model file defining build_model(input_shape, num_classes) (the code space; "
                                     "it runs only in the sandbox)")
    parser.add_argument("--final", action="store_true", help="also report the test accuracy (the final report)")


def run(args: argparse.Namespace) -> int:
    from agent.config import load_settings
    from agent.engine.evaluate_one import evaluate_one

    if args.arch is None and args.spec is None and args.file is None:
        raise UserInputError("nothing to evaluate", hint="pass --arch ARCH_STRING, --spec JSON or --file MODEL.py")
    spec = args.arch
    if args.file is not None:
        if args.space not in (None, "code"):
            raise UserInputError(f"--file evaluates a model file (the code space), not a {args.space} spec",
                                 hint="drop --space, or pass --space code")
        args.space = "code"
        spec = {"source": _read_model_file(Path(args.file))}
    if args.spec is not None:
        try:
            spec = json.loads(args.spec)
        except json.JSONDecodeError as exc:
            raise UserInputError(f"--spec is not valid JSON: {exc}", hint="pass a JSON object, quoted for the shell") from None
    settings = load_settings(settings_flags(args, "task", "space", "space_file", "tables", "benchmark_dir", "signal_table", "final_table",
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


MAX_FILE_BYTES = 1_000_000  # far above the code space's limit: the space says what the limit is


def _read_model_file(path: Path) -> str:
    try:
        data = path.read_bytes()[:MAX_FILE_BYTES]
    except OSError as exc:
        raise UserInputError(f"cannot read --file {path}: {exc.strerror or exc}",
                             hint="pass the path of a Python file that defines build_model(input_shape, num_classes)") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserInputError(f"--file {path} is not UTF-8 text (byte {exc.start})", hint="save the model file as UTF-8") from None
