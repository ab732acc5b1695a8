"""A task's data in memory, as the trusted side holds it.

Images are ``(N, C, H, W)`` arrays of ``uint8`` or ``float32``; the network sees
``x / x_scale`` (255 for 8-bit images, 16 for the 8x8 digits). Labels are ``int64`` class
indices in ``[0, num_classes)``. Only the trusted side ever holds ``y_val`` and ``y_test``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evaluator.errors import TaskError


@dataclass(frozen=True, eq=False)
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    x_scale: float = 255.0
    source: str = ""  # where the data came from, for people
    files: tuple[Path, ...] = ()  # the files or folders the data were read from: hidden from sandboxed jobs (they hold the labels)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def input_normalisation(self) -> dict[str, Any]:
        """What the trainer does to an image before the network sees it (evaluator.job.trainer):
        ``(x / scale - mean) / std`` with the per-channel mean and standard deviation (unbiased,
        at least 1e-3) of the training split after dividing by ``scale``. Computed here, on the
        trusted side, so that exported networks and kept weights can be used on new images."""
        x, channels = self.x_train, self.x_train.shape[1]
        total, squares = np.zeros(channels), np.zeros(channels)
        for start in range(0, len(x), 1024):  # in chunks: a float copy of all of CIFAR-10 would take 1 GB
            unit = x[start:start + 1024].astype(np.float64) / self.x_scale
            total += unit.sum(axis=(0, 2, 3))
            squares += (unit * unit).sum(axis=(0, 2, 3))
        n = x.shape[0] * x.shape[2] * x.shape[3]
        mean = total / n
        std = np.sqrt(np.maximum(squares - n * mean * mean, 0.0) / max(n - 1, 1))
        return {"scale": float(self.x_scale), "mean": [float(m) for m in mean],
                "std": [float(s) for s in np.maximum(std, 1e-3)]}

    def check(self) -> "Dataset":
        """Raise TaskError naming the first array that is malformed; return self otherwise."""
        if len(self.classes) < 2:
            raise TaskError(f"data set {self.name}: {len(self.classes)} class(es); need at least 2",
                            hint="a classification task needs two or more classes")
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            where = f"data set {self.name}: x_{split}"
            if x.ndim != 4:
                raise TaskError(f"{where} has shape {x.shape}; expected (N, C, H, W)",
                                hint="images need a channel axis: add one with x[:, None] for grey images")
            if x.shape[1:] != self.x_train.shape[1:]:
                raise TaskError(f"{where} has images of shape {x.shape[1:]}, x_train has {self.x_train.shape[1:]}",
                                hint="all splits need images of one shape")
            if x.dtype not in (np.uint8, np.float32):
                raise TaskError(f"{where} has dtype {x.dtype}; expected uint8 or float32", hint="convert the array")
            if y.ndim != 1 or len(y) != len(x):
                raise TaskError(f"data set {self.name}: y_{split} has shape {y.shape} for {len(x)} images",
                                hint=f"y_{split} needs one class index per image")
            if len(y) == 0:
                raise TaskError(f"data set {self.name}: the {split} split is empty", hint="every split needs images")
            if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= self.num_classes:
                raise TaskError(
                    f"data set {self.name}: y_{split} must hold class indices in [0, {self.num_classes})",
                    hint="labels are integers 0..num_classes-1",
                )
        return self
