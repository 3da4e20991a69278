"""Normalisation layers: batch, instance, layer and group norm.

Each keeps its input and float32 per-row statistics (the mean and the inverse standard
deviation) for backward; the affine weight and bias are parameters, the running statistics
buffers. The LayerNorm and GroupNorm entries and the functional batch_norm/layer_norm are in
tables.py, built from the rules here.
"""
from __future__ import annotations

import math

from ..values import ShapeError, Tensor
from .core import Args, Op, fmt, need_channels, need_rank, tup


def batch_norm(n: int) -> Op:
    name = f"BatchNorm{n}d"
    ranks = {1: (2, 3), 2: (4,), 3: (5,)}[n]

    def shape(a: Args):
        need_rank(a.input, ranks, name)
        need_channels(a.input, a.num_features, 1, f"{name} num_features")
        return a.input.like(a.input.shape)

    return Op("num_features, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True, device=None, dtype=None",
              shape, params=lambda a: affine(a.num_features, a.affine),
              buffers=lambda a: running_stats(a.num_features, a.track_running_stats), saves=batch_norm_saves)


def batch_norm_saves(a: Args, out) -> list:
    """The input, plus a per-channel mean and inverse standard deviation."""
    c = a.input.shape[1]
    return [a.input, Tensor((c,), "float32"), Tensor((c,), "float32")]


def affine(channels: int, on: bool) -> list:
    return [(channels,), (channels,)] if on else []


def running_stats(channels: int, on: bool) -> list:
    """running_mean, running_var and the int64 num_batches_tracked."""
    return [Tensor((channels,)), Tensor((channels,)), Tensor((), "int64")] if on else []


def instance_norm(n: int) -> Op:
    name = f"InstanceNorm{n}d"

    def shape(a: Args):
        need_rank(a.input, (n + 1, n + 2), name)
        if a.affine:
            need_channels(a.input, a.num_features, -n - 1, f"{name} num_features")
        # batch norm over the input seen as (1, N*C, ...): the result is a view of that
        x = a.input
        return x.like((1, math.prod(x.shape[:-n])) + x.shape[-n:]).view(x.shape)

    def saves(a: Args, out) -> list:  # the input, the per-row statistics, the weight repeated per sample
        rows = math.prod(a.input.shape[:-n])
        return [a.input, Tensor((rows,), "float32"), Tensor((rows,), "float32")] + (
            [Tensor((rows,), a._float)] if a.affine else [])

    return Op("num_features, eps=1e-05, momentum=0.1, affine=False, track_running_stats=False, device=None, dtype=None",
              shape, params=lambda a: affine(a.num_features, a.affine),
              buffers=lambda a: running_stats(a.num_features, a.track_running_stats), saves=saves)


def layer_norm_shape(a: Args):
    norm = tup(a.normalized_shape, 1) if isinstance(a.normalized_shape, int) else tuple(a.normalized_shape)
    if tuple(a.input.shape[-len(norm):]) != norm:
        raise ShapeError(f"LayerNorm normalized_shape={fmt(norm)} does not match the last dimensions "
                         f"of the input {fmt(a.input.shape)}")
    return Tensor(a.input.shape, a.input.dtype, a.input.requires_grad)  # contiguous, whatever the input's order


def rms_norm(a: Args, run):
    """F.rms_norm, as PyTorch's CPU kernel composes it: in float32 (half precision upcast first),
    x * rsqrt(mean(x**2) + eps) over the normalised dims (the eps added in place), times the
    weight, cast back. Backward keeps the ops' own: the input, the inverse RMS, the weight."""
    layer_norm_shape(a)
    norm = tup(a.normalized_shape, 1) if isinstance(a.normalized_shape, int) else tuple(a.normalized_shape)
    x = a.input if a.input.dtype not in ("float16", "bfloat16") else run("float", a.input)
    mean = run("mean", run("pow", x, 2), tuple(range(-len(norm), 0)), keepdim=True)
    out = run("mul", x, run("torch.rsqrt", run("add", mean, a.eps or 0.0, into=mean)))
    out = out if a.weight is None else run("mul", out, a.weight)
    return out if x is a.input else run("type_as", out, a.input)


def layer_norm_params(a: Args) -> list:
    norm = tup(a.normalized_shape, 1) if isinstance(a.normalized_shape, int) else tuple(a.normalized_shape)
    return [norm] * ((a.elementwise_affine) + (a.elementwise_affine and a.bias))


def layer_norm_saves(a: Args, out) -> list:
    norm = tup(a.normalized_shape, 1) if isinstance(a.normalized_shape, int) else tuple(a.normalized_shape)
    rows = a.input.shape[:a.input.ndim - len(norm)] + (1,) * len(norm)
    return [a.input, Tensor(rows, "float32"), Tensor(rows, "float32")]


def group_norm_shape(a: Args):
    need_channels(a.input, a.num_channels, 1, "GroupNorm num_channels")
    if a.num_channels % a.num_groups:
        raise ShapeError(f"GroupNorm num_channels={a.num_channels} is not divisible by num_groups={a.num_groups}")
    x = a.input
    return Tensor(x.shape, x.dtype, x.requires_grad, layout=x.channels_last)


def _group_norm_input(x: Tensor) -> Tensor:
    """What the kernel reads: ATen's group_norm first makes its input contiguous in its suggested
    memory format (channels-last kept, any other order copied)."""
    return x if x.contiguous or x.channels_last else Tensor(x.shape, x.dtype)


def group_norm_fn_shape(a: Args):
    """F.group_norm(input, num_groups, ...): GroupNorm's rule, its channels the input's."""
    a["num_channels"] = a.input.shape[1] if a.input.ndim > 1 else 0
    return group_norm_shape(a)


def group_norm_saves(a: Args, out) -> list:
    stats = (a.input.shape[0], a.num_groups)
    return [_group_norm_input(a.input), Tensor(stats, "float32"), Tensor(stats, "float32")]
