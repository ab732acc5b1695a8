"""``LayersSpace``: validation (with the static analysis), canonical keys, sampling and mutation,
and the descriptions prompts and `agent spaces` show."""

from __future__ import annotations

import copy
import json
import random
from typing import Any, ClassVar

from pydantic import BaseModel

from evaluator.errors import SpecError, UserInputError
from evaluator.recipe import TRAINING_DEFAULTS, Training
from evaluator.spaces.base import SearchSpace, field_text
from evaluator.spaces.layers.analysis import analyse
from evaluator.spaces.layers.edits import EDITS, OVER_BUDGET_KEEP, SOFT_MACS, NoEdit, draw_spec, other_augmentation
from evaluator.spaces.layers.schema import HEAD_HIDDEN_MAX, HEAD_HIDDEN_MIN, STAGE_DEFAULTS, Head, LayersSpec, Stage, Stem

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
            draw = draw_spec(rng)
            try:
                spec = self.validate(draw)
            except SpecError:
                continue
            if analyse(spec, input_shape, num_classes)["flops"] > SOFT_MACS and rng.random() > OVER_BUDGET_KEEP:
                continue
            return spec
        raise RuntimeError(f"no valid layers spec in 10,000 draws for input {input_shape}; are the limits "
                           f"(max_params={self.max_params}, max_flops={self.max_flops}) too tight?")

    def mutate(self, spec: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        """One small edit: a field of one stage, a stage added or removed, the stem, the head, or
        one training hyperparameter. Always valid and different from ``spec``."""
        parent = self.validate(spec)
        key = self.canonical_key(parent)
        edits, weights = zip(*EDITS)
        for _ in range(200):
            child = copy.deepcopy(parent)
            try:
                rng.choices(edits, weights=weights)[0](child, rng)
                child = self.validate(child)
            except (NoEdit, SpecError):
                continue
            if self.canonical_key(child) != key:
                return child
        # Training hyperparameters change neither shapes nor counts: this edit is always valid.
        child = copy.deepcopy(parent)
        child["training"]["augmentation"] = other_augmentation(rng, parent["training"]["augmentation"])
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
