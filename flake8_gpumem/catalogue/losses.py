"""Losses: cross entropy, negative log-likelihood and mean squared error.

They matter for memory because of their size, not their arithmetic: cross entropy's
log-softmax is as large as the logits it normalises (batch x tokens x vocabulary for a
language model, often the largest tensor of the step), it is kept for backward, and
backward makes two more of that size (the log-softmax's gradient, then the logits').
"""
from __future__ import annotations

from ..values import FLOAT_DTYPES, ShapeError, Tensor, Unresolved
from .core import Args, Op, broadcast, fmt

REDUCTIONS = ("mean", "sum", "none")


def _reduction(a: Args) -> str:
    if a.reduction not in REDUCTIONS:
        raise Unresolved(f"reduction={a.reduction!r}: expected one of {', '.join(REDUCTIONS)}")
    return a.reduction


def _class_targets(a: Args) -> tuple:
    """Class-index targets: the input's shape without its class dimension (dim 1, or 0 unbatched)."""
    x, t = a.input, a.target
    if not isinstance(t, Tensor) or t.dtype in FLOAT_DTYPES:
        raise Unresolved("only class-index targets (an integer tensor) are modelled, not class probabilities")
    if a.get("label_smoothing"):
        raise Unresolved("label_smoothing is not modelled")
    want = x.shape[:1] + x.shape[2:] if x.ndim > 1 else ()
    if t.shape != want:
        raise ShapeError(f"{fmt(x.shape)} scores need targets of shape {fmt(want)}, got {fmt(t.shape)}")
    return want


def _class_loss_shape(a: Args) -> Tensor:
    """Cross entropy and nll: one number, or one per target with reduction='none'."""
    targets = _class_targets(a)
    return a.input.like(targets if _reduction(a) == "none" else ())


def _cross_entropy_saves(a: Args, out) -> list:
    """Its log-softmax (made here and kept) and the targets."""
    return [a.input.like(a.input.shape), a.target]


def _mse_shape(a: Args) -> Tensor:
    """The reduced loss is a view into the element-wise squared errors: they live as long as it does."""
    if a.get("weight") is not None:
        raise Unresolved("a weighted mse_loss is not modelled")
    errors = broadcast(a.input, a.target)
    return errors if _reduction(a) == "none" else errors.view(())


_CE = "weight=None, size_average=None, ignore_index=-100, reduce=None, reduction='mean', label_smoothing=0.0"
_NLL = "weight=None, size_average=None, ignore_index=-100, reduce=None, reduction='mean'"
_MSE = "size_average=None, reduce=None, reduction='mean'"

# backward: nll's gradient (the log-softmax's size) lives while the log-softmax's backward makes the input's
CROSS_ENTROPY = Op(_CE, _class_loss_shape, saves=_cross_entropy_saves, forward="input, target",
                   backward_temp=lambda a: a.input.nbytes)
NLL_LOSS = Op(_NLL, _class_loss_shape, saves=lambda a, out: [a.input, a.target], forward="input, target")
MSE_LOSS = Op(_MSE, _mse_shape, saves=lambda a, out: [a.input, a.target], forward="input, target")


def functional_loss(op: Op, extra: str = "") -> Op:
    """The F.* form of a loss module: its forward's arguments, then its constructor's (and `extra`)."""
    return Op(f"{op.forward}, {op.signature}{extra}", op.shape, saves=op.saves, backward_temp=op.backward_temp,
              forward_temp=op.forward_temp)
