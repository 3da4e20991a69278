"""Pooling: nn.MaxPoolNd, nn.AvgPoolNd, their adaptive forms and the functional twins.

Max pooling keeps its input and an int64 argmax for backward (and makes that even when no
gradient is needed); average pooling keeps its input, except an adaptive pool to all ones,
which is a mean.
"""
from __future__ import annotations

from dataclasses import replace

from ..values import Tensor
from .core import Args, Op, made_anyway, need_rank, tup, windows


def pool(n: int, kind: str) -> Op:
    name = f"{kind}Pool{n}d"

    def shape(a: Args):
        x = a.input
        need_rank(x, (n + 1, n + 2), name)
        stride = a.stride if a.stride not in (None, ()) else a.kernel_size
        out = windows(a, x.shape[-n:], a.kernel_size, stride, a.padding, a.get("dilation", 1), a.ceil_mode, name)
        y = x.like(x.shape[:-n] + out)
        if kind == "Max" and a.return_indices:
            return (y, x.like(out and y.shape, "int64"))
        return y

    def saves(a: Args, out) -> list:
        if kind == "Max":  # max_pool_with_indices keeps its input and the int64 argmax
            y = out[0] if isinstance(out, tuple) else out
            return [a.input, out[1] if isinstance(out, tuple) else Tensor(y.shape, "int64")]
        return [a.input]

    if kind == "Max":
        sig = "kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False"
        return Op(sig, shape, saves=saves, forward_temp=made_anyway(saves, inference_skips=True))
    sig = "kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True" + (
        ", divisor_override=None" if n > 1 else "")
    return Op(sig, shape, saves=saves)


def functional_pool(n: int, kind: str) -> Op:
    """F.max_poolNd / F.avg_poolNd: the module's rule with the input first."""
    module = pool(n, kind)
    if kind == "Max":
        sig = "input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False"
    else:
        sig = "input, " + module.signature
    return replace(module, signature=sig)


def adaptive(n: int, kind: str) -> Op:
    name = f"Adaptive{kind}Pool{n}d"

    def shape(a: Args):
        x = a.input
        need_rank(x, (n + 1, n + 2), name)
        size = tup(a.output_size, n, "output_size")
        out = tuple(L if o is None else o for o, L in zip(size, x.shape[-n:]))
        y = x.like(x.shape[:-n] + out)
        return (y, x.like(y.shape, "int64")) if kind == "Max" and a.get("return_indices") else y

    def saves(a: Args, out) -> list:
        if kind == "Max":
            y = out[0] if isinstance(out, tuple) else out
            return [a.input, Tensor(y.shape, "int64")]
        # an all-ones output is a mean, whose backward needs only the input's shape
        return [] if all(d == 1 for d in out.shape[-n:]) else [a.input]

    if kind == "Max":
        return Op("output_size, return_indices=False", shape, saves=saves, forward_temp=made_anyway(saves))
    return Op("output_size", shape, saves=saves)
