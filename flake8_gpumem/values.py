"""The values shape inference computes with: tensors, modules, and why analysis stops."""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

DTYPE_BYTES = {
    "float32": 4, "float16": 2, "bfloat16": 2, "float64": 8,
    "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "bool": 1,
}
FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")

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
        return Tensor(tuple(shape), dtype or self.dtype, self.requires_grad)

    def view(self, shape) -> Tensor:
        return Tensor(tuple(shape), self.dtype, self.requires_grad, base=self)


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


class ShapeError(AnalysisError):
    """Shapes that cannot connect (GPM300) or collapse (GPM201)."""

    code = "GPM300"


def tensors_in(value):
    """The tensors in a value: itself, or inside tuples, lists and dicts, in order."""
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from tensors_in(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from tensors_in(v)
