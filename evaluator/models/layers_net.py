"""The torch network of a ``layers`` spec: exactly the one ``evaluator.spaces.layers`` counts.

The spec is normalised and shape-checked by the space first, so the builder and the analytic
counts read the same fields; tests check that the parameter counts agree.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from evaluator.spaces.layers import LayersSpace, group_norm_groups

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "hardswish": nn.Hardswish}


def norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(group_norm_groups(channels), channels)
    return nn.Identity()


def conv_norm(c_in: int, c_out: int, kernel: int, stride: int, norm: str, act: str | None,
              groups: int = 1) -> nn.Sequential:
    """conv kxk (padding k//2; bias only without a norm) -> norm -> optional activation."""
    layers = [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=norm == "none"),
              norm_layer(norm, c_out)]
    if act is not None:
        layers.append(ACTIVATIONS[act]())
    return nn.Sequential(*layers)


class Plain(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, norm: str, act: str) -> None:
        super().__init__(*conv_norm(c_in, c_out, kernel, stride, norm, act))


class DWSep(nn.Sequential):
    """Depthwise kxk -> norm -> act -> pointwise 1x1 -> norm -> act."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, norm: str, act: str) -> None:
        super().__init__(conv_norm(c_in, c_in, kernel, stride, norm, act, groups=c_in),
                         conv_norm(c_in, c_out, 1, 1, norm, act))


class Residual(nn.Module):
    """Two kxk convs plus a shortcut (1x1 conv + norm when the shape changes), then act."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, norm: str, act: str) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_norm(c_in, c_out, kernel, stride, norm, act),
                                  conv_norm(c_out, c_out, kernel, 1, norm, None))
        self.shortcut = (nn.Identity() if stride == 1 and c_in == c_out
                         else conv_norm(c_in, c_out, 1, stride, norm, None))
        self.act = ACTIVATIONS[act]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    """Inverted bottleneck: 1x1 expand -> depthwise kxk -> 1x1 project (+ identity if shape kept)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, norm: str, act: str, expansion: int) -> None:
        super().__init__()
        mid = c_in * expansion
        layers = [conv_norm(c_in, mid, 1, 1, norm, act)] if expansion != 1 else []
        layers += [conv_norm(mid, mid, kernel, stride, norm, act, groups=mid), conv_norm(mid, c_out, 1, 1, norm, None)]
        self.body = nn.Sequential(*layers)
        self.use_identity = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out + x if self.use_identity else out


def make_block(st: dict[str, Any], c_in: int, stride: int) -> nn.Module:
    args = (c_in, st["channels"], st["kernel"], stride, st["norm"], st["activation"])
    kind = st["block"]
    if kind == "plain":
        return Plain(*args)
    if kind == "dwsep":
        return DWSep(*args)
    if kind == "residual":
        return Residual(*args)
    if kind == "bottleneck":
        return Bottleneck(*args, expansion=st["expansion"])
    raise ValueError(f"block={kind!r} is not a layers block")


class LayersNet(nn.Module):
    """stem -> stages -> global average pool -> head. Input (B, C, H, W), output (B, num_classes)."""

    def __init__(self, spec: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        space = LayersSpace(input_shape, num_classes)
        spec = space.validate(spec)  # normalised and shape-checked: the same spec the counts saw
        self.spec = spec
        stem = spec["stem"]
        self.stem = conv_norm(input_shape[0], stem["channels"], stem["kernel"], stem["stride"], stem["norm"],
                              stem["activation"])
        c = stem["channels"]
        stages = []
        for st in spec["stages"]:
            layers: list[nn.Module] = []
            for d in range(st["depth"]):
                layers.append(make_block(st, c, st["stride"] if d == 0 else 1))
                c = st["channels"]
                if st["dropout"] > 0:
                    layers.append(nn.Dropout(st["dropout"]))
            if st["pool"] == "max":
                layers.append(nn.MaxPool2d(2))
            elif st["pool"] == "avg":
                layers.append(nn.AvgPool2d(2))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        head = spec["head"]
        layers = []
        if head["hidden"]:
            layers += [nn.Linear(c, head["hidden"]), ACTIVATIONS[spec["stages"][-1]["activation"]]()]
            c = head["hidden"]
        if head["dropout"] > 0:
            layers.append(nn.Dropout(head["dropout"]))
        layers.append(nn.Linear(c, num_classes))
        self.head = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))  # (B, C, H', W')
        return self.head(x.mean(dim=(2, 3)))  # (B, C) -> (B, num_classes)
