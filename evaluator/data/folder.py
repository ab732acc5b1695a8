"""``folder:DIR``: your own images, one sub-folder per class (``DIR/cat/001.png``, ...).

Class names are the sub-folder names in sorted order. Every file that Pillow can read is
an image (png, jpg, bmp, gif, webp, tiff, ...); hidden files are skipped. Images are
converted to RGB, or kept grey when every image is grey, and resized to the most common
size among them (bilinear). The split is 60/20/20 (train/validation/test), stratified and
seeded, so each class needs at least 3 images.
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np

from evaluator.data.base import Dataset
from evaluator.data.splits import stratified_split
from evaluator.errors import TaskError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
MAX_SIDE = 512  # larger images are an error: this task trains on small images held in memory


def load_folder(root: Path, split_seed: int = 0) -> Dataset:
    from PIL import Image, UnidentifiedImageError

    root = Path(root).expanduser()
    layout = f"put one sub-folder per class in it: {root}/<class>/<image>.png"
    if not root.is_dir():
        raise TaskError(f"folder:{root}: no such folder", hint=layout)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise TaskError(f"folder:{root}: found {len(classes)} class folder(s) ({', '.join(classes) or 'none'}); need 2 or more",
                        hint=layout)
    files: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        found = sorted(p for p in (root / name).rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(root).parts))
        if len(found) < 3:
            raise TaskError(f"folder:{root}: class {name!r} has {len(found)} image(s); need at least 3 for a 60/20/20 split",
                            hint=f"add images to {root / name} (extensions: {', '.join(sorted(IMAGE_SUFFIXES))})")
        files += [(p, label) for p in found]

    images = []
    for path, _ in files:
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
    x = np.stack(arrays)
    y = np.array([label for _, label in files], dtype=np.int64)
    train, val, test = stratified_split(y, (0.6, 0.2, 0.2), split_seed)
    resized = sum(n for size, n in sizes.items() if size != (width, height))
    source = (f"{root}: {len(y)} images, {len(classes)} classes, {mode} {width}x{height}"
              + (f" ({resized} resized)" if resized else "") + f", 60/20/20 split (seed {split_seed})")
    return Dataset(name=f"folder:{root.name}", x_train=x[train], y_train=y[train], x_val=x[val], y_val=y[val],
                   x_test=x[test], y_test=y[test], classes=tuple(classes), x_scale=255.0, source=source).check()
