"""Readable torch source for one NAS-Bench-201 cell in the benchmark's skeleton network.

The module tree is exactly ``evaluator.models.nb201_net.Nb201Net``'s (stem, ``cells`` with the
two reduction blocks at positions ``cells`` and ``2 * cells + 1``, ``head_norm``,
``classifier``; a cell's ops in a ModuleDict keyed ``"i_j"``), so the evaluator's state_dict
loads into it unchanged. The cell itself is written out for this arch: its ops and its
forward pass node by node.
"""

from __future__ import annotations

from typing import Any

from agent.exporter.template import Source
from evaluator.spaces.nb201 import EDGES, arch_string

OP_SOURCE = {
    "skip_connect": "nn.Identity()",
    "nor_conv_1x1": "relu_conv_bn(channels, channels, 1)",
    "nor_conv_3x3": "relu_conv_bn(channels, channels, 3)",
    "avg_pool_3x3": "nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)",
}

SKELETON = '''
def relu_conv_bn(c_in, c_out, kernel, stride=1):
    """ReLU -> conv kxk (padding k // 2, no bias) -> batch norm."""
    return nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out))


def reduction_stride(h, w):
    """Stride 2 on each axis longer than 1 pixel, 1 on an axis that cannot shrink."""
    return (2 if h > 1 else 1, 2 if w > 1 else 1)


class Reduction(nn.Module):
    """Residual block c_in -> c_out halving H and W (rounding up; 1 stays 1): ReLU-conv3x3/2-BN ->
    ReLU-conv3x3-BN, plus a shortcut of 2x2 average pooling and a 1x1 conv."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.body = nn.Sequential(relu_conv_bn(c_in, c_out, 3, stride), relu_conv_bn(c_out, c_out, 3))
        pool = [nn.AvgPool2d(stride, stride=stride, ceil_mode=True)] if stride != (1, 1) else []
        self.shortcut = nn.Sequential(*pool, nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


class Net(nn.Module):
    """stem (conv 3x3 -> BN) -> CELLS cells at CHANNELS -> reduction -> CELLS cells at 2 * CHANNELS
    -> reduction -> CELLS cells at 4 * CHANNELS -> BN -> ReLU -> global average pool -> linear."""

    def __init__(self, input_shape, num_classes, channels=CHANNELS, cells=CELLS):
        super().__init__()
        c_in, h, w = input_shape
        c = channels
        self.stem = nn.Sequential(nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        layers = []
        for stage in range(3):
            if stage > 0:
                stride = reduction_stride(h, w)
                layers.append(Reduction(c, 2 * c, stride))
                c, h, w = 2 * c, -(-h // stride[0]), -(-w // stride[1])
            layers += [Cell(c) for _ in range(cells)]
        self.cells = nn.Sequential(*layers)
        self.head_norm = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU())
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        x = self.head_norm(self.cells(self.stem(x)))  # (B, 4C, H', W')
        return self.classifier(x.mean(dim=(2, 3)))  # (B, num_classes)


def build_model(input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES):
    """The network, untrained (load weights.pt with load_weights)."""
    return Net(tuple(input_shape), int(num_classes))
'''


def nb201_source(spec: dict[str, Any], *, channels: int = 16, cells: int = 5) -> Source:
    """model.py's network part for a validated nb201 spec (``channels`` C and ``cells`` N as the evaluator used)."""
    arch = arch_string(spec)
    ops = [(i, j, spec[f"edge_{i}_{j}"]) for i, j in EDGES]
    entries = [f'            "{i}_{j}": {OP_SOURCE[op]},  # {op}: node {j} -> node {i}' for i, j, op in ops if op != "none"]
    cell = ["class Cell(nn.Module):",
            f'    """The cell {arch}',
            "    Node 0 is the cell's input; node i sums the ops on its incoming edges; node 3 is the output."]
    for node in (1, 2, 3):
        terms = [f"{op}(node {j})" for i, j, op in ops if i == node and op != "none"]
        cell.append(f"        node {node} = {' + '.join(terms) if terms else 'zeros (every incoming edge is none)'}")
    cell += ['    """', "", "    def __init__(self, channels):", "        super().__init__()"]
    if entries:
        cell += ["        self.ops = nn.ModuleDict({", *entries, "        })"]
    else:
        cell.append("        self.ops = nn.ModuleDict()  # every edge is none")
    cell += ["", "    def forward(self, x):", "        nodes = [x]"]
    for node in (1, 2, 3):
        terms = [f'self.ops["{i}_{j}"](nodes[{j}])' for i, j, op in ops if i == node and op != "none"]
        if terms:
            cell.append(f"        nodes.append({' + '.join(terms)})")
        else:
            cell.append("        nodes.append(x * 0.0)  # no incoming op: zeros of the input's shape")
    cell.append("        return nodes[3]")
    body = "\n".join([f"CHANNELS = {channels}  # C: channels of the first stage (NAS-Bench-201: 16)",
                      f"CELLS = {cells}  # N: cells per stage (NAS-Bench-201: 5)", "", "",
                      "\n".join(cell), "", "", SKELETON.strip()])
    docstring = (f"The NAS-Bench-201 network of the cell {arch},\nas archagent's evaluator built it. Input (B, C, H, W) "
                 "normalised images (see normalise),\noutput (B, NUM_CLASSES) logits.")
    return Source(docstring=docstring, body=body)
