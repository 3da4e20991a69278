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
"""
from __future__ import annotations

import math
from dataclasses import dataclass

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


class _Grad:
    """A gradient buffer; several tensors share one when backward passes it through."""

    __slots__ = ("nbytes", "refs")

    def __init__(self, nbytes: int):
        self.nbytes, self.refs = nbytes, 1


def simulate(events: list, inputs: list, returned, kept: list, loss: Tensor, param_shapes: list, buffers: list,
             dtype: str, optimizer: str, reserve: int = 0, names=None, log: list | None = None,
             held: dict | None = None) -> Memory:
    """Walk the step's timeline; `names(event)` labels where the peak happens.

    `inputs` (the batch and the targets) exist before forward; forward's events return `returned`,
    all alive until forward ends; `kept` stays alive to the step's end (what the training loop holds);
    backward starts from `loss`. `held`: storage id -> the last event during which a Python
    variable still referenced it."""
    pbytes = DTYPE_BYTES[param_dtype(dtype)]
    numel = sum(math.prod(s) for s in param_shapes)
    weights = numel * pbytes + sum(t.numel * (pbytes if t.dtype in FLOAT_DTYPES else DTYPE_BYTES[t.dtype])
                                   for t in buffers)
    out_tensors = list(tensors_in(returned))
    # What forward returned beside what the loss needs is dropped by the step (GoogLeNet's auxiliary
    # logits), and with it what only its graph keeps. Parameters only it uses get no gradient, so the
    # optimizer never makes state for them nor updates them.
    dead = _dead_calls(events, out_tensors, loss)
    unused = _unused_params(events, dead)
    trained = numel - sum(math.prod(s) for s in unused)
    states, step, temps = OPTIMIZER_STATE[optimizer]
    opt = states * trained * pbytes + (STEP_BYTES * (len(param_shapes) - len(unused)) if step else 0)
    label = names or (lambda ev: ev.type)

    starting = {t.storage.id: t.nbytes for t in inputs}
    kept_to_end = set(starting) | {t.storage.id for t in kept} | {loss.storage.id}
    returned_ids = {t.storage.id for t in out_tensors}
    cached = {t.id for ev in events if ev.until_forward_end for t in ev.allocated}
    last_use: dict[int, int] = {}
    first_saver: dict[int, int] = {}
    size: dict[int, int] = dict(starting)
    for i, ev in enumerate(events):
        for t in ev.allocated:
            size[t.id] = t.nbytes
            last_use.setdefault(t.id, i)
        for t in ev.inputs:
            last_use[t.storage.id] = i
        for t in ev.saved:
            if not t.storage.is_param:
                first_saver.setdefault(t.storage.id, i)
    for sid, i in (held or {}).items():
        if sid in last_use:
            last_use[sid] = max(last_use[sid], i)

    cur = weights + opt + sum(starting.values())
    peak, phase = cur, "start of forward"
    live: set = set(starting)
    frees_after: dict[int, list] = {}  # event index -> storages nobody needs after it
    for sid, i in last_use.items():
        if sid not in first_saver and sid not in kept_to_end and sid not in returned_ids and sid not in cached:
            frees_after.setdefault(i, []).append(sid)
    for i, ev in enumerate(events):
        for t in ev.allocated:
            live.add(t.id)
            cur += t.nbytes
        if cur + ev.forward_temp > peak:
            peak, phase = cur + ev.forward_temp, f"forward, {label(ev)}"
        if log is not None:
            log.append(("fwd", label(ev), cur))
        for sid in frees_after.get(i, ()):
            if sid in live:
                live.discard(sid)
                cur -= size[sid]
    for sid in [s for s in live if s in cached and s not in first_saver]:  # autocast's cache is cleared
        live.discard(sid)
        cur -= size[sid]
    savers_left: dict[int, int] = {}
    for i, ev in enumerate(events):
        for sid in {t.storage.id for t in ev.saved if not t.storage.is_param}:
            savers_left[sid] = savers_left.get(sid, 0) + 1
    for sid in {t.storage.id for ev in dead for t in ev.saved if not t.storage.is_param}:
        savers_left[sid] -= sum(1 for ev in dead if sid in {t.storage.id for t in ev.saved})
    for sid in [s for s in live if s not in kept_to_end and not savers_left.get(s)]:
        live.discard(sid)
        cur -= size[sid]
    activations = sum(size[s] for s in live)

    # Backward: gradients flow from the loss (a scalar) through the calls in reverse.
    grads: dict[int, _Grad] = {loss.id: _Grad(0)}
    param_grads: set = set()
    gradients = 0

    def release(buf: _Grad) -> None:
        nonlocal cur
        buf.refs -= 1
        if buf.refs == 0:
            cur -= buf.nbytes

    for i in range(len(events) - 1, -1, -1):
        ev = events[i]
        if not ev.leaf:
            continue
        ins = {id(t) for t in ev.inputs}
        outs = [t for t in tensors_in(ev.output) if id(t) not in ins]
        incoming = [grads.pop(t.id) for t in outs if t.id in grads]
        if not incoming:
            continue
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
                gradients, transient, cur = _param_grad(("t", w.id), w.nbytes, param_grads, gradients,
                                                        transient, cur)
            elif ev.grad == "alias":
                incoming[0].refs += 1
                produced.append((t, incoming[0]))
            else:
                cur += t.nbytes
                produced.append((t, _Grad(t.nbytes)))
        if ev.module is not None and ev.module.op is not None and ev.own_param_grads:
            for k, shape in enumerate(ev.module.params):
                nbytes = math.prod(shape) * pbytes
                gradients, transient, cur = _param_grad(ev.module.param_key(k), nbytes, param_grads, gradients,
                                                        transient, cur)  # a tied weight: one gradient
        transient += ev.backward_temp
        if cur + transient > peak:
            peak, phase = cur + transient, f"backward, {label(ev)}"
        if ev.backward_late is not None:  # it frees its output's gradient midway
            for buf in incoming:
                release(buf)
            incoming = []
            transient += ev.backward_late - ev.backward_temp
            if cur + transient > peak:
                peak, phase = cur + transient, f"backward, {label(ev)}"
        if log is not None:
            log.append(("bwd", label(ev), cur + transient))
        # 2. it releases what it kept and the gradient it consumed
        for sid in {t.storage.id for t in ev.saved if not t.storage.is_param}:
            savers_left[sid] -= 1
            if savers_left[sid] == 0 and sid not in kept_to_end and sid in live:
                live.discard(sid)
                cur -= size[sid]
        for buf in incoming:
            release(buf)
        # 3. a gradient arriving where one is waiting is summed into a new buffer
        for t, new in produced:
            old = grads.get(t.id)
            if old is None:
                grads[t.id] = new
                continue
            grads[t.id] = _Grad(t.nbytes)
            cur += t.nbytes
            if cur > peak:
                peak, phase = cur, f"backward, {label(ev)} (gradient accumulation)"
            release(old)
            release(new)
    for buf in list(grads.values()):
        release(buf)

    # Optimizer step: gradients exist; foreach updates allocate temporaries for all parameters at once.
    step_peak = cur + temps * trained * pbytes
    if step_peak > peak:
        peak, phase = step_peak, f"optimizer step ({optimizer})"
    rounding = sum(_round_up(math.prod(s) * pbytes) - math.prod(s) * pbytes for s in param_shapes) * (
        2 + states)
    return Memory(weights, gradients, opt, activations, peak, reserve, phase, rounding)


def _dead_calls(events: list, out_tensors: list, loss: Tensor) -> list:
    """The calls the loss does not depend on, when forward returns more than it needs."""
    if len(out_tensors) < 2:
        return []
    reached = _reaching(events, loss)
    return [ev for i, ev in enumerate(events) if i not in reached]


def _unused_params(events: list, dead: list) -> list:
    """Shapes of the parameters of modules called only where the loss does not reach."""
    gone = {id(ev) for ev in dead}
    live = {id(ev.module) for ev in events if ev.module is not None and id(ev) not in gone}
    modules = {id(ev.module): ev.module for ev in dead if ev.module is not None and id(ev.module) not in live}
    used = {ev.module.param_key(k) for ev in events if ev.module is not None and id(ev) not in gone
            for k in range(len(ev.module.params))}
    return [shape for m in modules.values() for k, shape in enumerate(m.params) if m.param_key(k) not in used]


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


def _param_grad(key, nbytes: int, seen: set, gradients: int, transient: int, cur: int):
    """A parameter's gradient: allocated at its first use in backward, accumulated (a transient) after."""
    if key in seen:
        return gradients, transient + nbytes, cur
    seen.add(key)
    return gradients + nbytes, transient, cur + nbytes


def _round_up(n: int) -> int:
    return -(-n // CUDA_BLOCK) * CUDA_BLOCK
