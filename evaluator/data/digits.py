"""``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images), offline.

Pixel values are 0..16, so the network sees ``x / 16``. The split is 60/20/20
(train/validation/test), stratified and seeded; the default seed is fixed, so every run on
every machine sees the same split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evaluator.data.base import Dataset
from evaluator.data.splits import stratified_split
from evaluator.errors import TaskError


def load_digits_dataset(split_seed: int = 0) -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise TaskError("task digits needs scikit-learn, which is not installed",
                        hint="pip install scikit-learn (make install includes it)") from None
    bunch = load_digits()
    x = np.asarray(bunch.images, dtype=np.float32)[:, None]  # (1797, 1, 8, 8), values 0..16
    y = np.asarray(bunch.target, dtype=np.int64)
    train, val, test = stratified_split(y, (0.6, 0.2, 0.2), split_seed)
    return Dataset(
        name="digits", x_train=x[train], y_train=y[train], x_val=x[val], y_val=y[val], x_test=x[test],
        y_test=y[test], classes=tuple(str(c) for c in range(10)), x_scale=16.0,
        source=f"scikit-learn load_digits, 60/20/20 split (seed {split_seed})", files=bundled_data_files(),
    ).check()


def bundled_data_files() -> tuple[Path, ...]:
    """scikit-learn's bundled data sets (the digits file among them: it holds every label)."""
    import sklearn

    return (Path(sklearn.__file__).parent / "datasets" / "data",)
