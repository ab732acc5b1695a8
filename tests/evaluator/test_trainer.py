"""The trainer's per-epoch report on CPU: training accuracy and the seeded-run contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from evaluator.job.trainer import EpochReport, TrainConfig, train


def easy_problem(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3, 8, 8) uint8 images of 4 classes: class k has its k-th quadrant bright, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, size=n)
    x = rng.integers(0, 96, size=(n, 3, 8, 8)).astype(np.uint8)
    for k, (r, c) in enumerate([(0, 0), (0, 4), (4, 0), (4, 4)]):
        x[y == k, :, r:r + 4, c:c + 4] += 128
    return x, y.astype(np.int64)


def small_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(32, 4))


def run(model: nn.Module, x: np.ndarray, y: np.ndarray, cfg: TrainConfig) -> list[EpochReport]:
    reports: list[EpochReport] = []
    train(model, x, y, x[:16], 255.0, cfg, reports.append)
    return reports


def test_train_accuracy_is_a_fraction_that_rises_and_is_reported_every_epoch():
    x, y = easy_problem(512)
    torch.manual_seed(0)
    cfg = TrainConfig.from_spec({"lr": 0.05, "batch_size": 32, "augmentation": "crop"}, epochs=6, seed=0)  # no flip: it swaps classes
    reports = run(small_net(), x, y, cfg)
    assert [r.epoch for r in reports] == list(range(1, 7))
    accs = [r.train_accuracy for r in reports]
    assert all(isinstance(a, float) and 0.0 <= a <= 1.0 for a in accs)
    assert all(round(a * 512) == pytest.approx(a * 512) for a in accs)  # a count of the epoch's 512 examples
    assert accs[0] < 0.9 < accs[-1], accs  # chance is 0.25; epoch 1 counts the predictions made while learning


class ConstantClassZero(nn.Module):
    """Logits that always pick class 0, whatever the input; its one parameter trains too slowly to change that."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([10.0, 0.0, 0.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(len(x), 4) + 0.0 * x.mean()


def test_train_accuracy_counts_the_trained_examples_only():
    # 96 examples in batches of 40: 2 batches (80 examples) trained per epoch, the last 16 dropped.
    # Labels: 0 for the first 48, 1 after; the order is shuffled, so which 80 are trained varies.
    x = np.zeros((96, 3, 4, 4), dtype=np.uint8)
    y = np.repeat(np.array([0, 1], dtype=np.int64), 48)
    cfg = TrainConfig.from_spec({"lr": 1e-3, "momentum": 0.0, "batch_size": 40}, epochs=3, seed=1)
    reports = run(ConstantClassZero(), x, y, cfg)
    assert len(reports) == 3
    for r in reports:
        right = r.train_accuracy * 80  # examples of class 0 among the 80 trained
        assert right == pytest.approx(round(right)) and 32 <= round(right) <= 48, r.train_accuracy


def test_same_config_same_reports_on_cpu():
    x, y = easy_problem(256, seed=3)
    cfg = TrainConfig.from_spec({"batch_size": 32, "augmentation": "crop_flip"}, epochs=2, seed=5)
    first, second = [], []
    for out in (first, second):
        torch.manual_seed(0)
        out += run(small_net(), x, y, cfg)
    assert [r.train_accuracy for r in first] == [r.train_accuracy for r in second]
    assert [r.train_loss for r in first] == [r.train_loss for r in second]
    assert all(np.array_equal(a.val_predictions, b.val_predictions) for a, b in zip(first, second))


def test_stopping_at_a_rung_and_continuing_from_the_checkpoint_is_the_same_run(tmp_path):
    """Successive halving's contract: 2 + 2 + 2 epochs from checkpoints equal 6 in one go, bit for bit on CPU
    (weights, optimizer, learning-rate schedule, data order, augmentation and dropout all continue)."""
    x, y = easy_problem(256, seed=3)
    cfg = TrainConfig.from_spec({"batch_size": 32, "augmentation": "crop_flip", "schedule": "cosine"}, epochs=6, seed=5)

    def net() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Dropout(0.3), nn.AdaptiveAvgPool2d(2),
                             nn.Flatten(), nn.Linear(32, 4))

    straight: list[EpochReport] = []
    train(net(), x, y, x[:16], 255.0, cfg, straight.append)
    pieces: list[EpochReport] = []
    ckpt = tmp_path / "c.pt"
    train(net(), x, y, x[:16], 255.0, cfg, pieces.append, stop_epoch=2, save_to=ckpt)
    train(net(), x, y, x[:16], 255.0, cfg, pieces.append, stop_epoch=4, resume_from=ckpt, save_to=ckpt)
    predict = train(net(), x, y, x[:16], 255.0, cfg, pieces.append, resume_from=ckpt)
    assert [r.epoch for r in pieces] == [1, 2, 3, 4, 5, 6]
    assert [r.train_loss for r in pieces] == [r.train_loss for r in straight]
    assert all(np.array_equal(a.val_predictions, b.val_predictions) for a, b in zip(pieces, straight))
    assert predict(x[:16]).shape == (16,)


def test_a_checkpoint_of_another_schedule_or_at_the_stop_is_refused(tmp_path):
    from evaluator.job.trainer import CheckpointError

    x, y = easy_problem(64)
    ckpt = tmp_path / "c.pt"
    train(small_net(), x, y, x[:8], 255.0, TrainConfig.from_spec({"batch_size": 32}, epochs=4), lambda r: None, stop_epoch=2, save_to=ckpt)
    with pytest.raises(CheckpointError, match="4-epoch schedule with seed 0, not 6 epochs"):
        train(small_net(), x, y, x[:8], 255.0, TrainConfig.from_spec({"batch_size": 32}, epochs=6), lambda r: None, resume_from=ckpt)
    with pytest.raises(CheckpointError, match="at epoch 2, not before stop_epoch 2"):
        train(small_net(), x, y, x[:8], 255.0, TrainConfig.from_spec({"batch_size": 32}, epochs=4), lambda r: None, stop_epoch=2,
              resume_from=ckpt)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read as a checkpoint"):
        train(small_net(), x, y, x[:8], 255.0, TrainConfig.from_spec({"batch_size": 32}, epochs=4), lambda r: None,
              resume_from=tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="stop_epoch=9 must be between 1 and the schedule's 4 epochs"):
        train(small_net(), x, y, x[:8], 255.0, TrainConfig.from_spec({"batch_size": 32}, epochs=4), lambda r: None, stop_epoch=9)
