"""Linear layers and matrix products: nn.Linear, nn.Bilinear, nn.Embedding, F.linear,
matmul/bmm and einsum.

The shape rules check the inner sizes; what they keep is their inputs (Linear copies an
input it cannot view as 2-d first). The entries themselves are in tables.py.
"""
from __future__ import annotations

import math

from ..values import FLOAT_DTYPES, ShapeError, Tensor, Unresolved, tensors_in, view_layout
from .core import Args, broadcast, fmt, need_channels, promote


def linear_saves(a: Args, out) -> list:
    """Linear keeps its input for its weight's gradient, none where the weight is frozen (a LoRA base
    layer); an input that cannot be viewed as 2-d is copied first."""
    x, weight = a.input, a.get("weight")
    trains = a.get("_trains")
    if not (trains[0] if trains else not isinstance(weight, Tensor) or weight.requires_grad):
        return []
    if x.ndim > 2 and view_layout(x, (math.prod(x.shape[:-1]), x.shape[-1])) is False:
        return [Tensor(x.shape, x.dtype)]
    return [x]


def linear_bias_copy(a: Args, out) -> int:
    """Beyond 2-d, a non-contiguous input runs matmul, then adds the bias out of place while the
    matmul's result is alive: so under MemTracker's dispatch mode, which the estimate follows
    (a plain run adds it in place; see the README)."""
    x = a.input
    if a.bias is None or a.bias is False or x.ndim <= 2 or x.contiguous:
        return 0
    return out.nbytes


def linear_shape(a: Args):
    x = a.input
    if x.ndim == 0:
        raise ShapeError("Linear expects at least a 1-d input")
    need_channels(x, a.in_features, -1, "Linear in_features")
    return _product(x, x.shape[:-1] + (a.out_features,))


def _product(x: Tensor, shape: tuple) -> Tensor:
    """A matrix product's result: new and contiguous, whatever the input's memory order (unlike
    an element-wise result, it does not keep a transposed input's, even when the shape is the same)."""
    return Tensor(tuple(shape), x.dtype, x.requires_grad)


def bilinear_shape(a: Args):
    need_channels(a.input1, a.in1_features, -1, "Bilinear in1_features")
    need_channels(a.input2, a.in2_features, -1, "Bilinear in2_features")
    return _product(a.input1, a.input1.shape[:-1] + (a.out_features,))


def embedding_shape(a: Args):
    if a.input.dtype in FLOAT_DTYPES:
        raise ShapeError(f"Embedding expects integer token ids, got {a.input.dtype} "
                         "(set input_dtype = \"int64\" for this model)")
    return Tensor(a.input.shape + (a.embedding_dim,), a.get("_float", "float32"))


def embedding_fn_shape(a: Args):
    """F.embedding(ids, weight): a row of the weight per id, in the weight's dtype."""
    return embedding_shape(Args(a, embedding_dim=a.weight.shape[-1], _float=a.weight.dtype))


def outer_shape(a: Args):
    x, y = a.input, a.vec2
    if x.ndim != 1 or y.ndim != 1:
        raise ShapeError(f"torch.outer needs two 1-d tensors, got {fmt(x.shape)} and {fmt(y.shape)}")
    return x.like((x.numel, y.numel), promote(x, y))


def linear_fn_shape(a: Args):
    w = a.weight
    need_channels(a.input, w.shape[-1], -1, "F.linear weight in_features")
    return _product(a.input, a.input.shape[:-1] + w.shape[:1])


def addmm_shape(a: Args):
    """torch.addmm(input, mat1, mat2): input + mat1 @ mat2, 2-d (transformers' Conv1D)."""
    x, w = a.mat1, a.mat2
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[0]:
        raise ShapeError(f"addmm of {fmt(x.shape)} and {fmt(w.shape)}: two matrices with matching inner sizes needed")
    return _product(x, (x.shape[0], w.shape[1]))


def addmm_saves(a: Args, out) -> list:
    """As mm: each matrix where the other needs its gradient."""
    return [a.mat1] * a.mat2.requires_grad + [a.mat2] * a.mat1.requires_grad


def grouped_mm_shape(a: Args):
    """F.grouped_mm: a 2-d (S, K) input cut into groups by `offs`, each times its group's (K, N)
    of a 3-d weight: (S, N) whichever group each row falls in (mixture-of-experts layers); two 3-d
    operands are a bmm."""
    x, w = a.mat_a, a.mat_b
    if x.ndim == 2 and w.ndim == 3 and a.offs is not None:
        shape = (x.shape[0], w.shape[2])
    elif x.ndim == 3 and w.ndim == 3 and a.offs is None and x.shape[0] == w.shape[0]:
        shape = (x.shape[0], x.shape[1], w.shape[2])
    else:
        raise Unresolved(f"grouped_mm of {fmt(x.shape)} and {fmt(w.shape)} is not read "
                         f"(offs given: {a.offs is not None})")
    if x.shape[-1] != w.shape[1]:
        raise ShapeError(f"grouped_mm of {fmt(x.shape)} and {fmt(w.shape)}: inner sizes {x.shape[-1]} and "
                         f"{w.shape[1]} differ")
    return Tensor(shape, a.out_dtype or x.dtype)


def matmul_shape(a: Args):
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
    return Tensor(tuple(batch) + (x.shape[-2], y.shape[-1]), x.dtype)  # bmm's result, viewed: contiguous


def _keeps_both(a: Args, out) -> list:
    """Each operand, where the other needs a gradient (`att @ x` with a constant att keeps only att)."""
    x, y = a.input, a.other
    return [t for t, other in ((x, y), (y, x)) if isinstance(t, Tensor) and getattr(other, "requires_grad", False)]


def matmul_saves(a: Args, out) -> list:
    """Batched matmul (both operands 3-d or more) runs bmm on each operand reshaped to (batch, n, m),
    broadcast batch included; an operand that cannot be viewed so (heads transposed out of a
    projection's memory, a broadcast batch) is copied, and bmm keeps the copy."""
    x, y = a.input, a.other
    if x.ndim < 3 or y.ndim < 3:
        return _keeps_both(a, out)
    batch = out.shape[:-2]
    kept = []
    for t, other in ((x, y), (y, x)):
        if not other.requires_grad:
            continue
        folded = (math.prod(batch),) + t.shape[-2:]
        same = math.prod(t.shape[:-2]) == folded[0]
        kept.append(t if same and view_layout(t, folded) is not False else Tensor(folded, t.dtype))
    return kept


def _einsum_operands(a: Args) -> tuple:
    return a.operands[0] if len(a.operands) == 1 and isinstance(a.operands[0], (list, tuple)) else a.operands


def einsum_saves(a: Args, out) -> list:
    """Two operands run as ATen runs them: each permuted to (batch, kept, summed) or (batch, summed,
    kept) and reshaped to 3-d for bmm; one that cannot be viewed so (heads split out of a projection:
    'b h i d, b h j d -> b h i j') is copied, and bmm keeps the copy, where the other operand needs a
    gradient. Other equations keep their tensor operands."""
    operands = _einsum_operands(a)
    folded = _bmm_operands(a.equation.replace(" ", ""), operands)
    if folded is None:
        return [t for t in tensors_in(list(operands)) if isinstance(t, Tensor)]
    x, y = operands
    return [t if f.base is not None else f for t, f, other in ((x, folded[0], y), (y, folded[1], x))
            if other.requires_grad]


def _bmm_operands(spec: str, operands) -> tuple | None:
    """The two operands as bmm gets them (views, or copies where the reshape copies); None for an
    equation ATen does not run as one bmm (more operands, repeated or summed-out-alone letters,
    broadcast sizes)."""
    groups = _bmm_groups(spec, operands)
    if groups is None:
        return None
    (left, right), size, batch, summed, kept = groups

    def fold(x: Tensor, term: str, groups) -> Tensor:
        dims = [term.index(c) for g in groups for c in g]
        return x.permuted(dims).reshaped(tuple(math.prod(size[c] for c in g) for g in groups))

    return fold(operands[0], left, (batch, kept[0], summed)), fold(operands[1], right, (batch, summed, kept[1]))


def _bmm_groups(spec: str, operands) -> tuple | None:
    """How ATen folds a two-operand equation for one bmm: the two terms, each letter's size, and
    the batch, summed and kept (left's, right's) letters; None where it does not run so."""
    if len(operands) != 2 or "->" not in spec or "..." in spec:
        return None
    inputs, output = spec.split("->")
    terms = inputs.split(",")
    if len(terms) != 2 or any(len(set(t)) != len(t) or len(t) != x.ndim for t, x in zip(terms, operands)):
        return None
    left, right = terms
    if any(c not in output for c in set(left) ^ set(right)):
        return None
    size = {c: n for t, x in zip(terms, operands) for c, n in zip(t, x.shape)}
    if any(size[c] != operands[1].shape[right.index(c)] for c in left if c in right):
        return None
    # ATen orders the letters as the output names them, then the summed ones alphabetically
    order = list(output) + sorted(set(left) & set(right) - set(output))
    batch = [c for c in order if c in left and c in right and c in output]
    summed = [c for c in order if c in left and c in right and c not in output]
    kept = ([c for c in order if c in left and c not in right], [c for c in order if c in right and c not in left])
    return (left, right), size, batch, summed, kept


def _bmm_layout(groups: tuple, output: str):
    """The result's memory order: bmm writes (batch, left's kept, right's kept) and einsum returns
    that viewed and permuted to the output's letters, without a copy (None: contiguous)."""
    _, _, batch, _, (left, right) = groups
    layout = tuple(output.index(c) for c in batch + left + right)
    return None if layout == tuple(sorted(layout)) else layout


def einsum_shape(a: Args):
    """torch.einsum("bij,bjk->bik", x, y): each letter one size (spaces ignored, no ellipsis)."""
    operands = _einsum_operands(a)
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
    out = operands[0].like(tuple(sizes[c] for c in output), promote(*operands))
    groups = _bmm_groups(spec, operands)
    if groups is not None and groups[3]:  # one bmm (with nothing summed, ATen multiplies instead)
        out.layout = _bmm_layout(groups, output)
    return out


# The ATen op that makes a product's result (Op.aten), as traced under a TorchDispatchMode
# (tests/test_selective_checkpoint.py): a 1-d operand runs mv/dot, not in SAC_OPS, and is not read.

def linear_aten(a: Args) -> tuple | None:
    """Linear, F.linear: addmm with a bias, mm without; a contiguous batched input is viewed to 2-d
    first and the result viewed back (the same memory). A non-contiguous one runs matmul, then adds
    the bias into a new tensor (linear_bias_copy): not read."""
    x, bias = a.input, a.get("bias") not in (None, False)
    if x.ndim < 2 or (x.ndim > 2 and not x.contiguous and bias):
        return None
    return ("addmm",) if bias else ("mm",)


def matmul_aten(a: Args) -> tuple | None:
    """2-d @ 2-d: mm; a contiguous batched left operand folds onto a matrix: mm; batches on both: bmm."""
    x, y = a.input, a.other
    if x.ndim < 2 or y.ndim < 2:
        return None
    if y.ndim == 2:
        return ("mm",) if x.ndim == 2 or x.layout is None else None
    return ("bmm",) if x.ndim >= 3 else None


def einsum_aten(a: Args) -> tuple | None:
    """Two operands summed over a shared letter run as one bmm (other equations: mul, sum, or a path
    opt_einsum picks, not read)."""
    groups = _bmm_groups(a.equation.replace(" ", ""), _einsum_operands(a))
    return ("bmm",) if groups is not None and groups[3] else None
