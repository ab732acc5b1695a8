"""``cifar10``: CIFAR-10 in its standard python-pickle batch format, downloaded once.

Where the data come from, in order:

1. ``data_dir`` when given (``--data-dir``): a folder holding ``cifar-10-batches-py/``, or
   that folder itself, or ``cifar-10-python.tar.gz`` (verified, then unpacked beside it).
   Nothing is downloaded when ``data_dir`` is given.
2. The cache ``<cache_dir>/cifar10/`` (``$AGENT_HOME/data/cifar10``): the unpacked batches,
   or the archive.
3. The download from the dataset's home page, checked against its published MD5 before it is
   unpacked; a partial or corrupt download is never kept.

The 50,000 training images are split 45,000 / 5,000 (train / validation), stratified and
seeded; the 10,000 test images are the test split. Images stay ``uint8`` (N, 3, 32, 32).

The batches are pickles. They are read with an unpickler that builds only dicts, lists,
strings, bytes and numpy arrays, so a tampered file cannot run code.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from evaluator.data.base import Dataset
from evaluator.data.splits import stratified_split
from evaluator.errors import TaskError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"  # published beside the archive
ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
VALIDATION_IMAGES = 5000
DEFAULT_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def load_cifar10(cache_dir: Path, data_dir: Path | None = None, *, split_seed: int = 0, url: str = URL,
                 md5: str = MD5, download: bool = True) -> Dataset:
    folder = locate(cache_dir, data_dir, url=url, md5=md5, download=download)
    x_all, y_all = [], []
    for name in TRAIN_BATCHES:
        x, y = read_batch(folder / name)
        x_all.append(x)
        y_all.append(y)
    x_pool, y_pool = np.concatenate(x_all), np.concatenate(y_all)
    x_test, y_test = read_batch(folder / TEST_BATCH)
    fraction = min(0.5, VALIDATION_IMAGES / len(y_pool))
    train, val = stratified_split(y_pool, (1 - fraction, fraction), split_seed)
    return Dataset(
        name="cifar10", x_train=x_pool[train], y_train=y_pool[train], x_val=x_pool[val], y_val=y_pool[val],
        x_test=x_test, y_test=y_test, classes=read_classes(folder), x_scale=255.0,
        source=f"CIFAR-10 from {folder}, {len(train)}/{len(val)}/{len(y_test)} split (seed {split_seed})",
        files=(Path(folder), Path(cache_dir)),
    ).check()


# -- finding or fetching the batches ---------------------------------------------------

def _batches_in(folder: Path) -> Path | None:
    for candidate in (folder / FOLDER, folder):
        if all((candidate / name).is_file() for name in TRAIN_BATCHES + (TEST_BATCH,)):
            return candidate
    return None


def find_local(cache_dir: Path, data_dir: Path | None) -> Path | None:
    """Where the batches or the archive already are (``data_dir`` first, then the cache), or None.
    Reads nothing, downloads nothing: for ``agent doctor``."""
    for folder in ([Path(data_dir).expanduser()] if data_dir is not None else []) + [Path(cache_dir).expanduser() / "cifar10"]:
        if (found := _batches_in(folder)) is not None:
            return found
        if (folder / ARCHIVE).is_file():
            return folder / ARCHIVE
    return None


def locate(cache_dir: Path, data_dir: Path | None, *, url: str = URL, md5: str = MD5, download: bool = True) -> Path:
    """The folder with the batches, unpacking or downloading the archive when needed."""
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        if (found := _batches_in(data_dir)) is not None:
            return found
        if (data_dir / ARCHIVE).is_file():
            return _unpack(data_dir / ARCHIVE, data_dir, md5)
        raise TaskError(
            f"cifar10: no CIFAR-10 batches in --data-dir {data_dir} (looked for {FOLDER}/ with "
            f"{', '.join(TRAIN_BATCHES[:1])}..{TRAIN_BATCHES[-1]} and {TEST_BATCH}, and for {ARCHIVE})",
            hint=f"point --data-dir at the folder that holds {FOLDER}/ or {ARCHIVE} "
                 f"(the python version from {URL}), or drop --data-dir to download it",
        )
    home = Path(cache_dir).expanduser() / "cifar10"
    if (found := _batches_in(home)) is not None:
        return found
    archive = home / ARCHIVE
    if not archive.is_file():
        if not download:
            raise TaskError(f"cifar10: not in the cache {home} and downloading is off",
                            hint=f"put {ARCHIVE} in {home}, or pass --data-dir")
        _download(url, archive, md5)
    return _unpack(archive, home, md5)


def _md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _download(url: str, target: Path, md5: str) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TaskError(f"cifar10: cannot create the cache folder {target.parent}: {exc}",
                        hint="set AGENT_HOME (or --home) to a writable folder, or pass --data-dir") from None
    unavailable_hint = (f"download {ARCHIVE} from {url} on a machine with internet and either put it in "
                        f"{target.parent}, or pass --data-dir with the folder that holds it (or its unpacked {FOLDER}/)")
    fd, tmp_name = tempfile.mkstemp(prefix=ARCHIVE + ".", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - fixed https URL or the caller's
            total = int(response.headers.get("Content-Length") or 0)
            with _progress(total, f"downloading CIFAR-10 from {url}") as advance:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    advance(len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise TaskError(f"cifar10: the data are not in {target.parent} and the download from {url} failed: {reason}",
                        hint=unavailable_hint) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if digest.hexdigest() != md5:
        tmp.unlink(missing_ok=True)
        raise TaskError(f"cifar10: the download from {url} has MD5 {digest.hexdigest()}, expected {md5}; "
                        "it was deleted, nothing was unpacked",
                        hint="the file was corrupted or is not CIFAR-10: try again later, or " + unavailable_hint)
    os.replace(tmp, target)


class _progress:
    """A progress bar on stderr while downloading, when stderr is a terminal."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label, self._bar = total, label, None

    def __enter__(self):
        if sys.stderr.isatty():
            from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

            self._bar = Progress("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                 TimeRemainingColumn(), transient=True)
            self._bar.start()
            task = self._bar.add_task(self.label, total=self.total or None)
            return lambda n: self._bar.advance(task, n)
        print(f"{self.label} ...", file=sys.stderr, flush=True)
        return lambda n: None

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()


def _unpack(archive: Path, into: Path, md5: str) -> Path:
    """Verify the archive, unpack the batches into ``into/cifar-10-batches-py``, atomically."""
    if (actual := _md5_of(archive)) != md5:
        raise TaskError(f"cifar10: {archive} has MD5 {actual}, expected {md5}: it is corrupt or not CIFAR-10",
                        hint=f"delete it and run again to download a fresh copy, or replace it with {ARCHIVE} from {URL}")
    wanted = {f"{FOLDER}/{name}" for name in TRAIN_BATCHES + (TEST_BATCH, META)}
    staging = Path(tempfile.mkdtemp(prefix=".cifar10-", dir=into))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.name in wanted and m.isfile()]
            missing = wanted - {m.name for m in members} - {f"{FOLDER}/{META}"}
            if missing:
                raise TaskError(f"cifar10: {archive} lacks {', '.join(sorted(missing))}",
                                hint=f"use the python version of the archive ({ARCHIVE} from {URL})")
            for member in members:  # names are from the fixed list above: no path can escape
                with tar.extractfile(member) as src, open(staging / Path(member.name).name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        target = into / FOLDER
        if target.exists():  # another process unpacked it meanwhile
            shutil.rmtree(staging)
        else:
            os.replace(staging, target)
        return target
    except (tarfile.TarError, EOFError, OSError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise TaskError(f"cifar10: cannot unpack {archive}: {exc}",
                        hint="delete it and run again to download a fresh copy") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# -- reading the batches -----------------------------------------------------------------

class _SafeUnpickler(pickle.Unpickler):
    """Builds dicts, lists, strings, bytes and numpy arrays; refuses every other global."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a data batch")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            obj = _SafeUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise TaskError(f"cifar10: {path} is not a CIFAR-10 batch: {exc}",
                        hint="replace the folder with a fresh copy (delete it and run again to download)") from None
    if not isinstance(obj, dict):
        raise TaskError(f"cifar10: {path} holds a {type(obj).__name__}, not a batch dict",
                        hint="replace the folder with a fresh copy")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch: images (N, 3, 32, 32) uint8 and labels (N,) int64."""
    batch = _unpickle(path)
    if "data" not in batch or "labels" not in batch:
        raise TaskError(f"cifar10: {path} lacks 'data' or 'labels' (has {sorted(map(str, batch))})",
                        hint="replace the folder with a fresh copy")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise TaskError(f"cifar10: {path} has data {data.shape} {data.dtype} and {len(labels)} labels; "
                        "expected (N, 3072) uint8 and N labels", hint="replace the folder with a fresh copy")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise TaskError(f"cifar10: {path} has labels outside 0..9", hint="replace the folder with a fresh copy")
    return data.reshape(-1, 3, 32, 32), labels


def read_classes(folder: Path) -> tuple[str, ...]:
    if not (folder / META).is_file():
        return DEFAULT_CLASSES
    names = _unpickle(folder / META).get("label_names")
    if not isinstance(names, list) or len(names) != 10:
        return DEFAULT_CLASSES
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
