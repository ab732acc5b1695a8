"""`agent loop`: the overnight loop. Every `agent search` flag, plus wall-clock limits given as
a duration (--hours) or a time of day (--until), and --resume to continue a run after a crash.

It stops cleanly at whichever limit comes first (evaluations, wall time, device seconds, LLM
dollars), then retrains the best on the test split as a search does, and writes the run's HTML report
(`agent report`) for the morning. A loop killed at any
moment (kill -9, a power cut) continues with `agent loop --resume RUN`: nothing recorded is
lost and nothing is evaluated twice (agent/engine/resume.py).
"""

from __future__ import annotations

import argparse
from datetime import datetime, time as clock, timedelta, timezone

from agent.commands import search
from agent.commands.options import positive_float
from agent.engine.state import UNBOUNDED_BUDGET
from evaluator.errors import UserInputError

LOOP_RECHECK_EVERY = 10  # a night's best deserves more than one training seed (unless --recheck-every says otherwise)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    search.add_arguments(parser)
    limits = parser.add_argument_group("overnight limits")
    limits.add_argument("--hours", type=positive_float, metavar="H", help="stop after H hours of wall time")
    limits.add_argument("--until", metavar="HH:MM",
                        help="stop at this local time (today, or tomorrow if it has passed)")


def until_time(text: str, now: datetime | None = None) -> datetime:
    """HH:MM local time -> the next such moment, in UTC."""
    try:
        at = clock.fromisoformat(text)
    except ValueError:
        raise UserInputError(f"--until {text!r} is not a time of day", hint="give it as HH:MM, e.g. --until 07:30") from None
    now = now or datetime.now().astimezone()
    moment = now.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
    if moment <= now:
        moment += timedelta(days=1)
    return moment.astimezone(timezone.utc)


def run(args: argparse.Namespace) -> int:
    if args.hours is not None and args.until is not None:
        raise UserInputError("--hours and --until both set the loop's end", hint="give one of them")
    if args.minutes is not None and (args.hours is not None or args.until is not None):
        raise UserInputError("--minutes and --hours/--until both set the loop's end", hint="give one of them")
    until = None
    if args.hours is not None:
        until = datetime.now(timezone.utc) + timedelta(hours=args.hours)
    elif args.until is not None:
        until = until_time(args.until)
    if args.budget is None and args.resume is None and (until is not None or args.minutes is not None):
        args.budget = UNBOUNDED_BUDGET  # time is the limit
    if args.recheck_every is None and args.resume is None:
        args.recheck_every = LOOP_RECHECK_EVERY
    return search.run(args, until=until, report=True)
