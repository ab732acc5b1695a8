"""``file:PATH.npz``: your own arrays.

The file holds ``x_train, y_train, x_test, y_test`` and optionally ``x_val, y_val`` (when
absent, 20% of the training images, stratified and seeded, become the validation split) and
``classes`` (class names, one per label). Images are (N, C, H, W), or (N, H, W) for one
channel, or (N, H, W, C) with C in 1, 3, 4 (moved to channels-first). ``uint8`` images are
seen as ``x / 255``; other numeric types are stored as float32 and used as they are (the
trainer normalises each channel with the training split's mean and standard deviation).
Labels are integers ``0..K-1``, or any values (numbers or strings), which are mapped to
``0..K-1`` in sorted order. The file is read with ``allow_pickle=False``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from evaluator.data.base import Dataset
from evaluator.data.splits import VALIDATION_FRACTION, stratified_split
from evaluator.errors import TaskError

REQUIRED = ("x_train", "y_train", "x_test", "y_test")
OPTIONAL = ("x_val", "y_val", "classes")


def load_npz(path: Path, split_seed: int = 0) -> Dataset:
    path = Path(path).expanduser()
    fix = f"save it with numpy.savez({path.name!r}, x_train=..., y_train=..., x_test=..., y_test=...) (x_val, y_val optional)"
    if not path.is_file():
        raise TaskError(f"file:{path}: no such file", hint=f"give the path of an .npz file; {fix}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        why = "it holds Python objects (pickles), which are not read" if "pickle" in str(exc) else str(exc)
        raise TaskError(f"file:{path}: not a readable .npz file: {why}", hint=fix) from None
    missing = [name for name in REQUIRED if name not in arrays]
    if missing:
        raise TaskError(f"file:{path}: missing array(s) {', '.join(missing)} (it has {', '.join(sorted(arrays)) or 'none'})",
                        hint=fix)
    unknown = sorted(set(arrays) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise TaskError(f"file:{path}: unexpected array(s) {', '.join(unknown)}",
                        hint="keep only " + ", ".join(REQUIRED + OPTIONAL) + " in the file")
    if ("x_val" in arrays) != ("y_val" in arrays):
        raise TaskError(f"file:{path}: has {'x_val' if 'x_val' in arrays else 'y_val'} without the other",
                        hint="give both x_val and y_val, or neither (then 20% of the training split is used)")

    where = f"file:{path}"
    xs = {name: _images(arrays[name], f"{where}: {name}") for name in arrays if name.startswith("x_")}
    uint8 = all(x.dtype == np.uint8 for x in xs.values())
    if not uint8:
        xs = {k: v.astype(np.float32) for k, v in xs.items()}
    ys, classes = _labels({k: v for k, v in arrays.items() if k.startswith("y_")}, arrays.get("classes"), where)
    for split in xs:
        label = "y_" + split[2:]
        if len(ys[label]) != len(xs[split]):
            raise TaskError(f"{where}: {split} has {len(xs[split])} images and {label} has {len(ys[label])} labels",
                            hint=f"give one label per image in {label}")

    source = f"{path}"
    if "x_val" not in xs:
        train, val = stratified_split(ys["y_train"], (1 - VALIDATION_FRACTION, VALIDATION_FRACTION), split_seed)
        if len(train) == 0 or len(val) == 0:
            raise TaskError(f"{where}: {len(ys['y_train'])} training images are too few to split off a validation set",
                            hint="add images, or give x_val and y_val")
        xs["x_val"], ys["y_val"] = xs["x_train"][val], ys["y_train"][val]
        xs["x_train"], ys["y_train"] = xs["x_train"][train], ys["y_train"][train]
        source += f"; validation: {VALIDATION_FRACTION:.0%} of the training images (seed {split_seed})"
    data = Dataset(name=f"file:{path.name}", **xs, **ys, classes=classes, x_scale=255.0 if uint8 else 1.0, source=source,
                   files=(Path(path),))
    return data.check()


def _images(x: np.ndarray, where: str) -> np.ndarray:
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating) or x.dtype == bool):
        raise TaskError(f"{where} has dtype {x.dtype}; images must be numbers", hint="convert the array to uint8 or float32")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] not in (1, 3, 4) and x.shape[3] in (1, 3, 4):
        x = np.moveaxis(x, 3, 1)  # (N, H, W, C) -> (N, C, H, W)
    elif x.ndim != 4:
        raise TaskError(f"{where} has shape {x.shape}; expected (N, C, H, W), (N, H, W, C) or (N, H, W)",
                        hint="store one image per row along the first axis")
    if x.dtype != np.uint8 and np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise TaskError(f"{where} holds NaN or infinite values", hint="clean the images before saving them")
    return np.ascontiguousarray(x if x.dtype == np.uint8 else x.astype(np.float32))


def _labels(ys: dict[str, np.ndarray], names: np.ndarray | None, where: str) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    for name, y in ys.items():
        if y.ndim != 1:
            raise TaskError(f"{where}: {name} has shape {y.shape}; expected one label per image (N,)",
                            hint="store class indices, not one-hot rows: y.argmax(axis=1)")
        if np.issubdtype(y.dtype, np.floating) and not np.all(np.mod(y, 1) == 0):
            raise TaskError(f"{where}: {name} holds non-integer values", hint="labels are class indices or names")
    values = np.unique(np.concatenate([y.astype(str) if y.dtype.kind in "US" else y for y in ys.values()]))
    if values.dtype.kind in "iuf" and np.array_equal(values, np.arange(len(values))):
        mapped = {k: y.astype(np.int64) for k, y in ys.items()}
    else:  # any other labels: index them in sorted order
        mapped = {k: np.searchsorted(values, y.astype(values.dtype)).astype(np.int64) for k, y in ys.items()}
    unseen = set(np.unique(mapped["y_test"])) - set(np.unique(mapped["y_train"]))
    if unseen:
        raise TaskError(f"{where}: y_test has classes that y_train lacks: {sorted(values[list(unseen)].tolist())}",
                        hint="every class needs training images")
    if names is not None:
        if names.ndim != 1 or len(names) != len(values):
            raise TaskError(f"{where}: classes has {names.size} names for {len(values)} classes",
                            hint="give one name per class, in label order")
        classes = tuple(str(n) for n in names.tolist())
    else:
        classes = tuple(str(v) for v in values.tolist())
    return mapped, classes
