"""The training recipe, declared once: how a candidate's network is trained.

``Training`` is the recipe a spec carries: a ``layers`` spec as its ``training`` section, a
code-mode model file as its ``TRAINING`` dict (both checked against this schema by
``evaluator.spaces``). The trainer inside the sandbox trains with it
(``evaluator.job.trainer.TrainConfig`` holds one beside the job's epochs, seed and device), and an
export writes it out (``agent.exporter.recipe``). Epochs are not part of it: they are the
evaluation's fidelity, set by the task.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Optimizer = Literal["sgd", "adam", "adamw"]
Schedule = Literal["constant", "cosine", "step"]
BatchSize = Literal[16, 32, 64, 128, 256, 512]
Augmentation = Literal["none", "flip", "crop", "crop_flip"]


class Training(BaseModel):
    """How the network is trained. Epochs are not here: they are the evaluation's fidelity."""

    model_config = ConfigDict(extra="forbid")

    optimizer: Optimizer = Field("sgd", description="sgd (Nesterov momentum), adam or adamw")
    lr: float = Field(0.05, ge=1e-5, le=1.0, description="peak learning rate")
    momentum: float = Field(0.9, ge=0.0, le=0.99, description="sgd only: momentum")
    schedule: Schedule = Field("cosine", description="learning-rate schedule after warm-up: constant, "
                               "cosine (to 0), step (x0.1 at 50% and 75% of training)")
    warmup_epochs: int = Field(0, ge=0, le=5, description="epochs of linear learning-rate warm-up")
    weight_decay: float = Field(5e-4, ge=0.0, le=0.1, description="weight decay on weights (not on biases or norms)")
    batch_size: BatchSize = Field(64, description="training batch size")
    label_smoothing: float = Field(0.0, ge=0.0, le=0.3, description="label smoothing of the cross-entropy loss")
    augmentation: Augmentation = Field("none", description="training augmentation: random horizontal flip, "
                                       "random translation (crop), or both")

    @classmethod
    def unchecked(cls, values: dict[str, Any] | None) -> "Training":
        """The recipe a job trains with: the known keys of ``values`` over the defaults, taken as
        they are (the search validated the spec; tests and the warm-up use values outside the
        schema's bounds, such as a batch of 4)."""
        return cls.model_construct(**{k: v for k, v in (values or {}).items() if k in cls.model_fields})


TRAINING_DEFAULTS: dict[str, Any] = Training().model_dump()

__all__ = ["Augmentation", "BatchSize", "Optimizer", "Schedule", "TRAINING_DEFAULTS", "Training"]
