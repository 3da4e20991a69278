"""PyTorch as the oracle: run a model source for real and record what it does.

Only the tests execute model sources; the tool itself never does.
"""
from __future__ import annotations

import contextlib
import gc
import itertools
import sys
import types
from dataclasses import dataclass

import torch
from torch import nn

_counter = itertools.count()
# oneDNN's words when this CPU has no kernel for a primitive: a bf16 LSTM under autocast needs
# AVX-512 BF16, and on an AVX2 CPU PyTorch stops with this instead of running the step.
NO_KERNEL = "could not create a primitive descriptor"
REFUSED = "PyTorch cannot run this on this CPU"


class OracleRefused(Exception):
    """PyTorch itself cannot run this case on this CPU: a test skips it (tests/conftest.py),
    a benchmark counts it; it is never a pass."""


def cpu_capability() -> str:
    return torch.backends.cpu.get_cpu_capability()


@contextlib.contextmanager
def refusals():
    """Turn PyTorch's refusal to run a kernel on this CPU into OracleRefused; any other error stays."""
    try:
        yield
    except RuntimeError as exc:
        if NO_KERNEL not in str(exc):
            raise
        first = str(exc).split(". ")[0]
        raise OracleRefused(f"{REFUSED} ({cpu_capability()}): {first}") from exc


@dataclass(frozen=True)
class Call:
    name: str  # qualified name, as model.named_modules() gives it
    type: str  # class name of the module
    output_shape: tuple[int, ...]


@dataclass(frozen=True)
class TorchProfile:
    params: int
    calls: list[Call]  # leaf module calls, in the order they ran


def load(source: str) -> dict:
    """Execute a model source in a fresh module namespace and return it."""
    module = types.ModuleType(f"_oracle_{next(_counter)}")
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    exec(compile(source, module.__name__, "exec"), module.__dict__)
    return module.__dict__


def instantiate(namespace: dict, name: str) -> nn.Module:
    obj = namespace[name]
    return obj() if isinstance(obj, type) else obj


def first_shape(value) -> tuple[int, ...]:
    """Shape of a tensor, or of the first tensor of a tuple/list output."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, (tuple, list)) and value:
        return first_shape(value[0])
    raise TypeError(f"no tensor in {type(value).__name__}")


def make_input(shape, dtype: str = "float32"):
    """A batch of one shape, or a list of batches for a list of shapes (int64 token ids are zeros)."""
    if shape and isinstance(shape[0], (tuple, list)):
        return [make_input(tuple(s), dtype) for s in shape]
    if dtype in ("int64", "long"):
        return torch.zeros(shape, dtype=torch.int64)
    return torch.randn(shape, dtype=getattr(torch, dtype))


def profile(model: nn.Module, x, kwargs: dict | None = None) -> TorchProfile:
    """Parameters and leaf calls of one training-mode forward pass (`kwargs`: forward's keyword arguments).

    A leaf call is a module call during which no other module was called
    (so MultiheadAttention is a leaf, TransformerEncoderLayer is not).
    """
    names = {id(m): n for n, m in model.named_modules()}
    stack: list[list] = []  # [module, had_child_call]
    calls: list[Call] = []

    def pre(module, args):
        if stack:
            stack[-1][1] = True
        stack.append([module, False])

    def post(module, args, output):
        _, had_child = stack.pop()
        if not had_child and module is not model:
            calls.append(Call(names[id(module)], type(module).__name__, first_shape(output)))

    handles = []
    for m in model.modules():
        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post))
    model.train()
    try:
        with refusals():
            model(*(x if isinstance(x, list) else [x]), **(kwargs or {}))
    finally:
        for h in handles:
            h.remove()
    params = sum(p.numel() for p in model.parameters())
    return TorchProfile(params, calls)


OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.01, foreach=True),
    "sgd-momentum": lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, foreach=True),
    "adam": lambda p: torch.optim.Adam(p, foreach=True),
    "adamw": lambda p: torch.optim.AdamW(p, foreach=True),
    "rmsprop": lambda p: torch.optim.RMSprop(p, foreach=True),
    "adagrad": lambda p: torch.optim.Adagrad(p, foreach=True),
}
HALF = {"float16": torch.float16, "bfloat16": torch.bfloat16, "amp-fp16": torch.float16,
        "amp-bf16": torch.bfloat16}


@dataclass(frozen=True)
class StepMemory:
    peak: int  # bytes, all categories, at the step's peak
    categories: dict  # MemTracker category name -> bytes at the peak
    weights: int  # parameters and buffers, bytes
    optimizer_state: int  # every tensor in the optimizer's state after the step, bytes
    gradients: int = 0  # the parameters' .grad after the step, bytes (None for those backward never reached)


def _own_loss(out):
    """A 0-d tensor forward returned (alone, in a tuple/list or a dict): the model's own loss."""
    values = out.values() if isinstance(out, dict) else out if isinstance(out, (tuple, list)) else [out]
    numbers = [v for v in values if isinstance(v, torch.Tensor) and v.ndim == 0]
    return next((v for v in numbers if v.requires_grad), numbers[0] if numbers else None)


def _first(out) -> torch.Tensor:
    while isinstance(out, (tuple, list, dict)):
        out = next(iter(out.values())) if isinstance(out, dict) else out[0]
    return out


def make_target(first: torch.Tensor, loss: str, dtype: str) -> torch.Tensor | None:
    """The targets a step's loss compares the first output with: class indices, or values like it."""
    if loss == "cross_entropy":
        return torch.zeros(first.shape[:-1].numel(), dtype=torch.int64)
    if loss == "mse":
        return torch.randn(first.shape, dtype=HALF.get(dtype, torch.float32) if dtype in ("float16", "bfloat16")
                           else torch.float32)
    return None


def step_loss(out, target: torch.Tensor | None, loss: str):
    """(loss, what the loop keeps): the model's own 0-d loss (`logits, loss = model(x, y)` keeps all
    forward returned), else `loss` of the first output (only that output is kept)."""
    import torch.nn.functional as F

    own = _own_loss(out)
    if own is not None:
        return own, out
    first = _first(out)
    if loss == "sum":
        return first.sum(), first
    if loss == "cross_entropy":
        return F.cross_entropy(first.reshape(-1, first.shape[-1]), target.reshape(-1)), first
    return F.mse_loss(first, target), first


@contextlib.contextmanager
def no_cyclic_collection():
    """The cyclic collector off: MemTracker's module hooks hold a detached branch's graph in reference
    cycles (tests/test_oracle_mode.py), so when it is freed depends on when a collection happens to
    run; with the collector off it is the same every run."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _NoHandle:
    def remove(self) -> None:
        pass


@contextlib.contextmanager
def hooks_only_where_gradients_flow():
    """MemTracker registers a gradient hook on every parameter, and PyTorch refuses one on a tensor
    that needs no gradient (a frozen weight): skip those hooks. The tracker's categories stay right:
    such a parameter never gets a gradient to see."""
    originals = {name: getattr(torch.Tensor, name) for name in ("register_hook", "register_post_accumulate_grad_hook")}

    def guarded(original):
        def register(tensor, hook):
            return original(tensor, hook) if tensor.requires_grad else _NoHandle()
        return register

    for name, original in originals.items():
        setattr(torch.Tensor, name, guarded(original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


@contextlib.contextmanager
def views_made_without_grad_untracked():
    """MemTracker's module tracker hooks the inputs of every module call that need a gradient; a view
    taken under no_grad of such a tensor (a block run inside a custom autograd.Function's forward,
    improved-diffusion's `x.reshape(b, c, -1)`) says it needs one but has no graph to hook, and the
    tracker fails on it. Leave those out of its hooks: they only attribute backward to modules, and
    that view never sees a gradient. Allocations are untouched."""
    from torch.distributed._tools import mod_tracker

    original = mod_tracker.register_multi_grad_hook

    def register(tensors, fn, *args, **kwargs):
        graphed = [t for t in tensors if t.grad_fn is not None or not t._is_view()]
        return original(graphed, fn, *args, **kwargs) if graphed else _NoHandle()

    mod_tracker.register_multi_grad_hook = register
    try:
        yield
    finally:
        mod_tracker.register_multi_grad_hook = original


def measure_step(model: nn.Module, shape: tuple, input_dtype="float32", optimizer="adam",
                 dtype: str = "float32", loss: str = "cross_entropy", names: list | None = None,
                 forward_args: dict | None = None) -> StepMemory:
    """Peak memory of one steady-state training step, measured by PyTorch's MemTracker.

    Forward, loss, backward, optimizer step with foreach=True (CUDA's default); `optimizer` is a
    name of OPTIMIZERS, or a function that builds one for the model. `shape` is one
    input's shape or a list of them (one per tensor argument of forward), `input_dtype` one for
    all or a list; `names` says which inputs forward takes by keyword (None for a positional one), and
    `forward_args` its non-tensor arguments. The loss is a 0-d tensor forward returns, else `loss` of the first output
    (cross_entropy against int64 class indices on the last dimension, mse, or sum). The second
    step is measured, so optimizer state exists and gradients start freed
    (zero_grad(set_to_none=True)). The input batch and the targets are created inside the step,
    as a batch copied to the GPU is.
    """
    from torch.distributed._tools.mem_tracker import MemTracker

    shapes = list(shape) if shape and isinstance(shape[0], (tuple, list)) else [shape]
    dtypes = list(input_dtype) if isinstance(input_dtype, (tuple, list)) else [input_dtype] * len(shapes)
    if dtype in ("float16", "bfloat16"):
        model = model.to(HALF[dtype])
        dtypes = [dtype if d == "float32" else d for d in dtypes]
    model.train()
    hosts = [make_input(tuple(s), d) for s, d in zip(shapes, dtypes)]
    names = names or [None] * len(hosts)

    def call(xs):
        kwargs = dict(forward_args or {})
        kwargs.update((n, x) for n, x in zip(names, xs) if n is not None)
        return model(*(x for n, x in zip(names, xs) if n is None), **kwargs)

    if any(isinstance(m, nn.modules.lazy.LazyModuleMixin) for m in model.modules()):
        with torch.no_grad():  # materialize lazy layers before the optimizer sees their parameters
            call([h.clone() for h in hosts])
    opt = optimizer(model) if callable(optimizer) else OPTIMIZERS[optimizer](model.parameters())
    amp = dtype.startswith("amp")
    host_target = []

    def step():
        opt.zero_grad(set_to_none=True)
        xs = [h.clone() for h in hosts]
        target = host_target[0].clone() if host_target and host_target[0] is not None else None
        with torch.autocast("cpu", dtype=HALF.get(dtype, torch.bfloat16), enabled=amp):
            out = call(xs)
            if not host_target:  # the first step finds the output's shape
                host_target.append(None if _own_loss(out) is not None else make_target(_first(out), loss, dtype))
                target = None if host_target[0] is None else host_target[0].clone()
            value, out = step_loss(out, target, loss)
        value.backward()
        opt.step()

    with refusals():
        step()
    tracker = MemTracker()
    with hooks_only_where_gradients_flow():
        tracker.track_external(model, opt)
        with tracker:
            step()
    snap = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]
    categories = {str(getattr(k, "value", k)): v for k, v in snap.items() if k != "Total"}
    weights = sum(t.nbytes for t in list(model.parameters()) + list(model.buffers()))
    state = sum(v.nbytes for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor))
    grads = sum(p.grad.nbytes for p in model.parameters() if p.grad is not None)
    return StepMemory(snap["Total"], categories, weights, state, grads)
