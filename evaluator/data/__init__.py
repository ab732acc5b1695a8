"""Data for the training tasks, loaded on the trusted side.

``load_dataset(name, cache_dir=..., data_dir=...)`` returns a checked
:class:`~evaluator.data.base.Dataset` for ``digits``, ``cifar10``, ``file:PATH.npz`` or
``folder:DIR``. Errors are :class:`~evaluator.errors.TaskError` naming where the loader
looked and how to supply the data.
"""

from __future__ import annotations

from pathlib import Path

from evaluator.data.base import Dataset
from evaluator.errors import TaskError

__all__ = ["Dataset", "load_dataset"]


def load_dataset(name: str, *, cache_dir: Path, data_dir: Path | None = None, split_seed: int = 0) -> Dataset:
    """Load a training task's data. ``split_seed`` fixes the train/validation/test split."""
    if name == "digits":
        from evaluator.data.digits import load_digits_dataset

        return load_digits_dataset(split_seed)
    if name == "cifar10":
        from evaluator.data.cifar10 import load_cifar10

        return load_cifar10(Path(cache_dir), data_dir, split_seed=split_seed)
    if name.startswith("file:"):
        from evaluator.data.arrays import load_npz

        return load_npz(Path(name[len("file:"):]), split_seed)
    if name.startswith("folder:"):
        from evaluator.data.folder import load_folder

        return load_folder(Path(name[len("folder:"):]), split_seed)
    raise TaskError(f"no data loader for task {name!r}",
                    hint="training tasks are digits, cifar10, file:PATH.npz and folder:DIR")
