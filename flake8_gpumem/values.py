"""The values shape inference computes with: tensors, modules, and why analysis stops."""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

DTYPE_BYTES = {
    "float32": 4, "float16": 2, "bfloat16": 2, "float64": 8,
    "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "bool": 1,
    "complex64": 8, "complex128": 16,  # rotary embeddings (torch.polar, view_as_complex)
}
FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")
COMPLEX_DTYPES = {"float32": "complex64", "float64": "complex128"}  # float dtype -> the complex dtype of its pairs
GRAD_DTYPES = FLOAT_DTYPES + tuple(COMPLEX_DTYPES.values())  # what autograd differentiates
# torch.<name> -> the dtype it is (a dtype is its name, e.g. "float16", everywhere in gpumem)
TORCH_DTYPES = {**{d: d for d in DTYPE_BYTES}, "float": "float32", "half": "float16", "double": "float64",
                "long": "int64", "int": "int32", "short": "int16", "cfloat": "complex64",
                "cdouble": "complex128"}
# nn.Module's methods that cast its floating-point parameters and buffers: `model.half()` gives TORCH_DTYPES["half"]
MODULE_CASTS = ("half", "bfloat16", "float", "double")


def dtype_arg(value, default: str | None) -> str | None:
    """A `dtype=` argument: None keeps the default; anything gpumem does not size is Unresolved."""
    if value is None:
        return default
    if value not in DTYPE_BYTES:
        raise Unresolved(f"dtype {getattr(value, 'path', value)} is not one gpumem sizes")  # torch.complex32
    return value


_tensor_ids = itertools.count()


@dataclass(eq=False)
class Tensor:
    """A tensor known by shape only. Identity matters: a tensor kept for
    backward by two ops is kept once."""

    shape: tuple[int, ...]
    dtype: str = "float32"
    requires_grad: bool = False
    base: Tensor | None = None  # set for views: they share the base's memory
    is_param: bool = False  # parameters are weights, never activations
    layout: tuple | None = None  # memory order of the dimensions, outermost first; None: contiguous
    rewrite: bool = False  # an in-place op's result: the tensor it wrote, not a view of it
    values: tuple | None = None  # its elements, row-major, for a small tensor computed from known numbers
    margins: tuple | None = None  # per dimension, the trailing rows a padding op added (no data in them)
    id: int = field(default_factory=lambda: next(_tensor_ids))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * DTYPE_BYTES[self.dtype]

    @property
    def storage(self) -> Tensor:
        """The tensor that owns the memory this one uses."""
        return self.base.storage if self.base is not None else self

    def like(self, shape, dtype: str | None = None) -> Tensor:
        """A new tensor; element-wise results keep a permuted input's memory order."""
        shape = tuple(shape)
        keep = self.layout if shape == self.shape and self.layout != STRIDED else None
        return Tensor(shape, dtype or self.dtype, self.requires_grad, layout=keep)

    def view(self, shape, layout=None) -> Tensor:
        return Tensor(tuple(shape), self.dtype, self.requires_grad, base=self, layout=layout)

    def astype(self, dtype: str) -> Tensor:
        """x.to(dtype): the tensor itself if it is one already, else a copy."""
        return self if dtype == self.dtype else self.like(self.shape, dtype)

    def rewritten(self) -> Tensor:
        """The result of an in-place op on this tensor: its memory, written over."""
        out = self.view(self.shape, self.layout)
        out.rewrite = True
        return out

    @property
    def is_view(self) -> bool:
        """An autograd view of another tensor (an in-place op on one rewrites its base's history)."""
        t = self
        while t.base is not None and t.rewrite:
            t = t.base
        return t.base is not None

    @property
    def order(self) -> tuple:
        """Its dimensions, outermost in memory first (a strided view's: as its shape)."""
        return tuple(range(self.ndim)) if self.layout in (None, STRIDED) else self.layout

    @property
    def contiguous(self) -> bool:
        if self.layout is None:
            return True
        if self.layout == STRIDED:
            return False
        order = [d for d in self.layout if self.shape[d] != 1]
        return order == sorted(order)

    @property
    def channels_last(self) -> tuple | None:
        """The channels-last memory order of a 4-d or 5-d tensor in it (None otherwise): ATen's
        suggested memory format, in which convolutions and padding write their results."""
        if self.ndim not in (4, 5) or self.contiguous or self.layout == STRIDED:
            return None
        last = (0, *range(2, self.ndim), 1)
        order = [d for d in self.layout if self.shape[d] != 1]
        return last if order == [d for d in last if self.shape[d] != 1] else None

    def permuted(self, order) -> Tensor:
        """A view with dimensions reordered; memory stays where it is."""
        order = tuple(order)
        if self.layout == STRIDED:
            return self.view(tuple(self.shape[d] for d in order), STRIDED)
        memory = self.layout or tuple(range(self.ndim))
        new_of_old = {old: new for new, old in enumerate(order)}
        layout = tuple(new_of_old[d] for d in memory)
        return self.view(tuple(self.shape[d] for d in order), None if layout == tuple(sorted(layout)) else layout)

    def reshaped(self, shape) -> Tensor:
        """reshape: a view when the memory order allows it, else a contiguous copy."""
        layout = view_layout(self, tuple(shape))
        if layout is False:
            return Tensor(tuple(shape), self.dtype, self.requires_grad)
        return self.view(shape, layout)


STRIDED = ("strided",)  # layout of a view with gaps or repeats (a slice, an expand): never contiguous


def view_layout(t: Tensor, shape: tuple):
    """Memory order of `t` viewed as `shape`, None if contiguous, False if no view exists.

    Dimensions are grouped into blocks of equal element count (as torch's
    computeStride does); each block's old dimensions must lie next to each
    other, in order, in memory.
    """
    if t.contiguous:
        return None
    if t.layout == STRIDED:  # splitting a dimension keeps any strides (einops' unpack of a slice)
        return STRIDED if _splits_only(t.shape, shape) else False
    old = [d for d in range(t.ndim) if t.shape[d] != 1]
    new = [j for j in range(len(shape)) if shape[j] != 1]
    position = {d: i for i, d in enumerate(x for x in t.layout if t.shape[x] != 1)}
    blocks, i, j = [], 0, 0
    while i < len(old) and j < len(new):
        bo, bn = [old[i]], [new[j]]
        po, pn = t.shape[old[i]], shape[new[j]]
        i, j = i + 1, j + 1
        while po != pn:
            if po < pn and i < len(old):
                bo.append(old[i])
                po, i = po * t.shape[old[i]], i + 1
            elif pn < po and j < len(new):
                bn.append(new[j])
                pn, j = pn * shape[new[j]], j + 1
            else:
                return False
        if any(position[b] != position[bo[0]] + k for k, b in enumerate(bo)):
            return False
        blocks.append((position[bo[0]], bn))
    layout = tuple(d for _, bn in sorted(blocks) for d in bn) + tuple(
        j for j in range(len(shape)) if shape[j] == 1)
    return None if list(layout[:len(new)]) == sorted(layout[:len(new)]) else layout


def _splits_only(old: tuple, new: tuple) -> bool:
    """Whether `new` only splits dimensions of `old` and adds or drops ones of size 1."""
    sizes = [s for s in new if s != 1]
    for n in (s for s in old if s != 1):
        product = 1
        while product < n and sizes:
            product *= sizes.pop(0)
        if product != n:
            return False
    return not sizes


class AnalysisError(Exception):
    """Analysis of a model cannot go on. Carries a GPM code and the node at fault."""

    code = "GPM900"

    def __init__(self, message: str, node=None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.node = node
        if code:
            self.code = code


class Unresolved(AnalysisError):
    """A value the static reading cannot know (GPM900)."""


class Raised(Unresolved):
    """The code itself raises a builtin exception: stops the analysis unless a handler around catches it."""

    def __init__(self, message: str, node=None, exception: type = Exception):
        super().__init__(message, node)
        self.exception = exception


class ShapeError(AnalysisError):
    """Shapes that cannot connect (GPM300) or collapse (GPM201)."""

    code = "GPM300"


def tensors_in(value):
    """The tensors in a value: itself, or inside tuples, lists and dicts, in order."""
    if isinstance(value, Tensor):
        yield value
        return
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, (list, tuple)):
        return
    for v in value:
        if isinstance(v, Tensor):
            yield v
        elif isinstance(v, (list, tuple, dict)):
            yield from tensors_in(v)


def bad_sizes(shape: tuple) -> list:
    """The entries of a shape that are no size: negative, a bool, not an int."""
    return [d for d in shape if isinstance(d, bool) or not isinstance(d, int) or d < 0]
