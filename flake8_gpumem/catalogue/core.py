"""What every catalogue entry is made of, and the helpers the op families share.

`Op` is one entry (a signature, a shape rule, parameters, buffers, what autograd keeps) and
`Args` its bound call arguments; the `keeps_*` functions are the common save rules. The
helpers check ranks and channels, format shapes, compute sliding windows (conv and pooling),
broadcast and promote dtypes, and count a kernel's allocations (`Ledger`, for the recurrent
and attention backward). Everything else in the package builds on this file, which imports
none of it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..values import COMPLEX_DTYPES, FLOAT_DTYPES, ShapeError, Tensor, Unresolved, tensors_in


# The PyTorch whose kernels and autograd the catalogue models: `torch.__version__` as model code
# reads it to choose a code path
TORCH_VERSION = "2.13.0"


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


def no_tensors(a: Args) -> list:
    return []


def keeps_nothing(a: Args, out) -> list:
    return []


def keeps_input(a: Args, out) -> list:
    """The input; an in-place op first saves a copy of it, since it overwrites it."""
    return [a.input.like(a.input.shape)] if a.get("inplace") else [a.input]


def keeps_output(a: Args, out) -> list:
    return [out]


def keeps_input_or_result(a: Args, out) -> list:
    """Out of place it keeps its input; in place, its result (no copy needed)."""
    return [out] if a.get("inplace") else [a.input]


@dataclass(frozen=True)
class Op:
    """A layer constructor (signature = constructor, forward = its forward's
    signature) or a function/method (signature = the call)."""

    signature: str
    shape: Callable[[Args], object] | None = None  # None for a composite: its steps give the result
    params: Callable[[Args], list] = no_tensors  # shapes of the parameter tensors
    buffers: Callable[[Args], list] = no_tensors  # buffer Tensors (running statistics)
    saves: Callable[[Args, object], list] = keeps_nothing
    forward: str = "input"
    # bytes its backward holds briefly, or (before, after) it has consumed its output's gradient
    backward_temp: Callable[[Args], int | tuple[int, int]] = lambda a: 0
    forward_temp: Callable[[Args, object], int] = lambda a, out: 0  # bytes it holds briefly while it runs
    autocast: str = ""  # under AMP: "low" runs in half precision, "fp32"/"fp32-cuda" in float32, "promote" in
    # the widest of its inputs' precisions
    keeps_weight: bool = False  # keeps its (half-precision) weight even when its input needs no gradient
    # its weight's gradient comes in another memory order (a channels-last convolution's), which
    # AccumulateGrad copies into the parameter's once the node has freed what it kept
    weight_grad_copy: Callable[[Args], bool] = lambda a: False
    grad: str = "alloc"  # backward allocates a gradient per input; "alias": it is a view of the output's;
    # "none": no gradient flows through it (detach)
    # a composite: steps(args, run) makes its result with other entries, run(name, *args, **kwargs)
    # applying the METHODS or FUNCTIONS entry of that name with its own rules (einops.py)
    steps: Callable[[Args, Callable], object] | None = None
    # a tensor method that changes its tensor's shape in place (x.unsqueeze_(0)): the tensor it is
    # called on is its result from then on
    rebinds: bool = False
    # the ATen op that makes its result, as a selective checkpointing policy sees it (after decomposition;
    # a name of SAC_OPS): aten(args) gives the candidates, one of which runs, or None where that is not
    # known. An entry without it dispatches none of SAC_OPS.
    aten: Callable[[Args], tuple | None] | None = None


# The matrix-product and attention ATen ops an entry's `aten` names: what selective activation
# checkpointing policies save (torchtitan's list); no entry without `aten` dispatches one of them.
# Each says whether it also returns the statistics its backward keeps (an attention kernel's
# log-sum-exp), which a policy saving it then caches too.
SAC_OPS = {"mm": False, "addmm": False, "bmm": False, "baddbmm": False,
           **{f"_scaled_dot_product_{kernel}": True for kernel in (
               "flash_attention", "efficient_attention", "cudnn_attention", "flash_attention_for_cpu")}}


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
            raise ShapeError(f"{what} has {name}={v[0] if len(set(v)) == 1 else v}, which PyTorch rejects",
                             code="GPM201")
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
    """The result dtype of mixing tensors (and Python numbers), as torch's type promotion: the widest
    complex, else float, among the tensors with dimensions; a 0-d tensor only decides when they hold
    no float (`1 - z` with z in bfloat16 stays bfloat16)."""
    tensors = [v for v in values if isinstance(v, Tensor)]
    dtypes = [t.dtype for t in tensors]
    if any(d in COMPLEX_DTYPES.values() for d in dtypes):  # rotary embeddings: complex64 x float32 is complex64
        return "complex128" if "complex128" in dtypes or "float64" in dtypes else "complex64"
    for group in ([t for t in tensors if t.ndim], [t for t in tensors if not t.ndim]):
        floats = [t.dtype for t in group if t.dtype in FLOAT_DTYPES]
        if floats:
            order = ("float64", "float32", "bfloat16", "float16")
            return next(d for d in order if d in floats) if len(set(floats)) > 1 else floats[0]
    # an integer or bool tensor with a Python float is float32, as in torch
    return "float32" if any(isinstance(v, float) for v in values) else dtypes[0]


def made_anyway(saves, inference_skips: bool = False):
    """A forward_temp: what the kernel makes for backward even when nothing needs a gradient
    (max pooling's int64 indices, dropout's noise), freed at once then; `inference_skips`: not
    under torch.inference_mode(), where max pooling runs without indices."""
    def temp(a: Args, out) -> int:
        if a.get("_records", a.input.requires_grad) or (inference_skips and a.get("_inference")):
            return 0
        outputs = {id(t) for t in tensors_in(out)} | {id(a.input)}
        return sum(t.nbytes for t in saves(a, out) if id(t) not in outputs)
    return temp


class Ledger:
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
