"""Zero-cost proxies: scores of an untrained network, from one training batch, that predict
how well it will train. Higher is better for every proxy here.

    synflow    Tanaka et al. 2020, as used by Abdelfattah et al. 2021 ("Zero-Cost Proxies for
               Lightweight NAS"): on a copy with BatchNorm removed, every parameter replaced
               by its absolute value and float64 arithmetic, feed one all-ones input, take
               R = sum of the outputs, and sum |theta * dR/dtheta| over the weights of every
               Conv and Linear layer. Needs neither data nor labels (only the input shape).
    naswot     Mellor et al. 2021 ("NAS without training"): for each input of the batch, the
               binary pattern (x > 0) at the input of every ReLU module; K[i, j] = number of
               units where inputs i and j agree; score = log det K.
    jacob_cov  The first version of the same paper: the Jacobian of the summed outputs with
               respect to each input; score = -sum(log(v + k) + 1 / (v + k)) over the
               eigenvalues v of the correlation matrix of those Jacobians, k = 1e-5.
    grad_norm  Abdelfattah et al. 2021: the cross-entropy loss on the batch; the sum over
               Conv and Linear layers of the L2 norm of dL/dweight.
    snip       Lee et al. 2019, as in Abdelfattah et al. 2021: sum |theta * dL/dtheta| over
               the weights of every Conv and Linear layer (the gradient of a unit mask).

BatchNorm, mode and precision (each as its source defines it). ``compute_proxies`` works on a
deep copy of the model for every proxy, so the caller's weights, buffers (BatchNorm running
statistics), gradients, ``requires_grad`` flags and train/eval modes are never touched.
synflow replaces every BatchNorm module with an identity (the ``bn=False`` variant of
Abdelfattah et al.; at initialisation this equals BatchNorm in eval mode, Tanaka's choice),
runs in eval mode (no dropout) and in float64: on NAS-Bench-201 it reaches 1e44 here (1e41
in the published scores), beyond float32's 3.4e38. naswot, jacob_cov, grad_norm and snip run the copy in train mode, so
BatchNorm normalises with the statistics of the batch (as Mellor et al. and Abdelfattah et
al. ran them), in the model's own dtype; the naswot kernel is accumulated in float64 (its
entries are exact integer counts). Train mode also means dropout is active: each proxy runs
under ``torch.manual_seed(seed)`` inside a forked RNG, so the same model, batch and seed give
the same scores, and the caller's global RNG state is left as it was.

Undefined cases raise ``ProxyError`` (a ValueError) naming the proxy and the reason: a
network without Conv or Linear layers (synflow, grad_norm, snip), without ReLU modules
(naswot), whose output does not depend on its input (jacob_cov; naswot then finds two
inputs with identical activation patterns), a forward pass that fails, or a non-finite
score. Bad arguments raise ``ProxyError`` too, naming the argument and the fix.

Measured (bench/proxies.py, docs/benchmarks.md section "proxies"): the 200 NAS-Bench-201
cells of the cifar10-valid curves file, C=16, N=5, PyTorch default init, one synthetic batch
of 64 standard-normal 3x32x32 images with random labels, seed 0. Spearman rank correlation of
our score with the final (200-epoch) validation accuracy / with the same proxy precomputed in
the file (Abdelfattah et al.'s code, real CIFAR-10 batch): synflow 0.745 / 0.999, naswot
0.703 / -, jacob_cov 0.640 / 0.839, grad_norm 0.632 / 0.984, snip 0.634 / 0.983; the
parameter count alone reaches 0.705. The 9 cells with no path from input to output (all at
chance, 9.71%) score synflow = grad_norm = snip = 0; jacob_cov is undefined on all 9 and
naswot on 6 (the other 3 have ReLUs in a dead branch that still see the input); the
benchmark ranks undefined scores last. Per NB201 network on one CPU thread: synflow ~0.07 s,
the others ~0.5-0.9 s each (two runs on a shared machine).

API
    compute_proxies(model, inputs, targets=None, names=PROXY_NAMES, *, seed=0, errors="raise")
        -> dict[str, float]
    synthetic_batch(input_shape, num_classes, batch_size=64, seed=0) -> (inputs, targets)
    spearman(a, b) -> float                 rank correlation (average ranks for ties)
    PROXY_NAMES, NEEDS_TARGETS, ProxyError
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evaluator.errors import ArchAgentError, did_you_mean
from evaluator.measure import PROXY_NAMES

NEEDS_TARGETS: frozenset[str] = frozenset({"grad_norm", "snip"})  # the others ignore labels
MIN_BATCH = {"naswot": 2, "jacob_cov": 2}  # a kernel / correlation matrix over the batch
JACOB_COV_K = 1e-5  # Mellor et al.'s regulariser of the eigenvalues
WEIGHTED_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
                   nn.Linear)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class ProxyError(ArchAgentError, ValueError):
    """A proxy that cannot be computed for this input; ``proxy`` names it (None: a bad argument
    that concerns every proxy)."""

    def __init__(self, message: str, hint: str | None = None, proxy: str | None = None) -> None:
        super().__init__(message, hint)
        self.proxy = proxy


#############################################
#                 Public API                #
#############################################

def compute_proxies(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None = None,
                    names: Iterable[str] | str = PROXY_NAMES, *, seed: int = 0,
                    errors: Literal["raise", "omit"] = "raise") -> dict[str, float]:
    """Score an untrained ``model`` on one training batch: ``{name: finite float}``, higher is better.

    ``inputs`` is a float batch (B, ...) the model accepts; ``targets`` the B integer class
    labels of those training inputs, needed only by grad_norm and snip (the others never read
    labels). The model must return logits (B, classes). Every proxy runs on a deep copy (see
    the module docstring), on the device of the model's parameters, seeded with ``seed``.
    ``errors="omit"`` leaves out a proxy that is undefined for this network instead of raising;
    bad arguments always raise. Raises ProxyError (a ValueError) with the reason and the fix.
    """
    wanted = check_names(names)
    if not isinstance(model, nn.Module):
        raise ProxyError(f"model must be a torch.nn.Module, got {type(model).__name__}",
                         hint="pass the network itself, e.g. build_model('nb201', spec, (3, 32, 32), 10)")
    if errors not in ("raise", "omit"):
        raise ProxyError(f"errors={errors!r} must be 'raise' or 'omit'")
    _check_inputs(inputs, wanted)
    if targets is not None:
        _check_targets(targets, inputs.shape[0])
    elif NEEDS_TARGETS & set(wanted):
        needing = [n for n in wanted if n in NEEDS_TARGETS]
        raise ProxyError(f"targets is None, but {' and '.join(needing)} need{'s' if len(needing) == 1 else ''} "
                         "the labels of the training batch",
                         hint="pass targets (B integer class labels), or ask only for " +
                         ", ".join(n for n in PROXY_NAMES if n not in NEEDS_TARGETS))

    device = _model_device(model)
    inputs = inputs.detach().to(device)
    targets = targets.detach().to(device=device, dtype=torch.long) if targets is not None else None
    cache: dict[str, list[tuple[torch.Tensor, torch.Tensor | None]]] = {}
    scores: dict[str, float] = {}
    for name in wanted:
        try:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(seed)
                value = _PROXIES[name](model, inputs, targets, cache)
            if not math.isfinite(value):
                raise ProxyError(f"{name}: the score is {value} (not finite)",
                                 hint="the network's activations or gradients overflow; check its initialisation",
                                 proxy=name)
        except ProxyError as exc:
            if errors == "omit" and exc.proxy is not None:  # undefined for this network; bad arguments still raise
                continue
            raise
        scores[name] = value
    return scores


def synthetic_batch(input_shape: Sequence[int], num_classes: int, batch_size: int = 64,
                    seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed-seed stand-in training batch: standard-normal images (B, *input_shape) and
    uniformly random labels (B,), for when no training data is at hand."""
    if batch_size < 1 or num_classes < 1 or not input_shape or min(input_shape) < 1:
        raise ProxyError(f"synthetic_batch({tuple(input_shape)}, num_classes={num_classes}, "
                         f"batch_size={batch_size}): every size must be positive")
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn((batch_size, *input_shape), generator=generator)
    targets = torch.randint(0, num_classes, (batch_size,), generator=generator)
    return inputs, targets


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation of two equally long sequences (ties get their average rank;
    -inf ranks below every finite value). NaN when either side is constant."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"spearman needs two 1-D sequences of the same length >= 2, got {x.shape} and {y.shape}")
    if np.isnan(x).any() or np.isnan(y).any():
        raise ValueError("spearman: NaN has no rank; replace undefined scores by -inf to rank them last")
    rx, ry = _average_ranks(x), _average_ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


#############################################
#                 The proxies               #
#############################################

Gradients = list[tuple[torch.Tensor, "torch.Tensor | None"]]  # (weight, dL/dweight) per Conv/Linear layer


def synflow(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None, cache: dict) -> float:
    net = copy.deepcopy(model)
    _replace_batchnorm(net)
    net = net.double().eval()
    layers = _weighted_layers(net, "synflow")
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    _track_gradients(net)
    ones = torch.ones((1, *inputs.shape[1:]), dtype=torch.float64, device=inputs.device)  # (1, ...): the paper's input
    _forward(net, ones, "synflow").sum().backward()
    with torch.no_grad():
        return float(sum((m.weight * m.weight.grad).abs().sum() for m in layers if m.weight.grad is not None))


def naswot(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None, cache: dict) -> float:
    net = copy.deepcopy(model).train()
    relus = [m for m in net.modules() if "ReLU" in type(m).__name__]  # Mellor et al.'s selection
    if not relus:
        raise ProxyError("naswot: the network has no ReLU module, so it has no activation patterns to compare",
                         hint="naswot reads the inputs of nn.ReLU modules (functional relu calls are invisible); "
                              "use another proxy for this network", proxy="naswot")
    batch = inputs.shape[0]
    kernel = torch.zeros((batch, batch), dtype=torch.float64, device=inputs.device)  # (B, B)

    def count_agreements(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        nonlocal kernel
        codes = (args[0].detach().reshape(batch, -1) > 0).double()  # (B, units); inplace ReLU keeps the sign
        on = codes.sum(1)
        # agreements = units both on + units both off = 2 c c^T - on_i - on_j + units
        kernel = kernel + 2 * codes @ codes.T - on[:, None] - on[None, :] + codes.shape[1]

    handles = [m.register_forward_hook(count_agreements) for m in relus]
    with torch.no_grad():
        _forward(net, inputs, "naswot")
    for handle in handles:
        handle.remove()
    sign, logdet = torch.linalg.slogdet(kernel)
    if sign <= 0:
        raise ProxyError("naswot: the activation kernel is singular: some inputs of the batch give identical ReLU "
                         "activation patterns, so the network cannot tell them apart",
                         hint="pass a batch of distinct inputs; if they are distinct, the network maps them to one "
                              "pattern (e.g. its output does not depend on its input) and naswot is undefined",
                         proxy="naswot")
    return float(logdet)


def jacob_cov(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None, cache: dict) -> float:
    net = copy.deepcopy(model).train()
    x = inputs.clone().requires_grad_(True)
    y = _forward(net, x, "jacob_cov")
    if not y.requires_grad:
        raise _constant_jacobian()
    y.backward(torch.ones_like(y))
    if x.grad is None:  # the output depends on the weights only, not on the input
        raise _constant_jacobian()
    jacobians = x.grad.reshape(x.shape[0], -1).double().cpu().numpy()  # (B, input size)
    if (jacobians.std(axis=1) == 0).any():
        raise _constant_jacobian()
    corr = np.corrcoef(jacobians)  # (B, B)
    eigenvalues = np.clip(np.linalg.eigvalsh(corr), 0.0, None)  # PSD; clip rounding below 0
    k = JACOB_COV_K
    return float(-np.sum(np.log(eigenvalues + k) + 1.0 / (eigenvalues + k)))


def grad_norm(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None, cache: dict) -> float:
    pairs = _loss_gradients(model, inputs, targets, cache, "grad_norm")
    return float(sum(g.double().norm() for _, g in pairs if g is not None))


def snip(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None, cache: dict) -> float:
    pairs = _loss_gradients(model, inputs, targets, cache, "snip")
    return float(sum((w.double() * g.double()).abs().sum() for w, g in pairs if g is not None))


_PROXIES: dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor | None, dict], float]] = {
    "synflow": synflow, "naswot": naswot, "jacob_cov": jacob_cov, "grad_norm": grad_norm, "snip": snip}


#############################################
#                 Helpers                   #
#############################################

def _loss_gradients(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, cache: dict, proxy: str) -> Gradients:
    """(weight, dL/dweight) of every Conv/Linear layer, train mode, cross-entropy on the batch.
    Shared by grad_norm and snip within one compute_proxies call (same seed, same result)."""
    if "loss" not in cache:
        net = copy.deepcopy(model).train()
        layers = _weighted_layers(net, proxy)
        _track_gradients(net)
        logits = _forward(net, inputs, proxy)
        if logits.ndim != 2:
            raise ProxyError(f"{proxy}: the model returned shape {tuple(logits.shape)}, expected logits (B, classes)",
                             hint="grad_norm and snip apply cross-entropy to the output", proxy=proxy)
        if int(targets.max()) >= logits.shape[1]:
            raise ProxyError(f"targets: label {int(targets.max())} is out of range for a model with "
                             f"{logits.shape[1]} classes", hint=f"labels must lie in 0..{logits.shape[1] - 1}")
        F.cross_entropy(logits, targets).backward()
        cache["loss"] = [(m.weight.detach(), m.weight.grad) for m in layers]
    return cache["loss"]


def _forward(net: nn.Module, x: torch.Tensor, proxy: str) -> torch.Tensor:
    try:
        out = net(x)
    except Exception as exc:  # the network cannot be scored; say which proxy and which input
        raise ProxyError(f"{proxy}: the model's forward pass failed on inputs of shape {tuple(x.shape)}: "
                         f"{type(exc).__name__}: {exc}",
                         hint="check that the inputs have the shape the model expects "
                              "(BatchNorm in train mode needs more than one value per channel)",
                         proxy=proxy) from exc
    if not isinstance(out, torch.Tensor) or out.ndim < 1 or out.shape[0] != x.shape[0]:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ProxyError(f"{proxy}: the model returned {shape} for a batch of {x.shape[0]}",
                         hint="proxies need a model that returns one tensor of logits (B, classes)", proxy=proxy)
    return out


def _weighted_layers(net: nn.Module, proxy: str) -> list[nn.Module]:
    layers = [m for m in net.modules() if isinstance(m, WEIGHTED_LAYERS) and m.weight is not None]
    if not layers:
        raise ProxyError(f"{proxy}: the network has no Conv or Linear layer with weights; {proxy} sums over them",
                         hint="naswot and jacob_cov need no weights; use one of them for this network", proxy=proxy)
    return layers


def _track_gradients(net: nn.Module) -> None:
    for p in net.parameters():
        p.requires_grad_(True)
        p.grad = None


def _replace_batchnorm(net: nn.Module) -> None:
    """Swap every BatchNorm module for an identity, in place (on a copy)."""
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, BATCH_NORMS):
                setattr(parent, name, nn.Identity())


def _model_device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _constant_jacobian() -> ProxyError:
    return ProxyError("jacob_cov: the output does not depend on some input of the batch (its Jacobian is constant), "
                      "so the correlation of Jacobians is undefined",
                      hint="this happens when no path connects the network's input to its output "
                           "(e.g. a NAS-Bench-201 cell whose output node only receives 'none' edges)",
                      proxy="jacob_cov")


def check_names(names: Iterable[str] | str) -> list[str]:
    wanted = [names] if isinstance(names, str) else list(names)
    if not wanted:
        raise ProxyError("names is empty", hint="ask for at least one of " + ", ".join(PROXY_NAMES))
    for name in wanted:
        if name not in _PROXIES:
            raise ProxyError(f"unknown proxy {name!r}{did_you_mean(str(name), PROXY_NAMES)}",
                             hint="known proxies: " + ", ".join(PROXY_NAMES))
    return list(dict.fromkeys(wanted))


def _check_inputs(inputs: torch.Tensor, wanted: list[str]) -> None:
    if not isinstance(inputs, torch.Tensor):
        raise ProxyError(f"inputs must be a torch.Tensor, got {type(inputs).__name__}",
                         hint="pass one training batch as a float tensor (B, C, H, W)")
    if inputs.ndim < 2 or not inputs.is_floating_point():
        raise ProxyError(f"inputs has shape {tuple(inputs.shape)} and dtype {inputs.dtype}; expected a float batch "
                         "(B, ...) with a leading batch axis", hint="convert images with .float() and stack them")
    batch = inputs.shape[0]
    if batch == 0:
        raise ProxyError("inputs is an empty batch (0 examples)",
                         hint="pass at least 2 training inputs (naswot and jacob_cov compare inputs with each other)")
    needing = [n for n in wanted if batch < MIN_BATCH.get(n, 1)]
    if needing:
        raise ProxyError(f"inputs has {batch} example(s); {' and '.join(needing)} compare{'s' if len(needing) == 1 else ''} "
                         "inputs with each other",
                         hint="pass a batch of at least 2 inputs (the benchmark uses 64)")
    if not torch.isfinite(inputs).all():
        raise ProxyError("inputs contains NaN or infinite values", hint="pass a batch of finite values")


def _check_targets(targets: torch.Tensor, batch: int) -> None:
    if not isinstance(targets, torch.Tensor):
        raise ProxyError(f"targets must be a torch.Tensor, got {type(targets).__name__}",
                         hint="pass the labels as torch.tensor(labels, dtype=torch.long)")
    if targets.ndim != 1 or targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise ProxyError(f"targets has shape {tuple(targets.shape)} and dtype {targets.dtype}; expected B integer "
                         "class labels (B,)", hint="pass class indices, not one-hot rows or probabilities")
    if targets.shape[0] != batch:
        raise ProxyError(f"targets has {targets.shape[0]} labels but inputs has {batch} examples",
                         hint="pass one label per input of the batch")
    if batch and int(targets.min()) < 0:
        raise ProxyError(f"targets contains a negative label ({int(targets.min())})",
                         hint="labels are class indices 0..classes-1")


def _average_ranks(x: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)  # 1-based rank of the last copy of each distinct value
    return (upper - (counts - 1) / 2.0)[inverse]


__all__ = ["NEEDS_TARGETS", "PROXY_NAMES", "ProxyError", "compute_proxies", "spearman", "synthetic_batch"]
