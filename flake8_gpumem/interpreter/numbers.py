"""Values of small tensors computed from known numbers.

Model code sometimes computes sizes with tensors: RegNet's stage widths are
`torch.round(torch.log(torch.arange(depth) * w_a + w_0) ...).int().tolist()`. A tensor made from
known numbers (torch.arange, torch.tensor, torch.linspace) carries its values (catalogue.valued);
the element-wise ops below compute them on, and `.tolist()` / `.item()` hand them back to Python.
An op without a rule here yields a tensor known by shape only, as any other. numpy's scalar
functions and np.linspace (per-block drop rates) are evaluated here too.
"""
from __future__ import annotations

import collections
import itertools
import math
import operator
import re

from .. import catalogue
from ..values import FLOAT_DTYPES, Tensor, Unresolved
from .objects import MAX_LOOP

F = catalogue.FUNCTIONS
M = catalogue.METHODS


# by the op's identity: ops are dataclasses, and torch.mul and torch.div compare equal
UNARY = {id(F["torch.log"]): math.log, id(F["torch.exp"]): math.exp, id(F["torch.sqrt"]): math.sqrt,
         id(F["torch.abs"]): abs, id(F["torch.round"]): round, id(F["torch.floor"]): math.floor,
         id(F["torch.ceil"]): math.ceil, id(M["int"]): int, id(M["long"]): int, id(M["float"]): float,
         id(M["bool"]): bool}
BINARY = {id(F["torch.add"]): operator.add, id(F["torch.sub"]): operator.sub, id(F["torch.mul"]): operator.mul,
          id(F["torch.div"]): operator.truediv, id(F["torch.divide"]): operator.truediv,
          id(F["torch.pow"]): operator.pow, id(F["torch.eq"]): operator.eq, id(F["torch.ne"]): operator.ne,
          id(F["torch.lt"]): operator.lt, id(F["torch.le"]): operator.le, id(F["torch.gt"]): operator.gt,
          id(F["torch.greater"]): operator.gt, id(F["torch.ge"]): operator.ge}

# full reductions: x.max(), x.sum(), x.all() (a default all-ones mask, known to mask nothing)
# (autocast gives torch.sum and x.sum() an op each)
EXTREMES = {id(F["torch.max"]): max, id(F["torch.min"]): min, id(F["torch.sum"]): sum, id(M["sum"]): sum,
            id(F["torch.all"]): all, id(F["torch.any"]): any}
# the same elements in the same row-major order, another shape (position_ids.unsqueeze(0))
REORDERED = {id(op) for op in (F["torch.reshape"], F["torch.flatten"], F["torch.squeeze"], F["torch.unsqueeze"],
                               M["view"], M["view_as"], M["reshape_as"], M["unflatten"], M["contiguous"],
                               M["clone"], M["unsqueeze_"], M["squeeze_"])}
EXPANDED = (id(M["expand"]), id(M["expand_as"]))  # broadcast to a larger shape (position_ids.expand(batch, -1))
# torch.div(x, y, rounding_mode=...)
ROUNDED = {"floor": operator.floordiv, "trunc": lambda x, y: math.trunc(x / y)}


def evaluate(op, bound, out: Tensor) -> tuple | None:
    """The values of `out`, when the op has a rule and every operand's values are known (and it is
    small: a valued tensor broadcast against a large one is not)."""
    if not isinstance(out, Tensor) or out.numel > catalogue.MAX_VALUES:
        return None
    if id(op) in UNARY:
        x = bound.input
        return tuple(UNARY[id(op)](v) for v in x.values) if x.values is not None else None
    if id(op) in BINARY:
        a = _flat(bound.input, out.shape)
        b = _flat(bound.other if "other" in bound else bound.exponent, out.shape)
        fn = ROUNDED[bound["rounding_mode"]] if bound.get("rounding_mode") in ROUNDED else BINARY[id(op)]
        return None if a is None or b is None else tuple(fn(x, y) for x, y in zip(a, b))
    if op is M["to"] and bound.input.values is not None:  # mask.to(dtype=torch.bool): the values, cast
        cast = bool if out.dtype == "bool" else float if out.dtype in FLOAT_DTYPES else int
        return tuple(cast(v) for v in bound.input.values)
    if id(op) in EXTREMES and bound.get("dim") is None and bound.input.values:  # x.max(): a 0-d tensor
        return (EXTREMES[id(op)](bound.input.values),)
    if op is F["torch.flip"] and bound.input.ndim == 1 and bound.input.values is not None:
        return tuple(reversed(bound.input.values))
    if id(op) in REORDERED and bound.input.values is not None and out.numel == bound.input.numel:
        return bound.input.values
    if id(op) in EXPANDED and bound.input.values is not None:
        return broadcast(bound.input, out.shape)
    if op is F["torch.diff"]:
        return _diff(bound, out)
    if op is F["torch.cumsum"] and bound.input.values is not None:
        return _cumsum(bound.input, bound.dim)
    if op is F["torch.nn.functional.pad"] and bound.input.ndim == 1 and bound.input.values is not None and (
            bound.mode == "constant" and min(bound.pad) >= 0):
        fill = (bound.value or 0,)  # tab-transformer's category offsets: F.pad(torch.tensor(...), (1, 0), value=2)
        return fill * bound.pad[0] + bound.input.values + fill * bound.pad[1]
    return None


def _strides(shape: tuple) -> list:
    """Row-major strides of a shape, in elements."""
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return strides[::-1]


def broadcast(x: Tensor, shape: tuple) -> tuple:
    """x's values broadcast to `shape` (its sizes aligned on the right, a size 1 repeated)."""
    lead = len(shape) - x.ndim
    strides = [0] * lead + [0 if n == 1 else s for n, s in zip(x.shape, _strides(x.shape))]
    return tuple(x.values[sum(i * s for i, s in zip(index, strides))]
                 for index in itertools.product(*(range(n) for n in shape)))


def _diff(bound, out: Tensor) -> tuple | None:
    """torch.diff's values: `prepend` and `append` joined on along `dim`, then n differences of
    neighbours along it (transformers' packed-sequence check: torch.diff(position_ids, prepend=...))."""
    x, dim = bound.input, bound.dim % (bound.input.ndim or 1)
    parts = [p for p in (bound.prepend, x, bound.append) if p is not None]
    if not all(isinstance(p, Tensor) and p.values is not None and p.ndim == x.ndim for p in parts):
        return None
    rows = [_rows(p, dim) for p in parts]  # each part as its lines along dim, lines in row-major order
    lines = [sum((r[i] for r in rows), []) for i in range(len(rows[0]))]
    for _ in range(bound.n):
        lines = [[b - a for a, b in zip(line, line[1:])] for line in lines]
    inner = math.prod(out.shape[dim + 1:])
    flat = [0] * out.numel
    for i, line in enumerate(lines):  # line i: outer index i // inner, inner index i % inner
        base = (i // inner) * out.shape[dim] * inner + i % inner
        for j, v in enumerate(line):
            flat[base + j * inner] = v
    return tuple(flat)


def _rows(x: Tensor, dim: int) -> list:
    """x's values as the lines along `dim`, one per index of the other dims (row-major)."""
    inner = math.prod(x.shape[dim + 1:])
    outer = math.prod(x.shape[:dim])
    size = x.shape[dim]
    return [[x.values[o * size * inner + j * inner + i] for j in range(size)] for o in range(outer)
            for i in range(inner)]


def _cumsum(x: Tensor, dim: int) -> tuple:
    """x.cumsum(dim)'s values, row-major: each element plus the running sum before it along `dim`."""
    dim %= x.ndim or 1
    inner = math.prod(x.shape[dim + 1:])
    out = list(x.values)
    for i in range(len(out)):
        if x.ndim and (i // inner) % x.shape[dim]:
            out[i] += out[i - inner]
    return tuple(out)


# ops that cut a tensor into consecutive pieces along a dim
PIECES = (id(F["torch.split"]), id(F["torch.chunk"]), id(F["torch.unbind"]))


def pieces(op, bound, outs) -> None:
    """Give the pieces of a 1-d tensor of known values theirs (timm's stage-wise drop rates:
    `[x.tolist() for x in torch.linspace(0, rate, sum(depths)).split(depths)]`)."""
    if id(op) not in PIECES or bound.input.values is None or bound.input.ndim != 1:
        return
    x = bound.input
    start = 0
    for t in outs:
        n = t.numel
        t.values = x.values[start:start + n]
        start += n


def _flat(x, shape: tuple):
    """`x`'s values broadcast to `shape` (a scalar, or a tensor of known values)."""
    if isinstance(x, (int, float)):
        return [x] * math.prod(shape)
    if isinstance(x, Tensor) and x.values is not None and x.ndim <= len(shape):
        return broadcast(x, shape)
    return None


def picked(t: Tensor, keys: list) -> tuple | None:
    """The values of a valued tensor indexed by ints, slices and None (`offsets[:-1]`,
    `packed_sequence_mask[:, -1]`)."""
    if t.values is None:
        return None
    ranges, dim = [], 0
    for k in keys:
        if k is not None:
            whole = range(t.shape[dim])
            ranges.append(whole[k] if isinstance(k, slice) else (whole[k],))
            dim += 1
    ranges += [range(n) for n in t.shape[dim:]]
    strides = _strides(t.shape)
    return tuple(t.values[sum(i * s for i, s in zip(index, strides))] for index in itertools.product(*ranges))


def tolist(t: Tensor):
    """t.tolist(): nested lists of its values, as its shape nests them."""
    values = list(t.values)
    for size in reversed(t.shape[1:]):
        values = [values[i:i + size] for i in range(0, len(values), size)]
    return values if t.shape else values[0]


def unique(t: Tensor, *flags, **options):
    """torch.unique of a tensor of known values (timm's RegNet counts its stages so): its size is
    the number of distinct values, known only from them."""
    named = dict(zip(("sorted", "return_inverse", "return_counts", "dim"), flags), **options)
    if t.values is None or named.get("dim") is not None or named.get("return_inverse"):
        raise Unresolved("torch.unique of values gpumem does not know: its size depends on them")
    counts = collections.Counter(t.values)
    distinct = sorted(counts)
    values = catalogue.valued(distinct, t.dtype)
    return (values, catalogue.valued([counts[v] for v in distinct], "int64")) if named.get("return_counts") else values


class _Array(list):
    """A small numpy array of known values (np.linspace's), with its `.tolist()`."""

    def tolist(self) -> list:
        return list(self)


def _linspace(start, stop, num=50, endpoint=True, **_) -> _Array:
    if not 0 <= num <= MAX_LOOP:
        raise Unresolved(f"np.linspace of {num} values is more than gpumem evaluates")
    step = (stop - start) / max(num - 1 if endpoint else num, 1)
    return _Array(start + i * step for i in range(num))


class Draw:
    """`random.random()`: a number in [0, 1) not known until it is drawn. Compared with a bound it can
    decide nothing by chance (`random.random() < teacher_forcing_ratio` with a ratio of 0 or 1) it is
    that answer; with any other bound which way the code goes is chance, and gpumem does not guess."""

    def __init__(self, node):
        self.node = node

    def __lt__(self, bound):
        return self._decide(bound, "<", lambda b: b >= 1, lambda b: b <= 0)

    def __le__(self, bound):
        return self._decide(bound, "<=", lambda b: b >= 1, lambda b: b < 0)

    def __gt__(self, bound):  # not r <= bound
        return not self._decide(bound, ">", lambda b: b >= 1, lambda b: b < 0)

    def __ge__(self, bound):  # not r < bound
        return not self._decide(bound, ">=", lambda b: b >= 1, lambda b: b <= 0)

    def _decide(self, bound, symbol: str, always, never) -> bool:
        """Whether r < bound (r <= bound) holds for every r in [0, 1): True, False, or it is chance."""
        if isinstance(bound, (int, float)) and not isinstance(bound, bool):
            if always(bound):
                return True
            if never(bound):
                return False
        raise Unresolved(f"random.random() {symbol} {bound!r} holds or not by chance, and gpumem does not guess "
                         "which: give a bound of 0 or 1 (for a forward argument: --forward-arg NAME=0.0)", self.node)


# numpy's scalar functions, as model code uses them on sizes (make_divisible's np.ceil)
NUMPY = {"ceil": math.ceil, "floor": math.floor, "sqrt": math.sqrt, "log": math.log, "log2": math.log2,
         "exp": math.exp, "prod": math.prod, "round": round, "abs": abs, "maximum": max, "minimum": min,
         "int64": int, "float32": float, "int32": int, "linspace": _linspace}


# numpy's array functions, as model code builds a fixed table with them in __init__ (MAE's and DiT's
# sin-cos position embedding, copied into a parameter through torch.from_numpy): the torch op that
# makes the same shapes. numpy's memory is the host's, never the training step's.
NUMPY_ARRAYS = {"arange": "torch.arange", "meshgrid": "torch.meshgrid", "stack": "torch.stack",
                "concatenate": "torch.cat", "einsum": "torch.einsum", "sin": "torch.sin", "cos": "torch.cos",
                "zeros": "torch.zeros", "ones": "torch.ones", "array": "torch.tensor", "cumsum": "torch.cumsum"}
NUMPY_DTYPES = {"long": "int64", "int_": "int64", "double": "float64", "single": "float32", "half": "float16"}


def as_torch(name: str, args: list, kwargs: dict) -> tuple:
    """(torch op, its arguments) for numpy's `name`: `axis` is torch's `dim`, a numpy dtype (np.float32,
    np.long) its torch name, meshgrid's default indexing numpy's "xy", and cumsum without an axis runs
    along the one dimension (pytorch-fm's field offsets, `np.cumsum(field_dims)`)."""
    kwargs = {("dim" if k == "axis" else k): v for k, v in kwargs.items()}
    dtype = kwargs.get("dtype")
    if getattr(dtype, "path", "").startswith("numpy."):
        kind = dtype.path.partition(".")[2]
        kwargs["dtype"] = NUMPY_DTYPES.get(kind, kind)
    if name == "meshgrid":
        kwargs.setdefault("indexing", "xy")
    if name == "cumsum" and "dim" not in kwargs and len(args) < 2:
        if args[0].ndim != 1:
            raise Unresolved("np.cumsum without an axis of an array of more than one dimension")
        kwargs["dim"] = 0
    return NUMPY_ARRAYS[name], args, kwargs


RELEASE = re.compile(r"(\d+(?:\.\d+)*)(?:\+[a-z0-9.]+)?")  # "2.13.0", "2.13.0+cpu": a final release


class Version(tuple):
    """packaging.version.parse of a final release: compares as packaging compares releases (trailing
    zeros do not count: 2.0 == 2.0.0)."""

    @property
    def base_version(self) -> str:
        """The release as text, parsed again to the same version (diffusers' `deprecate` compares so)."""
        return ".".join(map(str, self))


def version(text) -> Version:
    match = RELEASE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise Unresolved(f"the version {text!r} is not a plain release gpumem compares")
    release = [int(p) for p in match.group(1).split(".")]
    while len(release) > 1 and release[-1] == 0:
        release.pop()
    return Version(release)


FloatInfo = collections.namedtuple("finfo", "bits eps max min tiny smallest_normal resolution dtype")
IntInfo = collections.namedtuple("iinfo", "bits max min dtype")
# torch.finfo / torch.iinfo as PyTorch gives them (model code masks with -finfo(dtype).max)
FLOAT_INFO = {"float32": (32, 2 ** -23, 3.4028234663852886e+38, 2 ** -126, 1e-06),
              "float16": (16, 2 ** -10, 65504.0, 2 ** -14, 0.001),
              "bfloat16": (16, 2 ** -7, 3.3895313892515355e+38, 2 ** -126, 0.01),
              "float64": (64, 2 ** -52, 1.7976931348623157e+308, 2 ** -1022, 1e-15)}
INT_BITS = {"int64": 64, "int32": 32, "int16": 16, "int8": 8, "uint8": 8}


def type_info(name: str, dtype="float32"):
    """torch.finfo(dtype) / torch.iinfo(dtype), for the dtypes gpumem sizes."""
    if name == "finfo" and dtype in FLOAT_INFO:
        bits, eps, top, tiny, resolution = FLOAT_INFO[dtype]
        return FloatInfo(bits, eps, top, -top, tiny, tiny, resolution, dtype)
    if name == "iinfo" and dtype in INT_BITS:
        bits = INT_BITS[dtype]
        low = 0 if dtype == "uint8" else -2 ** (bits - 1)
        return IntInfo(bits, low + 2 ** bits - 1, low, dtype)
    raise Unresolved(f"torch.{name}({dtype!r}) is not known to gpumem")
