"""Seeded, stratified splits: the same data and seed always give the same split."""

from __future__ import annotations

import numpy as np

VALIDATION_FRACTION = 0.2  # of the training images, when a data set brings no validation split


def stratified_split(labels: np.ndarray, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Split indices ``0..len(labels)-1`` into ``len(fractions)`` parts, class by class.

    Each class is shuffled with ``seed`` and cut by the fractions (which sum to 1), rounding
    so that every part gets at least one image of each class that has enough images. The
    returned index arrays are sorted, so the order of a split follows the source order.
    """
    if abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions={fractions} must sum to 1")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        idx = idx[rng.permutation(len(idx))]
        bounds = np.round(np.cumsum(fractions) * len(idx)).astype(int)
        if len(idx) >= len(fractions):  # no empty part for a class that can fill them all
            for i in range(len(bounds) - 1):
                low = (bounds[i - 1] if i else 0) + 1
                high = len(idx) - (len(fractions) - 1 - i)
                bounds[i] = min(max(bounds[i], low), high)
        start = 0
        for part, end in zip(parts, bounds):
            part.append(idx[start:end])
            start = end
    return [np.sort(np.concatenate(p)) for p in parts]
