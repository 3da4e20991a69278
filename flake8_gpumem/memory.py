"""The memory model of one training step, simulated allocation by allocation.

The step is the one PyTorch runs at steady state: optimizer state already
exists, gradients start freed (`zero_grad(set_to_none=True)`), the input batch
is allocated, then

- forward: each call allocates its outputs (and the indices, masks and
  statistics autograd keeps); an intermediate nobody keeps is freed after its
  last use;
- loss: a 0-d tensor forward returns, or the configured loss of the first output
  (cross entropy, mse: events like forward's), or its sum (a broadcast scalar gradient, free);
- backward, calls in reverse: each allocates its inputs' gradients (a view or
  a residual `+` passes the gradient through instead) and its parameters'
  gradients, then frees its output's gradient and the tensors it kept;
- optimizer step: gradients stay; foreach Adam/AdamW/RMSprop/Adagrad allocate
  one parameter-sized temporary list (sqrt of the second moment).

The peak is the largest sum along that timeline, as torch's allocator counts
it (no CUDA block rounding, no CUDA context: reported separately).

Given a `trace` list, the walk also records itself there (trace.py), for the pictures.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .parallel import Parallel, Sharded
from .trace import ACTIVATIONS, GRADIENTS, OPTIMIZER, TEMPORARIES, WEIGHTS, Block, Reach, Restart
from .values import DTYPE_BYTES, FLOAT_DTYPES, Tensor, tensors_in

# Optimizer state: (tensors the size of each parameter, keeps a per-parameter step tensor,
# parameter-sized temporaries of its foreach update)
OPTIMIZER_STATE = {
    "sgd": (0, False, 0),
    "sgd-momentum": (1, False, 0),  # momentum_buffer
    "adam": (2, True, 1),  # exp_avg, exp_avg_sq, step; sqrt(exp_avg_sq)
    "adamw": (2, True, 1),
    "rmsprop": (1, True, 1),  # square_avg, step; sqrt(square_avg)
    "adagrad": (1, True, 2),  # sum, step; sqrt(sum) and the scaled gradient
}
STEP_BYTES = 4  # torch keeps `step` as a float32 scalar tensor
CUDA_BLOCK = 512  # the CUDA caching allocator rounds every block up to this


def param_dtype(dtype: str) -> str:
    """Weights, gradients and optimizer state: fp32 under AMP, else the model dtype."""
    return "float32" if dtype.startswith("amp") else dtype


AUTOCAST = {"amp-fp16": "float16", "amp-bf16": "bfloat16"}  # the precision autocast computes in


@dataclass(frozen=True)
class Memory:
    weights: int
    gradients: int
    optimizer: int
    activations: int  # input batch + everything kept for backward, at the end of forward
    peak: int
    reserve: int
    peak_phase: str = ""  # where the peak happens, e.g. "backward of features.4"
    cuda_rounding: int = 0  # what 512-byte block rounding adds on a GPU (not in peak)
    host: int = 0  # FSDP's CPU offload: the shards, their gradients and the optimizer state, in host memory
    pinned: int = 0  # of `host`, what is pinned (page-locked)


class _Grad:
    """A gradient buffer; several tensors share one when backward passes it through."""

    __slots__ = ("nbytes", "refs")

    def __init__(self, nbytes: int):
        self.nbytes, self.refs = nbytes, 1


def simulate(events: list, inputs: list, returned, kept: list, loss: Tensor, param_shapes: list, buffers: list,
             dtype: str, optimizer: str, reserve: int = 0, names=None, log: list | None = None,
             held: dict | None = None, accumulate: int = 1, points: list | None = None,
             parallel: Parallel | None = None, cpu: bool = False, trace: list | None = None,
             optimized: list | None = None) -> Memory:
    """Walk the step's timeline; `names(event)` labels where the peak happens.

    `inputs` (the batch and the targets) exist before forward; forward's events return `returned`,
    all alive until forward ends; `kept` stays alive to the step's end (what the training loop holds);
    backward starts from `loss`. `held`: storage id -> the last event during which a Python
    variable still referenced it. With `accumulate` K > 1 the optimizer steps after K micro-batches:
    from the second on, the gradients exist and each backward adds into them, and the previous
    micro-batch's outputs live until its forward returns (`logits, loss = model(x, y)` rebinds them).
    `points` collects (phase, total) at every place the peak can occur (batch.py solves them for the
    largest batch that fits). Under `parallel` (DDP, FSDP) the figures are one GPU's, the largest;
    `cpu`: the collectives are gloo's. `trace` receives the walk (see the module's docstring).
    `optimized`: the keys of the parameters the optimizer holds, a set per parameter group, whose
    foreach update runs group by group (None: one group of every parameter that trains)."""
    label = names or (lambda ev: ev.type)
    setup = dict(points=points, parallel=parallel, cpu=cpu, trace=trace, optimized=optimized)
    step = _Step(events, inputs, returned, kept, loss, param_shapes, buffers, dtype, optimizer, label, log, held,
                 **setup)
    step.forward()
    step.backward()
    activations = step.activations
    gradients = step.gradients if step.sharded is None else 0 if step.host else step.sharded.weights
    if accumulate > 1:
        carried = sum(step.size[s] for s in step.kept_to_end if s not in step.starting)
        if trace is not None:
            trace.append(Restart(2))
        later = _Step(events, inputs, returned, kept, loss, param_shapes, buffers, dtype, optimizer, label, log,
                      held, grads_exist=step.param_grads, carried=carried, **setup)
        later.forward()
        later.backward()
        if later.peak > step.peak:
            step.peak, step.phase = later.peak, f"{later.phase} (micro-batch 2 of {accumulate})"
        step.cur = max(step.cur, later.cur)
    step.optimizer_step(optimizer)
    def rounding_of(shapes: list) -> int:
        return sum(_round_up(math.prod(s) * step.pbytes) - math.prod(s) * step.pbytes for s in shapes)

    rounding = (rounding_of(param_shapes) + rounding_of(step.trained_shapes)
                + rounding_of(step.stepped_shapes) * OPTIMIZER_STATE[optimizer][0]) if not step.host else 0
    return Memory(step.weights, gradients, step.opt, activations, step.peak, reserve, step.phase, rounding,
                  *step.host)


class _Step:
    """One forward and backward walked allocation by allocation: the running total and its peak.

    A checkpointed call (`ev.checkpoint`, torch.utils.checkpoint) keeps nothing in forward but its
    inputs (and, selectively checkpointed, the results its policy caches: `ev.cached`); when backward
    reaches it, its forward runs again and keeps what its ops save."""

    def __init__(self, events, inputs, returned, kept, loss, param_shapes, buffers, dtype, optimizer, label, log,
                 held, grads_exist: set | None = None, carried: int = 0, points: list | None = None,
                 parallel: Parallel | None = None, cpu: bool = False, trace: list | None = None,
                 optimized: list | None = None):
        self.events, self.loss, self.label, self.log = events, loss, label, log
        self.trace, self.at = trace, None
        self.pbytes = DTYPE_BYTES[param_dtype(dtype)]
        numel = sum(math.prod(s) for s in param_shapes)
        self.weights = numel * self.pbytes + sum(
            t.numel * (self.pbytes if t.dtype in FLOAT_DTYPES else DTYPE_BYTES[t.dtype]) for t in buffers)
        out_tensors = list(tensors_in(returned))
        # What forward returned beside what the loss needs is dropped by the step (GoogLeNet's auxiliary
        # logits), and with it what only its graph keeps; so is what ran under no_grad or before a detach().
        # Only parameters backward reaches and that require a gradient get one, and the optimizer makes
        # state only for those it holds (PyTorch skips a parameter whose .grad is None).
        self.dead = _dead_calls(events, loss)
        trained = _trained_params(events, self.dead)
        groups = [set(trained)] if optimized is None else optimized
        stepped = {key: s for key, s in trained.items() if any(key in g for g in groups)}
        # a parameter that trains outside the optimizer keeps its gradient from the step before: the
        # optimizer's zero_grad() clears only its own parameters'
        self.lingering = {key: s for key, s in trained.items() if key not in stepped}
        self.trained_shapes, self.stepped_shapes = list(trained.values()), list(stepped.values())
        self.trained = sum(math.prod(s) for s in self.trained_shapes)
        # the foreach update runs group by group: its temporaries are for the largest group's parameters
        self.widest_group = max((sum(math.prod(s) for k, s in stepped.items() if k in g) for g in groups), default=0)
        states, has_step, _ = OPTIMIZER_STATE[optimizer]
        self.opt = states * sum(math.prod(s) for s in stepped.values()) * self.pbytes + (
            STEP_BYTES * len(stepped) if has_step else 0)
        buffer_bytes = self.weights - numel * self.pbytes
        self.sharded = Sharded(parallel, events, self.pbytes, cpu) if parallel and parallel.strategy == "fsdp" else None
        # DDP's reducer keeps a flat copy of the gradients in its buckets, across steps
        self.buckets = self.trained * self.pbytes if parallel and parallel.strategy == "ddp" else 0
        self.gbytes = self.pbytes  # a parameter's gradient, per element, as backward makes it
        if self.sharded is not None:  # one rank's shards; the optimizer's state is made from them
            self.gbytes = self.sharded.compute
            self.trained = self.widest_group = self.sharded.weights // self.pbytes
            self.weights = self.sharded.weights + buffer_bytes
            self.opt = states * self.sharded.weights + (STEP_BYTES * len(param_shapes) if has_step else 0)
        self.host = ()  # CPU offload: (host bytes, pinned), the GPU keeps the buffers; the optimizer steps on the CPU
        if self.sharded is not None and self.sharded.host:
            pinned = 2 * self.sharded.pinned if parallel.offload == "pinned" else 0  # the shards and their gradients
            self.host = ((pinned or 2 * self.sharded.weights) + self.opt, pinned)
            self.weights, self.opt, self.widest_group = buffer_bytes, 0, 0

        self.starting = {t.storage.id: t.nbytes for t in inputs}
        self.kept_to_end = set(self.starting) | {t.storage.id for t in kept} | {loss.storage.id}
        self.returned = {t.storage.id for t in out_tensors}
        self.cached = {t.id for ev in events if ev.until_forward_end for t in ev.allocated}
        self.size: dict[int, int] = dict(self.starting)
        self.regions: dict[int, list] = {}  # checkpointed call -> its events' indices
        for i, ev in enumerate(events):
            for t in ev.allocated:
                self.size[t.id] = t.nbytes
            if ev.checkpoint is not None:
                self.regions.setdefault(ev.checkpoint, []).append(i)
        # forward keeps a checkpointed call's inputs (until its first op's backward), not what its ops save
        self.kept_in_forward = {i: self._saved(ev) for i, ev in enumerate(events) if ev.checkpoint is None}
        self.dead_ids = {id(ev) for ev in self.dead}
        # a region no gradient reaches keeps nothing for a backward that never comes, nor runs again
        self.reached_regions = {r: idx for r, idx in self.regions.items()
                                if not all(id(events[i]) in self.dead_ids for i in idx)}
        for idx in self.reached_regions.values():
            made = {t.id for i in idx for t in events[i].allocated}
            self.kept_in_forward[idx[0]] = {t.storage.id for i in idx for t in events[i].inputs
                                            if not t.storage.is_param and t.storage.id not in made}
            # and, selectively checkpointed, the results its policy caches, until the recomputation reuses them
            self.kept_in_forward[idx[0]] |= {sid for i in idx for sid in _cached(events[i])}
        self.held = held or {}
        self.cur = 0
        self.change(self.weights, WEIGHTS, WEIGHTS)
        self.change(self.opt, OPTIMIZER, OPTIMIZER)
        for sid, nbytes in self.starting.items():
            self.change(nbytes, ACTIVATIONS, sid)
        self.change(carried, ACTIVATIONS, "the previous micro-batch's outputs")
        self.change(self.buckets, GRADIENTS, "DDP's gradient buckets")
        self.carried = carried
        self.points, self.peak = points, -1  # below any total: the start is the first place the peak can occur
        self.reach(self.cur, "start of forward")
        self.live: set = set(self.starting)
        self.param_grads: set = set(grads_exist or ())
        if grads_exist and not self.host:  # a later micro-batch: the first one's gradients are there from the start
            self.change(self.sharded.weights if self.sharded is not None else self.trained * self.pbytes, GRADIENTS,
                        "the gradients of micro-batch 1")
            self.reach(self.cur, "start of forward")
        self.gradients = 0
        if self.lingering and not grads_exist:
            self.param_grads |= self.lingering.keys()
            self.gradients = sum(math.prod(s) for s in self.lingering.values()) * self.pbytes
            self.change(self.gradients, GRADIENTS, "gradients outside the optimizer, from the step before")
            self.reach(self.cur, "start of forward")
        self.again: dict[int, int] = {}  # a reentrant region's first op -> its recomputed outputs' bytes

    @staticmethod
    def _saved(ev) -> set:
        return {t.storage.id for t in ev.saved if not t.storage.is_param}

    def reach(self, total: int, phase: str) -> None:
        """A place the peak can occur."""
        if self.points is not None:
            self.points.append((phase, total))
        if self.trace is not None:
            self.trace.append(Reach(total, phase, self.at))
        if total > self.peak:
            self.peak, self.phase = total, phase

    def change(self, nbytes: int, category: str, key) -> None:
        """Allocate a block (free it: negative `nbytes`, the same `key`): every change of the running
        total goes through here, so that a trace sees them all."""
        self.cur += nbytes
        if self.trace is not None and nbytes:
            self.trace.append(Block(nbytes, category, key, self.at))

    def alloc(self, sid: int) -> None:
        if sid not in self.live:
            self.live.add(sid)
            self.change(self.size[sid], ACTIVATIONS, sid)

    def free(self, sid: int) -> None:
        if sid in self.live:
            self.live.discard(sid)
            self.change(-self.size[sid], ACTIVATIONS, sid)

    def forward(self) -> None:
        events, label = self.events, self.label
        last_use: dict[int, int] = {}
        first_saver: dict[int, int] = {}
        for i, ev in enumerate(events):
            for t in ev.allocated:
                last_use.setdefault(t.id, i)
            for t in ev.inputs:
                last_use[t.storage.id] = i
            for sid in self.kept_in_forward.get(i, ()):
                first_saver.setdefault(sid, i)
        for sid, i in self.held.items():
            if sid in last_use:
                last_use[sid] = max(last_use[sid], i)
        frees_after: dict[int, list] = {}  # event index -> storages nobody needs after it
        for sid, i in last_use.items():
            if sid not in first_saver and sid not in self.kept_to_end and sid not in self.returned \
                    and sid not in self.cached:
                frees_after.setdefault(i, []).append(sid)
        if self.sharded is not None:
            self.sharded.start(self)
        for i, ev in enumerate(events):
            self.at = i
            if self.sharded is not None:
                self.sharded.before_forward(self, i)
            for t in ev.allocated:
                self.alloc(t.id)
            self.reach(self.cur + ev.forward_temp, f"forward, {label(ev)}")
            if self.log is not None:
                self.log.append(("fwd", label(ev), self.cur))
            for sid in frees_after.get(i, ()):
                self.free(sid)
            if self.sharded is not None:
                self.sharded.after_forward(self, i)
        if self.sharded is not None:
            self.sharded.end_forward(self)
        for sid in [s for s in self.live if s in self.cached and s not in first_saver]:  # autocast's cache
            self.free(sid)
        self.change(-self.carried, ACTIVATIONS, "the previous micro-batch's outputs")  # rebound now
        self.savers_left: dict[int, int] = {}
        for i in self.kept_in_forward:
            for sid in self.kept_in_forward[i]:
                self.savers_left[sid] = self.savers_left.get(sid, 0) + 1
        for i, ev in enumerate(events):
            if id(ev) in self.dead_ids:
                for sid in self.kept_in_forward.get(i, ()):
                    self.savers_left[sid] -= 1
        for sid in [s for s in self.live if s not in self.kept_to_end and not self.savers_left.get(s)]:
            self.free(sid)
        self.activations = sum(self.size[s] for s in self.live)

    def backward(self) -> None:
        """Gradients flow from the loss (a scalar) through the calls in reverse."""
        events = self.events
        self.grads: dict[int, _Grad] = {self.loss.id: _Grad(0)}
        first_of = {idx[-1]: r for r, idx in self.reached_regions.items()}  # backward meets one at its last op
        for i in range(len(events) - 1, -1, -1):
            self.at = i
            if i in first_of:
                self._recompute(self.regions[first_of[i]])
            if self.sharded is not None:
                self.sharded.before_backward(self, i)
            self._backward_of(i)
            if self.sharded is not None:
                self.sharded.after_backward(self, i)
        for buf in list(self.grads.values()):
            self._release(buf)
        if self.sharded is not None:
            self.sharded.end_backward(self)

    def _release(self, buf: _Grad) -> None:
        buf.refs -= 1
        if buf.refs == 0:
            self.change(-buf.nbytes, TEMPORARIES, buf)

    def _new_grad(self, nbytes: int) -> _Grad:
        """An activation's gradient, allocated."""
        buf = _Grad(nbytes)
        self.change(nbytes, TEMPORARIES, buf)
        return buf

    def _backward_of(self, i: int) -> None:
        """One call's backward: its inputs' and parameters' gradients, then what it kept is freed."""
        ev, label, grads, release = self.events[i], self.label, self.grads, self._release
        if not ev.leaf:
            return
        ins = {id(t) for t in ev.inputs}
        outs = [t for t in tensors_in(ev.output) if id(t) not in ins]
        incoming = [grads.pop(t.id) for t in outs if t.id in grads]
        if not incoming:
            return
        # 1. the node runs: its inputs' and parameters' gradients are allocated
        transient = 0
        produced = []
        for t in ev.inputs:
            if not t.requires_grad:
                continue
            if t.is_param:
                # a view of a parameter (`start.expand(b, -1)`, `pos[:, :n]`) gets a gradient of its own
                # size, summed or copied into the parameter's
                w = t.storage
                transient += t.nbytes if t is not w else 0
                transient += self._param_grad(("t", w.id), w.nbytes)
            elif ev.grad == "alias":
                incoming[0].refs += 1
                produced.append((t, incoming[0]))
            else:
                produced.append((t, self._new_grad(t.nbytes)))
        copied = 0  # a weight's first gradient in another memory order: copied into the parameter's
        for key, shape in _layer_params(ev):  # a tied weight: one gradient
            nbytes = math.prod(shape) * self.gbytes
            copied += nbytes if ev.weight_grad_copy and len(shape) > 1 and key not in self.param_grads else 0
            transient += self._param_grad(key, nbytes)
        transient += ev.backward_temp
        self.reach(self.cur + transient, f"backward, {label(ev)}")
        if ev.backward_late is not None:  # it frees its output's gradient midway
            for buf in incoming:
                release(buf)
            incoming = []
            transient += ev.backward_late - ev.backward_temp
            self.reach(self.cur + transient, f"backward, {label(ev)}")
        if self.log is not None:
            self.log.append(("bwd", label(ev), self.cur + transient))
        # 2. it releases what it kept and the gradient it consumed
        region_inputs = self.kept_in_forward.get(i, set()) if ev.checkpoint is not None else set()
        self.change(-self.again.pop(i, 0), ACTIVATIONS, ("recomputed", i))
        for sid in [*self._saved(ev), *region_inputs]:
            self.savers_left[sid] -= 1
            if self.savers_left[sid] == 0 and sid not in self.kept_to_end:
                self.free(sid)
        for buf in incoming:
            release(buf)
        self.reach(self.cur + copied, f"backward, {label(ev)} (weight gradient copy)")
        # 3. a gradient arriving where one is waiting is summed into a new buffer
        for t, new in produced:
            old = grads.get(t.id)
            if old is None:
                grads[t.id] = new
                continue
            grads[t.id] = self._new_grad(t.nbytes)
            self.reach(self.cur, f"backward, {label(ev)} (gradient accumulation)")
            release(old)
            release(new)

    def _recompute(self, idx: list) -> None:
        """Backward reaches a checkpointed call: its forward runs again; what its ops save stays
        (until their backward), the rest is freed after its last use there. Its outputs exist. A result
        selective checkpointing cached is not made again: the cache hands it over and lets it go."""
        events = self.events
        kept = set().union(*(self._saved(events[i]) for i in idx))
        last_use = {t.id: i for i in idx for t in events[i].allocated}
        for i in idx:
            for t in events[i].inputs:
                last_use[t.storage.id] = i
        fresh: set = set()
        # the recomputation stops at the last op that saves a tensor (early_stop); a result the cache handed
        # that op stays referenced (measured under MemTracker) until the region's backward ends
        early_stop = events[idx[0]].checkpoint.early_stop
        stop = max((i for i in idx if events[i].saved), default=None) if early_stop else None
        if events[idx[0]].checkpoint.reentrant:  # its outputs again, until its backward returns
            again = sum(self.size[t.id] for i in idx for t in events[i].allocated if t.id in self.live)
            self.change(again, ACTIVATIONS, ("recomputed", idx[0]))
            self.again[idx[0]] = again
        for i in idx:
            self.at = i
            ev = events[i]
            fresh.update(t.id for t in ev.allocated if t.id not in self.live)
            for sid in (_cached(ev) if i != stop else ()):
                self.savers_left[sid] -= 1
                self.kept_in_forward[idx[0]].discard(sid)
                if not self.savers_left[sid] and sid not in self.kept_to_end:
                    fresh.add(sid)
            for t in ev.allocated:
                self.alloc(t.id)
            self.reach(self.cur + ev.forward_temp, f"backward, {self.label(ev)} (recomputed)")
            for sid in [s for s in fresh if last_use[s] <= i and s not in kept]:
                fresh.discard(sid)
                self.free(sid)
            for sid in self._saved(ev):
                self.savers_left[sid] = self.savers_left.get(sid, 0) + 1

    def _param_grad(self, key, nbytes: int) -> int:
        """A parameter's gradient: allocated at its first use in backward, accumulated after (the
        transient it returns)."""
        if key in self.param_grads:
            return nbytes
        self.param_grads.add(key)
        self.gradients += nbytes
        self.change(nbytes, GRADIENTS, ("gradient", key))
        return 0

    def optimizer_step(self, optimizer: str) -> None:
        """Gradients exist; foreach updates allocate temporaries for all parameters at once."""
        self.at = None
        self.reach(self.cur + OPTIMIZER_STATE[optimizer][2] * self.widest_group * self.pbytes,
                   f"optimizer step ({optimizer})")


def _cached(ev) -> set:
    """The storages selective checkpointing caches of a call that it made (ev.cached)."""
    made = {t.id for t in ev.allocated}
    return {t.storage.id for t in ev.cached if t.storage.id in made}


def _dead_calls(events: list, loss: Tensor) -> list:
    """The calls the loss does not depend on: what forward returns beyond what the loss needs, and
    what runs where no gradient flows (under no_grad, before a detach(), a frozen backbone, a
    reentrant checkpoint whose inputs need none)."""
    reached = _reaching(events, loss)
    return [ev for i, ev in enumerate(events) if i not in reached]


def _trained_params(events: list, dead: list) -> dict:
    """Key -> shape of the parameters that get a gradient: those of the calls backward reaches that
    require one, as `_backward_of` makes them (a tied weight once)."""
    gone = {id(ev) for ev in dead}
    shapes = {}
    for ev in events:
        if id(ev) in gone:
            continue
        shapes.update(_layer_params(ev))
        shapes.update((("t", t.storage.id), t.storage.shape) for t in ev.inputs if t.is_param and t.requires_grad)
    return shapes


def _layer_params(ev) -> list:
    """(key, shape) of the parameters of a layer call that get their gradient in its own backward
    (not through autocast's copies, under AMP) and require one."""
    m = ev.module
    if m is None or m.op is None or not ev.own_param_grads:
        return []
    return [(m.param_key(k), s) for k, s in enumerate(m.params) if m.trains(k)]


def _reaching(events: list, loss: Tensor) -> set:
    """Indices of the calls the loss depends on: autograd's graph behind it. A tensor can have
    several makers (F.layer_norm, then the user's LayerNorm module that returns its result);
    an identity (dropout with p=0) makes nothing and is never dead."""
    producers: dict[int, list] = {}
    for i, ev in enumerate(events):
        outputs = [t for t in tensors_in(ev.output) if not any(t is x for x in ev.inputs)]
        for t in outputs:
            producers.setdefault(t.id, []).append(i)

    def made_by(t: Tensor) -> list:
        if not t.requires_grad:
            return []  # no graph behind it
        while t is not None and t.id not in producers:
            t = t.base  # a view made outside any call (iterating a tensor) leads to its base's maker
        return [] if t is None else producers[t.id]

    seen = {i for i, ev in enumerate(events) if all(any(t is x for x in ev.inputs) for t in tensors_in(ev.output))
            and next(tensors_in(ev.output), None) is not None}
    todo = list(made_by(loss))
    while todo:
        i = todo.pop()
        if i in seen:
            continue
        seen.add(i)
        for t in events[i].inputs:
            todo += made_by(t)
    return seen


def _round_up(n: int) -> int:
    return -(-n // CUDA_BLOCK) * CUDA_BLOCK
