"""`agent report RUN`: the run as a self-contained HTML page with figures, plus a Markdown summary."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.commands.options import console as make_console, print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a run id, or 'latest'")
    parser.add_argument("--out", help="a folder, or a file ending in .html (default: $AGENT_HOME/reports/RUN.html); "
                                      "the Markdown summary is written beside it (.md)")
    parser.add_argument("--json", action="store_true",
                        help='print one JSON object on stdout: {"run_id", "html", "markdown", "figures"}')


def run(args: argparse.Namespace) -> int:
    from agent.api import report

    out = report(args.run, out=args.out, home=args.home)
    if args.json:
        print_json(out)
        return 0
    text = Path(out["markdown"]).read_text(encoding="utf-8")
    console = make_console()
    if console.is_terminal:
        from rich.markdown import Markdown

        console.print(Markdown(text))
        console.print(f"report: {out['html']}\nmarkdown: {out['markdown']}", highlight=False, soft_wrap=True)
    else:  # piped: the Markdown as it is, then where the files are
        sys.stdout.write(text.rstrip("\n") + "\n\n")
        sys.stdout.write(f"report: {out['html']}\nmarkdown: {out['markdown']}\n")
    return 0
