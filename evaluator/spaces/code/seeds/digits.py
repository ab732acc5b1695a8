"""A small conv net for the 8x8 grey digits: two stages of conv blocks, global pooling, a linear head.

Input (B, 1, 8, 8) normalised floats; output (B, num_classes) logits. The stem and stage 1
work at 8x8 with WIDTH channels, a 2x2 max-pool halves the maps, stage 2 works at 4x4 with
2 * WIDTH channels, then global average pooling, dropout and a linear classifier.

Every knob can change without breaking the shapes: convolutions pad KERNEL // 2 (odd
kernels keep H x W), the pooling is skipped on maps smaller than 2x2, and the head sees
(B, 2 * WIDTH) whatever the input size.
"""

import torch
from torch import nn

WIDTH = 32  # channels of the stem and stage 1; stage 2 has twice as many
DEPTH = 2  # conv blocks per stage
KERNEL = 3  # odd kernel size of every conv
ACTIVATION = "relu"
DROPOUT = 0.1  # probability, before the classifier

CHOICES = {"ACTIVATION": ["relu", "gelu", "silu"], "KERNEL": [1, 3, 5], "DEPTH": [1, 2, 3]}

# The recipe the evaluator trains this file with (epochs are the task's, not set here).
TRAINING = {
    "optimizer": "adamw",
    "lr": 0.003,
    "schedule": "cosine",
    "warmup_epochs": 0,
    "weight_decay": 0.0005,
    "batch_size": 64,
    "label_smoothing": 0.0,
    "augmentation": "none",
}

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


def conv_block(c_in, c_out):
    """conv KERNEL x KERNEL (same padding) -> batch norm -> activation."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, KERNEL, padding=KERNEL // 2, bias=False),
        nn.BatchNorm2d(c_out),
        _ACTIVATIONS[ACTIVATION](),
    )


class DigitsNet(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        c, h, w = input_shape
        stage1 = [conv_block(c, WIDTH)] + [conv_block(WIDTH, WIDTH) for _ in range(DEPTH)]
        pool = [nn.MaxPool2d(2)] if min(h, w) >= 2 else []
        stage2 = [conv_block(WIDTH, 2 * WIDTH)] + [conv_block(2 * WIDTH, 2 * WIDTH) for _ in range(DEPTH - 1)]
        self.features = nn.Sequential(*stage1, *pool, *stage2)  # (B, 2W, H/2, W/2)
        self.pool = nn.AdaptiveAvgPool2d(1)  # (B, 2W, 1, 1)
        self.head = nn.Sequential(nn.Dropout(DROPOUT), nn.Linear(2 * WIDTH, num_classes))

    def forward(self, x):
        x = self.pool(self.features(x))
        return self.head(torch.flatten(x, 1))  # (B, num_classes)


def build_model(input_shape, num_classes):
    return DigitsNet(tuple(input_shape), num_classes)
