"""The ``layers`` space: an open-ended image classifier made of a stem, stages of blocks and a head,
plus the hyperparameters it is trained with. Inputs are images shaped (C, H, W).

The network a spec describes (``evaluator.models.layers_net`` builds exactly this):

    stem     conv kxk (stride s) -> norm -> act
    stage    `depth` blocks; the first has the stage's stride and changes the width, the
             rest keep it; dropout after each block; then optional 2x2 pooling (stride 2)
    head     global average pool -> [linear hidden -> act] -> dropout -> linear num_classes

Blocks (k = kernel, s = stride, "norm" is batch / group / none, "act" the activation):

    plain       conv kxk/s -> norm -> act
    dwsep       depthwise kxk/s -> norm -> act -> conv 1x1 -> norm -> act     (MobileNet v1)
    residual    conv kxk/s -> norm -> act -> conv kxk -> norm, + shortcut, -> act  (ResNet basic)
                shortcut: identity, or conv 1x1/s -> norm when the shape changes
    bottleneck  conv 1x1 to in*expansion -> norm -> act -> depthwise kxk/s -> norm -> act
                -> conv 1x1 -> norm, + identity when stride 1 and width unchanged
                (MobileNet v2 inverted bottleneck; expansion 1 has no first 1x1 conv)

Rules every count and the builder share:

- Convolutions pad ``kernel // 2`` (kernels are odd), so a stride-1 conv keeps H x W and a
  stride-2 conv gives ceil(H / 2); pooling gives floor(H / 2). A stride 2 or a pooling on a
  feature map already 1 pixel high or wide is an error: it cannot shrink it any further.
- A conv has a bias only when its norm is ``none``; batch and group norm have 2 parameters
  per channel. Group norm uses ``gcd(C, min(32, C // 8))`` groups (at least 8 channels each).
  The head's hidden layer uses the last stage's activation.
- **FLOPs are multiply-accumulates (MACs): one MAC counts as one FLOP**, the convention of
  NAS-Bench-201 and most NAS papers (double it for hardware FLOPs). Only convolutions and
  linear layers are counted, per image: ``H_out * W_out * C_out * (C_in / groups) * k * k``
  for a conv, ``in * out`` for a linear layer. Biases, norms, activations, pooling and
  residual additions are not counted.

``validate`` returns the normalised spec: defaults filled in, and the fields that do not
apply reset to their defaults (``momentum`` unless the optimizer is sgd, ``expansion``
unless the block is bottleneck), so that two specs that train the same network the same
way have the same canonical key.
"""

from __future__ import annotations

import copy
import json
import math
import random
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from evaluator.errors import SpecError, UserInputError
from evaluator.recipe import TRAINING_DEFAULTS, Training
from evaluator.spaces.base import SearchSpace, field_text

Norm = Literal["batch", "group", "none"]
Activation = Literal["relu", "gelu", "silu", "hardswish"]
Kernel = Literal[1, 3, 5, 7]
Stride = Literal[1, 2]
BlockKind = Literal["plain", "dwsep", "residual", "bottleneck"]
Pool = Literal["none", "max", "avg"]

MAX_STAGES = 6
HEAD_HIDDEN_MIN, HEAD_HIDDEN_MAX = 16, 1024


def _check_hidden(value: int) -> int:
    if 0 < value < HEAD_HIDDEN_MIN:
        raise ValueError(f"hidden must be 0 (no hidden layer) or {HEAD_HIDDEN_MIN}..{HEAD_HIDDEN_MAX}")
    return value


HIDDEN_DESCRIPTION = (f"units of a hidden linear layer before the classifier: 0 for none, "
                      f"else {HEAD_HIDDEN_MIN}..{HEAD_HIDDEN_MAX}")
# The JSON schema says exactly what is allowed (0, or 16..1024), so constrained decoding
# cannot emit 1..15; validation gives one clear message instead of pydantic's union noise.
HeadHidden = Annotated[
    int,
    Field(ge=0, le=HEAD_HIDDEN_MAX),
    AfterValidator(_check_hidden),
    WithJsonSchema({"anyOf": [{"type": "integer", "const": 0},
                              {"type": "integer", "minimum": HEAD_HIDDEN_MIN, "maximum": HEAD_HIDDEN_MAX}],
                    "description": HIDDEN_DESCRIPTION}),
]


class Stem(BaseModel):
    """The first convolution, applied to the input image."""

    model_config = ConfigDict(extra="forbid")

    channels: int = Field(32, ge=8, le=256, description="output channels of the stem conv")
    kernel: Kernel = Field(3, description="conv kernel size (odd; padding kernel//2)")
    stride: Stride = Field(1, description="conv stride; 2 halves H and W (rounding up)")
    norm: Norm = Field("batch", description="normalisation after the conv")
    activation: Activation = Field("relu", description="activation after the norm")


class Stage(BaseModel):
    """``depth`` blocks of one kind at one width, then optional pooling."""

    model_config = ConfigDict(extra="forbid")

    block: BlockKind = Field("plain", description="block kind: plain conv, dwsep (depthwise-separable conv), "
                             "residual (two convs + shortcut), bottleneck (inverted bottleneck, MobileNetV2)")
    channels: int = Field(ge=8, le=512, description="output channels of every block in the stage")
    depth: int = Field(1, ge=1, le=6, description="number of blocks")
    kernel: Kernel = Field(3, description="spatial kernel size of the blocks' kxk convs")
    stride: Stride = Field(1, description="stride of the first block; 2 halves H and W (rounding up)")
    norm: Norm = Field("batch", description="normalisation inside the blocks")
    activation: Activation = Field("relu", description="activation inside the blocks")
    dropout: float = Field(0.0, ge=0.0, le=0.5, description="dropout probability after each block")
    pool: Pool = Field("none", description="2x2 pooling with stride 2 after the stage (halves H and W, rounding down)")
    expansion: int = Field(4, ge=1, le=6, description="bottleneck only: hidden width = input channels * expansion")


class Head(BaseModel):
    """Global average pooling, an optional hidden layer, and the classifier."""

    model_config = ConfigDict(extra="forbid")

    hidden: HeadHidden = Field(0, description=HIDDEN_DESCRIPTION)
    dropout: float = Field(0.0, ge=0.0, le=0.5, description="dropout probability before the classifier")


class LayersSpec(BaseModel):
    """An image classifier: stem -> stages -> head, and how to train it."""

    model_config = ConfigDict(extra="forbid")

    stem: Stem = Field(default_factory=Stem, description="the first conv")
    stages: list[Stage] = Field(min_length=1, max_length=MAX_STAGES,
                                description=f"1..{MAX_STAGES} stages, applied in order")
    head: Head = Field(default_factory=Head, description="the classifier after global average pooling")
    training: Training = Field(default_factory=Training, description="training hyperparameters (not epochs)")


STAGE_DEFAULTS: dict[str, Any] = {name: f.default for name, f in Stage.model_fields.items() if not f.is_required()}


# --------------------------------------------------------------------------------------------
# Static analysis: shapes, parameters, FLOPs (MACs)
# --------------------------------------------------------------------------------------------


def group_norm_groups(channels: int) -> int:
    """Groups of a GroupNorm over ``channels``: at least 8 channels a group, at most 32 groups."""
    return math.gcd(channels, min(32, max(1, channels // 8)))


def conv_out(size: int, stride: int) -> int:
    """Output size of a conv with an odd kernel, padding kernel//2: ceil(size / stride)."""
    return (size - 1) // stride + 1


class _Part:
    """Adds up the parameters and MACs of one part of the network (stem, a stage, the head)
    while following the shape (C, H, W) of the feature maps through it."""

    def __init__(self, c: int, h: int, w: int) -> None:
        self.c, self.h, self.w = c, h, w
        self.params = 0
        self.macs = 0

    def conv(self, c_in: int, c_out: int, kernel: int, stride: int, h: int, w: int, norm: str,
             groups: int = 1) -> tuple[int, int]:
        """Count one conv (+ its norm) on an h x w input; return its output size."""
        ho, wo = conv_out(h, stride), conv_out(w, stride)
        per_out = (c_in // groups) * kernel * kernel
        self.params += c_out * per_out + (c_out if norm == "none" else 2 * c_out)  # bias, or norm's scale+shift
        self.macs += ho * wo * c_out * per_out
        return ho, wo

    def linear(self, n_in: int, n_out: int) -> None:
        self.params += n_in * n_out + n_out
        self.macs += n_in * n_out

    def block(self, kind: str, c_out: int, kernel: int, stride: int, norm: str, expansion: int) -> None:
        """Count one block on the current feature maps and move to its output shape."""
        c_in, h, w = self.c, self.h, self.w
        if kind == "plain":
            ho, wo = self.conv(c_in, c_out, kernel, stride, h, w, norm)
        elif kind == "dwsep":
            ho, wo = self.conv(c_in, c_in, kernel, stride, h, w, norm, groups=c_in)
            self.conv(c_in, c_out, 1, 1, ho, wo, norm)
        elif kind == "residual":
            ho, wo = self.conv(c_in, c_out, kernel, stride, h, w, norm)
            self.conv(c_out, c_out, kernel, 1, ho, wo, norm)
            if stride != 1 or c_in != c_out:  # projection shortcut
                self.conv(c_in, c_out, 1, stride, h, w, norm)
        elif kind == "bottleneck":
            mid = c_in * expansion
            if expansion != 1:
                self.conv(c_in, mid, 1, 1, h, w, norm)
            ho, wo = self.conv(mid, mid, kernel, stride, h, w, norm, groups=mid)
            self.conv(mid, c_out, 1, 1, ho, wo, norm)
        else:  # the schema makes this unreachable
            raise ValueError(f"block={kind!r} must be one of {get_args(BlockKind)}")
        self.c, self.h, self.w = c_out, ho, wo


def _shrink_error(field: str, what: str, h: int, w: int, fix: str, input_shape: tuple[int, ...]) -> SpecError:
    return SpecError(
        f"{field}: {what} would shrink {h}x{w} feature maps below 1x1; {fix}",
        hint=f"the input is {'x'.join(map(str, input_shape))} (CxHxW); every stride 2 and every pooling halves H and W",
        field=field,
    )


def analyse(spec: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> dict[str, Any]:
    """Shapes, parameters and MACs of a normalised spec, part by part; SpecError on a bad shape."""
    c, h, w = input_shape
    parts: dict[str, _Part] = {}

    stem = spec["stem"]
    if stem["stride"] == 2 and min(h, w) < 2:
        raise _shrink_error("stem.stride", "stride 2", h, w, "use stride 1", input_shape)
    part = parts["stem"] = _Part(c, h, w)
    part.h, part.w = part.conv(c, stem["channels"], stem["kernel"], stem["stride"], h, w, stem["norm"])
    part.c = stem["channels"]
    stem_shape = [part.c, part.h, part.w]

    stage_shapes = []
    for i, st in enumerate(spec["stages"]):
        if st["stride"] == 2 and min(part.h, part.w) < 2:
            raise _shrink_error(f"stages.{i}.stride", "stride 2", part.h, part.w,
                                "use stride 1 or remove a pooling earlier", input_shape)
        part = parts[f"stages.{i}"] = _Part(part.c, part.h, part.w)
        for d in range(st["depth"]):
            part.block(st["block"], st["channels"], st["kernel"], st["stride"] if d == 0 else 1, st["norm"],
                       st["expansion"])
        if st["pool"] != "none":
            if min(part.h, part.w) < 2:
                raise _shrink_error(f"stages.{i}.pool", f"{st['pool']} pooling", part.h, part.w,
                                    "use pool 'none' or a stride 1 earlier", input_shape)
            part.h, part.w = part.h // 2, part.w // 2
        stage_shapes.append([part.c, part.h, part.w])

    width, hidden = part.c, spec["head"]["hidden"]  # after global average pooling: (C,)
    head = parts["head"] = _Part(width, 1, 1)
    if hidden:
        head.linear(width, hidden)
        width = hidden
    head.linear(width, num_classes)

    return {
        "params": sum(p.params for p in parts.values()),
        "flops": sum(p.macs for p in parts.values()),
        "input_shape": list(input_shape),
        "stem_shape": stem_shape,
        "stage_shapes": stage_shapes,
        "output_shape": [num_classes],
        "params_by_part": {name: p.params for name, p in parts.items()},
        "flops_by_part": {name: p.macs for name, p in parts.items()},
    }


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
# A draw above this many MACs per image is kept only with probability _OVER_BUDGET_KEEP:
# sampled networks stay fast on CPU (a 1x8x8 digits candidate at 4M MACs trains its 15
# epochs in well under a minute on 2 cores) but larger ones still appear now and then.
_SOFT_MACS = 4_000_000
_OVER_BUDGET_KEEP = 0.05


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


def _draw(rng: random.Random) -> dict[str, Any]:
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
        raise _NoEdit
    at = rng.randint(0, len(stages))
    new = copy.deepcopy(stages[max(0, at - 1)])
    new.update(depth=1, stride=1, pool="none")  # keeps the feature-map size: always shape-valid
    stages.insert(at, new)


def _edit_remove_stage(spec: dict[str, Any], rng: random.Random) -> None:
    if len(spec["stages"]) <= 1:
        raise _NoEdit
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


class _NoEdit(Exception):
    """This edit does not apply to this spec (e.g. adding a stage to a full network)."""


# (edit, weight): stage fields most often, then training, then structure, stem and head.
_EDITS = ((_edit_stage_field, 5), (_edit_training, 3), (_edit_add_stage, 1), (_edit_remove_stage, 1),
          (_edit_stem, 1), (_edit_head, 1))


# --------------------------------------------------------------------------------------------
# The space
# --------------------------------------------------------------------------------------------


class LayersSpace(SearchSpace):
    """Open-ended image classifiers; needs the task's ``input_shape`` (C, H, W) and ``num_classes``."""

    name: ClassVar[str] = "layers"
    proposal_schema: ClassVar[type[BaseModel]] = LayersSpec

    def __init__(self, input_shape: tuple[int, ...] | None = None, num_classes: int | None = None, *,
                 max_params: int | None = None, max_flops: int | None = None) -> None:
        super().__init__(input_shape, num_classes, max_params=max_params, max_flops=max_flops)
        if self.input_shape is not None and len(self.input_shape) != 3:
            raise UserInputError(
                f"the layers space builds image classifiers and needs inputs shaped (C, H, W); "
                f"this task's input shape is {self.input_shape}",
                hint="give the data as images (N, C, H, W), e.g. (N, 1, 28, 28) for grey 28x28 images",
            )

    # -- validation ------------------------------------------------------------------

    def _require_task(self, what: str) -> tuple[tuple[int, int, int], int]:
        if self.input_shape is None or self.num_classes is None:
            raise UserInputError(
                f"the layers space cannot {what} without the task's input shape and number of classes",
                hint="make it for a task: get_space('layers', input_shape=(C, H, W), num_classes=K), "
                "or run with --task",
            )
        c, h, w = self.input_shape
        return (c, h, w), self.num_classes

    def normalise(self, spec: Any) -> dict[str, Any]:
        """Schema checks and normalisation only (no shapes): defaults filled, unused fields reset."""
        out = super().validate(spec)
        for st in out["stages"]:
            if st["block"] != "bottleneck":
                st["expansion"] = STAGE_DEFAULTS["expansion"]
        if out["training"]["optimizer"] != "sgd":
            out["training"]["momentum"] = TRAINING_DEFAULTS["momentum"]
        return out

    def validate(self, spec: Any) -> dict[str, Any]:
        input_shape, num_classes = self._require_task("validate a spec")
        out = self.normalise(spec)
        stats = analyse(out, input_shape, num_classes)
        self._check_limit(stats, "params", self.max_params, "parameters")
        self._check_limit(stats, "flops", self.max_flops, "FLOPs (multiply-accumulates per image)")
        return out

    def _check_limit(self, stats: dict[str, Any], key: str, limit: int | None, unit: str) -> None:
        if limit is None or stats[key] <= limit:
            return
        by_part = stats[f"{key}_by_part"]
        biggest = max(by_part, key=by_part.get)
        shrink = {
            "params": "fewer channels (the widest stages first), less depth, a smaller head.hidden or a smaller "
                      "bottleneck expansion",
            "flops": "fewer channels or blocks in the early, high-resolution stages, a stride 2 or pooling earlier, "
                     "smaller kernels, or a smaller bottleneck expansion",
        }[key]
        raise SpecError(
            f"the network has {stats[key]:,} {unit}, over the limit of {limit:,} (max_{key}); "
            f"the largest part is {biggest} with {by_part[biggest]:,}",
            hint=f"shrink {biggest} first: {shrink}",
            field=biggest,
        )

    def stats(self, spec: dict[str, Any]) -> dict[str, Any]:
        """``params``, ``flops`` (MACs per image), ``stem_shape``, ``stage_shapes`` (C, H, W after
        each stage, pooling included), and both counts by part (stem, stages.i, head)."""
        input_shape, num_classes = self._require_task("count parameters")
        return analyse(self.normalise(spec), input_shape, num_classes)

    # -- baselines -------------------------------------------------------------------

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """A random valid spec; small, fast networks are likely, but every value can appear."""
        input_shape, num_classes = self._require_task("sample specs")
        for _ in range(10_000):
            draw = _draw(rng)
            try:
                spec = self.validate(draw)
            except SpecError:
                continue
            if analyse(spec, input_shape, num_classes)["flops"] > _SOFT_MACS and rng.random() > _OVER_BUDGET_KEEP:
                continue
            return spec
        raise RuntimeError(f"no valid layers spec in 10,000 draws for input {input_shape}; are the limits "
                           f"(max_params={self.max_params}, max_flops={self.max_flops}) too tight?")

    def mutate(self, spec: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        """One small edit: a field of one stage, a stage added or removed, the stem, the head, or
        one training hyperparameter. Always valid and different from ``spec``."""
        parent = self.validate(spec)
        key = self.canonical_key(parent)
        edits, weights = zip(*_EDITS)
        for _ in range(200):
            child = copy.deepcopy(parent)
            try:
                rng.choices(edits, weights=weights)[0](child, rng)
                child = self.validate(child)
            except (_NoEdit, SpecError):
                continue
            if self.canonical_key(child) != key:
                return child
        # Training hyperparameters change neither shapes nor counts: this edit is always valid.
        child = copy.deepcopy(parent)
        child["training"]["augmentation"] = _other(rng, _AUGMENTATION, parent["training"]["augmentation"])
        return self.validate(child)

    def canonical_key(self, spec: dict[str, Any]) -> str:
        return json.dumps(self.normalise(spec), sort_keys=True, separators=(",", ":"))

    # -- text ------------------------------------------------------------------------

    def describe(self) -> str:
        lines = [
            ("Image classifier for inputs (C, H, W): stem conv -> 1..6 stages of blocks -> global average pool -> "
             "head; plus training hyperparameters (epochs are set by the evaluator, not proposed)."),
            ("Blocks: plain = conv-norm-act; dwsep = depthwise conv + 1x1 conv (MobileNet); residual = two convs "
             "+ shortcut (ResNet basic block); bottleneck = 1x1 expand (x expansion) -> depthwise -> 1x1 project, "
             "+ identity if shape kept (MobileNetV2)."),
            ("A stage's first block has its stride and changes the width; dropout follows each block; pool (2x2) "
             "follows the stage. Stride 2 and pooling halve H and W; a 1-pixel feature map cannot shrink further."),
            ("Only `stages` (each with `channels`) is required; every other field has a default (after '='). "
             "momentum applies to sgd only and expansion to bottleneck only; elsewhere they are reset to the default."),
        ]
        for label, model in (("stem", Stem), ("stages[i]", Stage), ("head", Head), ("training", Training)):
            lines.append(f"{label}: " + "; ".join(_field_text(n, f) for n, f in model.model_fields.items()))
        lines.append("Counts: params exact; flops = multiply-accumulates per image (1 MAC = 1 FLOP).")
        return "\n".join(lines)

    def summary(self, spec: dict[str, Any]) -> str:
        s = self.normalise(spec)
        stem = s["stem"]
        parts = [f"stem {stem['channels']}c k{stem['kernel']}" + (" s2" if stem["stride"] == 2 else "")]
        for st in s["stages"]:
            text = f"{st['depth']}x{st['block']}"
            if st["block"] == "bottleneck":
                text += f"(e{st['expansion']})"
            text += f" {st['channels']}c k{st['kernel']}" + (" s2" if st["stride"] == 2 else "")
            if st["pool"] != "none":
                text += f" +{st['pool']}pool"
            parts.append(text)
        parts.append(f"fc{s['head']['hidden']}" if s["head"]["hidden"] else "fc")
        tr = s["training"]
        train = f"{tr['optimizer']} lr {tr['lr']:g} {tr['schedule']} bs {tr['batch_size']}"
        if tr["augmentation"] != "none":
            train += f" aug {tr['augmentation']}"
        return " > ".join(parts) + " | " + train

    def extra_fields(self, spec: dict[str, Any]) -> dict[str, Any]:
        """``params``, ``flops`` (when the space knows its task) and a one-line ``summary``."""
        out: dict[str, Any] = {}
        if self.input_shape is not None and self.num_classes is not None:
            stats = self.stats(spec)
            out |= {"params": stats["params"], "flops": stats["flops"]}
        out["summary"] = self.summary(spec)
        return out


def _field_text(name: str, info: Any) -> str:
    """``name choices-or-bounds =default`` for one schema field (the head's ``hidden``: 0 or a range)."""
    if name == "hidden":
        return field_text(name, info, choices=f"0|{HEAD_HIDDEN_MIN}..{HEAD_HIDDEN_MAX}")
    return field_text(name, info)


__all__ = ["Head", "LayersSpace", "LayersSpec", "Stage", "Stem", "analyse", "conv_out",
           "group_norm_groups"]
