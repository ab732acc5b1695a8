"""`agent export CANDIDATE`: the candidate as a standalone deliverable (model.py with torch alone,
recipe.json, the kept weights; model.onnx with --onnx)."""

from __future__ import annotations

import argparse
import sys

from agent.commands.options import console as make_console, print_json

DESCRIBE = {
    "model.py": "the network, torch alone: build_model(), INPUT_SHAPE, NUM_CLASSES, RECIPE; `python model.py` runs it",
    "candidate_model.py": "the candidate's own model file, unchanged (model.py wraps it)",
    "recipe.json": "the training recipe and the results, as JSON",
    "weights.pt": "trained weights (state_dict): load_weights(build_model())",
    "model.onnx": "the network for ONNX runtimes (input images, output logits), checked with onnx.checker",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("candidate", help="a candidate id (from `agent history --run RUN`)")
    parser.add_argument("--out", help="the folder to write (default: $AGENT_HOME/exports/<candidate id>); it must be "
                                      "new, empty, or an earlier export, which is replaced")
    parser.add_argument("--onnx", action="store_true", help="also write model.onnx (needs the onnx extra: "
                                                            "pip install 'archagent[onnx]')")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def run(args: argparse.Namespace) -> int:
    from agent.api import export

    result = export(args.candidate, out=args.out, onnx=args.onnx, home=args.home)
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print_json(result)
        return 0
    console = make_console()
    console.print(f"exported {result['candidate_id']} ({result['space']}, status {result['status']}) to "
                  f"[bold]{result['out']}[/]", highlight=False)
    for name in result["files"]:
        text = DESCRIBE.get(name, "")
        if name == "weights.pt" and result["weights_seed"] is not None:
            text += f"; the final retraining with seed {result['weights_seed']}"
        console.print(f"  {name:<20}{text}", highlight=False)
    if result["params"] is not None:
        console.print(f"parameters: {result['params']:,}", highlight=False)
    if result["weights"] is None:
        console.print(f"no weights: {result['weights_note'] or 'none were kept'}", highlight=False)
    return 0
