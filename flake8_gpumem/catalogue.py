"""The layer catalogue: one entry per layer type, functional op or tensor method.

An entry holds the call signature, the shape rule, the parameter and buffer
counts and what autograd keeps for backward. Adding a layer type means adding
one entry here (composite layers built from others live in composites.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

from .values import (DTYPE_BYTES, FLOAT_DTYPES, STRIDED, ShapeError, Tensor, Unresolved, dtype_arg, tensors_in,
                     view_layout)


class Args(dict):
    """Bound call arguments, readable as attributes; rules add notes (GPM200) here."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def notes(self) -> list:
        return self.setdefault("_notes", [])


def _none(a: Args) -> list:
    return []


def _keeps_nothing(a: Args, out) -> list:
    return []


def _keeps_input(a: Args, out) -> list:
    """The input; an in-place op first saves a copy of it, since it overwrites it."""
    return [a.input.like(a.input.shape)] if a.get("inplace") else [a.input]


def _keeps_output(a: Args, out) -> list:
    return [out]


def _keeps_input_or_result(a: Args, out) -> list:
    """Out of place it keeps its input; in place, its result (no copy needed)."""
    return [out] if a.get("inplace") else [a.input]


@dataclass(frozen=True)
class Op:
    """A layer constructor (signature = constructor, forward = its forward's
    signature) or a function/method (signature = the call)."""

    signature: str
    shape: Callable[[Args], object]
    params: Callable[[Args], list] = _none  # shapes of the parameter tensors
    buffers: Callable[[Args], list] = _none  # buffer Tensors (running statistics)
    saves: Callable[[Args, object], list] = _keeps_nothing
    forward: str = "input"
    # bytes its backward holds briefly, or (before, after) it has consumed its output's gradient
    backward_temp: Callable[[Args], int | tuple[int, int]] = lambda a: 0
    forward_temp: Callable[[Args, object], int] = lambda a, out: 0  # bytes it holds briefly while it runs
    autocast: str = ""  # under AMP: "low" runs in half precision, "fp32"/"fp32-cuda" in float32
    keeps_weight: bool = False  # keeps its (half-precision) weight even when its input needs no gradient
    grad: str = "alloc"  # backward allocates a gradient per input; "alias": it is a view of the output's


# ---------------------------------------------------------------- helpers

def tup(value, n: int, what: str = "size") -> tuple:
    """An int or an n-sequence as an n-tuple (PyTorch's _ntuple)."""
    if isinstance(value, (tuple, list)):
        if len(value) != n:
            raise Unresolved(f"{what} {tuple(value)} needs {n} values")
        return tuple(value)
    return (value,) * n


def ints(value, what: str) -> None:
    for v in value if isinstance(value, tuple) else (value,):
        if not isinstance(v, int) or isinstance(v, bool):
            raise Unresolved(f"{what} must be an integer, got {v!r}")


def dim_index(d: int, ndim: int) -> int:
    if not -ndim <= d < max(ndim, 1):
        raise ShapeError(f"dimension {d} is out of range for a {ndim}-d tensor")
    return d % ndim if ndim else 0


def need_rank(x: Tensor, ranks, layer: str) -> None:
    if x.ndim not in ranks:
        want = " or ".join(f"{r}-d" for r in ranks)
        raise ShapeError(f"{layer} expects a {want} input, got shape {fmt(x.shape)}")


def need_channels(x: Tensor, expected: int, dim: int, what: str) -> None:
    got = x.shape[dim]
    if got != expected:
        raise ShapeError(f"{what}={expected} but {got} arrive (input {fmt(x.shape)}); set it to {got} "
                         "or change the layer before")


def fmt(shape) -> str:
    return "x".join(str(s) for s in shape) if shape else "scalar"


SPATIAL_WORDS = {1: ("positions",), 2: ("rows", "columns"), 3: ("planes", "rows", "columns")}


def windows(a: Args, sizes, k, s, p, d, ceil: bool, what: str) -> tuple:
    """Output sizes of a sliding window (conv or pool); notes dropped rows (GPM200)."""
    n = len(sizes)
    k, s, p, d = (tup(v, n, name) for v, name in ((k, "kernel_size"), (s, "stride"), (p, "padding"), (d, "dilation")))
    for v, name in ((k, "kernel_size"), (s, "stride"), (p, "padding"), (d, "dilation")):
        ints(v, name)
        if any(x <= 0 for x in v) if name != "padding" else any(x < 0 for x in v):
            raise ShapeError(f"{what} has {name}={v[0] if len(set(v)) == 1 else v}, which PyTorch rejects", code="GPM201")
    out, dropped = [], []
    # rows a padding layer appended hold no data: a window that leaves them out drops nothing
    margins = a.input.margins[-n:] if getattr(a.get("input"), "margins", None) else (0,) * n
    for L, ki, si, pi, di, mi in zip(sizes, k, s, p, d, margins):
        span = L + 2 * pi - di * (ki - 1) - 1
        o = (span + (si - 1 if ceil else 0)) // si + 1  # with ceil_mode a window may overhang the input
        if ceil and (o - 1) * si >= L + pi:
            o -= 1
        if o <= 0:
            raise ShapeError(
                f"{what} window {di * (ki - 1) + 1} is larger than its padded input "
                f"{L + 2 * pi} (input {fmt(sizes)}): the output collapses to nothing", code="GPM201")
        out.append(o)
        # Real rows after the last window's end are never read; a window narrower
        # than its stride skips rows by design (a 1x1 stride-2 shortcut).
        last = (o - 1) * si - pi + di * (ki - 1)
        dropped.append(0 if ceil or di * (ki - 1) + 1 < si else max(0, L - 1 - mi - last))
    if any(dropped):
        words = SPATIAL_WORDS.get(n, ("elements",) * n)
        lost = " and ".join(f"{r} {w[:-1] if r == 1 else w}" for r, w in zip(dropped, words) if r)
        fixed = "x".join(str(L + (si - (L + 2 * pi - di * (ki - 1) - 1) % si) % si if r else L)
                         for L, r, si, pi, di, ki in zip(sizes, dropped, s, p, d, k))
        a.notes.append(("GPM200", f"drops {lost} of its {fmt(sizes)} input ({fmt(sizes)} -> {fmt(out)}); "
                                  f"use a {fixed} input or ceil_mode/padding so the windows tile it"))
    return tuple(out)


# ---------------------------------------------------------------- convolutions

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
        return x.like((x.shape[0], a.out_channels) + tuple(out))

    def params(a: Args) -> list:
        k = tup(a.kernel_size, n)
        w = (a.in_channels, a.out_channels // a.groups) if transposed else (a.out_channels, a.in_channels // a.groups)
        return [w + k] + ([(a.out_channels,)] if a.bias else [])

    extra = "output_padding=0, groups=1, bias=True, dilation=1" if transposed else "dilation=1, groups=1, bias=True"
    sig = f"in_channels, out_channels, kernel_size, stride=1, padding=0, {extra}, padding_mode='zeros', device=None, dtype=None"
    return Op(sig, shape, params, saves=_keeps_input, keeps_weight=True)  # convolution saves both, always


def _made_anyway(saves):
    """A forward_temp: what the kernel makes for backward even when nothing needs a gradient
    (max pooling's int64 indices, dropout's noise), freed at once then."""
    def temp(a: Args, out) -> int:
        if a.input.requires_grad:
            return 0
        outputs = {id(t) for t in tensors_in(out)} | {id(a.input)}
        return sum(t.nbytes for t in saves(a, out) if id(t) not in outputs)
    return temp


# ---------------------------------------------------------------- pooling

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
        return Op(sig, shape, saves=saves, forward_temp=_made_anyway(saves))
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
        return Op("output_size, return_indices=False", shape, saves=saves, forward_temp=_made_anyway(saves))
    return Op("output_size", shape, saves=saves)


# ---------------------------------------------------------------- normalisation

def batch_norm(n: int) -> Op:
    name = f"BatchNorm{n}d"
    ranks = {1: (2, 3), 2: (4,), 3: (5,)}[n]

    def shape(a: Args):
        need_rank(a.input, ranks, name)
        need_channels(a.input, a.num_features, 1, f"{name} num_features")
        return a.input.like(a.input.shape)

    return Op("num_features, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True, device=None, dtype=None",
              shape, params=lambda a: affine(a.num_features, a.affine),
              buffers=lambda a: running_stats(a.num_features, a.track_running_stats), saves=_batch_norm_saves)


def _batch_norm_saves(a: Args, out) -> list:
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


def _layer_norm_shape(a: Args):
    norm = tup(a.normalized_shape, 1) if isinstance(a.normalized_shape, int) else tuple(a.normalized_shape)
    if tuple(a.input.shape[-len(norm):]) != norm:
        raise ShapeError(f"LayerNorm normalized_shape={fmt(norm)} does not match the last dimensions "
                         f"of the input {fmt(a.input.shape)}")
    return a.input.like(a.input.shape)


def _layer_norm_params(a: Args) -> list:
    norm = tup(a.normalized_shape, 1) if isinstance(a.normalized_shape, int) else tuple(a.normalized_shape)
    return [norm] * ((a.elementwise_affine) + (a.elementwise_affine and a.bias))


def _layer_norm_saves(a: Args, out) -> list:
    norm = tup(a.normalized_shape, 1) if isinstance(a.normalized_shape, int) else tuple(a.normalized_shape)
    rows = a.input.shape[:a.input.ndim - len(norm)] + (1,) * len(norm)
    return [a.input, Tensor(rows, "float32"), Tensor(rows, "float32")]


def _group_norm_shape(a: Args):
    need_channels(a.input, a.num_channels, 1, "GroupNorm num_channels")
    if a.num_channels % a.num_groups:
        raise ShapeError(f"GroupNorm num_channels={a.num_channels} is not divisible by num_groups={a.num_groups}")
    return a.input.like(a.input.shape)


def _group_norm_saves(a: Args, out) -> list:
    stats = (a.input.shape[0], a.num_groups)
    return [a.input, Tensor(stats, "float32"), Tensor(stats, "float32")]


# ---------------------------------------------------------------- linear, embedding

def _linear_saves(a: Args, out) -> list:
    """Linear keeps its input; an input that cannot be viewed as 2-d is copied first."""
    x = a.input
    if x.ndim > 2 and view_layout(x, (math.prod(x.shape[:-1]), x.shape[-1])) is False:
        return [Tensor(x.shape, x.dtype)]
    return [x]


def _linear_bias_copy(a: Args, out) -> int:
    """Beyond 2-d, a non-contiguous input runs matmul, then adds the bias out of place while the
    matmul's result is alive: so under MemTracker's dispatch mode, which the estimate follows
    (a plain run adds it in place; see the README)."""
    x = a.input
    if a.bias is None or a.bias is False or x.ndim <= 2 or x.contiguous:
        return 0
    return out.nbytes


def _linear_shape(a: Args):
    x = a.input
    if x.ndim == 0:
        raise ShapeError("Linear expects at least a 1-d input")
    need_channels(x, a.in_features, -1, "Linear in_features")
    return x.like(x.shape[:-1] + (a.out_features,))


def _bilinear_shape(a: Args):
    need_channels(a.input1, a.in1_features, -1, "Bilinear in1_features")
    need_channels(a.input2, a.in2_features, -1, "Bilinear in2_features")
    return a.input1.like(a.input1.shape[:-1] + (a.out_features,))


def _embedding_shape(a: Args):
    if a.input.dtype in FLOAT_DTYPES:
        raise ShapeError(f"Embedding expects integer token ids, got {a.input.dtype} "
                         "(set input_dtype = \"int64\" for this model)")
    return Tensor(a.input.shape + (a.embedding_dim,), a.get("_float", "float32"))


# ---------------------------------------------------------------- element-wise

def _same(a: Args):
    """Element-wise: a new tensor, or with inplace=True the input's memory, written over."""
    return a.input.rewritten() if a.get("inplace") else a.input.like(a.input.shape)


def activation(signature: str = "inplace=False", saves=_keeps_input, params=_none) -> Op:
    return Op(signature, _same, params=params, saves=saves)


def functional(module: Op, extra: str = "") -> Op:
    """The functional twin of an element-wise module: same rule, input first."""
    sig = "input" + (", " + module.signature if module.signature else "") + extra
    return Op(sig, module.shape, saves=module.saves)


def _prelu_shape(a: Args):
    if a.num_parameters != 1 and (a.input.ndim < 2 or a.input.shape[1] != a.num_parameters):
        raise ShapeError(f"PReLU num_parameters={a.num_parameters} but the input has "
                         f"{a.input.shape[1] if a.input.ndim > 1 else 1} channels")
    return a.input.like(a.input.shape)


def _dropout_shape(a: Args):
    if not 0 <= a.p <= 1:
        raise ShapeError(f"dropout probability has to be between 0 and 1, got {a.p}")
    if a.p == 0 or not a.get("training", True):
        return a.input  # PyTorch returns its input: nothing allocated, nothing kept
    return _same(a)


def dropout(kind: str, functional: bool = False) -> Op:
    """What dropout keeps: on CUDA plain dropout is one fused kernel keeping a bool
    mask; otherwise (CPU, feature and alpha dropout) the input is multiplied by a
    float noise tensor, kept for backward (per channel for feature dropout)."""

    def saves(a: Args, out) -> list:
        x = a.input
        if not a.get("training", True) or a.p == 0:
            return []
        if kind == "plain" and a.get("_device") == "cuda":
            return [Tensor(x.shape, "bool")]
        noise = x.shape[:2] + (1,) * (x.ndim - 2) if kind == "feature" else x.shape
        kept = [x.like(noise)]
        return kept + [x.like(noise)] if kind == "alpha" else kept  # alpha also keeps its shift b

    sig = "input, p=0.5, training=True, inplace=False" if functional else "p=0.5, inplace=False"
    return Op(sig, _dropout_shape, saves=saves, forward_temp=_made_anyway(saves))


# ---------------------------------------------------------------- reshaping

def _flatten_shape(a: Args):
    x = a.input
    if x.ndim == 0:
        return x.view((1,))
    s, e = dim_index(a.start_dim, x.ndim), dim_index(a.end_dim, x.ndim)
    if s > e:
        raise ShapeError(f"flatten start_dim {a.start_dim} comes after end_dim {a.end_dim}")
    return x.reshaped(x.shape[:s] + (math.prod(x.shape[s:e + 1]),) + x.shape[e + 1:])


def _unflatten_shape(a: Args):
    x = a.input
    d = dim_index(a.dim, x.ndim)
    sizes = list(a.unflattened_size)
    if -1 in sizes:
        known = math.prod(s for s in sizes if s != -1)
        sizes[sizes.index(-1)] = x.shape[d] // known
    if math.prod(sizes) != x.shape[d]:
        raise ShapeError(f"Unflatten sizes {fmt(sizes)} do not multiply to dimension {d} of size {x.shape[d]}")
    return x.reshaped(x.shape[:d] + tuple(sizes) + x.shape[d + 1:])


def resolve_view(x: Tensor, shape, what: str) -> tuple:
    """A view/reshape target with -1 filled in, checked against the element count."""
    shape = list(shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)
    ints(tuple(shape), what)
    if shape.count(-1) > 1:
        raise ShapeError(f"{what} can infer only one dimension, got {fmt(shape)}")
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        if known == 0 or x.numel % known:
            raise ShapeError(f"{what}({', '.join(map(str, shape))}) cannot reshape {fmt(x.shape)} "
                             f"({x.numel} elements)")
        shape[shape.index(-1)] = x.numel // known
    if math.prod(shape) != x.numel:
        raise ShapeError(f"{what}({', '.join(map(str, shape))}) needs {math.prod(shape)} elements but the input "
                         f"{fmt(x.shape)} has {x.numel}")
    return tuple(shape)


def _upsample_sizes(a: Args) -> tuple:
    x = a.input
    n = x.ndim - 2
    if a.size is not None:
        return x.like(x.shape[:2] + tup(a.size, n, "size"))
    if a.scale_factor is None:
        raise Unresolved("interpolation needs either size or scale_factor")
    scale = tup(a.scale_factor, n, "scale_factor")
    return x.like(x.shape[:2] + tuple(int(math.floor(L * f)) for L, f in zip(x.shape[2:], scale)))


def _pixel_shuffle_shape(a: Args):
    x, r = a.input, a.upscale_factor
    c, h, w = x.shape[-3:]
    if c % (r * r):
        raise ShapeError(f"PixelShuffle needs channels divisible by {r * r}, got {c}")
    return x.like(x.shape[:-3] + (c // (r * r), h * r, w * r))


def _pixel_unshuffle_shape(a: Args):
    x, r = a.input, a.downscale_factor
    c, h, w = x.shape[-3:]
    if h % r or w % r:
        raise ShapeError(f"PixelUnshuffle needs height and width divisible by {r}, got {h}x{w}")
    return x.like(x.shape[:-3] + (c * r * r, h // r, w // r))


def pad(n: int, constant: bool = False, keeps_input: bool = False) -> Op:
    """Zero/constant/circular padding keeps nothing for backward; reflection and replication padding
    keep their input (their backward reads it)."""
    def shape(a: Args):
        return pad_to(a.input, tup(a.padding, 2 * n, "padding"))

    return Op("padding, value=0.0" if constant else "padding", shape,
              saves=_keeps_input if keeps_input else _keeps_nothing)


def pad_to(x: Tensor, p) -> Tensor:
    """Pad the last len(p)//2 dimensions, (left, right) pairs from the last dimension backwards."""
    dims, margins = list(x.shape), [0] * x.ndim
    for i in range(len(p) // 2):
        dims[-1 - i] += p[2 * i] + p[2 * i + 1]
        margins[-1 - i] = max(p[2 * i + 1], 0)
    if any(d <= 0 for d in dims):
        raise ShapeError(f"padding {tuple(p)} shrinks {fmt(x.shape)} to nothing", code="GPM201")
    out = x.like(dims)
    out.margins = tuple(margins)
    return out


# ---------------------------------------------------------------- recurrent

# One layer and direction of nn.LSTM/GRU/RNN as PyTorch 2.13 runs it on the CPU (composites.py
# builds the module from these). LSTM without projection runs oneDNN's kernel, which keeps a
# workspace (7 buffers, each rounded up to a 4096-byte page, leading dimensions padded as oneDNN's
# get_good_ld does); GRU, RNN and projected LSTM run the native per-step cells, which keep their
# gates and states per step. Byte rules measured against PyTorch step by step.

PAGE = 4096
GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


def _page(n: int, align: int = PAGE) -> int:
    return -(-n // align) * align


def _good_ld(dim: int, size: int) -> int:
    ld = _page(dim, 64 // size)
    return ld + 64 // size if ld % 256 == 0 else ld


def lstm_workspace(T: int, N: int, I: int, H: int, s: int) -> int:
    parts = [T * N * _good_ld(4 * H, s) * s, T * N * _good_ld(H, s) * s,
             2 * (T + 1) * N * _good_ld(max(H, I), s) * s, 2 * (T + 1) * N * H * s,
             2 * (T + 1) * N * _good_ld(max(I, H), 4) * 4, 2 * (T + 1) * N * _good_ld(max(I, H), 4) * 4,
             2 * (T + 1) * N * H * 4]
    return sum(_page(p) for p in parts)


def _rnn_dims(a: Args):
    x = a.input
    H = a.w_hh.shape[0] // GATES[a.kind]
    return x.shape[0], x.shape[1], x.shape[2], H, DTYPE_BYTES[x.dtype]


def _onednn(a: Args) -> bool:
    return a.kind == "lstm" and a.w_hr is None and a.input.dtype in ("float32", "bfloat16")


def _rnn_layer_shape(a: Args):
    x = a.input
    need_rank(x, (3,), "recurrent layer")
    need_channels(x, a.w_ih.shape[1], -1, "input_size")
    T, N, _, H, _ = _rnn_dims(a)
    h_out = a.w_hr.shape[0] if a.w_hr is not None else H
    out = x.like((T, N, h_out)) if a.kind != "gru" else Tensor((T, N, h_out), _state_dtype(a))
    if _onednn(a):
        states, kept = (out, x.like((N, h_out)), x.like((N, H))), ()
    else:
        # the last states are their own tensors, not slices of the stacked output
        states = (out, Tensor((N, h_out), out.dtype)) + ((Tensor((N, H), _state_dtype(a)),) if a.kind == "lstm" else ())
        kept = (x.like((T, N, GATES[a.kind] * H)),) if a.joined == 2 else ()
        if _gru_float_states(a):
            kept += (Tensor((T - 1, N, H), out.dtype),)
    return states + ((kept,) if a.joined else ())


def _state_dtype(a: Args) -> str:
    """A GRU's states and an LSTM's cell states mix the gates with the previous state ((1 - z) * n
    + z * h, f * c + i * g), starting from zeros in the dtype of the layers' input (`state`): under
    AMP, half-precision gates on a float32 input give float32 states (an Elman state is the
    activation of the gates alone)."""
    gates = a.input.dtype
    return a.state if a.state and DTYPE_BYTES[a.state] > DTYPE_BYTES[gates] else gates


def _rnn_layer_saves(a: Args, out) -> list:
    x = a.input
    T, N, I, H, s = _rnn_dims(a)
    if _onednn(a):
        # its input, states, outputs and weights (under AMP their half-precision copies) and workspace
        kept = [x, a.hx, a.cx, a.w_ih, a.w_hh, *([a.b_ih, a.b_hh] if a.b_ih is not None else []), *out[:3],
                Tensor((lstm_workspace(T, N, I, H, s),), "uint8")]
        return kept + ([Tensor((4 * H * (I + H) * s,), "uint8")] if a.b_ih is None else [])
    # linear_ih keeps its input (a copy when it cannot be viewed as 2-d), each step its gates/states.
    # A GRU step keeps seven N x H units: six in half precision under AMP (the hidden gates, a copy,
    # a sum, the previous state's half-precision copy) and one in the state's float32. An LSTM step
    # (projected, or float16) keeps its gates, c and tanh(c) (float32 under AMP), the cell output
    # (under AMP its half-precision copy) and the projected state (under AMP with w_hr's copy, cast
    # again each step). An Elman layer's last state is kept by its activation, apart from the output.
    sc = DTYPE_BYTES[_state_dtype(a)]
    if a.kind == "lstm":
        steps = (4 * T * s + (2 * T - 1) * sc) * N * H
        if a.w_hr is not None:
            steps += T * N * H * s + (T - 1) * N * a.w_hr.shape[0] * s + T * a.w_hr.numel * s * (sc != s)
        else:
            steps += (T - 1) * N * H * s
    else:
        steps = {"rnn_tanh": T - 1, "rnn_relu": T - 1, "gru": 6 * T - 1}[a.kind] * N * H * s
        steps += T * N * H * sc if a.kind == "gru" else 0
    kept = [a.hx, Tensor((steps,), "uint8")] + [a.w_hh] * (T > 1) + [a.w_ih] * x.requires_grad
    if a.kind in ("rnn_tanh", "rnn_relu"):
        kept.append(out[1])  # the last state, which its activation keeps
    if a.cx is not None:
        kept.append(a.cx)
    if view_layout(x, (T * N, I)) is False:
        return kept + [Tensor((T * N * I * s,), "uint8")]
    return kept + [x]


class _Ledger:
    """A kernel's allocations (+) and frees (-) in the order it makes them, and their peak before
    and after the point where it has consumed its output's gradient (the simulator frees that)."""

    def __init__(self):
        self.cur = self.peak = 0
        self.before = None

    def __call__(self, *deltas: int) -> None:
        for d in deltas:
            self.cur += d
            self.peak = max(self.peak, self.cur)

    def release(self) -> None:
        self.before, self.peak = self.peak, self.cur


def _rnn_layer_backward(a: Args):
    """The layer's backward beyond the input and weight gradients the simulator has allocated
    (negative where it frees what the forward kept): one number, or (before, after) the layer has
    consumed its output's gradient."""
    T, N, I, H, s = _rnn_dims(a)
    G = GATES[a.kind]
    x_grad = T * N * I * s if a.input.requires_grad else 0
    bias = a.b_ih is not None
    weights = sum(w.nbytes for w in (a.w_ih, a.w_hh, a.b_ih, a.b_hh, a.w_hr) if w is not None)
    ledger = _Ledger()
    if _onednn(a):
        # oneDNN writes every gradient in float32 (input, weights, both biases, both initial states);
        # the unused ones are freed, the rest converted to the layer's precision one by one
        grads = [T * N * I, 4 * H * I, 4 * H * H, 4 * H, 4 * H]
        ledger(*(4 * g for g in grads), 2 * N * H * 4, -2 * N * H * 4)
        kept = [a.input.requires_grad, True, True, bias, bias]
        ledger(*(-4 * g for g, k in zip(grads, kept) if not k))
        if s != 4:
            for g, k in zip(grads, kept):
                ledger(g * s if k else 0, -4 * g if k else 0)
        return ledger.peak - x_grad - weights
    # Under AMP the layer gets half-precision copies of its weights: w_hh's is kept for the state
    # gradients until step 1, and its gradient is converted to float32 right after the steps.
    copies = not a.w_hh.is_param
    p = DTYPE_BYTES[a.get("_float") or a.w_hh.dtype]
    h0 = a.hx.nbytes if a.hx.base is None else a.frees_h0 * s  # the initial state: its copy, or the zeros
    h, W, b = N * H * s, a.w_hh.numel * s, G * H * s * bias
    w = a.w_hh.nbytes * copies
    if a.kind == "lstm":  # with a projection, or in float16 (oneDNN runs the others)
        h_out = a.w_hr.shape[0] if a.w_hr is not None else H
        c0 = a.cx.nbytes if a.cx.base is None else a.frees_h0 // h_out * H * s
        Wr = a.w_hr.numel * s if a.w_hr is not None else None
        _replay(ledger, T, lambda led, t: _lstm_step(led, t, T, h, N * h_out * s, W, Wr, b, h0, c0, w))
    else:
        step = _gru_step if a.kind == "gru" else _elman_step
        _replay(ledger, T, lambda led, t: step(led, t, T, h, W, b, h0, w))
    if copies:
        ledger(a.w_hh.numel * p, -W, G * H * p * bias, -b)
        if a.w_hr is not None:
            ledger(a.w_hr.numel * p, -a.w_hr.numel * s)
    Y = T * N * G * H * s  # the input gates' gradients of all steps, stacked
    ledger(Y, -Y, x_grad, G * H * I * s, b, -Y)  # then linear_ih's backward
    return ledger.before - x_grad - weights, ledger.peak - x_grad - weights


# The native cells' backward, step by step from the last, as ATen 2.13's autograd runs it on the CPU
# (traced allocation by allocation). h: one state (N x H); W, b: the gradient of w_hh, b_hh; h0: the
# initial states, freed with the last step; w: w_hh's half-precision copy under AMP. A step's
# input-gate gradient is kept for the stack after the loop; the gradients of w_hh/b_hh are summed
# step by step into new buffers; the output's gradient (one view per step) is consumed in step 1.

def _replay(ledger: _Ledger, T: int, step) -> None:
    """Run step(ledger, t) from the last step to the first. Steps T-2 .. 2 are alike (the same
    bytes in the same order), so one is run and the rest extrapolated: a long sequence costs O(1)."""
    step(ledger, T - 1)
    alike = T - 3
    if alike > 0:
        probe = _Ledger()
        step(probe, 2)
        ledger.peak = max(ledger.peak, ledger.cur + probe.peak + (alike - 1) * max(probe.cur, 0))
        ledger.cur += alike * probe.cur
    for t in range(min(T - 2, 1), -1, -1):
        step(ledger, t)


def _elman_step(ledger: _Ledger, t: int, T: int, h: int, W: int, b: int, h0: int, w: int) -> None:
    first, last = t == T - 1, t == 0
    ledger(h)  # tanh_backward: the input gates' gradient of the step
    if T == 1:
        ledger.release()
    if not first:
        ledger(-h)  # the gradient of h_t, consumed
    ledger(-h)  # h_t, kept by the activation
    if not last:
        ledger(h)  # mm: the gradient of h_t-1
    ledger(W, b, -w if t == 1 else 0, -h0 if last else 0)
    _accumulate(ledger, first, last, h, W, b, release=t == 1)


def _gru_step(ledger: _Ledger, t: int, T: int, h: int, W: int, b: int, h0: int, w: int) -> None:
    first, last = t == T - 1, t == 0
    ledger(h, h, -h, h)  # h = (h_t-1 - n) * z + n: two muls, the kept copy freed, neg for n
    if last:
        ledger(-h)  # h0 takes no gradient
    else:
        ledger(h)  # add: the gradient of h_t-1, the output's view plus the mul
        if t == 1 and not first:
            ledger.release()
    ledger(h)  # add: the gradient of n
    if first and t <= 1:
        ledger.release()
    ledger(-h if not first else 0, -h if not last else 0, -h)  # the step's gradient, mul, neg
    ledger(h, -h, -h)  # tanh_backward; n's gradient and n
    ledger(h, h, -h, h, -h, h, -h)  # r * hn: two muls, a kept copy; sigmoid_backward of r and z
    ledger(-3 * h, 3 * h, -h)  # the hidden gates freed, their gradient (cat), hn's mul freed
    if not last:
        ledger(h)  # mm: the gradient of h_t-1
    ledger(W, b, -3 * h, -h if not last else -h0, -w if t == 1 else 0)  # h_t-1 and the gates consumed
    _accumulate(ledger, first, last, h, W, b, earlier=h)
    ledger(3 * h, -3 * h)  # the input gates' gradient (cat of the three), kept for the stack


def _lstm_step(ledger: _Ledger, t: int, T: int, h: int, p: int, W: int, Wr: int | None, b: int, h0: int,
               c0: int, w: int) -> None:
    """p: one state (N x proj_size with a projection); Wr: the gradient of w_hr (None: no projection);
    c0: the initial cell state."""
    first, last = t == T - 1, t == 0
    if Wr is not None:
        ledger(Wr, h)  # the projection's backward: w_hr's gradient, the cell output's
        if T == 1:
            ledger.release()
        ledger(-p if not first else 0, -h)  # the projected state's gradient; the cell output, kept by it
        if not first:
            ledger(Wr, -Wr, -Wr)
        ledger(h, h, -h)  # output = o * tanh(c): two muls; the output's gradient consumed
    else:
        ledger(h, h, -h if not first else 0)  # output = o * tanh(c): two muls; the state's gradient consumed
        if T == 1:
            ledger.release()
    ledger(h, -h, -h)  # tanh_backward; its mul and tanh(c) freed
    if not first:
        ledger(h, -h, -h)  # add: c's gradient plus the later step's
    ledger(h, h, h, h if not last else 0, -h, -h if not last else -c0)  # c = f * c_prev + i * g
    ledger(h, -h, h, -h, h, -h, h, -h)  # the four gates' sigmoid/tanh backward, each freeing its mul
    ledger(-4 * h, 4 * h, -4 * h)  # the gates freed, their gradient (cat, kept for the stack)
    if not last:
        ledger(p)  # mm: the gradient of the previous projected state
    ledger(W, b, -p if not last else -h0, -w if t == 1 else 0)
    _accumulate(ledger, first, last, p, W, b, release=t == 1)


def _accumulate(ledger: _Ledger, first: bool, last: bool, h: int, W: int, b: int, earlier: int = 0,
                release: bool = False) -> None:
    """Sum the step's b_hh gradient, the gradient of h_t-1 (replacing an `earlier` partial sum) and
    the w_hh gradient into new buffers."""
    if not first:
        ledger(b, -b)
    if not last:
        ledger(h, -earlier)
        if release:
            ledger.release()
    ledger(-b if not first else 0, -h if not last else 0)  # the step's b_hh gradient and mm
    if not first:
        ledger(W, -W, -W)


def _rnn_layer_forward(a: Args, out) -> int:
    """The input gates of all steps (native cells) or the summed bias (oneDNN), and a GRU's float32
    states under AMP, while the layer runs.

    One of two `joined` directions (1 forward, 2 reverse) returns instead, as its last output, what
    ATen keeps until both are concatenated (torch._gpumem_release): the reverse direction's gates,
    both directions' float32 states. Under AMP an input that linear_ih has to copy (batch-first)
    is autocast's copy for this layer alone, freed once the copy is made."""
    T, N, I, H, s = _rnn_dims(a)
    if _onednn(a):
        return 4 * H * s
    gates = 0 if a.joined == 2 else T * N * GATES[a.kind] * H * s
    cast = a.state not in (None, a.input.dtype) and view_layout(a.input, (T * N, I)) is False
    return gates + (0 if a.joined else _gru_float_states(a)) - a.input.nbytes * cast


def _gru_float_states(a: Args) -> int:
    """Under AMP the steps keep half-precision copies of a GRU's float32 states; the states
    themselves live only until the layer has stacked its output."""
    T, N, _, H, s = _rnn_dims(a)
    sh = DTYPE_BYTES[_state_dtype(a)] if a.kind == "gru" else s
    return (T - 1) * N * H * sh if sh != s else 0


# Arguments in the order ATen's layer reaches them, last first: autocast casts an op's arguments last
# to first, so linear_ih casts b_ih, w_ih, the input, then the first step b_hh, w_hh, hx.
RNN_LAYER = Op("cx, w_hr, hx, w_hh, b_hh, input, w_ih, b_ih, kind, frees_h0, joined, state", _rnn_layer_shape,
               saves=_rnn_layer_saves, backward_temp=_rnn_layer_backward, forward_temp=_rnn_layer_forward)


def _sdpa_shape(a: Args):
    q, k, v = a.query, a.key, a.value
    if q.shape[-1] != k.shape[-1] or k.shape[:-1] != v.shape[:-1]:
        raise ShapeError(f"scaled_dot_product_attention of query {fmt(q.shape)}, key {fmt(k.shape)} and "
                         f"value {fmt(v.shape)}: the sizes do not fit")
    out = Tensor(q.shape[:-1] + v.shape[-1:], q.dtype)
    if _sdpa_fused(a):
        out.layout = q.layout if q.layout != STRIDED else None  # written in the query's memory order
    return out


def _sdpa_fused(a: Args) -> bool:
    """CUDA always runs a fused kernel (flash / memory-efficient); the CPU only without dropout."""
    return a.get("_device") == "cuda" or not a.dropout_p


def _sdpa_saves(a: Args, out) -> list:
    q, k, v = a.query, a.key, a.value
    stats = Tensor(q.shape[:-1], "float32")  # log-sum-exp per query row
    if _sdpa_fused(a):
        kept = [q, k, v, out, stats]
        return kept + [Tensor((2,), "int64")] if a.dropout_p else kept  # the dropout RNG seed/offset
    # The math path keeps the scaled q and k, the softmax, the dropout noise and its product;
    # on the CPU it computes half precision in float32 (copies of q, k and v).
    scores = _sdpa_scores(q, k)
    ct = scores.dtype
    kept = [Tensor(q.shape, ct), Tensor(k.shape, ct), scores, scores.like(scores.shape), scores.like(scores.shape)]
    return kept + [v if ct == v.dtype else Tensor(v.shape, ct)]


def _sdpa_scores(q: Tensor, k: Tensor) -> Tensor:
    """The math path's attention scores, in float32 for half-precision inputs."""
    return Tensor(q.shape[:-1] + k.shape[-2:-1], "float32" if q.dtype in ("float16", "bfloat16") else q.dtype)


def _sdpa_backward(a: Args) -> int:
    """The fused backward works in blocks. The math one (traced on the CPU) goes back through
    attn @ v, dropout and softmax, each freeing what it kept as it makes the next scores-sized
    gradient, and ends with q @ k^T's."""
    if _sdpa_fused(a):
        return 0
    q, k, v = a.query, a.key, a.value
    S = _sdpa_scores(q, k).nbytes
    ledger = _Ledger()
    ledger(v.nbytes, S, -S)  # attn @ v: the gradients of v and of the attention; the dropped-out attention
    ledger(S, -S, -S)  # dropout: its gradient; the attention's and the noise
    ledger(S, -S, -S)  # softmax: its gradient; dropout's and the softmax
    ledger(q.nbytes, k.nbytes)  # q @ k^T
    return ledger.peak - q.nbytes - k.nbytes - v.nbytes


# ---------------------------------------------------------------- functional-only rules

def _cat_shape(a: Args):
    xs = list(a.tensors)
    if not xs:
        raise ShapeError("torch.cat needs at least one tensor")
    first = xs[0]
    d = dim_index(a.dim, first.ndim)
    for t in xs[1:]:
        if t.ndim != first.ndim or any(i != d and x != y for i, (x, y) in enumerate(zip(first.shape, t.shape))):
            raise ShapeError(f"torch.cat along dim {a.dim}: shapes {fmt(first.shape)} and {fmt(t.shape)} "
                             "differ outside that dimension")
    return first.like(first.shape[:d] + (sum(t.shape[d] for t in xs),) + first.shape[d + 1:])


def _stack_shape(a: Args):
    xs = list(a.tensors)
    if any(t.shape != xs[0].shape for t in xs):
        raise ShapeError(f"torch.stack needs equal shapes, got {', '.join(fmt(t.shape) for t in xs)}")
    d = dim_index(a.dim, xs[0].ndim + 1)
    return xs[0].like(xs[0].shape[:d] + (len(xs),) + xs[0].shape[d:])


def _reduce_shape(a: Args):
    x = a.input
    if a.dim is None:
        return x.like(() if not a.keepdim else (1,) * x.ndim)
    dims = {dim_index(d, x.ndim) for d in (a.dim if isinstance(a.dim, (tuple, list)) else (a.dim,))}
    if a.keepdim:
        return x.like(tuple(1 if i in dims else s for i, s in enumerate(x.shape)))
    return x.like(tuple(s for i, s in enumerate(x.shape) if i not in dims))


def _max_shape(a: Args):
    """max/min: a full reduction, the values and indices along a dim, or an elementwise max."""
    if isinstance(a.dim, Tensor):
        return broadcast(a.input, a.dim)
    values = _reduce_shape(a)
    return values if a.dim is None else (values, values.like(values.shape, "int64"))


def broadcast(x, y):
    xs = x.shape if isinstance(x, Tensor) else ()
    ys = y.shape if isinstance(y, Tensor) else ()
    n = max(len(xs), len(ys))
    xs, ys = (1,) * (n - len(xs)) + tuple(xs), (1,) * (n - len(ys)) + tuple(ys)
    out = []
    for p, q in zip(xs, ys):
        if p != q and 1 not in (p, q):
            raise ShapeError(f"shapes {fmt(x.shape)} and {fmt(y.shape)} cannot be broadcast together")
        out.append(max(p, q) if 0 not in (p, q) else 0)
    t = x if isinstance(x, Tensor) else y
    return t.like(out, promote(x, y))


def promote(*values) -> str:
    """The result dtype of mixing tensors (and Python numbers): the widest float among them."""
    dtypes = [v.dtype for v in values if isinstance(v, Tensor)]
    floats = [d for d in dtypes if d in FLOAT_DTYPES]
    if not floats:  # an integer or bool tensor with a Python float is float32, as in torch
        return "float32" if any(isinstance(v, float) for v in values) else dtypes[0]
    order = ("float64", "float32", "bfloat16", "float16")
    return next(d for d in order if d in floats) if len(set(floats)) > 1 else floats[0]


def _matmul_shape(a: Args):
    x, y = a.input, a.other
    if x.ndim == 0 or y.ndim == 0:
        raise ShapeError("matmul needs tensors of at least 1 dimension")
    xk = x.shape[-1]
    yk = y.shape[-2] if y.ndim > 1 else y.shape[0]
    if xk != yk:
        raise ShapeError(f"matmul of {fmt(x.shape)} and {fmt(y.shape)}: inner sizes {xk} and {yk} differ")
    if x.ndim == 1 and y.ndim == 1:
        return x.like(())
    if y.ndim == 1:
        return x.like(x.shape[:-1])
    if x.ndim == 1:
        return y.like(y.shape[:-2] + y.shape[-1:])
    batch = broadcast(x.like(x.shape[:-2]), y.like(y.shape[:-2])).shape
    return x.like(tuple(batch) + (x.shape[-2], y.shape[-1]))


def _keeps_both(a: Args, out) -> list:
    return [t for t in (a.input, a.other) if isinstance(t, Tensor)]


def _needs(t) -> bool:
    return isinstance(t, Tensor) and t.requires_grad


def _keeps_other_factor(a: Args, out) -> list:
    """x * y: each operand's gradient needs the other, so an operand is kept only where the other
    needs a gradient (StochasticDepth's `x * noise` keeps the noise, not x)."""
    x, y = a.input, a.other
    return [t for t, other in ((x, y), (y, x)) if isinstance(t, Tensor) and _needs(other)]


def _keeps_for_quotient(a: Args, out) -> list:
    """x / y: x's gradient needs y; y's needs x and y."""
    x, y = a.input, a.other
    return [t for t, kept in ((x, _needs(y)), (y, _needs(x) or _needs(y))) if isinstance(t, Tensor) and kept]


def _binary_shape(a: Args):
    return broadcast(a.input, a.other)


def _squeeze_shape(a: Args):
    x = a.input
    if a.dim is None:
        return x.reshaped(tuple(s for s in x.shape if s != 1))
    dims = {dim_index(d, x.ndim) for d in (a.dim if isinstance(a.dim, (tuple, list)) else (a.dim,))}
    return x.reshaped(tuple(s for i, s in enumerate(x.shape) if not (i in dims and s == 1)))


def _unsqueeze_shape(a: Args):
    x = a.input
    d = dim_index(a.dim, x.ndim + 1)
    return x.reshaped(x.shape[:d] + (1,) + x.shape[d:])


def _permute_shape(a: Args):
    x = a.input
    dims = a.dims[0] if len(a.dims) == 1 and isinstance(a.dims[0], (tuple, list)) else a.dims
    order = [dim_index(d, x.ndim) for d in dims]
    if sorted(order) != list(range(x.ndim)):
        raise ShapeError(f"permute{tuple(dims)} is not a permutation of the {x.ndim} dimensions of {fmt(x.shape)}")
    return x.permuted(order)


def _transpose_shape(a: Args):
    x = a.input
    order = list(range(x.ndim))
    i, j = dim_index(a.dim0, x.ndim), dim_index(a.dim1, x.ndim)
    order[i], order[j] = order[j], order[i]
    return x.permuted(order)


def _t_shape(a: Args):
    return a.input.permuted(range(a.input.ndim - 1, -1, -1))


def _view_shape(a: Args):
    return a.input.reshaped(resolve_view(a.input, a.shape, "view"))


def _reshape_shape(a: Args):
    return a.input.reshaped(resolve_view(a.input, a.shape, "reshape"))


def _view_as_shape(a: Args):
    return a.input.reshaped(a.other.shape)


def _expand_shape(a: Args):
    x = a.input
    sizes = a.sizes[0] if len(a.sizes) == 1 and isinstance(a.sizes[0], (tuple, list)) else a.sizes
    lead = len(sizes) - x.ndim
    return x.view(tuple(x.shape[i - lead] if s == -1 else s for i, s in enumerate(sizes)), STRIDED)


def _repeat_shape(a: Args):
    x = a.input
    reps = a.sizes[0] if len(a.sizes) == 1 and isinstance(a.sizes[0], (tuple, list)) else a.sizes
    dims = (1,) * (len(reps) - x.ndim) + x.shape
    return x.like(tuple(d * r for d, r in zip(dims, reps)))


def _chunk_shape(a: Args):
    x = a.input
    d = dim_index(a.dim, x.ndim)
    size = -(-x.shape[d] // a.chunks)
    return tuple(narrowed(x, d, min(size, x.shape[d] - i)) for i in range(0, x.shape[d], size))


def _split_shape(a: Args):
    x = a.input
    d = dim_index(a.dim, x.ndim)
    if isinstance(a.split_size_or_sections, int):
        s = a.split_size_or_sections
        sizes = [min(s, x.shape[d] - i) for i in range(0, x.shape[d], s)]
    else:
        sizes = list(a.split_size_or_sections)
    return tuple(narrowed(x, d, s) for s in sizes)


def _unbind_shape(a: Args):
    x = a.input
    d = dim_index(a.dim, x.ndim)
    return tuple(narrowed(x, d, None) for _ in range(x.shape[d]))


def narrowed(x: Tensor, d: int, size: int | None) -> Tensor:
    """A slice of `size` along dim d (None: a select, the dim removed). Only a slice
    of the outermost non-trivial dimension of contiguous memory stays contiguous."""
    shape = x.shape[:d] + ((size,) if size is not None else ()) + x.shape[d + 1:]
    outer = next((i for i in (x.layout or range(x.ndim)) if x.shape[i] != 1), d)
    if x.contiguous and (outer == d or size == x.shape[d]):
        return x.view(shape)
    return x.view(shape, STRIDED)


def _size(a: Args):
    x = a.input
    return x.shape if a.dim is None else x.shape[dim_index(a.dim, x.ndim)]


def _cast_shape(a: Args):
    """x.to(dtype), x.to(other), x.to(device, dtype), x.to(dtype=...): a copy only if the dtype changes."""
    targets = [v.dtype if isinstance(v, Tensor) else v for v in (*a.args, *a.kwargs.values())]
    return a.input.astype(next((d for d in targets if isinstance(d, str) and d in DTYPE_BYTES), a.input.dtype))


def _to_dtype(dtype: str):
    return Op("input", lambda a: a.input.astype(dtype))


def _fpad_shape(a: Args):
    if len(a.pad) % 2 or len(a.pad) // 2 > a.input.ndim:
        raise ShapeError(f"F.pad needs (left, right) pairs for at most {a.input.ndim} dimensions, got {tuple(a.pad)}")
    return pad_to(a.input, a.pad)


def _linear_fn_shape(a: Args):
    w = a.weight
    need_channels(a.input, w.shape[-1], -1, "F.linear weight in_features")
    return a.input.like(a.input.shape[:-1] + w.shape[:1])


def _creation(dtype_default: str = "float32") -> Op:
    def shape(a: Args):
        size = a.size[0] if len(a.size) == 1 and isinstance(a.size[0], (tuple, list)) else a.size
        ints(tuple(size), "size")
        return Tensor(tuple(size), dtype_arg(a.dtype, dtype_default))
    return Op("*size, dtype=None, device=None, requires_grad=False, generator=None, out=None, layout=None, "
              "pin_memory=False, memory_format=None", shape)


MAX_VALUES = 4096  # elements of a tensor whose values gpumem keeps (RegNet's per-block widths)


def valued(values: list, dtype: str | None = None, shape: tuple | None = None) -> Tensor:
    """A tensor of known values (row-major); its values are dropped past MAX_VALUES elements."""
    dtype = dtype or ("float32" if any(isinstance(v, float) for v in values) else
                      "bool" if values and all(isinstance(v, bool) for v in values) else "int64")
    shape = (len(values),) if shape is None else shape
    return Tensor(shape, dtype, values=tuple(values) if len(values) <= MAX_VALUES else None)


def _arange_shape(a: Args):
    start, end, step = (0, a.start, 1) if a.end is None else (a.start, a.end, a.step)
    n = max(math.ceil((end - start) / step), 0)
    ints((n,), "arange size")
    dtype = dtype_arg(a.dtype, "float32" if any(isinstance(v, float) for v in (start, end, step)) else "int64")
    if n > MAX_VALUES:
        return Tensor((n,), dtype)
    return valued([start + i * step for i in range(n)], dtype)


def _linspace_shape(a: Args):
    ints((a.steps,), "linspace steps")
    if a.steps > MAX_VALUES:
        return Tensor((a.steps,), dtype_arg(a.dtype, "float32"))
    step = (a.end - a.start) / max(a.steps - 1, 1)
    return valued([float(a.start + i * step) for i in range(a.steps)], dtype_arg(a.dtype, "float32"))


def _tensor_shape(a: Args):
    """torch.tensor(data): the shape of nested lists of numbers, their values kept."""
    shape, level = [], [a.data]
    while isinstance(level[0], (list, tuple)):
        if len({len(x) for x in level}) != 1:
            raise ShapeError("torch.tensor of ragged nested lists")
        shape.append(len(level[0]))
        level = [y for x in level for y in x]
        if not level:
            break
    flat = [v.values[0] if isinstance(v, Tensor) and v.values and len(v.values) == 1 else v for v in level]
    if not all(isinstance(v, (int, float, bool)) for v in flat):
        raise Unresolved("torch.tensor of values gpumem does not know")
    return valued(flat, dtype_arg(a.dtype, None), tuple(shape))


def _meshgrid_shape(a: Args):
    tensors = a.tensors[0] if len(a.tensors) == 1 and isinstance(a.tensors[0], (list, tuple)) else a.tensors
    sizes = tuple(t.numel for t in tensors)
    if a.indexing == "xy" and len(sizes) > 1:
        sizes = (sizes[1], sizes[0]) + sizes[2:]
    return tuple(t.like(sizes) for t in tensors)


def _new_shape(a: Args):
    """x.new_zeros(size): a new tensor in x's dtype."""
    size = a.size[0] if len(a.size) == 1 and isinstance(a.size[0], (tuple, list)) else a.size
    ints(tuple(size), "size")
    return Tensor(tuple(size), dtype_arg(a.dtype, a.input.dtype))


def _full_shape(a: Args):
    """torch.full: the dtype of its fill value unless given (a bool, an int64, else float32)."""
    ints(tuple(a.size), "size")
    fill = "bool" if isinstance(a.fill_value, bool) else "int64" if isinstance(a.fill_value, int) else "float32"
    return Tensor(tuple(a.size), dtype_arg(a.dtype, fill))


def _randint_shape(a: Args):
    return Tensor(tuple(a.size), dtype_arg(a.dtype, "int64"))


def _like_shape(a: Args):
    return a.input.like(a.input.shape, dtype_arg(a.dtype, None))


# ---------------------------------------------------------------- the tables

RELU = activation(saves=_keeps_output)
SOFTMAX = activation("dim=None", saves=_keeps_output)

MODULES: dict[str, Op] = {
    **{f"Conv{n}d": conv(n) for n in (1, 2, 3)},
    **{f"ConvTranspose{n}d": conv(n, transposed=True) for n in (1, 2, 3)},
    **{f"{k}Pool{n}d": pool(n, k) for n in (1, 2, 3) for k in ("Max", "Avg")},
    **{f"Adaptive{k}Pool{n}d": adaptive(n, k) for n in (1, 2, 3) for k in ("Max", "Avg")},
    **{f"BatchNorm{n}d": batch_norm(n) for n in (1, 2, 3)},
    **{f"InstanceNorm{n}d": instance_norm(n) for n in (1, 2, 3)},
    "LayerNorm": Op("normalized_shape, eps=1e-05, elementwise_affine=True, bias=True, device=None, dtype=None",
                    _layer_norm_shape, _layer_norm_params, saves=_layer_norm_saves),
    "GroupNorm": Op("num_groups, num_channels, eps=1e-05, affine=True, device=None, dtype=None", _group_norm_shape,
                    lambda a: affine(a.num_channels, a.affine), saves=_group_norm_saves),
    "Linear": Op("in_features, out_features, bias=True, device=None, dtype=None", _linear_shape,
                 lambda a: [(a.out_features, a.in_features)] + ([(a.out_features,)] if a.bias else []),
                 saves=_linear_saves, forward_temp=_linear_bias_copy),
    "Bilinear": Op("in1_features, in2_features, out_features, bias=True, device=None, dtype=None", _bilinear_shape,
                   lambda a: [(a.out_features, a.in1_features, a.in2_features)] + ([(a.out_features,)] if a.bias else []),
                   saves=lambda a, out: [a.input1, a.input2], forward="input1, input2"),
    "Embedding": Op("num_embeddings, embedding_dim, padding_idx=None, max_norm=None, norm_type=2.0, "
                    "scale_grad_by_freq=False, sparse=False, _weight=None, _freeze=False, device=None, dtype=None",
                    _embedding_shape, lambda a: [(a.num_embeddings, a.embedding_dim)], saves=_keeps_input),
    "Dropout": dropout("plain"), "Dropout1d": dropout("feature"), "Dropout2d": dropout("feature"),
    "Dropout3d": dropout("feature"), "AlphaDropout": dropout("alpha"), "FeatureAlphaDropout": dropout("alpha"),
    "ReLU": RELU,
    "ReLU6": activation(),
    "LeakyReLU": activation("negative_slope=0.01, inplace=False", saves=_keeps_input_or_result),
    "PReLU": Op("num_parameters=1, init=0.25, device=None, dtype=None", _prelu_shape,
                lambda a: [(a.num_parameters,)], saves=_keeps_input,
                backward_temp=lambda a: a.input.nbytes),  # the weight's gradient before its reduction
    "ELU": activation("alpha=1.0, inplace=False", saves=_keeps_input_or_result),
    "CELU": activation("alpha=1.0, inplace=False", saves=_keeps_input_or_result),
    "SELU": activation(saves=_keeps_input_or_result),
    "GELU": activation("approximate='none'"),
    "SiLU": activation(),
    "Mish": activation(),
    "Hardswish": activation(),
    "Hardsigmoid": activation(),
    "Hardtanh": activation("min_val=-1.0, max_val=1.0, inplace=False, min_value=None, max_value=None"),
    "Softplus": activation("beta=1.0, threshold=20.0"),
    "Softsign": activation(""),
    "LogSigmoid": activation(""),
    "Tanhshrink": activation(""),
    "Threshold": activation("threshold, value, inplace=False", saves=_keeps_input_or_result),
    "Tanh": activation("", saves=_keeps_output),
    "Sigmoid": activation("", saves=_keeps_output),
    "Softmax": SOFTMAX,
    "LogSoftmax": SOFTMAX,
    "Softmax2d": activation("", saves=_keeps_output),
    "Identity": Op("*args, **kwargs", lambda a: a.input),
    "Flatten": Op("start_dim=1, end_dim=-1", _flatten_shape, grad="alias"),
    "Unflatten": Op("dim, unflattened_size", _unflatten_shape, grad="alias"),
    "Upsample": Op("size=None, scale_factor=None, mode='nearest', align_corners=None, recompute_scale_factor=None",
                   _upsample_sizes, saves=_keeps_nothing),
    "UpsamplingNearest2d": Op("size=None, scale_factor=None", _upsample_sizes),
    "UpsamplingBilinear2d": Op("size=None, scale_factor=None", _upsample_sizes),
    "PixelShuffle": Op("upscale_factor", _pixel_shuffle_shape),
    "PixelUnshuffle": Op("downscale_factor", _pixel_unshuffle_shape),
    **{f"ConstantPad{n}d": pad(n, constant=True) for n in (1, 2, 3)},
    **{f"{k}Pad{n}d": pad(n) for n in (1, 2, 3) for k in ("Zero", "Circular")},
    **{f"{k}Pad{n}d": pad(n, keeps_input=True) for n in (1, 2, 3) for k in ("Reflection", "Replication")},
}


# Lazy layers: the layer they become (torch swaps the class at the first call), the argument
# inferred from that first input, and the input dimension it is read from.
LAZY = {
    "LazyLinear": ("Linear", "in_features", -1),
    **{f"LazyConv{n}d": (f"Conv{n}d", "in_channels", 1) for n in (1, 2, 3)},
    **{f"LazyConvTranspose{n}d": (f"ConvTranspose{n}d", "in_channels", 1) for n in (1, 2, 3)},
    **{f"LazyBatchNorm{n}d": (f"BatchNorm{n}d", "num_features", 1) for n in (1, 2, 3)},
    **{f"LazyInstanceNorm{n}d": (f"InstanceNorm{n}d", "num_features", 1) for n in (1, 2, 3)},
}


def unary(saves=_keeps_input, extra: str = "") -> Op:
    """An element-wise function of one tensor (input first)."""
    return Op("input" + extra, lambda a: a.input.like(a.input.shape), saves=saves)


def binary(saves=_keeps_nothing, grad: str = "alloc") -> Op:
    return Op("input, other, alpha=1, out=None", _binary_shape, saves=saves, grad=grad)


INTERPOLATE = Op("input, size=None, scale_factor=None, mode='nearest', align_corners=None, "
                 "recompute_scale_factor=None, antialias=False", _upsample_sizes, saves=_keeps_nothing)
SOFTMAX_FN = Op("input, dim=None, _stacklevel=3, dtype=None", lambda a: a.input.like(a.input.shape),
                saves=_keeps_output)
REDUCE = Op("input, dim=None, keepdim=False, dtype=None, out=None", _reduce_shape)


def _amax_shape(a: Args):
    return _reduce_shape(Args(a, dim=a.dim if a.dim != () else None))  # dim=() reduces everything


# amax/amin keep input and result; the backward splits the gradient among ties: a bool mask of the
# input, an int64 count and a quotient per result element
REDUCE_KEEPS = Op("input, dim=(), keepdim=False, out=None", _amax_shape, saves=lambda a, out: [a.input, out],
                  backward_temp=lambda a: a.input.numel + _amax_shape(a).numel * (8 + DTYPE_BYTES[a.input.dtype]))
MAX = Op("input, dim=None, keepdim=False, out=None", _max_shape, saves=_keeps_input)
CAT = Op("tensors, dim=0, out=None", _cat_shape, grad="alias")
CREATE = _creation()

def _einsum_shape(a: Args):
    """torch.einsum("bij,bjk->bik", x, y): each letter one size (spaces ignored, no ellipsis)."""
    operands = a.operands[0] if len(a.operands) == 1 and isinstance(a.operands[0], (list, tuple)) else a.operands
    spec = a.equation.replace(" ", "")
    if "..." in spec or "->" not in spec:
        raise Unresolved(f"einsum {a.equation!r}: only explicit '->' equations without '...' are read")
    inputs, output = spec.split("->")
    terms = inputs.split(",")
    if len(terms) != len(operands):
        raise ShapeError(f"einsum {a.equation!r} names {len(terms)} operands, {len(operands)} given")
    sizes: dict = {}
    for term, t in zip(terms, operands):
        if len(term) != t.ndim:
            raise ShapeError(f"einsum {a.equation!r}: {term!r} for a tensor of shape {fmt(t.shape)}")
        for letter, n in zip(term, t.shape):
            if sizes.setdefault(letter, n) != n and 1 not in (n, sizes[letter]):
                raise ShapeError(f"einsum {a.equation!r}: {letter} is {sizes[letter]} and {n}")
            sizes[letter] = max(sizes[letter], n)
    return operands[0].like(tuple(sizes[c] for c in output), promote(*operands))


def _take_shape(a: Args):
    """x[index] along `dim`: the index's shape stands in for that dimension."""
    x, d = a.input, dim_index(a.dim, a.input.ndim)
    return x.like(x.shape[:d] + a.index.shape + x.shape[d + 1:])


TAKE = Op("input, dim, index", _take_shape, saves=lambda a, out: [a.index])  # table[index]; backward scatters

# Functions by the qualified name they are imported under.
FUNCTIONS: dict[str, Op] = {
    **{f"torch.nn.functional.{f}": functional(MODULES[m]) for f, m in (
        ("relu6", "ReLU6"), ("leaky_relu", "LeakyReLU"), ("elu", "ELU"), ("selu", "SELU"),
        ("celu", "CELU"), ("gelu", "GELU"), ("silu", "SiLU"), ("mish", "Mish"), ("hardswish", "Hardswish"),
        ("hardsigmoid", "Hardsigmoid"), ("hardtanh", "Hardtanh"), ("softplus", "Softplus"),
        ("logsigmoid", "LogSigmoid"), ("softsign", "Softsign"))},
    "torch.nn.functional.relu": functional(RELU),
    "torch.relu": functional(RELU),
    "torch.nn.functional.tanh": unary(_keeps_output),
    "torch.tanh": unary(_keeps_output),
    "torch.nn.functional.sigmoid": unary(_keeps_output),
    "torch.sigmoid": unary(_keeps_output),
    "torch.exp": unary(_keeps_output),
    "torch.round": unary(_keeps_nothing), "torch.sign": unary(_keeps_nothing), "torch.log2": unary(),
    "torch.roll": unary(_keeps_nothing, ", shifts, dims=None"), "torch.floor": unary(_keeps_nothing), "torch.ceil": unary(_keeps_nothing),
    "torch.diff": Op("input, n=1, dim=-1", lambda a: a.input.like(a.input.shape[:-1] + (a.input.shape[-1] - 1,))),
    "torch.pow": Op("input, exponent", lambda a: broadcast(a.input, a.exponent), saves=lambda a, out: [
        t for t in (a.input, a.exponent) if isinstance(t, Tensor)]),
    "torch.log": unary(),
    "torch.sqrt": unary(_keeps_output),
    "torch.abs": unary(),
    "torch.clamp": unary(extra=", min=None, max=None"),
    "torch.nn.functional.normalize": unary(extra=", p=2.0, dim=1, eps=1e-12, out=None"),
    "torch.nn.functional.softmax": SOFTMAX_FN, "torch.softmax": SOFTMAX_FN,
    "torch.nn.functional.log_softmax": SOFTMAX_FN, "torch.log_softmax": SOFTMAX_FN,
    "torch.nn.functional.dropout": dropout("plain", functional=True),
    **{f"torch.nn.functional.dropout{n}d": dropout("feature", functional=True) for n in (1, 2, 3)},
    "torch.nn.functional.alpha_dropout": dropout("alpha", functional=True),
    "torch.nn.functional.feature_alpha_dropout": dropout("alpha", functional=True),
    **{f"torch.nn.functional.{k.lower()}_pool{n}d": functional_pool(n, k) for n in (1, 2, 3) for k in ("Max", "Avg")},
    **{f"torch.{k.lower()}_pool{n}d": functional_pool(n, k) for n in (1, 2, 3) for k in ("Max", "Avg")},
    **{f"torch.nn.functional.adaptive_{k.lower()}_pool{n}d":
       replace(adaptive(n, k), signature="input, " + adaptive(n, k).signature)
       for n in (1, 2, 3) for k in ("Max", "Avg")},
    "torch.nn.functional.interpolate": INTERPOLATE,
    "torch.nn.functional.upsample": INTERPOLATE,
    "torch.nn.functional.scaled_dot_product_attention": Op(
        "query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False",
        _sdpa_shape, saves=_sdpa_saves, backward_temp=_sdpa_backward),
    "torch._gpumem_rnn_layer": RNN_LAYER,
    # composites.py: the last use of a buffer PyTorch's C++ code keeps alive (nothing is computed)
    "torch._gpumem_release": Op("*tensors", lambda a: None),
    "torch.nn.functional.pad": Op("input, pad, mode='constant', value=None", _fpad_shape,
                                  saves=lambda a, out: [a.input] if a.mode in ("reflect", "replicate") else []),
    # the weight too, for the input's gradient: under AMP a half-precision copy, not the parameter
    "torch.nn.functional.batch_norm": Op("input, running_mean, running_var, weight=None, bias=None, training=False, "
                                         "momentum=0.1, eps=1e-05", lambda a: a.input.like(a.input.shape),
                                         saves=_batch_norm_saves),
    "torch.nn.functional.layer_norm": Op("input, normalized_shape, weight=None, bias=None, eps=1e-05",
                                         _layer_norm_shape, saves=_layer_norm_saves),
    "torch.nn.functional.linear": Op("input, weight, bias=None", _linear_fn_shape,
                                     saves=lambda a, out: _linear_saves(a, out) + [a.weight] * a.input.requires_grad,
                                     forward_temp=_linear_bias_copy),
    "torch.nn.functional.pixel_shuffle": Op("input, upscale_factor", _pixel_shuffle_shape),
    "torch.nn.functional.pixel_unshuffle": Op("input, downscale_factor", _pixel_unshuffle_shape),
    "torch.flatten": Op("input, start_dim=0, end_dim=-1", _flatten_shape, grad="alias"),
    "torch.cat": CAT, "torch.concat": CAT, "torch.concatenate": CAT,
    "torch.stack": Op("tensors, dim=0, out=None", _stack_shape, grad="alias"),
    "torch.add": binary(grad="alias"), "torch.sub": binary(),
    "torch.mul": binary(_keeps_other_factor), "torch.div": binary(_keeps_for_quotient),
    "torch.divide": binary(_keeps_for_quotient),
    "torch.matmul": Op("input, other, out=None", _matmul_shape, saves=_keeps_both),
    "torch.einsum": Op("equation, *operands", _einsum_shape,  # as matmul: it keeps its operands
                       saves=lambda a, out: [t for t in tensors_in(list(a.operands)) if isinstance(t, Tensor)]),
    "torch.bmm": Op("input, mat2, out=None", lambda a: _matmul_shape(Args(input=a.input, other=a.mat2)),
                    saves=lambda a, out: [a.input, a.mat2]),
    "torch.mean": REDUCE, "torch.sum": REDUCE, "torch.amax": REDUCE_KEEPS, "torch.amin": REDUCE_KEEPS,
    "torch.max": MAX, "torch.min": MAX,
    "torch.transpose": Op("input, dim0, dim1", _transpose_shape, grad="alias"),
    "torch.swapaxes": Op("input, axis0, axis1", lambda a: _transpose_shape(Args(input=a.input, dim0=a.axis0,
                                                                               dim1=a.axis1)), grad="alias"),
    "torch.permute": Op("input, *dims", _permute_shape, grad="alias"),
    "torch.reshape": Op("input, *shape", _reshape_shape, grad="alias"),
    "torch.squeeze": Op("input, dim=None", _squeeze_shape, grad="alias"),
    "torch.unsqueeze": Op("input, dim", _unsqueeze_shape, grad="alias"),
    "torch.chunk": Op("input, chunks, dim=0", _chunk_shape),
    "torch.split": Op("input, split_size_or_sections, dim=0", _split_shape),
    "torch.unbind": Op("input, dim=0", _unbind_shape),
    **{f"torch.{f}": CREATE for f in ("randn", "rand", "zeros", "ones", "empty")},
    **{f"torch.{f}": Op("input, dtype=None, device=None, requires_grad=False, memory_format=None", _like_shape)
       for f in ("randn_like", "rand_like", "zeros_like", "ones_like", "empty_like")},
    "torch.randint": Op("low, high, size, dtype=None, device=None, generator=None, requires_grad=False",
                        _randint_shape),
    "torch.arange": Op("start, end=None, step=1, out=None, dtype=None, layout=None, device=None, "
                       "pin_memory=False, requires_grad=False", _arange_shape),
    "torch.linspace": Op("start, end, steps, out=None, dtype=None, layout=None, device=None, requires_grad=False",
                         _linspace_shape),
    "torch.tensor": Op("data, dtype=None, device=None, requires_grad=False, pin_memory=False", _tensor_shape),
    "torch.meshgrid": Op("*tensors, indexing='ij'", _meshgrid_shape),
    "torch.full": Op("size, fill_value, out=None, dtype=None, layout=None, device=None, pin_memory=False, "
                     "requires_grad=False", _full_shape),
    "torch.full_like": Op("input, fill_value, dtype=None, layout=None, device=None, requires_grad=False, "
                          "memory_format=None", _like_shape),
}

# Tensor methods, by method name; the tensor is bound as `input`.
METHODS: dict[str, Op] = {
    **{name: FUNCTIONS[f"torch.{name}"] for name in ("reshape", "flatten", "squeeze", "unsqueeze", "permute",
                                                       "transpose", "chunk", "split", "unbind")},
    "view": Op("input, *shape", _view_shape, grad="alias"),
    "view_as": Op("input, other", _view_as_shape, grad="alias"),
    "reshape_as": Op("input, other", _view_as_shape, grad="alias"),
    "t": Op("input", _t_shape, grad="alias"),
    "expand": Op("input, *sizes", _expand_shape),
    "expand_as": Op("input, other", _view_as_shape),
    "repeat": Op("input, *sizes", _repeat_shape),
    "size": Op("input, dim=None", _size),
    "dim": Op("input", lambda a: a.input.ndim),
    "numel": Op("input", lambda a: a.input.numel),
    "contiguous": Op("input, memory_format=None",
                     lambda a: a.input if a.input.contiguous else Tensor(a.input.shape, a.input.dtype)),
    "detach": Op("input", lambda a: Tensor(a.input.shape, a.input.dtype, False, base=a.input)),
    "clone": Op("input, memory_format=None", lambda a: a.input.like(a.input.shape)),
    "to": Op("input, *args, **kwargs", _cast_shape),
    "cuda": Op("input, *args, **kwargs", _cast_shape),
    "cpu": Op("input, *args, **kwargs", _cast_shape),
    "type_as": Op("input, other", lambda a: a.input.astype(a.other.dtype)),
    "float": _to_dtype("float32"),
    "half": _to_dtype("float16"),
    "bfloat16": _to_dtype("bfloat16"),
    "double": _to_dtype("float64"),
    "long": _to_dtype("int64"),
    "int": _to_dtype("int32"),
    "bool": _to_dtype("bool"),
    "zero_": Op("input", lambda a: a.input.rewritten()),  # in place: the input's memory, written over
    "fill_": Op("input, value", lambda a: a.input.rewritten()),
    **{f"new_{f}": Op("input, *size, dtype=None, device=None, requires_grad=False, layout=None, pin_memory=False",
                      _new_shape) for f in ("zeros", "ones", "empty")},
    "relu": FUNCTIONS["torch.relu"],
    "relu_": Op("input", lambda a: a.input.rewritten(), saves=_keeps_output),
    "sigmoid": FUNCTIONS["torch.sigmoid"],
    "tanh": FUNCTIONS["torch.tanh"],
    "exp": FUNCTIONS["torch.exp"],
    "log": FUNCTIONS["torch.log"],
    "sqrt": FUNCTIONS["torch.sqrt"],
    "abs": FUNCTIONS["torch.abs"],
    "clamp": FUNCTIONS["torch.clamp"],
    "pow": unary(extra=", exponent"),
    "softmax": Op("input, dim, dtype=None", SOFTMAX_FN.shape, saves=_keeps_output),
    "log_softmax": Op("input, dim, dtype=None", SOFTMAX_FN.shape, saves=_keeps_output),
    "mean": REDUCE, "sum": REDUCE, "amax": REDUCE_KEEPS, "amin": REDUCE_KEEPS,
    "max": MAX, "min": MAX,
    "argmax": Op("input, dim=None, keepdim=False",
                 lambda a: Tensor(_reduce_shape(a).shape, "int64")),
    "add": binary(grad="alias"), "sub": binary(), "mul": FUNCTIONS["torch.mul"], "div": FUNCTIONS["torch.div"],
    "matmul": FUNCTIONS["torch.matmul"],
    "bmm": FUNCTIONS["torch.bmm"],
    "unflatten": Op("input, dim, sizes", lambda a: _unflatten_shape(Args(a, unflattened_size=a.sizes))),
    "masked_fill": Op("input, mask, value", lambda a: a.input.like(a.input.shape)),
}


# Autocast (AMP): which ops compute in half precision, which are forced to float32
# (torch's autocast op lists; the CUDA float32 list is longer than the CPU one).
AUTOCAST = {
    "low": (
        [f"Conv{n}d" for n in (1, 2, 3)] + [f"ConvTranspose{n}d" for n in (1, 2, 3)]
        + ["Linear", "PReLU", "torch._gpumem_rnn_layer", "torch.nn.functional.linear", "torch.matmul", "torch.bmm",
           "torch.einsum",
           "torch.nn.functional.scaled_dot_product_attention", "matmul", "bmm"]),
    "fp32-cuda": ["Softmax", "LogSoftmax", "LayerNorm", "torch.nn.functional.layer_norm", "GroupNorm", "Softplus", "torch.nn.functional.softmax",
                  "torch.softmax", "torch.nn.functional.log_softmax", "torch.log_softmax", "torch.exp",
                  "torch.log", "torch.sum", "softmax", "log_softmax", "exp", "log", "pow", "sum"],
    "fp32": ["MaxPool3d", "AdaptiveAvgPool3d", "AvgPool3d", "ReflectionPad1d", "ReflectionPad2d",
             "ReplicationPad1d", "ReplicationPad2d", "ReplicationPad3d"],
}
for _mode, _names in AUTOCAST.items():
    for _name in _names:
        for _table in (MODULES, FUNCTIONS, METHODS):
            if _name in _table:
                _table[_name] = replace(_table[_name], autocast=_mode)
CAST = Op("input, dtype", lambda a: a.input.like(a.input.shape, a.dtype))  # _to_copy keeps a dense layout
