"""einops: rearrange, repeat, reduce, pack, unpack, einsum and the Rearrange and Reduce layers,
as the PyTorch calls einops makes for them.

einops reads a pattern such as 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)' and runs, in PyTorch, at
most five calls: a reshape that splits the input's groups into single axes, a permute into the
output's order (the axes it reduces last), the reduction, unsqueeze and expand for the axes repeat
adds, and a reshape that joins the output's groups. pack is a reshape per tensor and a cat; unpack
a slice and a reshape per part; einsum is torch.einsum with one letter per axis name.

Each entry here is a composite (`Op.steps`): it works that sequence out from the pattern and the
input's shape and has the interpreter apply every call with its own catalogue entry. So memory
follows what einops really does: the last reshape copies a permuted tensor and views a
contiguous one, amax keeps its input where mean keeps nothing, a repeated axis stays an expanded
view until a reshape copies it. A pattern einops rejects is a ShapeError naming it and the shape.
"""
from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass
from typing import Callable

from ..values import ShapeError, Tensor, Unresolved
from .core import Args, fmt, ints

ELLIPSIS = "..."
_TOKEN = re.compile(r"\.\.\.|[()]|[^\s().]+|\S")
# einops' reductions and the tensor method each one runs
REDUCTIONS = {"mean": "mean", "sum": "sum", "max": "amax", "min": "amin", "prod": "prod"}


@dataclass(eq=False)
class Anonymous:
    """A number in a pattern: an axis of that size, a different axis at every place it is written."""

    size: int

    def __str__(self) -> str:
        return str(self.size)


def _bad(pattern: str, why: str, x: Tensor | None = None) -> ShapeError:
    shape = f" (input {fmt(x.shape)})" if x is not None else ""
    return ShapeError(f"einops pattern '{pattern}' {why}{shape}")


def _side(text: str, pattern: str) -> list:
    """One side of a pattern as its dimensions, each a list of axes, the ellipsis alone or in a
    group: 'b (h w) 1 ...' -> [['b'], ['h', 'w'], [], '...']. An axis is a name or an Anonymous
    size; a 1 is no axis (alone it is a dimension of size 1, like '()')."""
    dims, group, names = [], None, []
    for token in _TOKEN.findall(text):
        if token == "(":
            if group is not None:
                raise _bad(pattern, "nests parentheses, which einops does not allow")
            group = []
        elif token == ")":
            if group is None:
                raise _bad(pattern, "closes a parenthesis it did not open")
            dims.append(group)
            group = None
        else:
            axis = _axis(token, pattern)
            names += [axis] if isinstance(axis, str) else []
            if group is not None:
                group += [axis] if axis is not None else []
            else:
                dims.append(axis if axis == ELLIPSIS else [axis] if axis is not None else [])
    if group is not None:
        raise _bad(pattern, "leaves a parenthesis open")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise _bad(pattern, f"names {', '.join(twice)} twice on one side")
    return dims


def _axis(token: str, pattern: str):
    """A name, the ellipsis, an Anonymous size, or None for a 1."""
    if token == ELLIPSIS:
        return token
    if token.isdecimal():
        size = int(token)
        if size == 0:
            raise _bad(pattern, "has an axis of size 0")
        return None if size == 1 else Anonymous(size)
    if not _is_name(token):
        raise _bad(pattern, f"has '{token}', which is not an axis name")
    return token


def _is_name(token: str) -> bool:
    return token.isidentifier() and not token.startswith("_") and not token.endswith("_")


def _names(dims: list) -> set:
    """The axes a side names: names, Anonymous sizes and the ellipsis."""
    return {a for d in dims for a in ([d] if d == ELLIPSIS else d)}


def _size(axis, lengths: dict) -> int | None:
    """An axis's size when the pattern or the keyword arguments give it."""
    return axis.size if isinstance(axis, Anonymous) else lengths.get(axis)


def _expand(dims: list, axes: list) -> list:
    """The ellipsis replaced by the axes it stands for: one dimension each, or inside its group."""
    out = []
    for d in dims:
        if d == ELLIPSIS:
            out += [[a] for a in axes]
        else:
            out.append([b for a in d for b in (axes if a == ELLIPSIS else [a])])
    return out


def _parse(x: Tensor, pattern: str, operation: str, lengths: dict) -> tuple[list, list]:
    """Both sides of a rearrange, repeat or reduce pattern, checked as einops checks them, with the
    ellipsis written out as the input's dimensions it stands for."""
    if not isinstance(pattern, str) or pattern.count("->") != 1:
        raise Unresolved(f"einops pattern {pattern!r} needs one '->'")
    if operation not in ("rearrange", "repeat") and operation not in REDUCTIONS:
        raise Unresolved(f"einops reduction {operation!r} is not one gpumem knows ({', '.join(REDUCTIONS)})")
    ints(tuple(lengths.values()), "an einops axis length")
    left, right = (_side(text, pattern) for text in pattern.split("->"))
    ins, outs = _names(left), _names(right)
    if operation == "rearrange" and any(isinstance(a, Anonymous) for a in ins | outs):
        raise _bad(pattern, "has an axis of a size other than 1, which rearrange does not allow")
    unused = sorted(set(lengths) - ins - outs)
    if unused:
        raise _bad(pattern, f"does not use {', '.join(unused)}", x)
    stray = {"rearrange": ins ^ outs, "repeat": ins - outs}.get(operation, outs - ins)
    if stray:
        what = {"rearrange": "names {} on one side only", "repeat": "drops {}, which repeat cannot"}.get(
            operation, "adds {}, which reduce cannot")
        raise _bad(pattern, what.format(", ".join(sorted(map(str, stray)))), x)
    if any(d != ELLIPSIS and ELLIPSIS in d for d in left):
        raise _bad(pattern, "groups '...' on the left, which einops does not allow")
    if ELLIPSIS in left:
        if x.ndim < len(left) - 1:
            raise _bad(pattern, f"needs at least {len(left) - 1} dimensions, got {x.ndim}", x)
        hidden = [f"{ELLIPSIS}{i}" for i in range(x.ndim - len(left) + 1)]
        left, right = _expand(left, hidden), _expand(right, hidden)
    elif x.ndim != len(left):
        raise _bad(pattern, f"needs {len(left)} dimensions, got {x.ndim}", x)
    return left, right


def _transform(x: Tensor, pattern: str, operation: str, lengths: dict, run) -> Tensor:
    """rearrange, repeat or reduce (operation: the reduction's name): the reshape, permute,
    reduction, unsqueeze+expand and reshape einops runs, each only where it changes something."""
    left, right = _parse(x, pattern, operation, lengths)
    sizes = _left_sizes(left, x, lengths, pattern)
    if any(len(d) != 1 for d in left):
        x = run("reshape", x, tuple(sizes[a] for d in left for a in d))
    axes = [a for d in left for a in d]
    kept = [a for d in right for a in d if a in sizes]
    reduced = [a for a in axes if a not in kept]
    order = [axes.index(a) for a in kept + reduced]
    if order != sorted(order):
        x = run("permute", x, tuple(order))
    if reduced:
        x = _reduce(x, operation, tuple(range(len(kept), len(axes))), run)
    flat = [a for d in right for a in d]
    added = [(i, a) for i, a in enumerate(flat) if a not in sizes]
    for i, a in added:
        sizes[a] = _size(a, lengths)
        if sizes[a] is None:
            raise _bad(pattern, f"adds the axis {a} without its size (give {a}=...)", x)
        x = run("unsqueeze", x, i)
    if added:
        x = run("expand", x, tuple(sizes[a] if (i, a) in added else -1 for i, a in enumerate(flat)))
    if any(len(d) != 1 for d in right):
        x = run("reshape", x, tuple(math.prod(sizes[a] for a in d) for d in right))
    return x


def _left_sizes(left: list, x: Tensor, lengths: dict, pattern: str) -> dict:
    """Each input axis's size: given, or what its dimension leaves after the others in its group."""
    sizes = {}
    for d, n in zip(left, x.shape):
        known = [_size(a, lengths) for a in d if _size(a, lengths) is not None]
        unknown = [a for a in d if _size(a, lengths) is None]
        product = math.prod(known)
        group = f"({' '.join(map(str, d))})"
        if len(unknown) > 1:
            raise _bad(pattern, f"cannot tell {' and '.join(unknown)} apart in {group}: give all but one size",
                       x)
        if unknown and (product == 0 or n % product):
            raise _bad(pattern, f"cannot split a dimension of size {n} into {group} with "
                                f"{' x '.join(map(str, known))} = {product}", x)
        if not unknown and product != n:
            raise _bad(pattern, f"needs {group} = {product} but the dimension has size {n}", x)
        sizes.update({a: n // product if a in unknown else _size(a, lengths) for a in d})
    return sizes


def _reduce(x: Tensor, reduction: str, dims: tuple, run) -> Tensor:
    """einops reduces the last axes at once; prod one at a time, the last first (torch's prod
    takes one dim)."""
    if reduction != "prod":
        return run(REDUCTIONS[reduction], x, dims)
    for d in reversed(dims):
        x = run("prod", x, d)
    return x


def _input(a: Args, run) -> Tensor:
    """The tensor a function or layer transforms; a list of tensors is stacked first, as einops does."""
    x = a["tensor"] if "tensor" in a else a.input
    if isinstance(x, (list, tuple)):
        return run("torch.stack", list(x))
    if not isinstance(x, Tensor):
        raise Unresolved(f"einops needs a tensor, got {type(x).__name__}")
    return x


def transform(operation: str | None = None) -> Callable:
    """The steps of rearrange or repeat (operation), or of reduce (its reduction argument)."""
    def steps(a: Args, run) -> Tensor:
        return _transform(_input(a, run), a.pattern, operation or a.reduction, a.axes_lengths, run)
    return steps


def _packing(pattern: str) -> tuple[int, int]:
    """How many axes a pack/unpack pattern ('b * d') names before and after its '*'."""
    axes = pattern.split() if isinstance(pattern, str) else None
    if axes is None or axes.count("*") != 1 or len(set(axes)) != len(axes):
        raise _bad(str(pattern), "needs one '*' and each name once")
    for axis in axes:
        if axis != "*" and not _is_name(axis):
            raise _bad(pattern, f"has '{axis}', which is not an axis name")
    before = axes.index("*")
    return before, len(axes) - before - 1


def pack(a: Args, run):
    """pack(tensors, 'b * d'): each tensor reshaped to one axis where '*' is, then a cat along it;
    returns the packed tensor and the shapes '*' stood for."""
    before, after = _packing(a.pattern)
    parts, shapes = [], []
    for x in a.tensors:
        if x.ndim < before + after:
            raise _bad(a.pattern, f"needs at least {before + after} dimensions, got {x.ndim}", x)
        shapes.append(x.shape[before:x.ndim - after])
        parts.append(run("reshape", x, x.shape[:before] + (-1,) + x.shape[x.ndim - after:]))
    return run("torch.cat", parts, before), shapes


def unpack(a: Args, run):
    """unpack(x, shapes, 'b * d'): a slice of the '*' axis per shape, reshaped to that shape."""
    before, after = _packing(a.pattern)
    x, shapes = a.tensor, [tuple(s) for s in a.packed_shapes]
    if x.ndim != before + 1 + after:
        raise _bad(a.pattern, f"needs {before + 1 + after} dimensions, got {x.ndim}", x)
    ints(tuple(n for s in shapes for n in s), "an unpacked size")
    lengths = [-1 if -1 in s else math.prod(s) for s in shapes]
    if lengths.count(-1) > 1:
        raise _bad(a.pattern, f"can infer one packed shape, not {lengths.count(-1)}", x)
    total = x.shape[before]
    if -1 in lengths:  # the one shape with a -1 takes what the others leave
        lengths[lengths.index(-1)] = total - sum(n for n in lengths if n != -1)
    if sum(lengths) != total or min(lengths, default=0) < 0:
        raise _bad(a.pattern, f"cannot split a dimension of size {total} into {shapes}", x)
    outs, start = [], 0
    for shape, n in zip(shapes, lengths):
        part = run("narrow", x, before, start, n)
        outs.append(run("reshape", part, x.shape[:before] + shape + x.shape[before + 1:]))
        start += n
    return outs


def einsum(a: Args, run):
    """einops.einsum(x, y, 'b i d, b j d -> b i j'): torch.einsum with a letter per axis name, and
    the letters of '...' written out per operand (right-aligned, as torch broadcasts them)."""
    *tensors, pattern = a.tensors_and_pattern
    if not isinstance(pattern, str) or pattern.count("->") != 1 or not tensors:
        raise Unresolved("einops.einsum takes the tensors, then a pattern with one '->'")
    lefts, right = pattern.split("->")
    terms = [_einsum_term(t, pattern) for t in lefts.split(",")] + [_einsum_term(right, pattern)]
    if len(terms) - 1 != len(tensors):
        raise _bad(pattern, f"names {len(terms) - 1} operands, {len(tensors)} given")
    hidden = [x.ndim - len(t) + (ELLIPSIS in t) for t, x in zip(terms, tensors)]  # dimensions '...' stands for
    for t, x, n in zip(terms, tensors, hidden):
        if n < 0 or (n and ELLIPSIS not in t):
            raise _bad(pattern, f"names {len(t)} dimensions for an operand of shape {fmt(x.shape)}")
    names = list(dict.fromkeys(a for t in terms for a in t if a != ELLIPSIS))
    spare = max(hidden, default=0)
    if len(names) + spare > len(string.ascii_letters):
        raise Unresolved(f"einops.einsum '{pattern}' has more axes than torch.einsum has letters")
    letter = dict(zip(names, string.ascii_letters))
    dots = string.ascii_letters[len(names):len(names) + spare]
    written = [
        "".join(dots[spare - n:] if axis == ELLIPSIS else letter[axis] for axis in t)
        for t, n in zip(terms, hidden + [spare])]
    if set(written[-1]) - set("".join(written[:-1])):
        raise _bad(pattern, "names an output axis no operand has")
    return run("torch.einsum", ",".join(written[:-1]) + "->" + written[-1], *tensors)


def _einsum_term(text: str, pattern: str) -> list:
    """An einsum operand's axis names in order (repeats allowed: a diagonal); groups and numbers are
    not einsum's."""
    axes = text.split()
    for axis in axes:
        if axis != ELLIPSIS and not axis.isidentifier():
            raise _bad(pattern, f"has '{axis}': einops.einsum takes axis names and '...' only")
    return axes
