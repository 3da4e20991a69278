"""Data and model parallelism: what one GPU holds under DDP and under FSDP2's fully_shard.

The figures are the largest rank's (rank 0), as PyTorch builds each strategy:

- DDP keeps a flat copy of every gradient in its reducer's buckets, across steps, on top of a
  single GPU's step; nothing else grows with the world size.
- FSDP2 shards every parameter on its first dimension (padded to a multiple of the world size);
  weights, gradients and optimizer state are those shards. A unit (a module wrapped with
  fully_shard; the root always is) is all-gathered before its forward (the gathered buffer lives
  until the next unit's is copied out), freed after it, gathered again for its backward (the next
  unit's gather prefetched meanwhile), and its gradients are reduce-scattered when its backward
  ends (the scatter's input lives until the next unit's starts). The root stays gathered from
  its forward to the end of backward (FSDP2 does so for a root whose fully_shard is given no
  reshard_after_forward, or False).
- A unit's `reshard_after_forward` (fully_shard's; True unless given): False keeps its gathered
  parameters from its forward to its backward, which then gathers nothing (nor prefetches it); a
  number of ranks N (dividing the world size; 1 is False, the world size True) keeps, after its
  forward, a copy of a 1/N slice of the gathered parameters (in `param_dtype`, cloned before the
  gathered ones are freed), which backward all-gathers over N ranks into the same gathered size
  before freeing it. FSDP2's `_get_post_forward_mesh_info` and `FSDPParam.to_sharded_post_forward`.
- FSDP2's MixedPrecisionPolicy (`param_dtype`, `reduce_dtype`): the shards, their gradients and the
  optimizer state keep the model's dtype; each shard is cast to `param_dtype` for the all-gather, so
  the gathered weights, the compute and the unsharded gradients are in it; the gradients are copied
  into a `reduce_dtype` buffer for the reduce-scatter, and its output cast back to the shards' dtype.
- FSDP2's CPUOffloadPolicy (`offload`), modelled from its source, not measured (on a CPU device the
  copies are no-ops): the padded shards are moved to the host when sharded (`_fsdp_param.py`:
  `padded_sharded_param.cpu()`, then `.pin_memory()` under `pin_memory=True`), so the GPU holds no
  weights but the buffers. Each gather copies the shards to the GPU (`all_gather_inputs`:
  `_sharded_param_data.to(self.device)`, cast to `param_dtype` if one is set) and those copies live
  until they are copied into the all-gather output, as a cast does without offload. The
  reduce-scatter runs on the GPU as before; its output shard (and its cast back) is copied to the
  host (`_fsdp_collectives.py`: `new_sharded_grad.to("cpu", non_blocking=pin_memory)`, pinned memory
  when non-blocking) and freed on the GPU: no gradient stays there. The optimizer's state is made
  from the host's parameters, so it and its step run on the CPU (pageable memory). The host holds,
  per rank: the shards, their gradients (both pinned with `pin_memory=True`) and the optimizer state.
  Pinned memory comes from PyTorch's CachingHostAllocator, which rounds every block up to a power
  of two (`PowerOf2Ceil(size)`, no threshold by default): each parameter's shard and each of its
  gradient's shards is one block.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .trace import GRADIENTS, TEMPORARIES
from .values import DTYPE_BYTES


@dataclass(frozen=True)
class Parallel:
    strategy: str  # "ddp" | "fsdp"
    world: int
    units: tuple = ()  # fsdp: per unit, the root first, its parameters as ((key, shape), ...)
    unit_of: dict = field(default_factory=dict)  # fsdp: id(module) -> its unit
    param_dtype: str | None = None  # fsdp: MixedPrecisionPolicy's, None: the model's dtype
    reduce_dtype: str | None = None  # fsdp: MixedPrecisionPolicy's, None: param_dtype
    offload: str | None = None  # fsdp: CPUOffloadPolicy, "pinned" or "pageable" (pin_memory=False); None: none
    reshard: tuple = ()  # fsdp: per unit, reshard_after_forward: True, False or the ranks (empty: all True)

    def reshard_ranks(self, u: int) -> int:
        """The ranks unit `u`'s parameters are sharded over between its forward and backward (1: kept whole)."""
        value = self.reshard[u] if self.reshard else True
        return self.world if value is True else 1 if value is False else value

    def shard(self, shape: tuple, itemsize: int) -> int:
        """Bytes of one rank's shard of a parameter: ceil(rows / world) rows."""
        rows = shape[0] if shape else 1
        return -(-rows // self.world) * math.prod(shape[1:]) * itemsize


class Sharded:
    """FSDP2's gathers and scatters along one step's events, as hooks the simulator calls."""

    def __init__(self, parallel: Parallel, events: list, itemsize: int, cpu: bool):
        self.p = parallel
        self.compute = DTYPE_BYTES[parallel.param_dtype] if parallel.param_dtype else itemsize
        reduce = DTYPE_BYTES[parallel.reduce_dtype] if parallel.reduce_dtype else self.compute

        def per_unit(nbytes: int) -> list:  # one rank's shard of each unit, `nbytes` per element
            return [sum(parallel.shard(s, nbytes) for _, s in unit) for unit in parallel.units]

        self.shards = per_unit(itemsize)
        self.itemsize = itemsize
        # the all-gather's inputs where they are not the shards themselves: cast, or copied from the host
        self.cast = per_unit(self.compute) if self.compute != itemsize or parallel.offload else None
        self.gathered = [n * parallel.world for n in per_unit(self.compute)]  # padded to whole shards
        self.reduced = [n * parallel.world for n in per_unit(reduce)]  # the reduce-scatter's input
        self.recast = per_unit(reduce) if reduce != itemsize else None  # its output, before the cast back
        self.ranks = [parallel.reshard_ranks(u) for u in range(len(parallel.units))]
        self.post = [n // r for n, r in zip(self.gathered, self.ranks)]  # what a unit keeps after its forward
        self.real = {key: math.prod(s) * self.compute for unit in parallel.units for key, s in unit}
        first, last = {}, {}
        for i, ev in enumerate(events):
            module = ev.module if ev.module is not None else ev.owner
            u = parallel.unit_of.get(id(module)) if module is not None else None
            if u:  # the root (0) is gathered for the whole step
                first.setdefault(u, i)
                last[u] = i
        self.order = sorted(first, key=first.get)  # units in the order forward runs them
        self.starts = {first[u]: u for u in self.order}
        self.ends = {last[u]: u for u in self.order}
        self.gather_out = None  # the unit of the last all-gather's buffer, freed once the next one is copied out
        self.scatter_in = None  # the unit of the last reduce-scatter's input, freed when the next one starts
        self.prefetched: set = set()
        self.scatter_transient = cpu  # gloo's reduce-scatter allocates the input's size once more

    @property
    def weights(self) -> int:
        return sum(self.shards)

    @property
    def pinned(self) -> int:
        """The shards in pinned host memory: a block each, rounded up to a power of two."""
        return sum(1 << (n - 1).bit_length() for unit in self.p.units for _, s in unit
                   if (n := self.p.shard(s, self.itemsize)))

    @property
    def host(self) -> bool:
        """Whether the shards, their gradients and the optimizer state live in host memory."""
        return self.p.offload is not None

    def start(self, step) -> None:
        """The root's parameters are gathered as forward starts."""
        self._gather(step, 0, "forward, all-gather of the root")

    def _block(self, step, sizes: list, u: int, what: str, sign: int = 1) -> None:
        """Allocate (`sign` -1: free) unit `u`'s buffer `what`, of `sizes[u]` bytes."""
        step.change(sign * sizes[u], TEMPORARIES, (what, u))

    def _gather(self, step, u: int, phase: str) -> None:
        self._block(step, self.gathered, u, "all-gather output")
        step.reach(step.cur + (self.cast[u] if self.cast else 0), phase)
        self._block(step, self.gathered, u, "unsharded parameters")
        step.reach(step.cur, phase)
        if self.gather_out is not None:
            self._block(step, self.gathered, self.gather_out, "all-gather output", -1)
        self.gather_out = u

    def before_forward(self, step, i: int) -> None:
        if i in self.starts:
            self._gather(step, self.starts[i], f"forward, all-gather before {step.label(step.events[i])}")

    def after_forward(self, step, i: int) -> None:
        u = self.ends.get(i)
        if u is None or self.ranks[u] == 1:  # reshard_after_forward=False: kept gathered for backward
            return
        if self.ranks[u] < self.p.world:  # the slice kept for N ranks, cloned before the gathered ones go
            self._block(step, self.post, u, "post-forward shard")
            step.reach(step.cur, f"forward, reshard after {step.label(step.events[i])}")
        self._block(step, self.gathered, u, "unsharded parameters", -1)  # resharded

    def end_forward(self, step) -> None:
        self._block(step, self.gathered, self.gather_out, "all-gather output", -1)
        self.gather_out = None

    def before_backward(self, step, i: int) -> None:
        u = self.ends.get(i)
        if u is None:
            return
        if self.ranks[u] > 1:  # gathered again, from the world's shards or the post-forward slices
            if u not in self.prefetched:
                self._block(step, self.gathered, u, "all-gather output")
            self._block(step, self.gathered, u, "unsharded parameters")
            step.reach(step.cur, f"backward, all-gather before {step.label(step.events[i])}")
            if self.ranks[u] < self.p.world:
                self._block(step, self.post, u, "post-forward shard", -1)
            self._block(step, self.gathered, u, "all-gather output", -1)
        later = self.order[:self.order.index(u)]
        if later and self.ranks[later[-1]] > 1:  # the next unit backward reaches is gathered while this one runs
            self._block(step, self.gathered, later[-1], "all-gather output")
            self.prefetched.add(later[-1])

    def after_backward(self, step, i: int) -> None:
        u = self.starts.get(i)
        if u is not None:
            self._block(step, self.gathered, u, "unsharded parameters", -1)  # resharded
            self._scatter(step, u, f"backward, reduce-scatter after {step.label(step.events[i])}")

    def end_backward(self, step) -> None:
        self._scatter(step, 0, "backward, reduce-scatter of the root")
        self._block(step, self.reduced, self.scatter_in, "reduce-scatter input", -1)
        self._block(step, self.gathered, 0, "unsharded parameters", -1)
        self.scatter_in = None

    def _scatter(self, step, u: int, phase: str) -> None:
        """The unit's gradients, copied into the scatter's input and freed; its shard of them stays."""
        if self.scatter_in is not None:
            self._block(step, self.reduced, self.scatter_in, "reduce-scatter input", -1)
        self._block(step, self.reduced, u, "reduce-scatter input")
        self.scatter_in = u
        step.reach(step.cur + (self.reduced[u] if self.scatter_transient else 0), phase)
        for key, _ in self.p.units[u]:
            if key in step.param_grads:
                step.change(-self.real[key], GRADIENTS, ("gradient", key))
        recast = self.recast[u] if self.recast else 0
        if self.host:  # the shard of them is copied to the host, and freed here
            step.reach(step.cur + self.shards[u] + recast, phase)
            return
        step.change(self.shards[u], GRADIENTS, ("gradient shard", u))
        step.reach(step.cur + recast, phase)
