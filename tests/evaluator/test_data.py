"""Data loaders of the training tasks: digits (real), cifar10 (a small archive in the real
format served over loopback HTTP), your own .npz arrays and your own image folder."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import pickle
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from evaluator.data import load_dataset
from evaluator.data.cifar10 import ARCHIVE, FOLDER, load_cifar10
from evaluator.data.splits import stratified_split
from evaluator.errors import TaskError

# -- splits, digits --------------------------------------------------------------------


def test_stratified_split_is_seeded_disjoint_and_complete():
    y = np.repeat(np.arange(4), [10, 7, 5, 3])
    a = stratified_split(y, (0.6, 0.2, 0.2), seed=0)
    b = stratified_split(y, (0.6, 0.2, 0.2), seed=0)
    c = stratified_split(y, (0.6, 0.2, 0.2), seed=1)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not all(np.array_equal(p, q) for p, q in zip(a, c))
    assert sorted(np.concatenate(a).tolist()) == list(range(len(y)))
    for part in a:  # every class, even the one with 3 images, is in every part
        assert set(y[part]) == {0, 1, 2, 3}


def test_digits_is_the_real_data_split_60_20_20(tmp_path):
    d = load_dataset("digits", cache_dir=tmp_path)
    assert d.input_shape == (1, 8, 8) and d.num_classes == 10 and d.x_scale == 16.0
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (1078, 360, 359)
    assert d.x_train.max() == 16 and d.x_train.min() == 0
    again = load_dataset("digits", cache_dir=tmp_path)  # fixed split, every time
    assert np.array_equal(d.y_val, again.y_val) and np.array_equal(d.x_test, again.x_test)
    from sklearn.datasets import load_digits

    total = load_digits().images.reshape(len(load_digits().images), -1).sum()
    assert d.x_train.sum() + d.x_val.sum() + d.x_test.sum() == total  # every image once


# -- cifar10 over loopback HTTP ------------------------------------------------------------


def _batch(n: int, offset: int) -> dict:
    rng = np.random.default_rng(offset)
    labels = [(offset + i) % 10 for i in range(n)]
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    data[:, 0] = np.array(labels, dtype=np.uint8)  # a known pixel: red channel, top-left
    return {b"batch_label": b"batch", b"labels": labels, b"data": data,
            b"filenames": [f"img{offset + i}.png".encode() for i in range(n)]}


def make_cifar_archive(path: Path, per_batch: int = 40, test: int = 30) -> str:
    """A small CIFAR-10 archive in the real python-pickle format; returns its MD5."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        files = {f"data_batch_{i}": _batch(per_batch, 100 * i) for i in range(1, 6)}
        files["test_batch"] = _batch(test, 7)
        files["batches.meta"] = {b"label_names": [n.encode() for n in ("plane", "car", "bird", "cat", "deer", "dog",
                                                                      "frog", "horse", "ship", "truck")]}
        for name, obj in files.items():
            blob = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"{FOLDER}/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    path.write_bytes(buf.getvalue())
    return hashlib.md5(buf.getvalue()).hexdigest()


@pytest.fixture
def served(tmp_path):
    """An HTTP server on 127.0.0.1 serving a folder with the archive; yields (url, md5, hits)."""
    site = tmp_path / "site"
    site.mkdir()
    md5 = make_cifar_archive(site / ARCHIVE)
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(site), **k)

        def log_message(self, *a):
            hits.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{ARCHIVE}", md5, hits
    finally:
        server.shutdown()
        server.server_close()


def test_cifar10_download_verifies_unpacks_and_reads_the_batches(served, tmp_path):
    url, md5, hits = served
    cache = tmp_path / "cache"
    d = load_cifar10(cache, url=url, md5=md5)
    assert len(hits) == 1 and (cache / "cifar10" / FOLDER / "data_batch_5").is_file()
    assert d.input_shape == (3, 32, 32) and d.classes[0] == "plane" and d.x_train.dtype == np.uint8
    assert len(d.y_train) + len(d.y_val) == 200 and len(d.y_test) == 30
    for x, y in ((d.x_train, d.y_train), (d.x_val, d.y_val), (d.x_test, d.y_test)):
        assert np.array_equal(x[:, 0, 0, 0], y)  # rows reshaped to (3, 32, 32) channel-first, as CIFAR stores them
    assert not list((cache / "cifar10").glob("*.part")) and not list((cache / "cifar10").glob(".cifar10-*"))
    again = load_cifar10(cache, url="http://127.0.0.1:9/unreachable", md5=md5)  # from the cache, no download
    assert len(hits) == 1 and np.array_equal(again.y_val, d.y_val)


def test_cifar10_checksum_mismatch_keeps_nothing(served, tmp_path):
    url, _, _ = served
    cache = tmp_path / "cache"
    with pytest.raises(TaskError) as err:
        load_cifar10(cache, url=url, md5="0" * 32)
    assert "MD5" in str(err.value) and "expected 00000000" in str(err.value) and "deleted" in str(err.value)
    assert not any((cache / "cifar10").iterdir())  # no archive, no partial file, nothing unpacked


def test_cifar10_unavailable_says_where_it_looked_and_how_to_supply_it(tmp_path):
    with socket.socket() as s:  # a loopback port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cache = tmp_path / "cache"
    with pytest.raises(TaskError) as err:
        load_cifar10(cache, url=f"http://127.0.0.1:{port}/{ARCHIVE}")
    text = str(err.value)
    assert str(cache / "cifar10") in text and "--data-dir" in text and ARCHIVE in text
    assert not list((cache / "cifar10").iterdir())


def test_cifar10_from_data_dir_archive_or_folder(tmp_path):
    src = tmp_path / "mine"
    src.mkdir()
    md5 = make_cifar_archive(src / ARCHIVE)
    d = load_cifar10(tmp_path / "cache", data_dir=src, md5=md5)  # the archive: verified and unpacked beside it
    assert (src / FOLDER / "test_batch").is_file() and len(d.y_test) == 30
    assert load_cifar10(tmp_path / "cache", data_dir=src / FOLDER).num_classes == 10  # the folder itself
    with pytest.raises(TaskError, match="no CIFAR-10 batches in --data-dir"):
        load_cifar10(tmp_path / "cache", data_dir=tmp_path / "empty")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / ARCHIVE).write_bytes(b"not an archive")
    with pytest.raises(TaskError, match="MD5 .* it is corrupt or not CIFAR-10"):
        load_cifar10(tmp_path / "cache", data_dir=corrupt)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_cifar10_batches_cannot_run_code(tmp_path, monkeypatch):
    folder = tmp_path / "data" / FOLDER
    folder.mkdir(parents=True)
    make_cifar_archive(tmp_path / "a.tar.gz")
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        for m in tar.getmembers():
            (folder / Path(m.name).name).write_bytes(tar.extractfile(m).read())
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": [1]}, protocol=2))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TaskError, match="data_batch_3 is not a CIFAR-10 batch: global posix.system is not allowed"):
        load_cifar10(tmp_path / "cache", data_dir=tmp_path / "data")
    assert not (tmp_path / "pwned").exists()


# -- file:PATH.npz -------------------------------------------------------------------------


def test_npz_with_validation_split_made_channels_last_and_string_labels(tmp_path):
    rng = np.random.default_rng(0)
    names = np.array(["cat", "dog", "eel"])
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=rng.integers(0, 256, (60, 12, 12, 3), dtype=np.uint8), y_train=names[np.arange(60) % 3],
             x_test=rng.integers(0, 256, (15, 12, 12, 3), dtype=np.uint8), y_test=names[np.arange(15) % 3])
    d = load_dataset(f"file:{path}", cache_dir=tmp_path)
    assert d.input_shape == (3, 12, 12) and d.classes == ("cat", "dog", "eel") and d.x_scale == 255.0
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (48, 12, 15)
    assert set(d.y_val) == {0, 1, 2} and "20% of the training images" in d.source


def test_npz_with_all_splits_float_grey_images(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "grey.npz"
    arrays = {f"x_{s}": rng.random((n, 10, 10)).astype(np.float64) for s, n in (("train", 30), ("val", 9), ("test", 9))}
    arrays |= {f"y_{s}": np.arange(len(arrays[f"x_{s}"])) % 3 for s in ("train", "val", "test")}
    np.savez(path, **arrays, classes=np.array(["a", "b", "c"]))
    d = load_dataset(f"file:{path}", cache_dir=tmp_path)
    assert d.input_shape == (1, 10, 10) and d.x_train.dtype == np.float32 and d.x_scale == 1.0
    assert np.allclose(d.x_val[:, 0], arrays["x_val"]) and d.classes == ("a", "b", "c")


@pytest.mark.parametrize(
    "arrays, words",
    [
        ({"x_train": np.zeros((4, 1, 8, 8))}, ["missing array(s) y_train, x_test, y_test", "numpy.savez"]),
        ({"x_train": np.zeros((4, 8, 8)), "y_train": np.arange(4) % 2, "x_test": np.zeros((2, 8, 8)),
          "y_test": np.arange(3) % 2}, ["x_test has 2 images and y_test has 3 labels"]),
        ({"x_train": np.zeros((4, 8, 8)), "y_train": np.eye(2)[np.arange(4) % 2], "x_test": np.zeros((2, 8, 8)),
          "y_test": np.arange(2)}, ["y_train has shape (4, 2)", "argmax"]),
        ({"x_train": np.zeros((4, 8, 8)), "y_train": np.arange(4) % 2, "x_test": np.zeros((2, 8, 8)),
          "y_test": np.arange(2), "x_val": np.zeros((2, 8, 8))}, ["x_val without the other"]),
        ({"x_train": np.zeros((4, 8)), "y_train": np.arange(4) % 2, "x_test": np.zeros((2, 8)),
          "y_test": np.arange(2)}, ["x_train has shape (4, 8)"]),
        ({"x_train": np.zeros((4, 8, 8)), "y_train": np.arange(4) % 2, "x_test": np.zeros((2, 8, 8)),
          "y_test": np.array([0, 5])}, ["y_test has classes that y_train lacks"]),
    ],
    ids=["missing", "count", "one-hot", "half-val", "shape", "unseen-class"],
)
def test_npz_errors_name_the_array_and_the_fix(tmp_path, arrays, words):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(TaskError) as err:
        load_dataset(f"file:{path}", cache_dir=tmp_path)
    assert str(path) in str(err.value)
    for w in words:
        assert w in str(err.value)


def test_npz_with_pickled_objects_or_not_a_file_is_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x_train=np.array([{"a": 1}], dtype=object))
    with pytest.raises(TaskError, match="pickles"):
        load_dataset(f"file:{path}", cache_dir=tmp_path)
    with pytest.raises(TaskError, match="no such file"):
        load_dataset(f"file:{tmp_path / 'absent.npz'}", cache_dir=tmp_path)


# -- folder:DIR ------------------------------------------------------------------------------


def make_image_folder(root: Path, per_class: int = 5, size=(16, 12)) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, name in enumerate(("circle", "square")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            a = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            a[0, 0] = (label * 200, 0, 0)
            Image.fromarray(a).save(root / name / f"{i}.png")
    return root


def test_folder_of_images_one_subfolder_per_class(tmp_path):
    from PIL import Image

    root = make_image_folder(tmp_path / "imgs")
    Image.new("RGB", (32, 32), (200, 0, 0)).save(root / "square" / "big.jpg")  # resized to the common size
    Image.new("L", (16, 12), 50).save(root / "circle" / "grey.bmp")  # converted to RGB
    (root / "square" / ".DS_Store").write_bytes(b"\0junk")  # hidden: skipped
    (root / "square" / "notes.txt").write_text("not an image")  # not an image extension: skipped
    d = load_dataset(f"folder:{root}", cache_dir=tmp_path)
    assert d.classes == ("circle", "square") and d.input_shape == (3, 12, 16) and d.x_train.dtype == np.uint8
    assert len(d.y_train) + len(d.y_val) + len(d.y_test) == 12
    assert "1 resized" in d.source
    for x, y in ((d.x_train, d.y_train), (d.x_val, d.y_val), (d.x_test, d.y_test)):
        assert np.array_equal(x[:, 0, 0, 0] >= 150, y == 1)


def test_folder_errors_name_the_folder_file_and_fix(tmp_path):
    with pytest.raises(TaskError, match="no such folder"):
        load_dataset(f"folder:{tmp_path / 'nope'}", cache_dir=tmp_path)
    root = make_image_folder(tmp_path / "few", per_class=2)
    with pytest.raises(TaskError, match="class 'circle' has 2 image"):
        load_dataset(f"folder:{root}", cache_dir=tmp_path)
    root = make_image_folder(tmp_path / "broken")
    (root / "circle" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(TaskError) as err:
        load_dataset(f"folder:{root}", cache_dir=tmp_path)
    assert "bad.png" in str(err.value) and "remove or replace" in str(err.value)
    one = tmp_path / "one"
    (one / "only").mkdir(parents=True)
    with pytest.raises(TaskError, match="1 class folder"):
        load_dataset(f"folder:{one}", cache_dir=tmp_path)


def test_folder_with_train_and_test_folders_keeps_your_splits(tmp_path):
    root = tmp_path / "split"
    make_image_folder(root / "train", per_class=5)
    make_image_folder(root / "test", per_class=2)
    d = load_dataset(f"folder:{root}", cache_dir=tmp_path)
    assert d.classes == ("circle", "square") and len(d.y_test) == 4
    assert (len(d.y_train), len(d.y_val)) == (8, 2) and set(d.y_val) == {0, 1}
    assert "your train/test folders, validation 20% of train" in d.source
    make_image_folder(root / "validation", per_class=1)
    d = load_dataset(f"folder:{root}", cache_dir=tmp_path)
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (10, 2, 4) and "your train/val/test folders" in d.source
    lonely = tmp_path / "lonely"
    make_image_folder(lonely / "train")
    with pytest.raises(TaskError, match="not both train/ and test/"):
        load_dataset(f"folder:{lonely}", cache_dir=tmp_path)
