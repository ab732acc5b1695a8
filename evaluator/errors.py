"""Errors a person can act on.

Every error the project raises for bad input carries the offending input and a hint that
says how to fix it. This module imports nothing from the project, so every layer can use it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ArchAgentError(Exception):
    """Base class: ``message`` says what is wrong, ``hint`` says what to do about it."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class UserInputError(ArchAgentError):
    """Bad input from a person: a flag, a config file, a task name, a table, a spec."""

    exit_code = 2


class ConfigError(UserInputError):
    """A bad value in flags, environment or agent.toml."""


class TaskError(UserInputError):
    """An unknown task or missing task data."""


class TableError(UserInputError):
    """A benchmark table that is missing or malformed."""


class SpecError(UserInputError):
    """A candidate spec that does not fit its search space (also raised for LLM output)."""

    def __init__(self, message: str, hint: str | None = None, field: str | None = None) -> None:
        super().__init__(message, hint)
        self.field = field


class NotFoundError(UserInputError):
    """A run or candidate id that the history does not hold."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest choice, or '' when none is close.

    A choice that contains the word whole ('cifar100' in 'nb201-cifar100') comes first.
    """
    choices = list(choices)
    containing = [c for c in choices if word and word.lower() in c.lower()]
    close = difflib.get_close_matches(word, containing or choices, n=1, cutoff=0.3 if containing else 0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
