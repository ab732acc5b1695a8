"""Static analysis of a ``layers`` spec: the shape of the feature maps through the network, and
its parameters and FLOPs (MACs), counted exactly as ``evaluator.models.layers_net`` builds it."""

from __future__ import annotations

import math
from typing import Any, get_args

from evaluator.errors import SpecError
from evaluator.spaces.layers.schema import BlockKind

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
