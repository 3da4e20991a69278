"""What the oracle's own instrument changes in the step it measures.

MemTracker is a TorchDispatchMode. While any dispatch mode is active PyTorch treats
every tensor as a subclass (isTensorSubclassLike), and takes its out-of-place paths:
autograd sums two gradients into a new buffer, and Linear adds its bias out of place.
The estimate follows the step as MemTracker measures it; these tests pin the two
differences from a plain run that the README states, so that a PyTorch release
changing them fails here rather than leaving the README wrong.
"""
from __future__ import annotations

from contextlib import nullcontext

import pytest

torch = pytest.importorskip("torch")
from torch.profiler import profile  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402


class _PassThrough(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def _maybe_mode(active: bool):
    return _PassThrough() if active else nullcontext()


@pytest.mark.parametrize("mode, in_place", [(False, True), (True, False)], ids=["plain", "dispatch-mode"])
def test_gradient_sum_in_place_only_without_a_mode(mode, in_place):
    """Two gradients reaching one tensor: a plain run adds one into the other."""
    made = []

    class Ones(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            out = torch.ones(1000)
            made.append(out.data_ptr())
            return out

    x = torch.randn(1000, requires_grad=True) * 1
    summed = []
    x.register_hook(lambda g: summed.append(g.data_ptr()))
    with _maybe_mode(mode):
        (Ones.apply(x) + Ones.apply(x)).sum().backward()
    assert (summed[0] in made) is in_place


@pytest.mark.parametrize("mode, op", [(False, "aten::add_"), (True, "aten::add")], ids=["plain", "dispatch-mode"])
def test_linear_bias_on_a_non_contiguous_input(mode, op):
    """Beyond 2-d, a non-contiguous input runs matmul, then the bias is added: in place only without a mode."""
    layer = torch.nn.Linear(32, 7)
    x = torch.randn(30, 4, 32).transpose(0, 1)
    with profile() as prof:
        with _maybe_mode(mode):
            layer(x)
    adds = {e.name for e in prof.events() if e.name in ("aten::add", "aten::add_")}
    assert adds == {op}
