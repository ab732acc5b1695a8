"""The NAS-Bench-201 skeleton network around one cell, for real training.

    stem      conv 3x3 (C channels, no bias) -> BN
    stage 1   N cells at C channels
    reduce    residual block to 2C, stride 2
    stage 2   N cells at 2C
    reduce    residual block to 4C, stride 2
    stage 3   N cells at 4C
    head      BN -> ReLU -> global average pool -> linear

C = 16 and N = 5 as in the paper (``channels`` and ``cells``); smaller values make CPU tests
fast. A cell is a DAG of 4 nodes: node 0 is the cell input, node i the sum of the ops on its
incoming edges, node 3 the output. Ops: ``none`` (zero), ``skip_connect`` (identity),
``nor_conv_kxk`` (ReLU -> conv kxk -> BN), ``avg_pool_3x3`` (stride 1, padding 1, padding not
counted). A node whose every incoming edge is ``none`` is zero; the network still runs (its
output is then a function of the reduction blocks alone).

The reduction block: ReLU-conv3x3/2-BN -> ReLU-conv3x3-BN, plus a shortcut of 2x2 average
pooling (stride 2) and a 1x1 conv. Small inputs: **a reduction halves an axis rounding up
(7 -> 4) and leaves an axis that is already 1 pixel long at 1 (stride 1 on that axis)**, so
any input of at least 1x1 works: 8x8 goes 8 -> 4 -> 2, 2x2 goes 2 -> 1 -> 1.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from evaluator.spaces.nb201 import EDGES, Nb201Space


def relu_conv_bn(c_in: int, c_out: int, kernel: int, stride: int | tuple[int, int] = 1) -> nn.Sequential:
    return nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out))


def make_op(op: str, channels: int) -> nn.Module | None:
    """The module of one edge; None for 'none' (the edge adds nothing)."""
    if op == "none":
        return None
    if op == "skip_connect":
        return nn.Identity()
    if op == "nor_conv_1x1":
        return relu_conv_bn(channels, channels, 1)
    if op == "nor_conv_3x3":
        return relu_conv_bn(channels, channels, 3)
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"op={op!r} is not a NAS-Bench-201 op")


class Cell(nn.Module):
    """Node i = sum over j < i of op_ij(node j); returns node 3. Keeps shape (B, C, H, W)."""

    def __init__(self, spec: dict[str, Any], channels: int) -> None:
        super().__init__()
        self.inputs: dict[int, list[tuple[int, str]]] = {i: [] for i in (1, 2, 3)}
        self.ops = nn.ModuleDict()
        for i, j in EDGES:
            op = make_op(spec[f"edge_{i}_{j}"], channels)
            if op is not None:
                self.ops[f"{i}_{j}"] = op
                self.inputs[i].append((j, f"{i}_{j}"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for i in (1, 2, 3):
            incoming = [self.ops[name](nodes[j]) for j, name in self.inputs[i]]
            nodes.append(torch.stack(incoming).sum(0) if len(incoming) > 1 else
                         incoming[0] if incoming else x * 0.0)  # all 'none': zeros of the input's shape
        return nodes[3]


def reduction_stride(h: int, w: int) -> tuple[int, int]:
    """Stride 2 on each axis longer than 1 pixel, 1 on an axis that cannot shrink."""
    return (2 if h > 1 else 1, 2 if w > 1 else 1)


class Reduction(nn.Module):
    """Residual block C_in -> C_out that halves H and W (rounding up; 1 stays 1)."""

    def __init__(self, c_in: int, c_out: int, stride: tuple[int, int]) -> None:
        super().__init__()
        self.body = nn.Sequential(relu_conv_bn(c_in, c_out, 3, stride), relu_conv_bn(c_out, c_out, 3))
        pool = [nn.AvgPool2d(stride, stride=stride, ceil_mode=True)] if stride != (1, 1) else []
        self.shortcut = nn.Sequential(*pool, nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class Nb201Net(nn.Module):
    """Input (B, C_in, H, W) -> logits (B, num_classes)."""

    def __init__(self, spec: Any, input_shape: tuple[int, ...], num_classes: int, *, channels: int = 16,
                 cells: int = 5) -> None:
        super().__init__()
        for label, value in (("channels", channels), ("cells", cells), ("num_classes", num_classes)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{label}={value!r} must be a positive int")
        if len(input_shape) != 3:
            raise ValueError(f"{input_shape=} must be (C, H, W)")
        spec = Nb201Space().validate(spec)  # a dict of edges, an arch string, or {"arch": ...}
        self.spec = spec
        c_in, h, w = input_shape
        c = channels
        self.stem = nn.Sequential(nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        layers: list[nn.Module] = []
        for stage in range(3):
            if stage > 0:
                stride = reduction_stride(h, w)
                layers.append(Reduction(c, 2 * c, stride))
                c, h, w = 2 * c, -(-h // stride[0]), -(-w // stride[1])
            layers += [Cell(spec, c) for _ in range(cells)]
        self.cells = nn.Sequential(*layers)
        self.output_hw = (h, w)  # spatial size before global pooling
        self.head_norm = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU())
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head_norm(self.cells(self.stem(x)))  # (B, 4C, H/4, W/4)
        return self.classifier(x.mean(dim=(2, 3)))  # (B, num_classes)
