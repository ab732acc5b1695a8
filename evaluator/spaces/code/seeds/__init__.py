"""Seed model files for the ``code`` search space, one per task.

Each seed is a complete candidate file (``build_model(input_shape, num_classes)``, UPPER_CASE
knobs, an optional ``CHOICES`` and a ``TRAINING`` recipe) that the code space starts from and
that evolution mutates. They are read as text on the trusted side; only the sandboxed worker
(or our own tests) import them.

- ``digits.py``: scikit-learn's 8x8 grey digits (1, 8, 8), 10 classes;
- ``cifar10.py``: CIFAR-10 (3, 32, 32), 10 classes;
- ``image.py``: any other image task (``file:...``, ``folder:...``), any (C, H, W).
"""

from __future__ import annotations

from pathlib import Path

SEEDS_DIR = Path(__file__).resolve().parent
_BY_TASK = {"digits": "digits.py", "cifar10": "cifar10.py"}
GENERIC_SEED = "image.py"


def seed_path(task: str | None) -> Path:
    """The seed file for a task name; the generic image seed for any other task or None."""
    return SEEDS_DIR / _BY_TASK.get(task or "", GENERIC_SEED)


def seed_source(task: str | None) -> str:
    """The text of the seed file for a task name (see :func:`seed_path`)."""
    return seed_path(task).read_text(encoding="utf-8")


__all__ = ["SEEDS_DIR", "GENERIC_SEED", "seed_path", "seed_source"]
