"""The files of a training pool on the trusted side: the arrays it stages once for every job
(``stage_arrays``: never a validation or test label), and the files a job leaves that it keeps
(``copy_regular_file``: a regular file only, never through a link), under ``default_weights_dir``.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from pathlib import Path

import numpy as np

from evaluator.data.base import Dataset


def default_weights_dir(workdir: Path) -> Path:
    """Where final jobs' weights are kept when the pool is not told: for the runner's layout
    ``HOME/work/RUN`` (a scratch area that may be cleaned) it is ``HOME/weights/RUN``; for any
    other workdir, ``workdir/weights``."""
    workdir = Path(workdir)
    if workdir.parent.name == "work":
        return workdir.parent.parent / "weights" / workdir.name
    return workdir / "weights"


def stage_arrays(dataset: Dataset, folder: Path) -> Path:
    """Write the arrays a worker may see (training images and labels, validation and test
    images); validation and test labels never leave the trusted side."""
    folder.mkdir(parents=True, exist_ok=True)
    d = dataset
    for name, array in (("x_train", d.x_train), ("y_train", d.y_train.astype(np.int64)),
                        ("x_val", d.x_val), ("x_test", d.x_test)):
        np.save(folder / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
    return folder


class NotKept(Exception):
    """Why a job's weights file was not kept (the text goes into the metrics)."""


def copy_regular_file(source: Path, target: Path) -> tuple[str, int]:
    """Copy ``source`` to ``target`` (through a temporary name), refusing anything but a regular
    file (a link could point anywhere on the trusted side); return its SHA-256 and size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO must not block the pool
    except FileNotFoundError:
        raise NotKept(f"the worker left no weights file ({source.name})") from None
    except OSError as exc:
        raise NotKept(f"{source.name} cannot be opened as a regular file ({exc.strerror or exc}); not kept") from None
    partial = target.with_name(target.name + f".{secrets.token_hex(3)}.partial")
    digest, size = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "rb") as src:
            if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
                raise NotKept(f"{source.name} is not a regular file; not kept")
            with open(partial, "wb") as dst:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
                    dst.write(chunk)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return digest.hexdigest(), size
