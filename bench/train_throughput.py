"""Training throughput: the project's trainer against a plain hand-written PyTorch loop.

What it measures
    Images per second of training, for (a) ``evaluator.job.trainer.train`` and (b) the loop a
    competent person writes by hand, on the same model, the same synthetic data and the same
    work: SGD with Nesterov momentum (lr 0.05, momentum 0.9, weight decay 5e-4 on weights and
    none on biases and norm parameters, as the trainer), a per-step cosine learning-rate
    schedule, batch 64, cross entropy, the last partial batch dropped, the data normalised once
    up front, no augmentation, the training loss summed on the device and read once per epoch.
    On CUDA the plain loop also keeps the data on the device and uses channels_last and bf16
    autocast, as the trainer does. Models (each built once with ``torch.manual_seed(seed)``;
    every run trains a fresh copy of the same initial weights):
      nb201         the NAS-Bench-201 skeleton at the paper's size (C=16, N=5) around one
                    fixed cell, 3x32x32 input, 10 classes: what candidates of the nb201 space train
      layers-small  a small CNN of the layers space (stem 16, one residual stage 32, stride 2):
                    about 20x faster per image, so the trainer's per-step overhead shows more
    Data: ``--images`` fixed-seed uniformly random 3x32x32 uint8 images with random labels.
    Only the training epochs are timed (the trainer's EpochReport.seconds; the plain loop is
    timed the same way, the clock read after the epoch's loss reaches the host and, on CUDA,
    after a device synchronisation); data preparation, model copies, the trainer's per-epoch
    validation predictions and one untimed warm-up of each contender are excluded. The two
    contenders alternate within each repeat (ABBA order over repeats), so load from other jobs
    on a shared machine hits both alike; each contender's figure is the median over repeats of
    its images/s (all of a run's epochs), the ratio is trainer / plain. Target: ratio >= 0.95.

How to run (from the repository root; under 4 minutes on 2 EPYC cores at load average 6)
    python bench/train_throughput.py                       # cpu (and cuda where present); updates docs/benchmarks.md
    python bench/train_throughput.py --models layers-small --repeats 3 --no-write
    python bench/train_throughput.py --devices cuda --images 20000 --epochs 3 --json /tmp/tp.json

Results (CPU, 1 thread, AMD EPYC, 2 cores shared with other jobs: load average 6.2 at the start;
1024 images, 1 epoch per run, 5 repeats, 216 s; full table in docs/benchmarks.md)
    nb201         trainer 52.1 img/s, plain 51.7 img/s: ratio 1.007 (per repeat 0.948 to 1.027)
    layers-small  trainer 1140.6 img/s, plain 1142.8 img/s: ratio 0.998 (per repeat 0.962 to 1.030)
    Target ratio >= 0.95: met on both. Same final loss to the last digit: the same work. The
    trainer's own per-step extras (LambdaLR step, the CPU NaN check, the on-device accuracy
    count) cost about 20 us of a 40 ms step; the spread between repeats is the other jobs' load.
    CUDA: not measured yet (no GPU on the machine that wrote this).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from agent.commands.options import positive_int
from evaluator.models import build_model
from evaluator.spaces import get_space
from evaluator.spaces.nb201 import parse_arch
from evaluator.job.trainer import EpochReport, TrainConfig, make_optimizer, train
from evaluator.recipe import Training

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import DOC, REPO_ROOT, RunInfo, run_info, stderr_progress, write_doc  # noqa: E402

INPUT_SHAPE = (3, 32, 32)  # CIFAR-10 sized
NUM_CLASSES = 10
TARGET = 0.95  # trainer images/s at least this fraction of the plain loop's
NB201_CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
LAYERS_SMALL = {
    "stem": {"channels": 16, "kernel": 3, "stride": 1, "norm": "batch", "activation": "relu"},
    "stages": [{"block": "residual", "channels": 32, "depth": 1, "kernel": 3, "stride": 2, "norm": "batch",
                "activation": "relu", "dropout": 0.0, "pool": "none"}],
    "head": {"hidden": 0, "dropout": 0.0},
}
MODELS = ("nb201", "layers-small")
CONTENDERS = ("trainer", "plain")
HYP = dict(optimizer="sgd", lr=0.05, momentum=0.9, schedule="cosine", warmup_epochs=0, weight_decay=5e-4,
           batch_size=64, label_smoothing=0.0, augmentation="none")  # the trainer's defaults, written out


#############################################
#                Arguments                  #
#############################################

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--devices", nargs="+", choices=["auto", "cpu", "cuda"], default=["auto"],
                        help="auto (default): cpu, and cuda when torch sees a GPU")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS),
                        help="default: " + " ".join(MODELS))
    parser.add_argument("--images", type=positive_int, default=1024,
                        help="synthetic training images (default 1024; the last partial batch of 64 is dropped)")
    parser.add_argument("--epochs", type=positive_int, default=1, help="timed epochs per run (default 1)")
    parser.add_argument("--repeats", type=positive_int, default=5,
                        help="runs of each contender per model and device, alternating (default 5)")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads of both (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, the weights and the order (default 0)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every run's epochs here")
    parser.add_argument("--no-write", action="store_true", help=f"do not update {DOC.relative_to(REPO_ROOT)}")
    args = parser.parse_args(argv)
    if args.images < HYP["batch_size"]:
        parser.error(f"--images must be at least the batch size ({HYP['batch_size']})")
    devices = []
    for d in args.devices:
        devices += (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]) if d == "auto" else [d]
    args.devices = list(dict.fromkeys(devices))
    if "cuda" in args.devices and not torch.cuda.is_available():
        parser.error("--devices cuda: torch sees no CUDA device here")
    args.models = list(dict.fromkeys(args.models))
    return args


#############################################
#              Data and models              #
#############################################

def synthetic_data(images: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, 32, 32) uint8 images and (N,) int64 labels, uniformly random, fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(images, *INPUT_SHAPE), dtype=np.uint8)
    y = rng.integers(0, NUM_CLASSES, size=images, dtype=np.int64)
    return x, y


def make_model(name: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    if name == "nb201":
        return build_model("nb201", parse_arch(NB201_CELL), INPUT_SHAPE, NUM_CLASSES)  # C=16, N=5
    space = get_space("layers", input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES)
    return build_model("layers", space.validate(LAYERS_SMALL), INPUT_SHAPE, NUM_CLASSES)


#############################################
#               Contenders                  #
#############################################

@dataclass(frozen=True)
class Epoch:
    epoch: int
    images: int
    seconds: float
    train_loss: float
    train_accuracy: float | None = None  # the trainer's report; the plain loop does not count it


def run_trainer(model: nn.Module, x: np.ndarray, y: np.ndarray, cfg: TrainConfig) -> list[Epoch]:
    """The project's trainer; its own per-epoch clock (validation predictions are outside it)."""
    reports: list[EpochReport] = []
    train(model, x, y, x[:8], 255.0, cfg, reports.append)
    images = len(x) // cfg.training.batch_size * cfg.training.batch_size  # the trainer drops the last partial batch
    return [Epoch(epoch=r.epoch, images=images, seconds=r.seconds,
                  train_loss=r.train_loss, train_accuracy=r.train_accuracy) for r in reports]


def run_plain(model: nn.Module, x: np.ndarray, y: np.ndarray, cfg: TrainConfig) -> list[Epoch]:
    """What a competent person writes by hand for the same work."""
    # ---- setup, untimed (as the trainer's) ----
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    cuda = device.type == "cuda"
    memory_format = torch.channels_last if cuda else torch.contiguous_format
    xs = torch.from_numpy(x).to(device).float() / 255.0  # (N, 3, 32, 32), all on the device
    mean = xs.mean(dim=(0, 2, 3), keepdim=True)
    std = xs.std(dim=(0, 2, 3), keepdim=True)
    xs = (xs - mean) / std
    ys = torch.from_numpy(y).to(device)
    model = model.to(device=device, memory_format=memory_format)
    optimizer = make_optimizer(model, cfg)  # SGD, Nesterov; decay on weights only
    n, batch = len(xs), cfg.training.batch_size
    steps = n // batch
    total_steps = cfg.epochs * steps
    # ---- training, timed per epoch ----
    out = []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(n, generator=gen).to(device)
        total_loss = torch.zeros((), device=device)
        for step in range(steps):
            lr = cfg.training.lr * 0.5 * (1 + math.cos(math.pi * ((epoch - 1) * steps + step) / total_steps))
            for group in optimizer.param_groups:
                group["lr"] = lr
            idx = order[step * batch:(step + 1) * batch]
            xb = xs[idx].contiguous(memory_format=memory_format)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loss = F.cross_entropy(model(xb), ys[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.detach().float()
        train_loss = float(total_loss) / steps
        if cuda:
            torch.cuda.synchronize(device)
        out.append(Epoch(epoch=epoch, images=steps * batch, seconds=time.perf_counter() - start,
                         train_loss=train_loss))
    return out


RUNNERS = {"trainer": run_trainer, "plain": run_plain}


#############################################
#               Measurement                 #
#############################################

@dataclass
class Run:
    model: str
    device: str
    contender: str
    repeat: int
    position: int  # 0: ran first in its repeat, 1: second
    epochs: list[Epoch] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return sum(e.images for e in self.epochs) / max(sum(e.seconds for e in self.epochs), 1e-9)


@dataclass(frozen=True)
class Row:
    model: str
    device: str
    params: int
    trainer_images_per_second: float  # median over repeats
    plain_images_per_second: float
    ratio: float  # trainer / plain, of the medians
    pair_ratios: list[float]  # trainer / plain within each repeat
    trainer_spread: float  # (max - min) / median over repeats
    plain_spread: float
    final_loss_trainer: float  # median over repeats of the last epoch's loss
    final_loss_plain: float

    @property
    def met(self) -> bool:
        return self.ratio >= TARGET


def config(args: argparse.Namespace, device: str, epochs: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, training=Training(**HYP), seed=args.seed, device=device, threads=args.threads)


def measure(args: argparse.Namespace) -> tuple[list[Run], list[Row]]:
    x, y = synthetic_data(args.images, args.seed)
    runs: list[Run] = []
    rows: list[Row] = []
    torch.set_num_threads(args.threads)
    total = len(args.devices) * len(args.models) * args.repeats * len(CONTENDERS)
    with stderr_progress(total, "training") as advance:
        for device in args.devices:
            for name in args.models:
                template = make_model(name, args.seed)
                warm, few = config(args, device, epochs=1), 2 * HYP["batch_size"]
                for contender in CONTENDERS:  # untimed warm-up: first calls, allocator, kernel choice
                    RUNNERS[contender](copy.deepcopy(template), x[:few], y[:few], warm)
                cfg = config(args, device, epochs=args.epochs)
                mine = []
                for repeat in range(args.repeats):
                    order = CONTENDERS if repeat % 2 == 0 else CONTENDERS[::-1]  # ABBA: drift hits both alike
                    for position, contender in enumerate(order):
                        run = Run(model=name, device=device, contender=contender, repeat=repeat, position=position)
                        run.epochs = RUNNERS[contender](copy.deepcopy(template), x, y, cfg)
                        mine.append(run)
                        advance(f"{device} {name} repeat {repeat + 1}/{args.repeats} {contender}: "
                                f"{run.images_per_second:.1f} images/s")
                runs += mine
                rows.append(summarise(name, device, template, mine))
    return runs, rows


def summarise(name: str, device: str, template: nn.Module, runs: list[Run]) -> Row:
    by = {c: sorted((r for r in runs if r.contender == c), key=lambda r: r.repeat) for c in CONTENDERS}
    speed = {c: [r.images_per_second for r in by[c]] for c in CONTENDERS}
    med = {c: statistics.median(speed[c]) for c in CONTENDERS}
    return Row(model=name, device=device, params=sum(p.numel() for p in template.parameters()),
               trainer_images_per_second=med["trainer"], plain_images_per_second=med["plain"],
               ratio=med["trainer"] / med["plain"],
               pair_ratios=[t / p for t, p in zip(speed["trainer"], speed["plain"])],
               trainer_spread=(max(speed["trainer"]) - min(speed["trainer"])) / med["trainer"],
               plain_spread=(max(speed["plain"]) - min(speed["plain"])) / med["plain"],
               final_loss_trainer=statistics.median(r.epochs[-1].train_loss for r in by["trainer"]),
               final_loss_plain=statistics.median(r.epochs[-1].train_loss for r in by["plain"]))


#############################################
#                 Reports                   #
#############################################

HEADERS = ("model", "device", "params", "trainer img/s", "plain img/s", "ratio", "ratio per repeat",
           "spread trainer / plain", "final loss trainer / plain")


def cells_of(row: Row) -> list[str]:
    return [row.model, row.device, f"{row.params:,}", f"{row.trainer_images_per_second:.1f}",
            f"{row.plain_images_per_second:.1f}", f"{row.ratio:.3f}", " ".join(f"{r:.3f}" for r in row.pair_ratios),
            f"{row.trainer_spread:.1%} / {row.plain_spread:.1%}",
            f"{row.final_loss_trainer:.4f} / {row.final_loss_plain:.4f}"]


def text_table(rows: list[Row]) -> str:
    table = [HEADERS, *(cells_of(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
             for line in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def load_note(load_before: float) -> str:
    cores = os.cpu_count() or 1
    if load_before >= 0.5:
        return (f"the machine was shared: load average {load_before:.2f} from other jobs when the script started, "
                f"on {cores} cores, so absolute images/s are lower and noisier than on a quiet machine; the "
                "contenders alternate within each repeat so that the load hits both alike, and the ratio is "
                "the figure to read")
    return f"the machine was quiet when the script started (load average {load_before:.2f} on {cores} cores)"


def reading(rows: list[Row], args: argparse.Namespace, load_before: float) -> list[str]:
    lines = []
    for r in rows:
        gap = abs(r.final_loss_trainer - r.final_loss_plain)
        same = ("is the same in both: they did the same work" if gap <= 1e-6 * abs(r.final_loss_plain) else
                f"differs by {gap:.2g} between the two (same steps; bf16 and non-deterministic kernels on CUDA "
                "round differently)")
        lines.append(f"- {r.model} on {r.device}: ratio {r.ratio:.3f} (target >= {TARGET}: "
                     f"{'met' if r.met else 'NOT met'}); per repeat {min(r.pair_ratios):.3f} to "
                     f"{max(r.pair_ratios):.3f}. The final training loss {same}.")
    lines.append(f"- {load_note(load_before)}.")
    lines.append(f"- Synthetic data with random labels: the numbers measure speed only. {args.images} images "
                 f"({args.images // HYP['batch_size']} steps of {HYP['batch_size']} per epoch), {args.epochs} timed "
                 f"epoch(s) per run, {args.repeats} repeats, {args.threads} CPU thread(s).")
    return lines


def doc_section(device: str, rows: list[Row], args: argparse.Namespace, info: RunInfo, load_before: float) -> str:
    lines = [
        f"## Training throughput: trainer against a plain PyTorch loop, {device}",
        "",
        "Written by `bench/train_throughput.py`. Training images/s of `evaluator.job.trainer.train` and of a plain "
        "hand-written loop doing the same work on the same model copy and data: SGD Nesterov (lr 0.05, momentum "
        "0.9, weight decay 5e-4 on weights), per-step cosine schedule, batch 64, cross entropy, data normalised "
        "once up front, no augmentation"
        + (", data resident on the GPU, channels_last and bf16 autocast in both" if device == "cuda" else "")
        + ". Models: `nb201` is the NAS-Bench-201 skeleton (C=16, N=5) around "
        f"`{NB201_CELL}`; `layers-small` a stem of 16 channels and one residual stage of 32 (stride 2). Synthetic "
        "fixed-seed uint8 3x32x32 images with random labels. Only training epochs are timed (setup, one warm-up "
        "run of each and the trainer's validation predictions are excluded); the contenders alternate within each "
        "repeat (ABBA); images/s is the median over repeats, ratio = trainer / plain of the medians, spread = "
        "(max - min) / median over repeats.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|:---|:---|" + "---:|" * (len(HEADERS) - 2),
        *("| " + " | ".join(cells_of(r)) + " |" for r in rows),
        "",
        "Reading:",
        *reading(rows, args, load_before),
        "",
        *[b for b in info.bullets() if not b.startswith("- tables")],
        f"- wall time: {info.wall_seconds} s",
    ]
    return "\n".join(lines)


def summary_line(rows: list[Row]) -> str:
    """Per device, the model with the lowest ratio (the one the target is judged on)."""
    parts = []
    for device in dict.fromkeys(r.device for r in rows):
        worst = min((r for r in rows if r.device == device), key=lambda r: r.ratio)
        parts.append(f"{device} ratio={worst.ratio:.3f} (trainer {worst.trainer_images_per_second:.1f} img/s, "
                     f"plain {worst.plain_images_per_second:.1f} img/s; {worst.model}, the lowest of "
                     f"{sum(r.device == device for r in rows)})")
    return "train-throughput: " + " ".join(parts)


#############################################
#                   Main                    #
#############################################

def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    load_before = os.getloadavg()[0]
    runs, rows = measure(args)
    info = run_info(REPO_ROOT, started)

    print(f"training images/s, trainer against a plain loop; {args.images} synthetic images, {args.epochs} epoch(s) "
          f"per run, {args.repeats} alternating repeats, {args.threads} CPU thread(s); {load_note(load_before)}\n")
    print(text_table(rows))
    print()
    if args.json is not None:
        raw: dict[str, Any] = {
            "run": asdict(info), "load_average_at_start": load_before, "target": TARGET,
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "rows": [asdict(r) | {"met": r.met} for r in rows],
            "runs": [{"model": r.model, "device": r.device, "contender": r.contender, "repeat": r.repeat,
                      "position": r.position, "images_per_second": r.images_per_second,
                      "epochs": [asdict(e) for e in r.epochs]} for r in runs],
        }
        args.json.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    if not args.no_write:
        for device in dict.fromkeys(r.device for r in rows):
            key = f"train_throughput:{device}"
            write_doc(key, doc_section(device, [r for r in rows if r.device == device], args, info, load_before))
            print(f"updated {DOC.relative_to(REPO_ROOT)} (section {key}); wall time {info.wall_seconds} s")
    print(summary_line(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
