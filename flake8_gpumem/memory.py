"""The memory model of one training step: weights, gradients, optimizer state, activations, peak.

First estimate (documented in the README): everything autograd keeps for
backward is counted once per tensor (tensors shared between ops, views and
in-place results are not double counted), and the peak is taken at the start
of the backward pass plus all gradients, which is an upper bound on the
backward timeline.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .values import DTYPE_BYTES, Tensor

# Optimizer state: (tensors the size of each parameter, keeps a per-parameter step tensor)
OPTIMIZER_STATE = {
    "sgd": (0, False),
    "sgd-momentum": (1, False),  # momentum_buffer
    "adam": (2, True),  # exp_avg, exp_avg_sq, step
    "adamw": (2, True),
    "rmsprop": (1, True),  # square_avg, step
    "adagrad": (1, True),  # sum, step
}
STEP_BYTES = 4  # torch keeps `step` as a float32 scalar tensor


def param_dtype(dtype: str) -> str:
    """Weights, gradients and optimizer state: fp32 under AMP, else the model dtype."""
    return "float32" if dtype.startswith("amp") else dtype


def activation_dtype(dtype: str) -> str:
    return {"amp-fp16": "float16", "amp-bf16": "bfloat16"}.get(dtype, dtype)


@dataclass(frozen=True)
class Memory:
    weights: int
    gradients: int
    optimizer: int
    activations: int
    peak: int
    reserve: int


def estimate(param_shapes: list, buffers: list, input_tensor: Tensor, saved_bytes: int, dtype: str,
             optimizer: str, reserve: int) -> Memory:
    pbytes = DTYPE_BYTES[param_dtype(dtype)]
    numel = sum(math.prod(s) for s in param_shapes)
    weights = numel * pbytes + sum(t.numel * (DTYPE_BYTES[t.dtype] if t.dtype == "int64" else pbytes)
                                   for t in buffers)
    gradients = numel * pbytes
    states, step = OPTIMIZER_STATE[optimizer]
    opt = states * numel * pbytes + (STEP_BYTES * len(param_shapes) if step else 0)
    activations = input_tensor.nbytes + saved_bytes
    return Memory(weights, gradients, opt, activations, weights + opt + gradients + activations, reserve)
