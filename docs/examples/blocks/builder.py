"""The builder of blocks.toml: turns one choice per slot into a torch network.

It runs only inside the sandboxed training worker (never in the process that runs the search), as
code-mode candidates do; `agent search --space-file blocks.toml --task digits` imports it there.
"""

from torch import nn


def block(kind: str, width: int, stride: int) -> nn.Module:
    if kind == "skip":
        return nn.Identity()
    size = 3 if kind == "conv3" else 5
    return nn.Sequential(nn.Conv2d(width, width, size, stride=stride, padding=size // 2, bias=False),
                         nn.BatchNorm2d(width), nn.ReLU())


def build_model(choices: dict, input_shape: tuple, num_classes: int) -> nn.Module:
    width = choices["width"]
    layers = [nn.Conv2d(input_shape[0], width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    for i in range(1, 7):
        layers.append(block(choices[f"b{i}"], width, stride=2 if i in (3, 5) else 1))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes)]
    return nn.Sequential(*layers)
