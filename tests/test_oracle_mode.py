"""What the oracle's own instrument changes in the step it measures.

MemTracker is a TorchDispatchMode. While any dispatch mode is active PyTorch treats
every tensor as a subclass (isTensorSubclassLike), and takes its out-of-place paths:
autograd sums two gradients into a new buffer, and Linear adds its bias out of place.
The estimate follows the step as MemTracker measures it; these tests pin the two
differences from a plain run that the README states, so that a PyTorch release
changing them fails here rather than leaving the README wrong. A third difference the
estimate does not follow: MemTracker's module hooks keep the graph of a branch that forward
detaches (a GAN's generator under `D(G(z).detach())`) alive through backward; a plain step
frees it when forward returns, and gpumem models the plain step.
"""
from __future__ import annotations

from contextlib import nullcontext

import pytest

torch = pytest.importorskip("torch")
from torch.profiler import profile  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import torch_oracle  # noqa: E402


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


def test_a_detached_branch_is_freed_when_forward_returns_only_without_memtracker():
    """What the generator's graph saves (seen through saved-tensor hooks that hold no reference
    back to it), alive after forward and after backward: none in a plain step, most under MemTracker."""
    import weakref

    from torch import nn
    from torch.distributed._tools.mem_tracker import MemTracker

    saved = []

    class Held:
        def __init__(self, t):
            self.t = t

    def pack(t):
        held = Held(t.detach())  # the tensor without its graph: no cycle keeps the graph alive
        saved.append(weakref.ref(held))
        return held

    class DiscriminatorStep(nn.Module):
        def __init__(self):
            super().__init__()
            self.G = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 768), nn.Tanh())
            self.D = nn.Sequential(nn.Linear(768, 256), nn.LeakyReLU(0.2), nn.Linear(256, 1))

        def forward(self, z):
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda held: held.t):
                fake = self.G(z)
            return self.D(fake.detach())

    model = DiscriminatorStep()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def alive_after_forward_and_backward():
        saved.clear()
        out = model(torch.randn(32, 64))
        after_forward = sum(ref() is not None for ref in saved)
        out.sum().backward()
        after_backward = sum(ref() is not None for ref in saved)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return after_forward, after_backward

    assert alive_after_forward_and_backward() == (0, 0)
    assert len(saved) == 5  # two Linear inputs, a ReLU output, a Linear input, the Tanh output
    tracker = MemTracker()
    tracker.track_external(model, opt)
    with tracker, torch_oracle.no_cyclic_collection():
        kept = alive_after_forward_and_backward()
    assert kept[0] > 0 and kept[1] > 0

