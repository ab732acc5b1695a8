"""The ``layers`` space's schema: a spec is a stem, stages of blocks, a head, and the training
recipe (``evaluator.recipe.Training``); the package docstring says what network it describes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from evaluator.recipe import Training

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
