"""The training recipe of an exported candidate, as a plain dict (``RECIPE`` and recipe.json).

On a training task it is what archagent's trainer (evaluator/job/trainer.py) did: the candidate's
training hyperparameters (a layers spec's ``training``, a code file's ``TRAINING``, the
trainer's defaults for an nb201 cell) read as the trainer reads them (``evaluator.recipe.Training``), the
run's epochs, and how the inputs were normalised. On a NAS-Bench-201 table (or recorded
curves) it is the benchmark's published training: archagent trained nothing there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.exporter.facts import Facts
from evaluator.recipe import Training
from evaluator.spaces import space_class

SCHEDULES = {
    "cosine": "after warm-up, lr * 0.5 * (1 + cos(pi * progress)), updated every step, reaching 0 at the end",
    "step": "after warm-up, lr, then x0.1 at 50% and again at 75% of the steps",
    "constant": "after warm-up, lr throughout",
}
AUGMENTATIONS = {
    "none": "none",
    "crop": "random translation per image: zero-pad max(1, H // 8) pixels on every side, crop back to H x W at a "
            "random offset",
    "flip": "horizontal flip per image with probability 0.5",
    "crop_flip": "random translation per image (zero-pad max(1, H // 8) pixels, crop back at a random offset), then a "
                 "horizontal flip with probability 0.5",
}
INPUT_FORMULA = "float32 images (B, C, H, W): (x / scale - mean) / std per channel"


def training_recipe(facts: Facts, normalisation: dict[str, Any] | None) -> dict[str, Any]:
    """The recipe for this candidate and task (``normalisation`` from the kept weights or the data; None: unknown)."""
    if facts.task_kind == "train":
        return _trained(facts, normalisation)
    return _benchmark(facts)


def _trained(facts: Facts, normalisation: dict[str, Any] | None) -> dict[str, Any]:
    recipe = Training.unchecked(space_class(facts.space).recipe_of(facts.spec))
    sgd = recipe.optimizer == "sgd"
    if normalisation is not None:
        inputs = {"scale": normalisation["scale"], "mean": list(normalisation["mean"]), "std": list(normalisation["std"]),
                  "formula": INPUT_FORMULA + "; mean and std (unbiased, at least 1e-3) of the training split"}
    else:
        inputs = {"scale": None, "mean": None, "std": None, "formula": INPUT_FORMULA,
                  "note": "not known for this export: the data set could not be read"}
    return {
        "source": "archagent's trainer (evaluator/job/trainer.py), as it trained this candidate",
        "task": facts.task,
        "data": facts.data,
        "epochs": facts.epochs,
        "optimizer": recipe.optimizer,
        "lr": recipe.lr,
        "momentum": recipe.momentum if sgd else None,
        "nesterov": sgd and recipe.momentum > 0,
        "weight_decay": recipe.weight_decay,
        "weight_decay_applies_to": "parameters with 2 or more dimensions (not biases, not normalisation parameters)",
        "schedule": recipe.schedule,
        "schedule_detail": SCHEDULES[recipe.schedule],
        "warmup_epochs": recipe.warmup_epochs,
        "warmup_detail": "linear, from lr / warmup_steps up to lr, every step",
        "batch_size": recipe.batch_size,
        "batches": "reshuffled every epoch; the last partial batch is dropped",
        "loss": "cross_entropy",
        "label_smoothing": recipe.label_smoothing,
        "augmentation": recipe.augmentation,
        "augmentation_detail": AUGMENTATIONS[recipe.augmentation],
        "input": inputs,
        "seeds": facts.seeds,
        "device": facts.config.get("device"),
        "precision": "float32 on CPU; bfloat16 autocast and channels_last memory on CUDA",
    }


def _benchmark(facts: Facts) -> dict[str, Any]:
    """NAS-Bench-201's training hyperparameters (Dong & Yang, ICLR 2020, the benchmark's set H)."""
    imagenet = facts.input_shape[1:] == (16, 16)
    if facts.task_kind == "curves":
        epochs, detail = facts.config.get("epochs"), "the recorded curves' epochs"
    elif facts.config.get("final_table"):
        epochs, detail = 200, "validation accuracy from the 12-epoch schedule, test accuracy from the 200-epoch one"
    else:
        epochs, detail = 12, "validation and test accuracy from the 12-epoch schedule"
    return {
        "source": "NAS-Bench-201 (Dong & Yang, ICLR 2020): the benchmark's own training; archagent looked the "
                  "results up and trained nothing",
        "task": facts.task,
        "data": facts.data,
        "epochs": epochs,
        "epochs_detail": detail,
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 0.0005,
        "schedule": "cosine",
        "schedule_detail": "cosine annealing from 0.1 to 0 over the schedule",
        "batch_size": 256,
        "loss": "cross_entropy",
        "label_smoothing": 0.0,
        "augmentation": "crop_flip",
        "augmentation_detail": f"random crop with {2 if imagenet else 4}-pixel padding, horizontal flip with "
                               "probability 0.5",
        "input": {"scale": 255.0, "mean": None, "std": None,
                  "formula": INPUT_FORMULA + "; the benchmark's per-channel statistics (not recorded here)"},
        "network": {"channels": 16, "cells_per_stage": 5},
    }


def normalisation_from_data(facts: Facts) -> tuple[dict[str, Any] | None, str | None]:
    """The input normalisation recomputed from the task's training split (nothing is downloaded);
    ``(None, why)`` when the data cannot be read here."""
    from evaluator.data import load_dataset
    from evaluator.errors import ArchAgentError

    data_dir = facts.config.get("data_dir")
    cache = facts.home / "data"
    try:
        if facts.task == "cifar10":
            from evaluator.data.cifar10 import load_cifar10

            dataset = load_cifar10(cache, Path(data_dir) if data_dir else None, download=False)
        else:
            dataset = load_dataset(facts.task, cache_dir=cache, data_dir=data_dir)
    except (ArchAgentError, OSError) as exc:
        return None, (f"the input normalisation (per-channel mean and std of the training split) is unknown: the data "
                      f"of task {facts.task} cannot be read here ({str(exc).splitlines()[0][:200]}); RECIPE['input'] "
                      "has none")
    return dataset.input_normalisation(), None
