"""Train one image classifier and report per-epoch predictions. Nothing here sees a label
other than the training labels, and nothing here computes a validation or test metric.

Sections, top to bottom: config, data, schedule, augmentation, train loop, prediction.
Runs on CPU or CUDA; on CUDA the data stay on the device, and it uses channels_last, bf16
autocast, cuDNN's autotuner and augmentation drawn on the device, so no step waits for the
host. Seeded: the same config, data and thread count give the same predictions on CPU.

Each epoch reports its mean training loss and its training accuracy: the fraction of the
epoch's training examples (the batches trained on, augmented as trained) that the forward
passes of that epoch classified right. Both are summed on the device and read once per epoch,
so on CUDA no training step waits for the host.

Training can stop at any epoch before the end of its schedule and continue later from a
checkpoint (successive halving promotes a candidate that way): ``stop_epoch`` ends it early
and ``save_to`` writes the checkpoint (weights, optimizer, learning-rate schedule and every
random generator's state); ``resume_from`` continues from one. The learning-rate schedule
always spans ``epochs``, so a run stopped at epoch 5 and continued to 15 is the same run as
one trained to 15 in one go (identical on CPU).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evaluator.recipe import Training

#############################################
#                 Config                    #
#############################################


@dataclass(frozen=True)
class TrainConfig:
    """One job's training: the spec's recipe (``evaluator.recipe.Training``: optimizer, lr,
    schedule, batch size, augmentation, ...) and what the job fixes around it."""

    epochs: int  # the schedule's length (the task's epochs), never set by the proposal
    training: Training = field(default_factory=Training)
    seed: int = 0
    device: str = "cpu"
    threads: int = 1  # torch intra-op threads on CPU

    @classmethod
    def from_spec(cls, training: dict[str, Any] | None, **fixed: Any) -> "TrainConfig":
        """A spec's ``training`` section (its known keys over the recipe's defaults), plus the fixed fields."""
        return cls(training=Training.unchecked(training), **fixed)


@dataclass(frozen=True)
class EpochReport:
    epoch: int
    train_loss: float
    train_accuracy: float  # fraction of the epoch's training examples right in their forward pass
    val_predictions: np.ndarray  # (N_val,) int64 class indices
    seconds: float
    images_per_second: float


CHECKPOINT_FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint that does not belong to this training (another schedule, another format)."""


class NonFiniteLoss(RuntimeError):
    def __init__(self, epoch: int, step: int | None) -> None:
        where = f"epoch {epoch}, step {step}" if step is not None else f"epoch {epoch}"
        super().__init__(f"NaN or infinite training loss at {where}")
        self.epoch = epoch


#############################################
#                  Data                     #
#############################################


def to_unit(x: np.ndarray, x_scale: float, device: torch.device) -> torch.Tensor:
    """(N, C, H, W) uint8/float32 array -> float32 tensor on ``device``, divided by ``x_scale``."""
    return torch.from_numpy(np.ascontiguousarray(x)).to(device).float() / x_scale


def channel_stats(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of (N, C, H, W), each shaped (C, 1, 1)."""
    mean = t.mean(dim=(0, 2, 3), keepdim=True)[0]
    std = t.std(dim=(0, 2, 3), keepdim=True)[0].clamp_min(1e-3)
    return mean, std


#############################################
#            Schedule, augmentation         #
#############################################


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    total = cfg.epochs * steps_per_epoch
    warmup = cfg.training.warmup_epochs * steps_per_epoch
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)  # 0 -> 1 after warm-up
    if cfg.training.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.training.schedule == "step":
        return 0.1 ** (int(progress >= 0.5) + int(progress >= 0.75))
    return 1.0


def augment(x: torch.Tensor, kind: str, gen: torch.Generator) -> torch.Tensor:
    """Random translation (pad H/8, at least 1 pixel) and/or horizontal flip, per image. The
    offsets are drawn on ``x``'s device from ``gen`` (a generator of that device), so a CUDA
    step never waits for the host."""
    b, c, h, w = x.shape
    device = x.device
    if "crop" in kind:
        pad = max(1, h // 8)
        padded = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device=device)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device=device)
        rows = (dy[:, None] + torch.arange(h, device=device)[None])[:, None, :, None]  # (B, 1, H, 1)
        cols = (dx[:, None] + torch.arange(w, device=device)[None])[:, None, None, :]  # (B, 1, 1, W)
        batch_idx = torch.arange(b, device=device)[:, None, None, None]
        x = padded[batch_idx, torch.arange(c, device=device)[None, :, None, None], rows, cols]
    if "flip" in kind:
        flip = (torch.rand(b, generator=gen, device=device) < 0.5)[:, None, None, None]
        x = torch.where(flip, x.flip(3), x)
    return x


class _NoOptimizer(torch.optim.Optimizer):
    """The optimizer of a network without trainable parameters: it holds one frozen dummy
    parameter so the schedule and checkpoints work unchanged; the loop never steps it."""

    def __init__(self) -> None:
        super().__init__([torch.zeros(1, requires_grad=False)], {"lr": 0.0})


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on biases and normalisation parameters (1-d tensors).
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.training.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.training.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.training.lr, momentum=cfg.training.momentum, nesterov=cfg.training.momentum > 0)
    if cfg.training.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.training.lr)
    if cfg.training.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.training.lr)
    raise ValueError(f"optimizer={cfg.training.optimizer!r} must be sgd, adam or adamw")


#############################################
#                Train loop                 #
#############################################


def train(
    model: nn.Module,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    x_scale: float,
    cfg: TrainConfig,
    on_epoch: Callable[[EpochReport], None],
    *,
    stop_epoch: int | None = None,
    resume_from: Path | None = None,
    save_to: Path | None = None,
    on_start: Callable[[nn.Module, torch.Tensor, torch.Tensor], None] | None = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """Train to ``stop_epoch`` (default: the end of the schedule, ``cfg.epochs``), calling
    ``on_epoch`` after each epoch; return a predict function.

    ``resume_from`` continues a checkpoint written by ``save_to``; ``on_start(model, xs, ys)``
    sees the normalised training set on the device before the first step of a fresh start.
    """
    stop = cfg.epochs if stop_epoch is None else stop_epoch
    if not 1 <= stop <= cfg.epochs:
        raise ValueError(f"stop_epoch={stop_epoch} must be between 1 and the schedule's {cfg.epochs} epochs")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)  # the data order
    device = torch.device(cfg.device)
    cuda = device.type == "cuda"
    # augmentation draws on the device: on CUDA its own generator, on CPU the same one as the order
    aug_gen = torch.Generator(device=device).manual_seed(cfg.seed) if cuda else gen
    if cuda:
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels once
    else:
        torch.set_num_threads(cfg.threads)
    memory_format = torch.channels_last if cuda else torch.contiguous_format

    # On CUDA the whole training set lives on the device: no per-batch host-to-device copies.
    unit = to_unit(x_train, x_scale, device)  # (N, C, H, W)
    mean, std = channel_stats(unit)
    xs = (unit - mean) / std
    del unit
    ys = torch.from_numpy(np.asarray(y_train, dtype=np.int64)).to(device)
    model = model.to(device=device, memory_format=memory_format)
    # A network with nothing to train (a fixed or constant function) is evaluated as it is.
    trainable = any(p.requires_grad for p in model.parameters())
    optimizer = make_optimizer(model, cfg) if trainable else _NoOptimizer()
    n = len(xs)
    batch = min(cfg.training.batch_size, n)
    steps_per_epoch = max(1, n // batch)  # drop the last partial batch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(cfg, s, steps_per_epoch))
    start = 0
    if resume_from is not None:
        start = _load_checkpoint(resume_from, cfg, model, optimizer, schedule, gen, aug_gen, device)
        if start >= stop:
            raise CheckpointError(f"the checkpoint is at epoch {start}, not before stop_epoch {stop}")
    elif on_start is not None:
        on_start(model, xs, ys)

    def predict(x: np.ndarray) -> np.ndarray:
        model.eval()
        out = []
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            for i in range(0, len(x), 512):
                chunk = ((to_unit(x[i:i + 512], x_scale, device) - mean) / std).contiguous(memory_format=memory_format)
                out.append(model(chunk).argmax(dim=1))
        return torch.cat(out).cpu().numpy().astype(np.int64)

    for epoch in range(start + 1, stop + 1):
        model.train()
        started = time.perf_counter()
        order = torch.randperm(n, generator=gen).to(device)
        total_loss = torch.zeros((), device=device)  # summed on the device: no per-step host sync on CUDA
        correct = torch.zeros((), dtype=torch.int64, device=device)  # likewise
        for step in range(steps_per_epoch):
            idx = order[step * batch:(step + 1) * batch]
            xb = xs[idx]
            if cfg.training.augmentation != "none":
                xb = augment(xb, cfg.training.augmentation, aug_gen)
            xb = xb.contiguous(memory_format=memory_format)
            yb = ys[idx]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                logits = model(xb)  # (B, num_classes)
                loss = F.cross_entropy(logits, yb, label_smoothing=cfg.training.label_smoothing)
            if not cuda and not torch.isfinite(loss):  # on CUDA, checked once per epoch below
                raise NonFiniteLoss(epoch, step)
            if trainable:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
            total_loss += loss.detach().float()
            correct += (logits.detach().argmax(dim=1) == yb).sum()
        train_loss = float(total_loss) / steps_per_epoch  # waits for the device: the epoch's work is done
        train_accuracy = int(correct) / (steps_per_epoch * batch)
        seconds = time.perf_counter() - started  # training only; prediction below is not counted
        if not math.isfinite(train_loss):
            raise NonFiniteLoss(epoch, None)
        on_epoch(EpochReport(epoch=epoch, train_loss=train_loss, train_accuracy=train_accuracy,
                             val_predictions=predict(x_val),
                             seconds=seconds, images_per_second=steps_per_epoch * batch / max(seconds, 1e-9)))
    if save_to is not None:
        _save_checkpoint(save_to, stop, cfg, model, optimizer, schedule, gen, aug_gen, device)
    return predict


#############################################
#               Checkpoints                 #
#############################################


def _save_checkpoint(path: Path, epoch: int, cfg: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer,
                     schedule: torch.optim.lr_scheduler.LRScheduler, gen: torch.Generator, aug_gen: torch.Generator,
                     device: torch.device) -> None:
    state = {"format": CHECKPOINT_FORMAT, "epoch": epoch, "schedule_epochs": cfg.epochs, "seed": cfg.seed,
             "model": model.state_dict(), "optimizer": optimizer.state_dict(), "lr_schedule": schedule.state_dict(),
             "generator": gen.get_state(), "torch_rng": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
        state["augment_generator"] = aug_gen.get_state()
    tmp = Path(path).with_suffix(".partial")
    torch.save(state, tmp)
    tmp.replace(path)  # a reader never sees half a checkpoint


def _load_checkpoint(path: Path, cfg: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer,
                     schedule: torch.optim.lr_scheduler.LRScheduler, gen: torch.Generator, aug_gen: torch.Generator,
                     device: torch.device) -> int:
    """Restore everything ``_save_checkpoint`` wrote; the epoch it was written after."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever the file holds, it is not a checkpoint we can use
        raise CheckpointError(f"{path} cannot be read as a checkpoint: {type(exc).__name__}: {exc}"[:500]) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint of this trainer (format {CHECKPOINT_FORMAT})")
    if state["schedule_epochs"] != cfg.epochs or state["seed"] != cfg.seed:
        raise CheckpointError(f"{path} was written for a {state['schedule_epochs']}-epoch schedule with seed "
                              f"{state['seed']}, not {cfg.epochs} epochs with seed {cfg.seed}")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["lr_schedule"])
    gen.set_state(state["generator"].cpu())
    torch.set_rng_state(state["torch_rng"].cpu())
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)
        aug_gen.set_state(state["augment_generator"].cpu())
    return int(state["epoch"])
