"""``folder:DIR``: your own images, one sub-folder per class (``DIR/cat/001.png``, ...).

Two layouts:

- ``DIR/<class>/<image>``: split 60/20/20 (train/validation/test), stratified and seeded, so
  each class needs at least 3 images.
- ``DIR/train/<class>/<image>`` and ``DIR/test/<class>/<image>``, optionally with
  ``DIR/val/`` (or ``valid/``, ``validation/``): your splits as they are; without a validation
  folder a stratified 20% of the training images becomes the validation split.

Class names are the sub-folder names in sorted order. Every file with an image extension is
read with Pillow (png, jpg, bmp, gif, webp, tiff, ppm, pgm); hidden files and other files are
skipped. Images are converted to RGB, or kept grey when every image is grey, and resized to
the most common size among them (bilinear).
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np

from evaluator.data.base import Dataset
from evaluator.data.splits import VALIDATION_FRACTION, stratified_split
from evaluator.errors import TaskError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
MAX_SIDE = 512  # larger images are an error: this task trains on small images held in memory
SPLIT_FOLDERS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def _visible_dirs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_of(folder: Path, root: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def load_folder(root: Path, split_seed: int = 0) -> Dataset:
    root = Path(root).expanduser()
    layout = f"put one sub-folder per class in it ({root}/<class>/<image>.png), or train/ and test/ folders that do"
    if not root.is_dir():
        raise TaskError(f"folder:{root}: no such folder", hint=layout)
    top = _visible_dirs(root)
    presplit = bool(top) and all(name.lower() in SPLIT_FOLDERS for name in top)
    if presplit:
        splits = {SPLIT_FOLDERS[name.lower()]: root / name for name in top}
        if "train" not in splits or "test" not in splits:
            raise TaskError(f"folder:{root}: has split folders {', '.join(top)} but not both train/ and test/",
                            hint="add the missing split folder, or put the class folders directly in " + str(root))
        classes = _visible_dirs(splits["train"])
        for split, folder in splits.items():
            unknown = sorted(set(_visible_dirs(folder)) - set(classes))
            if unknown:
                raise TaskError(f"folder:{root}: {folder.name}/ has classes that train/ lacks: {', '.join(unknown)}",
                                hint="every class needs a folder of training images in train/")
    else:
        splits = {"all": root}
        classes = top
    if len(classes) < 2:
        where = splits.get("train", root)
        raise TaskError(f"folder:{where}: found {len(classes)} class folder(s) ({', '.join(classes) or 'none'}); need 2 or more",
                        hint=layout)

    minimum = 3 if not presplit else (1 if "val" in splits else 2)
    files: dict[str, list[tuple[Path, int]]] = {}
    for split, folder in splits.items():
        files[split] = []
        for label, name in enumerate(classes):
            found = _images_of(folder / name, root) if (folder / name).is_dir() else []
            if split in ("all", "train") and len(found) < minimum:
                raise TaskError(f"folder:{root}: class {name!r} has {len(found)} image(s) in {folder}; need at least "
                                f"{minimum} to make the splits",
                                hint=f"add images to {folder / name} (extensions: {', '.join(sorted(IMAGE_SUFFIXES))})")
            files[split] += [(p, label) for p in found]
        if not files[split]:
            raise TaskError(f"folder:{root}: no images in {folder}", hint=layout)

    order = [(split, path, label) for split, items in files.items() for path, label in items]
    x, size, mode, resized = _read_images([path for _, path, _ in order], root)
    y = np.array([label for _, _, label in order], dtype=np.int64)
    split_of = np.array([split for split, _, _ in order])
    parts = {split: np.flatnonzero(split_of == split) for split in files}
    if not presplit:
        train, val, test = (parts["all"][i] for i in stratified_split(y, (0.6, 0.2, 0.2), split_seed))
        how = f"60/20/20 split (seed {split_seed})"
    else:
        train, test = parts["train"], parts["test"]
        if "val" in parts:
            val = parts["val"]
            how = "your train/val/test folders"
        else:
            keep, held = stratified_split(y[train], (1 - VALIDATION_FRACTION, VALIDATION_FRACTION), split_seed)
            train, val = train[keep], train[held]
            how = f"your train/test folders, validation {VALIDATION_FRACTION:.0%} of train (seed {split_seed})"
    source = (f"{root}: {len(y)} images, {len(classes)} classes, {mode} {size[0]}x{size[1]}"
              + (f" ({resized} resized)" if resized else "") + f", {how}")
    return Dataset(name=f"folder:{root.name}", x_train=x[train], y_train=y[train], x_val=x[val], y_val=y[val],
                   x_test=x[test], y_test=y[test], classes=tuple(classes), x_scale=255.0, source=source,
                   files=(Path(root),)).check()


def _read_images(paths: list[Path], root: Path) -> tuple[np.ndarray, tuple[int, int], str, int]:
    """(N, C, H, W) uint8 at the most common size; that size (W, H), the mode and how many were resized."""
    from PIL import Image, UnidentifiedImageError

    images = []
    for path in paths:
        try:
            with Image.open(path) as im:
                im.load()
                images.append(im.convert("RGB") if im.mode not in ("L", "RGB") else im.copy())
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise TaskError(f"folder:{root}: cannot read image {path}: {exc}",
                            hint="remove or replace the file (or rename it with a non-image extension)") from None
    sizes = collections.Counter(im.size for im in images)
    (width, height), _ = sizes.most_common(1)[0]
    if max(width, height) > MAX_SIDE:
        raise TaskError(f"folder:{root}: the images are {width}x{height}; at most {MAX_SIDE} pixels a side is supported",
                        hint="resize the images first (for example to 64x64)")
    mode = "L" if all(im.mode == "L" for im in images) else "RGB"
    arrays = []
    for im in images:
        im = im.convert(mode) if im.mode != mode else im
        if im.size != (width, height):
            im = im.resize((width, height), Image.Resampling.BILINEAR)
        a = np.asarray(im, dtype=np.uint8)
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))  # (C, H, W)
    resized = sum(n for size, n in sizes.items() if size != (width, height))
    return np.stack(arrays), (width, height), mode, resized
