"""Sampling and mutation of ``layers`` specs (the random and evolution baselines): weighted
draws that favour small, fast networks, and single edits that keep a spec valid."""

from __future__ import annotations

import copy
import math
import random
from typing import Any, get_args

from evaluator.spaces.layers.schema import MAX_STAGES, BlockKind

# --------------------------------------------------------------------------------------------
# Sampling and mutation tables (the random and evolution baselines)
# --------------------------------------------------------------------------------------------

# Weighted choices: small, fast networks are likely (a digits candidate trains in seconds on
# 2 CPU cores), while every allowed value keeps a non-zero chance.
_STAGES_N = {1: 3, 2: 4, 3: 3, 4: 1.5, 5: 0.6, 6: 0.3}
_STEM_CHANNELS = {8: 1, 16: 3, 24: 2, 32: 3, 48: 1.5, 64: 1, 96: 0.4, 128: 0.3, 192: 0.1, 256: 0.1}
_STAGE_CHANNELS = {8: 1, 16: 3, 24: 2, 32: 4, 48: 3, 64: 3, 96: 1.5, 128: 1, 192: 0.4, 256: 0.3, 384: 0.1, 512: 0.1}
_DEPTH = {1: 5, 2: 4, 3: 2, 4: 0.8, 5: 0.4, 6: 0.2}
_KERNEL = {1: 1, 3: 6, 5: 2, 7: 1}
_STRIDE = {1: 7, 2: 3}
_NORM = {"batch": 6, "group": 2, "none": 2}
_ACTIVATION = {"relu": 4, "gelu": 2, "silu": 2, "hardswish": 2}
_DROPOUT = {0.0: 6, 0.05: 1, 0.1: 1.5, 0.2: 1, 0.3: 0.5, 0.4: 0.2, 0.5: 0.2}
_POOL = {"none": 6, "max": 2.5, "avg": 1.5}
_EXPANSION = {1: 1, 2: 2, 3: 1, 4: 2, 5: 0.5, 6: 2}
_HIDDEN = {0: 6, 16: 0.5, 32: 1, 64: 1.5, 128: 1.5, 256: 1, 512: 0.5, 1024: 0.3}
_OPTIMIZER = {"sgd": 4, "adam": 3, "adamw": 3}
_MOMENTUM = {0.0: 0.5, 0.5: 0.5, 0.8: 1, 0.9: 5, 0.95: 1, 0.99: 0.3}
_SCHEDULE = {"constant": 2, "cosine": 5, "step": 2}
_WARMUP = {0: 6, 1: 2, 2: 1, 3: 0.5, 4: 0.3, 5: 0.3}
_WEIGHT_DECAY = {0.0: 2, 1e-5: 1, 1e-4: 2, 5e-4: 3, 1e-3: 2, 5e-3: 1, 1e-2: 1, 5e-2: 0.5, 0.1: 0.3}
_BATCH = {16: 1, 32: 3, 64: 4, 128: 3, 256: 1, 512: 0.5}
_SMOOTHING = {0.0: 6, 0.05: 1, 0.1: 2, 0.2: 1, 0.3: 0.5}
_AUGMENTATION = {"none": 3, "flip": 2, "crop": 2, "crop_flip": 2}
# Typical learning-rate ranges (log-uniform) per optimizer; 10% of draws use the whole range.
_LR_RANGE = {"sgd": (0.01, 0.3), "adam": (3e-4, 1e-2), "adamw": (3e-4, 1e-2)}
_LR_BOUNDS = (1e-5, 1.0)
# A draw above this many MACs per image is kept only with probability OVER_BUDGET_KEEP:
# sampled networks stay fast on CPU (a 1x8x8 digits candidate at 4M MACs trains its 15
# epochs in well under a minute on 2 cores) but larger ones still appear now and then.
SOFT_MACS = 4_000_000
OVER_BUDGET_KEEP = 0.05


_NOTHING = object()


def _pick(rng: random.Random, weights: dict[Any, float], exclude: Any = _NOTHING) -> Any:
    """A weighted random key of ``weights``, other than ``exclude``."""
    options = [(k, v) for k, v in weights.items() if k != exclude]
    return rng.choices([k for k, _ in options], weights=[v for _, v in options])[0]


def _round_sig(x: float, digits: int = 2) -> float:
    return float(f"{x:.{digits}g}")


def _log_uniform(rng: random.Random, lo: float, hi: float) -> float:
    return _round_sig(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _draw_lr(rng: random.Random, optimizer: str) -> float:
    lo, hi = _LR_BOUNDS if rng.random() < 0.1 else _LR_RANGE[optimizer]
    return min(max(_log_uniform(rng, lo, hi), _LR_BOUNDS[0]), _LR_BOUNDS[1])


def _draw_stage(rng: random.Random) -> dict[str, Any]:
    return {
        "block": rng.choice(get_args(BlockKind)),
        "channels": _pick(rng, _STAGE_CHANNELS),
        "depth": _pick(rng, _DEPTH),
        "kernel": _pick(rng, _KERNEL),
        "stride": _pick(rng, _STRIDE),
        "norm": _pick(rng, _NORM),
        "activation": _pick(rng, _ACTIVATION),
        "dropout": _pick(rng, _DROPOUT),
        "pool": _pick(rng, _POOL),
        "expansion": _pick(rng, _EXPANSION),
    }


def draw_spec(rng: random.Random) -> dict[str, Any]:
    optimizer = _pick(rng, _OPTIMIZER)
    return {
        "stem": {"channels": _pick(rng, _STEM_CHANNELS), "kernel": _pick(rng, _KERNEL),
                 "stride": _pick(rng, {1: 17, 2: 3}), "norm": _pick(rng, _NORM), "activation": _pick(rng, _ACTIVATION)},
        "stages": [_draw_stage(rng) for _ in range(_pick(rng, _STAGES_N))],
        "head": {"hidden": _pick(rng, _HIDDEN), "dropout": _pick(rng, _DROPOUT)},
        "training": {
            "optimizer": optimizer, "lr": _draw_lr(rng, optimizer), "momentum": _pick(rng, _MOMENTUM),
            "schedule": _pick(rng, _SCHEDULE), "warmup_epochs": _pick(rng, _WARMUP),
            "weight_decay": _pick(rng, _WEIGHT_DECAY), "batch_size": _pick(rng, _BATCH),
            "label_smoothing": _pick(rng, _SMOOTHING), "augmentation": _pick(rng, _AUGMENTATION),
        },
    }


def _new_width(rng: random.Random, channels: int, lo: int, hi: int) -> int:
    """A different width near ``channels``: x0.5, x0.75, x1.5 or x2, rounded to a multiple of 8."""
    options = {min(hi, max(lo, 8 * round(channels * f / 8))) for f in (0.5, 0.75, 1.5, 2.0)} - {channels}
    return rng.choice(sorted(options))


def _other(rng: random.Random, weights: dict[Any, float], current: Any) -> Any:
    return _pick(rng, weights, exclude=current)


def _neighbour_int(rng: random.Random, value: int, lo: int, hi: int) -> int:
    return rng.choice([v for v in (value - 1, value + 1) if lo <= v <= hi])


# Each edit changes one thing; the mutated stage field is drawn among those that matter.
def _edit_stage_field(spec: dict[str, Any], rng: random.Random) -> None:
    i = rng.randrange(len(spec["stages"]))
    st = spec["stages"][i]
    fields = ["block", "channels", "depth", "kernel", "stride", "norm", "activation", "dropout", "pool"]
    if st["block"] == "bottleneck":
        fields.append("expansion")
    field = rng.choice(fields)
    if field == "channels":
        st[field] = _new_width(rng, st[field], 8, 512)
    elif field == "depth":
        st[field] = _neighbour_int(rng, st[field], 1, 6)
    elif field == "expansion":
        st[field] = _other(rng, _EXPANSION, st[field])
    else:
        table = {"block": dict.fromkeys(get_args(BlockKind), 1), "kernel": _KERNEL, "stride": _STRIDE,
                 "norm": _NORM, "activation": _ACTIVATION, "dropout": _DROPOUT, "pool": _POOL}[field]
        st[field] = _other(rng, table, st[field])


def _edit_add_stage(spec: dict[str, Any], rng: random.Random) -> None:
    stages = spec["stages"]
    if len(stages) >= MAX_STAGES:
        raise NoEdit
    at = rng.randint(0, len(stages))
    new = copy.deepcopy(stages[max(0, at - 1)])
    new.update(depth=1, stride=1, pool="none")  # keeps the feature-map size: always shape-valid
    stages.insert(at, new)


def _edit_remove_stage(spec: dict[str, Any], rng: random.Random) -> None:
    if len(spec["stages"]) <= 1:
        raise NoEdit
    del spec["stages"][rng.randrange(len(spec["stages"]))]


def _edit_stem(spec: dict[str, Any], rng: random.Random) -> None:
    stem = spec["stem"]
    field = rng.choice(["channels", "kernel", "stride", "norm", "activation"])
    if field == "channels":
        stem[field] = _new_width(rng, stem[field], 8, 256)
    else:
        table = {"kernel": _KERNEL, "stride": _STRIDE, "norm": _NORM, "activation": _ACTIVATION}[field]
        stem[field] = _other(rng, table, stem[field])


def _edit_head(spec: dict[str, Any], rng: random.Random) -> None:
    head = spec["head"]
    field = rng.choice(["hidden", "dropout"])
    head[field] = _other(rng, _HIDDEN if field == "hidden" else _DROPOUT, head[field])


def _edit_training(spec: dict[str, Any], rng: random.Random) -> None:
    tr = spec["training"]
    fields = ["optimizer", "lr", "schedule", "warmup_epochs", "weight_decay", "batch_size", "label_smoothing",
              "augmentation"]
    if tr["optimizer"] == "sgd":
        fields.append("momentum")
    field = rng.choice(fields)
    if field == "lr":
        factor = rng.choice([0.3, 0.5, 2.0, 3.0])
        new = min(max(_round_sig(tr["lr"] * factor), _LR_BOUNDS[0]), _LR_BOUNDS[1])
        if new == tr["lr"]:  # at a bound: go the other way
            new = min(max(_round_sig(tr["lr"] / factor), _LR_BOUNDS[0]), _LR_BOUNDS[1])
        tr["lr"] = new
    elif field == "warmup_epochs":
        tr[field] = _neighbour_int(rng, tr[field], 0, 5)
    else:
        table = {"optimizer": _OPTIMIZER, "schedule": _SCHEDULE, "weight_decay": _WEIGHT_DECAY, "batch_size": _BATCH,
                 "label_smoothing": _SMOOTHING, "augmentation": _AUGMENTATION, "momentum": _MOMENTUM}[field]
        tr[field] = _other(rng, table, tr[field])


class NoEdit(Exception):
    """This edit does not apply to this spec (e.g. adding a stage to a full network)."""


# (edit, weight): stage fields most often, then training, then structure, stem and head.
EDITS = ((_edit_stage_field, 5), (_edit_training, 3), (_edit_add_stage, 1), (_edit_remove_stage, 1),
          (_edit_stem, 1), (_edit_head, 1))


def other_augmentation(rng: random.Random, current: str) -> str:
    """Another training augmentation than ``current``: an edit that changes neither shapes nor counts."""
    return _other(rng, _AUGMENTATION, current)
