"""Readable torch source for one ``layers`` spec.

The generated network has exactly the module tree ``evaluator.models.layers_net.LayersNet``
builds for the spec (the same attribute names, ``nn.Sequential`` positions and layers), so the
evaluator's state_dict loads into it unchanged; the exporter checks that on every export.
Only the block kinds the spec uses are written out, and every stage is spelt out block by
block, with a comment saying what it is.
"""

from __future__ import annotations

from typing import Any

from agent.exporter.template import Source

ACTIVATION_CLASSES = {"relu": "nn.ReLU", "gelu": "nn.GELU", "silu": "nn.SiLU", "hardswish": "nn.Hardswish"}
BLOCK_CLASSES = {"plain": "Plain", "dwsep": "DWSep", "residual": "Residual", "bottleneck": "Bottleneck"}

HELPERS = '''
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "hardswish": nn.Hardswish}


def norm_layer(kind, channels):
    """batch: BatchNorm2d; group: GroupNorm, gcd(C, min(32, C // 8)) groups; none: nothing (Identity)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(channels, min(32, max(1, channels // 8))), channels)
    return nn.Identity()


def conv_norm(c_in, c_out, kernel, stride, norm, act, groups=1):
    """conv kxk (padding k // 2; a bias only without a norm) -> norm -> activation (None: no activation)."""
    layers = [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=norm == "none"),
              norm_layer(norm, c_out)]
    if act is not None:
        layers.append(ACTIVATIONS[act]())
    return nn.Sequential(*layers)
'''

BLOCKS = {
    "plain": '''
class Plain(nn.Sequential):
    """conv kxk/s -> norm -> act."""

    def __init__(self, c_in, c_out, kernel, stride, norm, act):
        super().__init__(*conv_norm(c_in, c_out, kernel, stride, norm, act))
''',
    "dwsep": '''
class DWSep(nn.Sequential):
    """Depthwise kxk/s -> norm -> act -> pointwise 1x1 -> norm -> act (MobileNet v1)."""

    def __init__(self, c_in, c_out, kernel, stride, norm, act):
        super().__init__(conv_norm(c_in, c_in, kernel, stride, norm, act, groups=c_in),
                         conv_norm(c_in, c_out, 1, 1, norm, act))
''',
    "residual": '''
class Residual(nn.Module):
    """conv kxk/s -> norm -> act -> conv kxk -> norm, plus a shortcut (1x1 conv/s -> norm when the
    shape changes), then act (the ResNet basic block)."""

    def __init__(self, c_in, c_out, kernel, stride, norm, act):
        super().__init__()
        self.body = nn.Sequential(conv_norm(c_in, c_out, kernel, stride, norm, act),
                                  conv_norm(c_out, c_out, kernel, 1, norm, None))
        self.shortcut = (nn.Identity() if stride == 1 and c_in == c_out
                         else conv_norm(c_in, c_out, 1, stride, norm, None))
        self.act = ACTIVATIONS[act]()

    def forward(self, x):
        return self.act(self.body(x) + self.shortcut(x))
''',
    "bottleneck": '''
class Bottleneck(nn.Module):
    """1x1 expand to c_in * expansion -> norm -> act -> depthwise kxk/s -> norm -> act -> 1x1 project
    -> norm, plus the input when stride 1 and width unchanged (MobileNet v2; expansion 1 has no expand conv)."""

    def __init__(self, c_in, c_out, kernel, stride, norm, act, expansion):
        super().__init__()
        mid = c_in * expansion
        layers = [conv_norm(c_in, mid, 1, 1, norm, act)] if expansion != 1 else []
        layers += [conv_norm(mid, mid, kernel, stride, norm, act, groups=mid), conv_norm(mid, c_out, 1, 1, norm, None)]
        self.body = nn.Sequential(*layers)
        self.use_identity = stride == 1 and c_in == c_out

    def forward(self, x):
        out = self.body(x)
        return out + x if self.use_identity else out
''',
}


def layers_source(spec: dict[str, Any], summary: str) -> Source:
    """model.py's network part for a normalised, validated layers spec."""
    used = []
    for st in spec["stages"]:
        if st["block"] not in used:
            used.append(st["block"])
    parts = [HELPERS.strip()] + [BLOCKS[kind].strip() for kind in BLOCK_CLASSES if kind in used]
    parts.append(_net(spec))
    parts.append('''
def build_model(input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES):
    """The network, untrained (load weights.pt with load_weights)."""
    return Net(tuple(input_shape), int(num_classes))
'''.strip())
    docstring = (f"The network of an archagent `layers` candidate, as the evaluator built it:\n{summary}\n\n"
                 "stem -> stages of blocks -> global average pooling -> head. Input (B, C, H, W) normalised images\n"
                 "(see normalise), output (B, NUM_CLASSES) logits.")
    return Source(docstring=docstring, body="\n\n\n".join(parts), imports=("import math",))


def _net(spec: dict[str, Any]) -> str:
    stem = spec["stem"]
    lines = [
        "class Net(nn.Module):",
        '    """stem -> stages -> global average pool -> head."""',
        "",
        "    def __init__(self, input_shape, num_classes):",
        "        super().__init__()",
        f"        # stem: conv {stem['kernel']}x{stem['kernel']}, stride {stem['stride']}, to {stem['channels']} channels"
        f" -> {_norm_words(stem['norm'])} -> {stem['activation']}",
        f"        self.stem = conv_norm(input_shape[0], {stem['channels']}, {stem['kernel']}, {stem['stride']}, "
        f"{stem['norm']!r}, {stem['activation']!r})",
        "        self.stages = nn.Sequential(",
    ]
    c = stem["channels"]
    for i, st in enumerate(spec["stages"], start=1):
        lines.append(f"            # {_stage_words(i, st)}")
        lines.append("            nn.Sequential(")
        for d in range(st["depth"]):
            stride = st["stride"] if d == 0 else 1
            args = f"{c}, {st['channels']}, {st['kernel']}, {stride}, {st['norm']!r}, {st['activation']!r}"
            if st["block"] == "bottleneck":
                args += f", expansion={st['expansion']}"
            lines.append(f"                {BLOCK_CLASSES[st['block']]}({args}),")
            c = st["channels"]
            if st["dropout"] > 0:
                lines.append(f"                nn.Dropout({st['dropout']!r}),")
        if st["pool"] == "max":
            lines.append("                nn.MaxPool2d(2),")
        elif st["pool"] == "avg":
            lines.append("                nn.AvgPool2d(2),")
        lines.append("            ),")
    lines.append("        )")
    head = spec["head"]
    words = ["global average pool"]
    layers = []
    if head["hidden"]:
        act = spec["stages"][-1]["activation"]
        words += [f"linear to {head['hidden']}", act]
        layers += [f"nn.Linear({c}, {head['hidden']})", f"{ACTIVATION_CLASSES[act]}()"]
        c = head["hidden"]
    if head["dropout"] > 0:
        words.append(f"dropout {head['dropout']:g}")
        layers.append(f"nn.Dropout({head['dropout']!r})")
    words.append("linear to the classes")
    layers.append(f"nn.Linear({c}, num_classes)")
    lines.append(f"        # head: {' -> '.join(words)}")
    lines.append("        self.head = nn.Sequential(")
    lines += [f"            {layer}," for layer in layers]
    lines += [
        "        )",
        "",
        "    def forward(self, x):",
        "        x = self.stages(self.stem(x))  # (B, C, H', W')",
        "        return self.head(x.mean(dim=(2, 3)))  # (B, C) -> (B, num_classes)",
    ]
    return "\n".join(lines)


def _norm_words(norm: str) -> str:
    return {"batch": "batch norm", "group": "group norm", "none": "no norm"}[norm]


def _stage_words(i: int, st: dict[str, Any]) -> str:
    kind = st["block"] + (f" (expansion {st['expansion']})" if st["block"] == "bottleneck" else "")
    text = (f"stage {i}: {st['depth']} x {kind}, {st['channels']} channels, {st['kernel']}x{st['kernel']}, "
            f"stride {st['stride']} in the first block, {_norm_words(st['norm'])}, {st['activation']}")
    if st["dropout"] > 0:
        text += f", dropout {st['dropout']:g} after each block"
    if st["pool"] != "none":
        text += f", then 2x2 {st['pool']} pooling"
    return text
