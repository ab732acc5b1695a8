"""A small ResNet for CIFAR-10: three stages of residual blocks, global pooling, a linear head.

Input (B, 3, 32, 32) normalised floats; output (B, num_classes) logits. A KERNEL x KERNEL
stem, then stages of WIDTH, 2 * WIDTH and 4 * WIDTH channels with DEPTH residual blocks
each; a 2x2 max-pool before stages 2 and 3 halves the maps (32 -> 16 -> 8), then global
average pooling, dropout and a linear classifier.

Every knob can change without breaking the shapes: convolutions pad KERNEL // 2, a pooling
is skipped on maps smaller than 2x2, a 1x1 projection shortcut appears where the width
changes, and the head sees (B, 4 * WIDTH) whatever the input size.
"""

import torch
from torch import nn

WIDTH = 32  # channels of stage 1; stages 2 and 3 have 2x and 4x as many
DEPTH = 1  # residual blocks per stage (two convs each)
KERNEL = 3  # odd kernel size of the stem and block convs
ACTIVATION = "relu"
DROPOUT = 0.0  # probability, before the classifier

CHOICES = {"ACTIVATION": ["relu", "gelu", "silu"], "KERNEL": [3, 5], "DEPTH": [1, 2, 3]}

# The recipe the evaluator trains this file with (epochs are the task's, not set here).
TRAINING = {
    "optimizer": "sgd",
    "lr": 0.05,
    "momentum": 0.9,
    "schedule": "cosine",
    "warmup_epochs": 1,
    "weight_decay": 0.0005,
    "batch_size": 128,
    "label_smoothing": 0.1,
    "augmentation": "crop_flip",
}

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


def conv_bn(c_in, c_out, kernel):
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(c_out))


class Residual(nn.Module):
    """conv-bn-act-conv-bn, plus the input (projected by a 1x1 conv when the width changes), then act."""

    def __init__(self, c_in, c_out):
        super().__init__()
        act = _ACTIVATIONS[ACTIVATION]
        self.body = nn.Sequential(conv_bn(c_in, c_out, KERNEL), act(), conv_bn(c_out, c_out, KERNEL))
        self.shortcut = nn.Identity() if c_in == c_out else conv_bn(c_in, c_out, 1)
        self.act = act()

    def forward(self, x):
        return self.act(self.body(x) + self.shortcut(x))


class SmallResNet(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        c, h, w = input_shape
        layers = [conv_bn(c, WIDTH, KERNEL), _ACTIVATIONS[ACTIVATION]()]
        c_in, side = WIDTH, min(h, w)
        for stage, c_out in enumerate((WIDTH, 2 * WIDTH, 4 * WIDTH)):
            if stage > 0 and side >= 2:
                layers.append(nn.MaxPool2d(2))
                side //= 2
            for _ in range(DEPTH):
                layers.append(Residual(c_in, c_out))
                c_in = c_out
        self.features = nn.Sequential(*layers)  # (B, 4W, H/4, W/4)
        self.pool = nn.AdaptiveAvgPool2d(1)  # (B, 4W, 1, 1)
        self.head = nn.Sequential(nn.Dropout(DROPOUT), nn.Linear(c_in, num_classes))

    def forward(self, x):
        x = self.pool(self.features(x))
        return self.head(torch.flatten(x, 1))  # (B, num_classes)


def build_model(input_shape, num_classes):
    return SmallResNet(tuple(input_shape), num_classes)
