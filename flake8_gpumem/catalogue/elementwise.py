"""Element-wise ops: activations, dropout, unary and binary functions, reductions and
dtype casts.

Most keep their input or their result for backward (the `_keeps_*` rules of core.py);
binary ops keep an operand only where the other needs its gradient, dropout its noise or
mask. The shared entries (RELU, SOFTMAX, REDUCE, MAX, CAST ...) are defined here and
registered by name in tables.py.
"""
from __future__ import annotations

from collections import namedtuple

from ..values import COMPLEX_DTYPES, DTYPE_BYTES, FLOAT_DTYPES, ShapeError, Tensor, Unresolved, dtype_arg
from .core import (Args, Op, keeps_input, keeps_nothing, keeps_output, made_anyway, no_tensors, broadcast,
                   dim_index, promote)

# what max/min along a dim, topk and sort return: a named tuple (torch.return_types), `.values` read by name
ValuesIndices = namedtuple("ValuesIndices", "values indices")


def _same(a: Args):
    """Element-wise: a new tensor, or with inplace=True the input's memory, written over."""
    return a.input.rewritten() if a.get("inplace") else a.input.like(a.input.shape)


def activation(signature: str = "inplace=False", saves=keeps_input, params=no_tensors) -> Op:
    return Op(signature, _same, params=params, saves=saves)


def functional(module: Op, extra: str = "") -> Op:
    """The functional twin of an element-wise module: same rule, input first."""
    sig = "input" + (", " + module.signature if module.signature else "") + extra
    return Op(sig, module.shape, saves=module.saves)


RELU = activation(saves=keeps_output)
SOFTMAX = activation("dim=None", saves=keeps_output)


def prelu_shape(a: Args):
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
    return Op(sig, _dropout_shape, saves=saves, forward_temp=made_anyway(saves))


def unary(saves=keeps_input, extra: str = "") -> Op:
    """An element-wise function of one tensor (input first)."""
    return Op("input" + extra, lambda a: a.input.like(a.input.shape), saves=saves)


def binary(saves=keeps_nothing, grad: str = "alloc") -> Op:
    return Op("input, other, alpha=1, out=None", _binary_shape, saves=saves, grad=grad)


def _softmax_cast(a: Args) -> int:
    """softmax(x, dim, dtype=torch.float32): the input converted first, a copy freed once the result is
    made (forward); backward makes the converted input's gradient before casting it back."""
    return 0 if a.dtype is None or a.dtype == a.input.dtype else a.input.numel * DTYPE_BYTES[a.dtype]


def softmax_fn(signature: str) -> Op:
    """F.softmax / Tensor.softmax: the result in `dtype` where it is given (x-transformers' float32
    attention under AMP); backward needs only the result."""
    return Op(signature, lambda a: a.input.like(a.input.shape, a.dtype), saves=keeps_output,
              forward_temp=lambda a, out: _softmax_cast(a), backward_temp=_softmax_cast)


SOFTMAX_FN = softmax_fn("input, dim=None, _stacklevel=3, dtype=None")


def _needs(t) -> bool:
    return isinstance(t, Tensor) and t.requires_grad


def keeps_other_factor(a: Args, out) -> list:
    """x * y: each operand's gradient needs the other, so an operand is kept only where the other
    needs a gradient (StochasticDepth's `x * noise` keeps the noise, not x)."""
    x, y = a.input, a.other
    return [t for t, other in ((x, y), (y, x)) if isinstance(t, Tensor) and _needs(other)]


def keeps_for_quotient(a: Args, out) -> list:
    """x / y: x's gradient needs y; y's needs x and y."""
    x, y = a.input, a.other
    return [t for t, kept in ((x, _needs(y)), (y, _needs(x) or _needs(y))) if isinstance(t, Tensor) and kept]


def _binary_shape(a: Args):
    return broadcast(a.input, a.other)


def pow_saves(a: Args, out) -> list:
    """x ** y keeps its tensor operands; a tensor exponent's gradient needs the result too."""
    return [t for t in (a.input, a.exponent) if isinstance(t, Tensor)] + [out] * isinstance(a.exponent, Tensor)


def polar_shape(a: Args):
    """torch.polar(abs, angle): the complex tensor of their pairs (LLaMA's rotary freqs_cis)."""
    dtype = COMPLEX_DTYPES.get(promote(a.abs, a.angle))
    if dtype is None:
        raise Unresolved(f"torch.polar of {a.abs.dtype} tensors, which PyTorch does not support")
    return broadcast(a.abs, a.angle).like(broadcast(a.abs, a.angle).shape, dtype)


def _compare_shape(a: Args):
    out = broadcast(a.input, a.other)
    return out.like(out.shape, "bool")


COMPARE = Op("input, other, out=None", _compare_shape)  # x == 0: a bool tensor, no gradient
# torch.bernoulli(probs): a new 0/1 tensor of the probabilities' shape; its gradient is zero
BERNOULLI = Op("input, p=None, generator=None, out=None", lambda a: a.input.like(a.input.shape))


def _cumsum_shape(a: Args):
    """cumsum: the input's shape; integers and bools add up in int64, as PyTorch promotes them."""
    dim_index(a.dim, a.input.ndim)
    return a.input.like(a.input.shape, _summed_dtype(a))


def _summed_dtype(a: Args) -> str:
    """The dtype a sum is taken in: `dtype=` if given, int64 for integers and bools, else the input's."""
    integral = a.input.dtype not in FLOAT_DTYPES + tuple(COMPLEX_DTYPES.values())
    return dtype_arg(a.dtype, "int64" if integral else a.input.dtype)


def _where_shape(a: Args):
    """torch.where(condition, input, other): the three broadcast, in the values' promoted dtype."""
    if a.input is None or a.other is None:
        raise Unresolved("torch.where(condition) alone gives indices that depend on the data")
    values = broadcast(a.input, a.other)
    out = broadcast(a.condition, values)
    return out.like(out.shape, values.dtype)


# backward routes the gradient by the condition: it keeps the condition
WHERE = Op("condition, input=None, other=None, out=None", _where_shape, saves=lambda a, out: [a.condition])
CUMSUM = Op("input, dim, dtype=None, out=None", _cumsum_shape)  # backward sums the gradient back: keeps nothing
# a running product (a noise schedule's alpha-bar): backward divides by the input, scales by the result
CUMPROD = Op("input, dim, dtype=None, out=None", _cumsum_shape, saves=lambda a, out: [a.input, out])


def _diff_shape(a: Args):
    """torch.diff: `prepend` and `append` joined on along `dim`, then n fewer along it."""
    x = a.input
    d = dim_index(a.dim, x.ndim)
    joined = x.shape[d] + sum(p.shape[d] for p in (a.prepend, a.append) if isinstance(p, Tensor))
    return x.like(x.shape[:d] + (max(joined - a.n, 0),) + x.shape[d + 1:])


DIFF = Op("input, n=1, dim=-1, prepend=None, append=None", _diff_shape)  # keeps nothing: a difference
TRIANGLE = Op("input, diagonal=0, out=None", lambda a: a.input.like(a.input.shape))  # tril/triu: backward masks


def _topk_shape(a: Args):
    x = a.input
    d = dim_index(a.dim, x.ndim)
    values = x.like(x.shape[:d] + (a.k,) + x.shape[d + 1:])
    return ValuesIndices(values, values.like(values.shape, "int64"))


# topk's backward scatters the gradient through its indices
TOPK = Op("input, k, dim=-1, largest=True, sorted=True, out=None", _topk_shape, saves=lambda a, out: [out[1]])


def _sort_shape(a: Args):
    dim_index(a.dim, a.input.ndim)
    return ValuesIndices(a.input.like(a.input.shape), a.input.like(a.input.shape, "int64"))


# sort: the values and their int64 indices, in the input's shape; backward scatters through the indices
SORT = Op("input, dim=-1, descending=False, stable=False, *, out=None", _sort_shape, saves=lambda a, out: [out[1]])
# histc: `bins` counts in the input's dtype; no gradient flows through counts
HISTC = Op("input, bins=100, min=0, max=0, *, out=None", lambda a: Tensor((a.bins,), a.input.dtype, False))


def reduce_shape(a: Args):
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
    values = reduce_shape(a)
    return values if a.dim is None else ValuesIndices(values, values.like(values.shape, "int64"))


REDUCE = Op("input, dim=None, keepdim=False, dtype=None, out=None", reduce_shape)
# x.sum(): integers and bools add up in int64, as cumsum
SUM = Op("input, dim=None, keepdim=False, dtype=None, out=None", lambda a: reduce_shape(a).astype(_summed_dtype(a)))
# x.all(), x.any(): a bool reduction, no gradient
ALL = Op("input, dim=None, keepdim=False, out=None", lambda a: reduce_shape(a).astype("bool"))


def _amax_shape(a: Args):
    return reduce_shape(Args(a, dim=a.dim if a.dim != () else None))  # dim=() reduces everything


# amax/amin keep input and result; the backward splits the gradient among ties: a bool mask of the
# input, an int64 count and a quotient per result element
REDUCE_KEEPS = Op("input, dim=(), keepdim=False, out=None", _amax_shape, saves=lambda a, out: [a.input, out],
                  backward_temp=lambda a: a.input.numel + _amax_shape(a).numel * (8 + DTYPE_BYTES[a.input.dtype]))
# along a dim backward scatters through the indices, as topk; otherwise it keeps the input
MAX = Op("input, dim=None, keepdim=False, out=None", _max_shape,
         saves=lambda a, out: [out.indices] if isinstance(out, ValuesIndices) else keeps_input(a, out))
# var(dim, unbiased, keepdim) or var(dim, correction=, keepdim=): backward needs the input only
VAR = Op("input, dim=None, unbiased=True, keepdim=False, *, correction=None, out=None", reduce_shape,
         saves=keeps_input)


def _prod_backward(a: Args) -> int:
    """prod's backward, for an input without zeros: grad * (result / input). It first looks for zeros:
    a bool mask of the input; along a dim it counts them per slice, summing an int64 copy of the mask.
    (Under a TorchDispatchMode, MemTracker's included, PyTorch takes its zero-safe cumprod path.)"""
    n, quotient = a.input.numel, a.input.nbytes
    if a.dim is None:
        return quotient  # the mask is gone before the quotient and the gradient are made
    counts = 8 * reduce_shape(a).numel
    return max(n + 8 * n + counts - quotient, n + counts + quotient)  # the int64 copy; then beside the gradient


# prod keeps its input and result
PROD = Op("input, dim=None, keepdim=False, dtype=None", reduce_shape, saves=lambda a, out: [a.input, out],
          backward_temp=_prod_backward)


def cast_shape(a: Args):
    """x.to(dtype), x.to(other), x.to(device, dtype), x.to(dtype=...): a copy only if the dtype changes."""
    targets = [v.dtype if isinstance(v, Tensor) else v for v in (*a.args, *a.kwargs.values())]
    return a.input.astype(next((d for d in targets if isinstance(d, str) and d in DTYPE_BYTES), a.input.dtype))


def to_dtype(dtype: str):
    return Op("input", lambda a: a.input.astype(dtype))


CAST = Op("input, dtype", lambda a: a.input.like(a.input.shape, a.dtype))  # _to_copy keeps a dense layout
