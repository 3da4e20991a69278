"""Convolutions: nn.ConvNd and nn.ConvTransposeNd, and F.convNd.

One rule makes all six from the dimension count: the shape (sliding windows, or the
transposed arithmetic), the weight and bias shapes, and what autograd keeps (the input and
the weight, always). The tables register them by class name.
"""
from __future__ import annotations

from ..values import ShapeError, Tensor
from .core import Args, Op, keeps_input, fmt, need_channels, need_rank, tup, windows


def conv(n: int, transposed: bool = False) -> Op:
    name = f"Conv{'Transpose' if transposed else ''}{n}d"

    def shape(a: Args):
        x = a.input
        need_rank(x, (n + 2,), name)
        need_channels(x, a.in_channels, 1, f"{name} in_channels")
        if a.in_channels % a.groups or a.out_channels % a.groups:
            raise ShapeError(f"{name} channels {a.in_channels}/{a.out_channels} are not divisible by groups={a.groups}")
        sizes = x.shape[2:]
        k, s, d = tup(a.kernel_size, n), tup(a.stride, n), tup(a.dilation, n)
        if transposed:
            p, op = tup(a.padding, n), tup(a.output_padding, n)
            out = tuple((L - 1) * si - 2 * pi + di * (ki - 1) + oi + 1
                        for L, ki, si, pi, di, oi in zip(sizes, k, s, p, d, op))
            if any(o <= 0 for o in out):
                raise ShapeError(f"{name} output {fmt(out)} collapses to nothing", code="GPM201")
        elif a.padding == "same":
            out = sizes
        else:
            out = windows(a, sizes, k, s, 0 if a.padding == "valid" else a.padding, d, False, name)
        # written channels-last when the input is so (other orders run contiguous)
        return Tensor((x.shape[0], a.out_channels) + tuple(out), x.dtype, x.requires_grad, layout=x.channels_last)

    def params(a: Args) -> list:
        k = tup(a.kernel_size, n)
        w = (a.in_channels, a.out_channels // a.groups) if transposed else (a.out_channels, a.in_channels // a.groups)
        return [w + k] + ([(a.out_channels,)] if a.bias else [])

    extra = "output_padding=0, groups=1, bias=True, dilation=1" if transposed else "dilation=1, groups=1, bias=True"
    sig = (f"in_channels, out_channels, kernel_size, stride=1, padding=0, {extra}, padding_mode='zeros', "
           "device=None, dtype=None")
    return Op(sig, shape, params, saves=keeps_input, keeps_weight=True,  # convolution saves both, always
              weight_grad_copy=lambda a: a.input.channels_last is not None)



def conv_fn(n: int) -> Op:
    """F.convNd(input, weight, bias, ...): nn.ConvNd's rule, its sizes read off the weight
    (timm's same-padding and conditional convolutions call it with their own weights)."""
    layer = conv(n)

    def shape(a: Args):
        w = a.weight
        need_rank(w, (n + 2,), f"F.conv{n}d weight")
        a.update(in_channels=w.shape[1] * a.groups, out_channels=w.shape[0], kernel_size=tuple(w.shape[2:]))
        return layer.shape(a)

    return Op("input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1", shape,
              saves=lambda a, out: [a.input, a.weight])
