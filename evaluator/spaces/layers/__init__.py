"""The ``layers`` space: an open-ended image classifier made of a stem, stages of blocks and a head,
plus the hyperparameters it is trained with. Inputs are images shaped (C, H, W).

Modules: ``schema`` (the spec), ``analysis`` (shapes, parameters, FLOPs), ``edits`` (sampling and
mutation for the baselines) and ``space`` (``LayersSpace``).

The network a spec describes (``evaluator.models.layers_net`` builds exactly this):

    stem     conv kxk (stride s) -> norm -> act
    stage    `depth` blocks; the first has the stage's stride and changes the width, the
             rest keep it; dropout after each block; then optional 2x2 pooling (stride 2)
    head     global average pool -> [linear hidden -> act] -> dropout -> linear num_classes

Blocks (k = kernel, s = stride, "norm" is batch / group / none, "act" the activation):

    plain       conv kxk/s -> norm -> act
    dwsep       depthwise kxk/s -> norm -> act -> conv 1x1 -> norm -> act     (MobileNet v1)
    residual    conv kxk/s -> norm -> act -> conv kxk -> norm, + shortcut, -> act  (ResNet basic)
                shortcut: identity, or conv 1x1/s -> norm when the shape changes
    bottleneck  conv 1x1 to in*expansion -> norm -> act -> depthwise kxk/s -> norm -> act
                -> conv 1x1 -> norm, + identity when stride 1 and width unchanged
                (MobileNet v2 inverted bottleneck; expansion 1 has no first 1x1 conv)

Rules every count and the builder share:

- Convolutions pad ``kernel // 2`` (kernels are odd), so a stride-1 conv keeps H x W and a
  stride-2 conv gives ceil(H / 2); pooling gives floor(H / 2). A stride 2 or a pooling on a
  feature map already 1 pixel high or wide is an error: it cannot shrink it any further.
- A conv has a bias only when its norm is ``none``; batch and group norm have 2 parameters
  per channel. Group norm uses ``gcd(C, min(32, C // 8))`` groups (at least 8 channels each).
  The head's hidden layer uses the last stage's activation.
- **FLOPs are multiply-accumulates (MACs): one MAC counts as one FLOP**, the convention of
  NAS-Bench-201 and most NAS papers (double it for hardware FLOPs). Only convolutions and
  linear layers are counted, per image: ``H_out * W_out * C_out * (C_in / groups) * k * k``
  for a conv, ``in * out`` for a linear layer. Biases, norms, activations, pooling and
  residual additions are not counted.

``validate`` returns the normalised spec: defaults filled in, and the fields that do not
apply reset to their defaults (``momentum`` unless the optimizer is sgd, ``expansion``
unless the block is bottleneck), so that two specs that train the same network the same
way have the same canonical key.
"""

from evaluator.spaces.layers.analysis import analyse, conv_out, group_norm_groups
from evaluator.spaces.layers.schema import Head, LayersSpec, Stage, Stem
from evaluator.spaces.layers.space import LayersSpace

__all__ = ["Head", "LayersSpace", "LayersSpec", "Stage", "Stem", "analyse", "conv_out", "group_norm_groups"]
