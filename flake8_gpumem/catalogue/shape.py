"""Shape ops: views and copies that rearrange a tensor without computing on its values.

flatten/unflatten, view/reshape, squeeze/unsqueeze, permute/transpose, expand/repeat,
chunk/split/unbind, cat/stack, indexing with a tensor (TAKE), upsampling, pixel shuffle and
padding. Views alias their input (`grad="alias"` where backward makes no new gradient);
a padding layer marks the rows it appended, so a window that leaves out only those drops
nothing.
"""
from __future__ import annotations

import math

from ..values import COMPLEX_DTYPES, STRIDED, ShapeError, Tensor, Unresolved
from .core import Args, Op, keeps_input, keeps_nothing, dim_index, fmt, ints, tup


def flatten_shape(a: Args):
    x = a.input
    if x.ndim == 0:
        return x.view((1,))
    s, e = dim_index(a.start_dim, x.ndim), dim_index(a.end_dim, x.ndim)
    if s > e:
        raise ShapeError(f"flatten start_dim {a.start_dim} comes after end_dim {a.end_dim}")
    return x.reshaped(x.shape[:s] + (math.prod(x.shape[s:e + 1]),) + x.shape[e + 1:])


def unflatten_shape(a: Args):
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


def squeeze_shape(a: Args):
    x = a.input
    if a.dim is None:
        return x.reshaped(tuple(s for s in x.shape if s != 1))
    dims = {dim_index(d, x.ndim) for d in (a.dim if isinstance(a.dim, (tuple, list)) else (a.dim,))}
    return x.reshaped(tuple(s for i, s in enumerate(x.shape) if not (i in dims and s == 1)))


def unsqueeze_shape(a: Args):
    x = a.input
    d = dim_index(a.dim, x.ndim + 1)
    return x.reshaped(x.shape[:d] + (1,) + x.shape[d:])


def permute_shape(a: Args):
    x = a.input
    dims = a.dims[0] if len(a.dims) == 1 and isinstance(a.dims[0], (tuple, list)) else a.dims
    order = [dim_index(d, x.ndim) for d in dims]
    if sorted(order) != list(range(x.ndim)):
        raise ShapeError(f"permute{tuple(dims)} is not a permutation of the {x.ndim} dimensions of {fmt(x.shape)}")
    return x.permuted(order)


def transpose_shape(a: Args):
    x = a.input
    order = list(range(x.ndim))
    i, j = dim_index(a.dim0, x.ndim), dim_index(a.dim1, x.ndim)
    order[i], order[j] = order[j], order[i]
    return x.permuted(order)


def unfold_shape(a: Args):
    """x.unfold(dimension, size, step): overlapping windows of `dimension`, a strided view with the
    window as a new last dimension."""
    x = a.input
    d = dim_index(a.dimension, x.ndim)
    ints((a.size, a.step), "unfold size and step")
    if a.step < 1 or a.size > x.shape[d]:
        raise ShapeError(f"unfold size {a.size} (step {a.step}) does not fit dimension {d} of {fmt(x.shape)}")
    return x.view(x.shape[:d] + ((x.shape[d] - a.size) // a.step + 1,) + x.shape[d + 1:] + (a.size,), STRIDED)


def t_shape(a: Args):
    return a.input.permuted(range(a.input.ndim - 1, -1, -1))


def view_shape(a: Args):
    """view never copies: of a slice, whose memory order gpumem does not track, torch's view either
    succeeds or raises, and code that runs got a view."""
    x = a.input
    shape = resolve_view(x, a.shape, "view")
    return x.view(shape, STRIDED) if x.layout == STRIDED else x.reshaped(shape)


def reshape_shape(a: Args):
    return a.input.reshaped(resolve_view(a.input, a.sizes if a.shape is None else a.shape, "reshape"))


def view_as_shape(a: Args):
    return a.input.reshaped(a.other.shape)


def expand_shape(a: Args):
    x = a.input
    sizes = a.sizes[0] if len(a.sizes) == 1 and isinstance(a.sizes[0], (tuple, list)) else a.sizes
    lead = len(sizes) - x.ndim
    return x.view(tuple(x.shape[i - lead] if s == -1 else s for i, s in enumerate(sizes)), STRIDED)


def repeat_shape(a: Args):
    x = a.input
    reps = a.sizes[0] if len(a.sizes) == 1 and isinstance(a.sizes[0], (tuple, list)) else a.sizes
    dims = (1,) * (len(reps) - x.ndim) + x.shape
    return x.like(tuple(d * r for d, r in zip(dims, reps)))


def tile_shape(a: Args):
    """x.tile(dims): x.repeat with dims padded by leading 1s to x's rank (repeat needs them all)."""
    reps = a.dims[0] if len(a.dims) == 1 and isinstance(a.dims[0], (tuple, list)) else a.dims
    return repeat_shape(Args(input=a.input, sizes=(1,) * (a.input.ndim - len(reps)) + tuple(reps)))


def chunk_shape(a: Args):
    x = a.input
    d = dim_index(a.dim, x.ndim)
    size = -(-x.shape[d] // a.chunks)
    return tuple(narrowed(x, d, min(size, x.shape[d] - i)) for i in range(0, x.shape[d], size))


def split_shape(a: Args):
    x = a.input
    d = dim_index(a.dim, x.ndim)
    if isinstance(a.split_size_or_sections, int):
        s = a.split_size_or_sections
        sizes = [min(s, x.shape[d] - i) for i in range(0, x.shape[d], s)]
    else:
        sizes = list(a.split_size_or_sections)
    return tuple(narrowed(x, d, s) for s in sizes)


def unbind_shape(a: Args):
    x = a.input
    d = dim_index(a.dim, x.ndim)
    return tuple(narrowed(x, d, None) for _ in range(x.shape[d]))


def narrow_shape(a: Args):
    x = a.input
    d = dim_index(a.dim, x.ndim)
    start = a.start + x.shape[d] if a.start < 0 else a.start
    if a.length < 0 or not 0 <= start <= x.shape[d] - a.length:
        raise ShapeError(f"narrow({a.dim}, {a.start}, {a.length}) runs past dimension {d} of size {x.shape[d]}")
    return narrowed(x, d, a.length)


def narrowed(x: Tensor, d: int, size: int | None) -> Tensor:
    """A slice of `size` along dim d (None: a select, the dim removed). Only a slice
    of the outermost non-trivial dimension of contiguous memory stays contiguous."""
    shape = x.shape[:d] + ((size,) if size is not None else ()) + x.shape[d + 1:]
    outer = next((i for i in x.order if x.shape[i] != 1), d)
    if x.contiguous and (outer == d or size == x.shape[d]):
        return x.view(shape)
    return x.view(shape, STRIDED)


def view_as_complex_shape(a: Args):
    """A complex view of (..., 2) pairs of floats: the same memory, one dimension fewer."""
    x = a.input
    dtype = COMPLEX_DTYPES.get(x.dtype)
    if dtype is None or not x.shape or x.shape[-1] != 2:
        raise ShapeError(f"view_as_complex needs a float32 or float64 tensor whose last dimension is 2, "
                         f"got {x.dtype} {fmt(x.shape)}")
    inner = x.contiguous or x.layout != STRIDED and x.layout[-1] == x.ndim - 1
    layout = None if x.contiguous else x.layout[:-1] if inner else STRIDED
    return Tensor(x.shape[:-1], dtype, x.requires_grad, base=x, layout=layout)


def view_as_real_shape(a: Args):
    """A float view of a complex tensor: each element as a (real, imaginary) pair."""
    x = a.input
    dtype = next((f for f, c in COMPLEX_DTYPES.items() if c == x.dtype), None)
    if dtype is None:
        raise ShapeError(f"view_as_real needs a complex tensor, got {x.dtype}")
    layout = None if x.contiguous else STRIDED if x.layout == STRIDED else x.layout + (x.ndim,)
    return Tensor(x.shape + (2,), dtype, x.requires_grad, base=x, layout=layout)


def repeat_interleave_shape(a: Args):
    """Each element `repeats` times along `dim` (GQA's kv heads), or of the flattened input; a copy."""
    x = a.input
    ints(a.repeats, "repeats")
    if a.dim is None:
        return x.like((x.numel * a.repeats,))
    d = dim_index(a.dim, x.ndim)
    return x.like(x.shape[:d] + (x.shape[d] * a.repeats,) + x.shape[d + 1:])


def size_value(a: Args):
    x = a.input
    return x.shape if a.dim is None else x.shape[dim_index(a.dim, x.ndim)]


def _cat_shape(a: Args):
    xs = [t for t in a.tensors if t.shape != (0,)] or list(a.tensors)  # PyTorch skips 1-d empty tensors
    if not xs:
        raise ShapeError("torch.cat needs at least one tensor")
    first = xs[0]
    d = dim_index(a.dim, first.ndim)
    for t in xs[1:]:
        if t.ndim != first.ndim or any(i != d and x != y for i, (x, y) in enumerate(zip(first.shape, t.shape))):
            raise ShapeError(f"torch.cat along dim {a.dim}: shapes {fmt(first.shape)} and {fmt(t.shape)} "
                             "differ outside that dimension")
    out = first.like(first.shape[:d] + (sum(t.shape[d] for t in xs),) + first.shape[d + 1:])
    # written channels-last when every input is so, else contiguous (ATen's output memory format)
    out.layout = first.channels_last if all(t.channels_last for t in xs) else None
    return out


def stack_shape(a: Args):
    xs = list(a.tensors)
    if any(t.shape != xs[0].shape for t in xs):
        raise ShapeError(f"torch.stack needs equal shapes, got {', '.join(fmt(t.shape) for t in xs)}")
    d = dim_index(a.dim, xs[0].ndim + 1)
    return xs[0].like(xs[0].shape[:d] + (len(xs),) + xs[0].shape[d:])


CAT = Op("tensors, dim=0, out=None", _cat_shape, grad="alias")


def _take_shape(a: Args):
    """x[index] along `dim`: the index's shape stands in for that dimension."""
    x, d = a.input, dim_index(a.dim, a.input.ndim)
    return x.like(x.shape[:d] + a.index.shape + x.shape[d + 1:])


TAKE = Op("input, dim, index", _take_shape, saves=lambda a, out: [a.index])  # table[index]; backward scatters


def upsample_sizes(a: Args) -> tuple:
    x = a.input
    n = x.ndim - 2
    if a.size is not None:
        return x.like(x.shape[:2] + tup(a.size, n, "size"))
    if a.scale_factor is None:
        raise Unresolved("interpolation needs either size or scale_factor")
    scale = tup(a.scale_factor, n, "scale_factor")
    return x.like(x.shape[:2] + tuple(int(math.floor(L * f)) for L, f in zip(x.shape[2:], scale)))


def pixel_shuffle_shape(a: Args):
    x, r = a.input, a.upscale_factor
    c, h, w = x.shape[-3:]
    if c % (r * r):
        raise ShapeError(f"PixelShuffle needs channels divisible by {r * r}, got {c}")
    return x.like(x.shape[:-3] + (c // (r * r), h * r, w * r))


def pixel_unshuffle_shape(a: Args):
    x, r = a.input, a.downscale_factor
    c, h, w = x.shape[-3:]
    if h % r or w % r:
        raise ShapeError(f"PixelUnshuffle needs height and width divisible by {r}, got {h}x{w}")
    return x.like(x.shape[:-3] + (c * r * r, h // r, w // r))


INTERPOLATE = Op("input, size=None, scale_factor=None, mode='nearest', align_corners=None, "
                 "recompute_scale_factor=None, antialias=False", upsample_sizes, saves=keeps_nothing)


def pad(n: int, constant: bool = False, saves_input: bool = False) -> Op:
    """Zero/constant/circular padding keeps nothing for backward; reflection and replication padding
    keep their input (their backward reads it)."""
    def shape(a: Args):
        return pad_to(a.input, tup(a.padding, 2 * n, "padding"))

    return Op("padding, value=0.0" if constant else "padding", shape,
              saves=keeps_input if saves_input else keeps_nothing)


def pad_to(x: Tensor, p) -> Tensor:
    """Pad the last len(p)//2 dimensions, (left, right) pairs from the last dimension backwards."""
    dims, margins = list(x.shape), [0] * x.ndim
    for i in range(len(p) // 2):
        dims[-1 - i] += p[2 * i] + p[2 * i + 1]
        margins[-1 - i] = max(p[2 * i + 1], 0)
    if any(d <= 0 for d in dims):
        raise ShapeError(f"padding {tuple(p)} shrinks {fmt(x.shape)} to nothing", code="GPM201")
    out = x.like(dims)
    out.layout = x.channels_last or out.layout  # allocated in the input's suggested memory format
    out.margins = tuple(margins)
    return out


def fpad_shape(a: Args):
    if len(a.pad) % 2 or len(a.pad) // 2 > a.input.ndim:
        raise ShapeError(f"F.pad needs (left, right) pairs for at most {a.input.ndim} dimensions, got {tuple(a.pad)}")
    return pad_to(a.input, a.pad)


def index_select_shape(a: Args):
    """index_select(input, dim, index): the input with `dim` as long as the 1-d index."""
    d = dim_index(a.dim, a.input.ndim)
    if a.index.ndim > 1:
        raise ShapeError(f"index_select needs a 1-d index, not {fmt(a.index.shape)}")
    return a.input.like(a.input.shape[:d] + (a.index.numel,) + a.input.shape[d + 1:])
