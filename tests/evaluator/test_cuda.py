"""The CUDA path of the trainer and the training pool. Skipped where no GPU is present (CI);
run on a GPU machine with ``python -m pytest tests/evaluator/test_cuda.py``."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from evaluator.models import build_model
from evaluator.pools.base import Job
from evaluator.records import Purpose, Status
from evaluator.spaces import get_space
from evaluator.job.trainer import TrainConfig, train
from evaluator.pools.training import TrainingPool

pytestmark = pytest.mark.gpu

SPEC = {"stem": {"channels": 32, "kernel": 3, "stride": 1, "norm": "batch", "activation": "relu"},
        "stages": [{"block": "residual", "channels": 32, "depth": 2, "kernel": 3, "stride": 1, "norm": "batch",
                    "activation": "relu", "dropout": 0.0, "pool": "max"},
                   {"block": "bottleneck", "channels": 64, "depth": 1, "kernel": 3, "stride": 1, "expansion": 4,
                    "norm": "batch", "activation": "silu", "dropout": 0.0, "pool": "none"}],
        "head": {"hidden": 0, "dropout": 0.0},
        "training": {"optimizer": "sgd", "lr": 0.05, "batch_size": 64, "augmentation": "crop_flip"}}


def test_trainer_learns_on_cuda_with_bf16_and_channels_last(digits):
    space = get_space("layers", input_shape=digits.input_shape, num_classes=digits.num_classes)
    spec = space.validate(SPEC)
    model = build_model("layers", spec, digits.input_shape, digits.num_classes)
    cfg = TrainConfig.from_spec(spec["training"], epochs=8, seed=0, device="cuda")
    reports = []
    predict = train(model, digits.x_train, digits.y_train, digits.x_val, digits.x_scale, cfg, reports.append)
    assert next(model.parameters()).is_cuda
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert np.mean(reports[-1].val_predictions == digits.y_val) > 0.9
    assert np.mean(predict(digits.x_test) == digits.y_test) > 0.9
    assert all(r.images_per_second > 0 for r in reports)


def test_training_pool_runs_candidates_on_cuda(digits, tmp_path):
    space = get_space("layers", input_shape=digits.input_shape, num_classes=digits.num_classes)
    spec = space.validate(SPEC)
    nb201 = get_space("nb201").sample(random.Random(0))
    pool = TrainingPool(digits, "layers", workdir=tmp_path / "w", epochs=3, device="cuda", capacity=2)
    nb_pool = TrainingPool(digits, "nb201", workdir=tmp_path / "w2", epochs=2, device="cuda")
    try:
        pool.submit(Job(candidate_id="r-c0000", spec=spec))
        pool.submit(Job(candidate_id="r-c0001", spec=spec, purpose=Purpose.FINAL, seed=1))
        nb_pool.submit(Job(candidate_id="r-c0002", spec=nb201))
        results = {}
        for p in (pool, nb_pool):
            while p.in_flight:
                for e in p.events(timeout=None):
                    if e.kind == "finished":
                        results[e.candidate_id] = e.evaluation
        for cid, ev in results.items():
            assert ev.status is Status.OK, (cid, ev.error)
            assert ev.source == "trained on cuda" and ev.metrics["images_per_second"] > 0
        assert results["r-c0001"].test_accuracy > 0.8
    finally:
        pool.close()
        nb_pool.close()


def test_a_rung_checkpoint_continues_on_cuda_with_proxies(digits, tmp_path):
    """Successive halving on a GPU: the RNG and optimizer state travel through the checkpoint; the
    continued curve has every epoch once (cuDNN kernels need not be bit-for-bit repeatable)."""
    space = get_space("layers", input_shape=digits.input_shape, num_classes=digits.num_classes)
    spec = space.validate(SPEC)
    pool = TrainingPool(digits, "layers", workdir=tmp_path / "w", epochs=4, device="cuda", proxies=("synflow", "snip"))
    try:
        pool.submit(Job(candidate_id="r-c0000", spec=spec, fidelity=2, checkpoint=True))
        finished = []
        while not finished:
            finished = [e for e in pool.events(timeout=None) if e.kind == "finished"]
        assert finished[0].evaluation.status is Status.OK and finished[0].evaluation.metrics["proxy_synflow"] > 0
        pool.submit(Job(candidate_id="r-c0000", spec=spec, resume=True))
        finished = []
        while not finished:
            finished = [e for e in pool.events(timeout=None) if e.kind == "finished"]
        ev = finished[0].evaluation
        assert ev.status is Status.OK, ev.error
        assert [p.epoch for p in ev.curve] == [1, 2, 3, 4] and ev.metrics["jobs"] == 2 and ev.val_accuracy > 0.8
    finally:
        pool.close()
