"""The `agent` command line: a registry of commands, one error wrapper, `--json` everywhere.

Each command lives in ``agent/commands/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their command runs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from agent.commands.options import JSON_OUT
from evaluator.errors import ArchAgentError


@dataclass(frozen=True)
class CommandInfo:
    module: str
    summary: str


COMMANDS: dict[str, CommandInfo] = {
    "search": CommandInfo("agent.commands.search", "run a bounded architecture search"),
    "loop": CommandInfo("agent.commands.loop", "the overnight loop: search until a time, budget or cost limit; "
                                               "crash-safe, --resume continues a run"),
    "chat": CommandInfo("agent.commands.chat",
                        "talk with the agent about a run: questions, directions, proposals to approve"),
    "eval": CommandInfo("agent.commands.evaluate", "evaluate one candidate (an nb201 arch string) and record it"),
    "history": CommandInfo("agent.commands.history", "list runs, or one run's candidates"),
    "show": CommandInfo("agent.commands.show", "show one candidate: spec, metrics, curve, status, error"),
    "report": CommandInfo("agent.commands.report", "write a self-contained HTML report of a run, with figures"),
    "export": CommandInfo("agent.commands.export", "write a candidate as a standalone model.py (torch only), recipe and weights"),
    "sql": CommandInfo("agent.commands.sql", "run one read-only SQL query on the history (table, --json or --csv)"),
    "restore": CommandInfo("agent.commands.restore", "put back a snapshot of the history (--list lists them)"),
    "tasks": CommandInfo("agent.commands.catalog", "list the tasks"),
    "spaces": CommandInfo("agent.commands.catalog", "describe the search spaces and their proposal schemas"),
    "doctor": CommandInfo("agent.commands.doctor", "print versions, device, home and what is available"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's default, plus the place to look for help
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n  hint: `{self.prog} --help` lists the options\n")


def build_parser() -> argparse.ArgumentParser:
    from agent.version import __version__

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", help="history and artifacts folder (default: $AGENT_HOME, agent.toml, ./runs)")
    common.add_argument("--debug", action="store_true", help="show the full traceback of an internal error")

    parser = _Parser(prog="agent", description="An LLM agent that designs neural network architectures.")
    parser.add_argument("--version", action="version", version=f"archagent {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, info in COMMANDS.items():
        cmd = sub.add_parser(name, help=info.summary, description=info.summary, parents=[common])
        cmd.set_defaults(_module=info.module)
        importlib.import_module(info.module).add_arguments(cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    previous = signal.signal(signal.SIGTERM, _terminate)  # `kill PID` stops as cleanly as Ctrl-C
    json_mode = bool(getattr(args, "json", False))
    stdout = sys.stdout
    if json_mode:  # stdout is the JSON object's alone (agent.commands.options.print_json)
        JSON_OUT.append(stdout)
        sys.stdout = sys.stderr
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except Terminated:
        _forget_unhandled_interrupt()
        print("terminated", file=sys.stderr)
        return 143
    except ArchAgentError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        _forget_unhandled_interrupt()
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`agent history --json | head`): not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stdout.fileno())
        return 0
    except Exception as exc:  # an internal error: say so, and how to see more
        if getattr(args, "debug", False):
            from rich.console import Console

            Console(stderr=True).print_exception()
        else:
            print(f"internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
            print("  hint: run again with --debug for the traceback, and report it with that output", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        if json_mode:
            JSON_OUT.pop()
            sys.stdout = stdout


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every cleanup (workers killed, the run marked
    ``interrupted``, in-flight candidates re-queued) runs the same way."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def _forget_unhandled_interrupt() -> None:
    """Keep the exit status main returns after a Ctrl-C. CPython kills itself with SIGINT at exit,
    whatever the status, when a KeyboardInterrupt once came out of code run through PyRun_*
    (pybind11's eval and exec, which C extensions call), even though main caught it later: seen
    as a -2 exit instead of 130 in about 1 of 10 test-suite runs. Any code run through PyRun_*
    clears that flag, so run some."""
    import ctypes

    try:
        ctypes.pythonapi.PyRun_SimpleString(b"pass")
    except (AttributeError, OSError):  # an interpreter without the C API: nothing to clear
        pass


if __name__ == "__main__":
    sys.exit(main())
