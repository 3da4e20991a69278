"""Creation ops: tensors made from sizes or values (zeros, randn, arange, linspace, tensor,
full, meshgrid, the *_like and new_* forms).

They need no gradient and keep nothing. A small tensor of known numbers carries its values
(`valued`, up to MAX_VALUES elements), so code that computes sizes from it (RegNet's block
widths) can be followed.
"""
from __future__ import annotations

import math

from ..values import ShapeError, Tensor, Unresolved, dtype_arg
from .core import Args, Op, broadcast, ints


def one_hot_shape(a: Args):
    """F.one_hot(tensor, num_classes): int64, a last dimension of num_classes (-1: the data's largest)."""
    if not isinstance(a.num_classes, int) or a.num_classes < 0:
        raise Unresolved("F.one_hot without num_classes takes its size from the data")
    return Tensor(a.tensor.shape + (a.num_classes,), "int64")


def _creation(fill: int | None = None) -> Op:
    """torch.zeros / torch.ones carry their `fill` as values (a default all-ones attention mask is
    then known to mask nothing); random and empty tensors do not."""
    def shape(a: Args):
        size = a.sizes[0] if len(a.sizes) == 1 and isinstance(a.sizes[0], (tuple, list)) else a.sizes
        size = size if a.size is None else a.size  # torch.zeros(size=(2, 3)), as timm's BEiT writes it
        ints(tuple(size), "size")
        return filled(tuple(size), dtype_arg(a.dtype, "float32"), fill)
    return Op("*sizes, size=None, dtype=None, device=None, requires_grad=False, generator=None, out=None, "
              "layout=None, pin_memory=False, memory_format=None", shape)


MAX_VALUES = 4096  # elements of a tensor whose values gpumem keeps (RegNet's per-block widths)


def valued(values: list, dtype: str | None = None, shape: tuple | None = None) -> Tensor:
    """A tensor of known values (row-major); its values are dropped past MAX_VALUES elements."""
    dtype = dtype or ("float32" if any(isinstance(v, float) for v in values) else
                      "bool" if values and all(isinstance(v, bool) for v in values) else "int64")
    shape = (len(values),) if shape is None else shape
    return Tensor(shape, dtype, values=tuple(values) if len(values) <= MAX_VALUES else None)


def filled(shape: tuple, dtype: str, fill) -> Tensor:
    """A tensor of one value everywhere (None: unknown), its values kept while small."""
    n = math.prod(shape)
    return Tensor(shape, dtype, values=(fill,) * n if fill is not None and n <= MAX_VALUES else None)


def arange_shape(a: Args):
    start, end, step = (0, a.start, 1) if a.end is None else (a.start, a.end, a.step)
    n = max(math.ceil((end - start) / step), 0)
    ints((n,), "arange size")
    dtype = dtype_arg(a.dtype, "float32" if any(isinstance(v, float) for v in (start, end, step)) else "int64")
    if n > MAX_VALUES:
        return Tensor((n,), dtype)
    return valued([start + i * step for i in range(n)], dtype)


def linspace_shape(a: Args):
    ints((a.steps,), "linspace steps")
    if a.steps > MAX_VALUES:
        return Tensor((a.steps,), dtype_arg(a.dtype, "float32"))
    step = (a.end - a.start) / max(a.steps - 1, 1)
    return valued([float(a.start + i * step) for i in range(a.steps)], dtype_arg(a.dtype, "float32"))


def tensor_shape(a: Args):
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


def meshgrid_shape(a: Args):
    tensors = a.tensors[0] if len(a.tensors) == 1 and isinstance(a.tensors[0], (list, tuple)) else a.tensors
    sizes = tuple(t.numel for t in tensors)
    if a.indexing == "xy" and len(sizes) > 1:
        sizes = (sizes[1], sizes[0]) + sizes[2:]
    return tuple(t.like(sizes) for t in tensors)


def new_tensor_shape(a: Args):
    """x.new_tensor(data): a copy of the data in x's dtype (pytorch-fm's field offsets); an array or
    tensor given keeps its shape and known values."""
    dtype = dtype_arg(a.dtype, a.input.dtype)
    if isinstance(a.data, Tensor):
        return Tensor(a.data.shape, dtype, values=a.data.values)
    return tensor_shape(Args(data=a.data, dtype=dtype))


def new_shape(a: Args):
    """x.new_zeros(size): a new tensor in x's dtype."""
    size = a.size[0] if len(a.size) == 1 and isinstance(a.size[0], (tuple, list)) else a.size
    ints(tuple(size), "size")
    return Tensor(tuple(size), dtype_arg(a.dtype, a.input.dtype))


def full_shape(a: Args):
    """torch.full: the dtype of its fill value unless given (a bool, an int64, else float32)."""
    ints(tuple(a.size), "size")
    fill = "bool" if isinstance(a.fill_value, bool) else "int64" if isinstance(a.fill_value, int) else "float32"
    fill_value = a.fill_value if isinstance(a.fill_value, (int, float, bool)) else None
    return filled(tuple(a.size), dtype_arg(a.dtype, fill), fill_value)


def eye_shape(a: Args):
    """torch.eye(n, m): an n x m identity, float32 unless given a dtype."""
    size = (a.n, a.n if a.m is None else a.m)
    ints(size, "eye size")
    return Tensor(size, dtype_arg(a.dtype, "float32"))


def randint_shape(a: Args):
    return Tensor(tuple(a.size), dtype_arg(a.dtype, "int64"))


def normal_shape(a: Args):
    """torch.normal(mean, std, size=...): numbers and a size, a new float32 tensor of that size;
    tensors of means or deviations, their broadcast shape."""
    if a.size is not None:
        ints(tuple(a.size), "size")
        return Tensor(tuple(a.size), dtype_arg(a.dtype, "float32"))
    tensors = [t for t in (a.mean, a.std) if isinstance(t, Tensor)]
    if not tensors:
        raise ShapeError("torch.normal of two numbers needs a size")
    return broadcast(*tensors) if len(tensors) == 2 else tensors[0].like(tensors[0].shape)


def like_shape(a: Args):
    return a.input.like(a.input.shape, dtype_arg(a.dtype, None))


CREATE = _creation()
ZEROS, ONES = _creation(0), _creation(1)


def legacy_shape(a: Args):
    """torch.Tensor(2, 3), the legacy constructor (conformer's and rtdl's parameters): an uninitialised
    float32 tensor of those sizes, as torch.empty; given one list or tuple (TabNet's
    `torch.FloatTensor([0.5])`) it is that data, as torch.tensor reads it, in float32."""
    if len(a.sizes) == 1 and isinstance(a.sizes[0], (list, tuple)):
        return tensor_shape(Args(data=a.sizes[0], dtype="float32"))
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in a.sizes):
        raise Unresolved("torch.Tensor() of neither sizes nor a list of numbers")
    ints(tuple(a.sizes), "size")
    return Tensor(tuple(a.sizes), "float32")


LEGACY = Op("*sizes, device=None", legacy_shape)
