"""PyTorch as the oracle for training set-ups: checkpointing, gradient accumulation, DDP and FSDP2.

The same truth as torch_oracle.measure_step (MemTracker's peak of one steady-state CPU training
step, foreach optimizers, input and targets allocated inside the step), for the set-ups a
training script adds around the model:

  measure_checkpointed  the model source itself calls torch.utils.checkpoint: measure_step as it is
                        (MemTracker follows the recomputation in backward; the peak is exact, the
                        split between activations and temporaries inside a recomputation is not)
  wrap_checkpoint       what-if: every module of one class runs under checkpoint(..., use_reentrant=False)
  measure_accumulated   one optimizer step over k micro-batches (loss / k, gradients add up in .grad)
  measure_distributed   DDP or FSDP2 (fully_shard) over gloo, world_size CPU processes, one StepMemory
                        per rank; the batch shape is per rank

Only the tests and the benchmarks execute model sources; the tool itself never does.
"""
from __future__ import annotations

import os
import pickle
import shutil
import tempfile
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from torch_oracle import (HALF, OPTIMIZERS, OracleRefused, StepMemory, _first, _own_loss, instantiate, load,
                          make_input, make_target, measure_step, refusals, step_loss)

STRATEGIES = ("ddp", "fsdp")


class GlooUnavailable(OracleRefused):
    """This PyTorch build has no torch.distributed or no gloo backend: the distributed oracle cannot run."""


# ---------------------------------------------------------------------------------------------
# activation checkpointing

def measure_checkpointed(model: nn.Module, shape: tuple, input_dtype="float32", optimizer: str = "adam",
                         dtype: str = "float32", loss: str = "cross_entropy") -> StepMemory:
    """measure_step for a model whose forward calls torch.utils.checkpoint (checkpoint(fn, *args,
    use_reentrant=False/True), checkpoint_sequential) or was wrapped by wrap_checkpoint.

    measure_step needs nothing more: MemTracker sees the recomputation's allocations in backward
    (a module's forward run again in backward is its PRE_FW_AC state), so the step's peak is right.
    Inside a recomputation MemTracker may file a tensor under Act where it is Temp (its own
    documented limitation); compare peaks, not that split."""
    return measure_step(model, shape, input_dtype, optimizer, dtype, loss)


def wrap_checkpoint(model: nn.Module, class_name: str, use_reentrant: bool = False) -> int:
    """Make every module whose class is named `class_name` run its forward under
    torch.utils.checkpoint.checkpoint(forward, *args, use_reentrant=...), as the analyser's
    `--checkpoint CLASS` assumes. The module is still called (its hooks run); only its own
    forward is replaced, on the instance. A module of that class inside another one is not
    wrapped again (the outer recomputation covers it). Returns how many modules were wrapped."""
    from torch.utils.checkpoint import checkpoint

    wrapped: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if type(module).__name__ != class_name:
            continue
        if any(name.startswith(prefix + ".") for prefix, _ in wrapped):
            continue
        original = module.forward

        def forward(*args, _original=original, **kwargs):
            return checkpoint(_original, *args, use_reentrant=use_reentrant, **kwargs)

        module.forward = forward
        wrapped.append((name, module))
    if not wrapped:
        raise ValueError(f"no module of class {class_name!r} in {type(model).__name__}")
    return len(wrapped)


# ---------------------------------------------------------------------------------------------
# the step, shared by the accumulated and the distributed measurements

def _inputs(model: nn.Module, shape, input_dtype, dtype: str):
    """(model, host batches): half-precision dtypes cast the model and float inputs (as measure_step)."""
    shapes = list(shape) if shape and isinstance(shape[0], (tuple, list)) else [shape]
    dtypes = list(input_dtype) if isinstance(input_dtype, (tuple, list)) else [input_dtype] * len(shapes)
    if dtype in ("float16", "bfloat16"):
        model = model.to(HALF[dtype])
        dtypes = [dtype if d == "float32" else d for d in dtypes]
    return model, [make_input(tuple(s), d) for s, d in zip(shapes, dtypes)]


class _Step:
    """One training step as measure_step runs it, over k micro-batches (k=1: measure_step's step).

    Each micro-batch clones the host batch and target (allocated inside the step), runs forward
    under autocast for amp-*, scales the loss by 1/k and calls backward, so gradients add up in
    .grad; then opt.step(). A micro-batch's output and loss live until the next one's forward
    returns and rebinds them (`logits, loss = model(x, y)` in a loop); the last one's live on
    through opt.step(), as in measure_step (k=1 is measure_step's step exactly). `between` runs
    before every micro-batch after the first."""

    def __init__(self, model: nn.Module, opt, hosts: list, dtype: str, loss: str, k: int = 1):
        self.model, self.opt, self.hosts, self.dtype, self.loss, self.k = model, opt, hosts, dtype, loss, k
        self.host_target: list = []
        self.between = None

    def __call__(self):
        amp = self.dtype.startswith("amp")
        self.opt.zero_grad(set_to_none=True)
        for i in range(self.k):
            if i and self.between is not None:
                self.between()
            xs = [h.clone() for h in self.hosts]
            target = self.host_target[0].clone() if self.host_target and self.host_target[0] is not None else None
            with torch.autocast("cpu", dtype=HALF.get(self.dtype, torch.bfloat16), enabled=amp):
                out = self.model(*xs)
                if not self.host_target:  # the first step finds the output's shape
                    self.host_target.append(None if _own_loss(out) is not None
                                            else make_target(_first(out), self.loss, self.dtype))
                    target = None if self.host_target[0] is None else self.host_target[0].clone()
                value, out = step_loss(out, target, self.loss)
                if self.k > 1:
                    value = value / self.k
            value.backward()
        self.opt.step()


def _snapshot(tracker, model: nn.Module, opt) -> StepMemory:
    snap = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]
    categories = {str(getattr(k, "value", k)): v for k, v in snap.items() if k != "Total"}
    return StepMemory(snap["Total"], categories, _local_bytes(list(model.parameters()) + list(model.buffers())),
                      _local_bytes(v for s in opt.state.values() for v in s.values()),
                      _local_bytes(p.grad for p in model.parameters()))


def _local_bytes(tensors) -> int:
    """Bytes a rank holds for these tensors. A DTensor (FSDP2's sharded parameter, gradient or
    optimizer state) counts its local shard's storage, which FSDP2 pads: every rank's shard of a
    parameter has ceil(dim0 / world_size) rows, whatever part of them is real."""
    total, seen = 0, set()
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            continue
        local = getattr(t, "_local_tensor", None)
        if local is None:
            total += t.nbytes
            continue
        storage = local.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


def measure_accumulated(model: nn.Module, shape: tuple, input_dtype="float32", optimizer: str = "adam",
                        dtype: str = "float32", loss: str = "cross_entropy", k: int = 2) -> StepMemory:
    """Peak memory of one optimizer step over k micro-batches of `shape` each (gradient accumulation).

    Every micro-batch: forward, loss / k, backward adding into .grad (the first creates the
    gradients, the others add to them); then one opt.step(). The second full step is measured,
    as in measure_step. MemTracker refuses the root module's second forward inside one tracked
    region, so its per-module statistics are reset between micro-batches (reset_mod_stats); the
    step's peak and the live tensors are kept across it."""
    from torch.distributed._tools.mem_tracker import MemTracker

    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    model, hosts = _inputs(model, shape, input_dtype, dtype)
    model.train()
    if any(isinstance(m, nn.modules.lazy.LazyModuleMixin) for m in model.modules()):
        with torch.no_grad():
            model(*(h.clone() for h in hosts))
    opt = OPTIMIZERS[optimizer](model.parameters())
    step = _Step(model, opt, hosts, dtype, loss, k)
    with refusals():
        step()
    tracker = MemTracker()
    tracker.track_external(model, opt)
    step.between = tracker.reset_mod_stats
    with tracker:
        step()
    return _snapshot(tracker, model, opt)


# ---------------------------------------------------------------------------------------------
# DDP and FSDP2 over gloo

@dataclass(frozen=True)
class RankResult:
    """What one rank measured: its step's memory, its timeline (when asked) and its step's seconds."""
    memory: StepMemory
    seconds: float  # wall time of the measured step on this rank
    timeline: list = field(default_factory=list)  # (op, Act/Temp/.. bytes live after it, Total) when traced
    details: dict = field(default_factory=dict)


def gloo_available() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_gloo_available()


def measure_distributed(source: str, expr: str, shape: tuple, input_dtype="float32", optimizer: str = "adam",
                        dtype: str = "float32", loss: str = "cross_entropy", strategy: str = "ddp",
                        world_size: int = 2, shard_units=(), *, mp_policy: tuple | None = None,
                        reshard_after_forward=None, warmup: int | None = None,
                        ddp_options: dict | None = None,
                        timeout: float = 300.0, trace: bool = False, full: bool = False):
    """Per-rank StepMemory of one steady-state step of `expr` (evaluated in the executed `source`),
    trained with DDP or FSDP2 over gloo by `world_size` CPU processes; `shape` is one rank's batch.

    strategy "ddp": DistributedDataParallel(model, **ddp_options), by default with DDP's defaults
    (bucket_cap_mb=25, gradient_as_bucket_view=False). strategy "fsdp": fully_shard (FSDP2, reshard_after_forward=True)
    on every module whose class name is in `shard_units`, then on the root, over a 1-D CPU mesh;
    `mp_policy=(param_dtype, reduce_dtype)` (dtype names, reduce_dtype None: param_dtype) gives every
    fully_shard FSDP2's MixedPrecisionPolicy; `dtype` is then the model's own, float32 as a rule.
    `reshard_after_forward` (True, False or an int; a tuple: one per unit, in module order) is passed
    to the units' fully_shard, not the root's (None: FSDP2's default).
    Every rank executes the source with the same seed.
    `warmup` steps run before the measured one. By default FSDP measures the second step, as
    measure_step; DDP measures the third (warmup=2), its steady state: the second step's forward
    rebuilds the reducer's buckets (in gradient-ready order), a one-off. DDP's buckets exist
    before the measured step, so they are tracked as Other (found as the tensors the reducer
    all-reduces in the last warm-up step); MemTracker would otherwise see a bucket only when a
    gradient is first copied into it, as Temp.
    `full=True` returns RankResult (seconds, timeline if `trace`, details) instead of StepMemory."""
    import torch.multiprocessing as mp

    if warmup is None:
        warmup = 2 if strategy == "ddp" else 1
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r}: one of {STRATEGIES}")
    if not gloo_available():
        raise GlooUnavailable("torch.distributed with the gloo backend is not available in this PyTorch build")
    tmp = tempfile.mkdtemp(prefix="gpumem_dist_")
    try:
        args = (world_size, os.path.join(tmp, "rendezvous"), tmp, source, expr, shape, input_dtype, optimizer,
                dtype, loss, strategy, tuple(shard_units), mp_policy, reshard_after_forward, warmup, trace,
                dict(ddp_options or {}))
        context = mp.start_processes(_rank_main, args=args, nprocs=world_size, join=False, start_method="spawn")
        deadline = time.monotonic() + timeout
        try:
            while not context.join(timeout=max(0.1, min(5.0, deadline - time.monotonic()))):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{strategy} world {world_size}: no result within {timeout:.0f} s")
        except BaseException as exc:
            for process in context.processes:
                if process.is_alive():
                    process.kill()
            for process in context.processes:
                process.join(5)
            for rank in range(world_size):  # a rank's own error, with its traceback, says more
                outcome = _read_rank(tmp, rank)
                if isinstance(outcome, BaseException):
                    raise outcome from exc
            raise
        results = []
        for rank in range(world_size):
            outcome = _read_rank(tmp, rank)
            if outcome is None:
                raise RuntimeError(f"rank {rank} of {strategy} world {world_size} exited without a result")
            if isinstance(outcome, BaseException):
                raise outcome
            results.append(outcome)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results if full else [r.memory for r in results]


def _read_rank(tmp: str, rank: int):
    try:
        with open(os.path.join(tmp, f"rank{rank}.pkl"), "rb") as f:
            return pickle.load(f)
    except FileNotFoundError:
        return None


class _TimelineTracker:
    """A MemTracker that also records, after every dispatched op, the live bytes per category."""

    @staticmethod
    def make():
        from torch.distributed._tools.mem_tracker import MemTracker

        class Traced(MemTracker):
            def __init__(self):
                super().__init__()
                self.timeline = []

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                res = super().__torch_dispatch__(func, types, args, kwargs)
                snap = self._curr_mem_snap.get(torch.device("cpu"), {})
                self.timeline.append((str(func), "bw" if self._mod_tracker.is_bw else "opt" if self._in_opt else "fw",
                                      {str(getattr(k, "value", k)): v for k, v in snap.items()}))
                return res

        return Traced()


def _rank_main(rank, world_size, rendezvous, out_dir, source, expr, shape, input_dtype, optimizer, dtype, loss,
               strategy, shard_units, mp_policy, reshard, warmup, trace, ddp_options):
    """One rank: build, wrap, warm up, measure; the outcome (or the exception) goes to rank{N}.pkl."""
    import torch.distributed as dist
    from torch.distributed._tools.mem_tracker import MemTracker

    path = os.path.join(out_dir, f"rank{rank}.pkl")
    try:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
        dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size)
        try:
            torch.manual_seed(0)
            model = instantiate(load(source), expr) if expr.isidentifier() else eval(expr, load(source))
            model, hosts = _inputs(model, shape, input_dtype, dtype)
            model.train()
            details: dict = {"local_params_before": _local_bytes(model.parameters())}
            if strategy == "ddp":
                from torch.nn.parallel import DistributedDataParallel

                model = DistributedDataParallel(model, **ddp_options)
                wrapped = model.module
            else:
                from torch.distributed.device_mesh import init_device_mesh
                from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

                mesh = init_device_mesh("cpu", (world_size,))
                kwargs = {"mesh": mesh}
                if mp_policy:
                    param_dtype, reduce_dtype = (getattr(torch, d) if d else None for d in mp_policy)
                    kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype)
                units = [m for m in model.modules() if type(m).__name__ in shard_units and m is not model]
                if shard_units and not units:
                    raise ValueError(f"no module of class {sorted(shard_units)} in {type(model).__name__}")
                per_unit = reshard if isinstance(reshard, tuple) else (reshard,) * len(units)
                if len(per_unit) != len(units):
                    raise ValueError(f"{len(per_unit)} reshard_after_forward values for {len(units)} units")
                for unit, value in zip(units, per_unit):
                    fully_shard(unit, **kwargs, **({} if value is None else {"reshard_after_forward": value}))
                fully_shard(model, **kwargs)
                wrapped = model
                details["shards"] = [(n, tuple(p.shape), tuple(p._local_tensor.shape),
                                      p._local_tensor.untyped_storage().nbytes()) for n, p in model.named_parameters()]
            opt = OPTIMIZERS[optimizer](model.parameters())
            step = _Step(model, opt, hosts, dtype, loss)
            buckets: list = []
            with refusals():
                for i in range(warmup):
                    if strategy == "ddp" and i == warmup - 1 >= 1:  # the first step's buckets are rebuilt
                        with _AllreduceArgs() as seen:  # the tensors the reducer all-reduces: its buckets
                            step()
                        buckets = seen.tensors
                    else:
                        step()
            tracker = _TimelineTracker.make() if trace else MemTracker()
            # DDP's buckets were allocated before the measured step (at construction, and again when
            # the second step's forward rebuilds them in gradient-ready order): tracked as Other.
            # Measuring the second step (warmup=1), the rebuilt buckets are new in its forward
            # (Activation) and the construction's are not seen.
            tracker.track_external(model, opt, *buckets)
            dist.barrier()
            start = time.perf_counter()
            with tracker:
                step()
            seconds = time.perf_counter() - start
            memory = _snapshot(tracker, wrapped, opt)
            details["grads"] = _local_bytes(p.grad for p in model.parameters())
            if strategy == "ddp":
                details["ddp"] = _ddp_details(model, buckets)
            outcome = RankResult(memory, seconds, getattr(tracker, "timeline", []), details)
            dist.barrier()
        finally:
            dist.destroy_process_group()
    except BaseException as exc:  # the parent re-raises it, with this rank's traceback in the message
        import traceback

        outcome = RuntimeError(f"rank {rank}: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
    with open(path + ".part", "wb") as f:
        pickle.dump(outcome, f)
    os.replace(path + ".part", path)
    if isinstance(outcome, BaseException):
        raise SystemExit(1)


class _AllreduceArgs:
    """A dispatch mode that keeps the tensors passed to c10d's allreduce_ (DDP's bucket buffers)."""

    def __enter__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        seen = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                if "allreduce" in str(func):
                    for t in args[0] if isinstance(args[0], (list, tuple)) else [args[0]]:
                        if isinstance(t, torch.Tensor) and all(t.untyped_storage().data_ptr() !=
                                                               b.untyped_storage().data_ptr() for b in seen.tensors):
                            seen.tensors.append(t)
                return func(*args, **(kwargs or {}))

        self.tensors: list = []
        self._mode = Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        self._mode.__exit__(*exc)


def _ddp_details(ddp, buckets: list) -> dict:
    """What DDP's reducer holds: its buckets (bytes each) and whether gradients share their storage."""
    ptrs = {b.untyped_storage().data_ptr() for b in buckets}
    grads = [p.grad for p in ddp.parameters() if p.grad is not None]
    return {"bucket_bytes": [b.untyped_storage().nbytes() for b in buckets],
            "bucket_cap_mb": getattr(ddp, "bucket_bytes_cap", 0) / 2**20,
            "grads_in_buckets": sum(g.untyped_storage().data_ptr() in ptrs for g in grads),
            "grads": len(grads)}


__all__ = ["GlooUnavailable", "RankResult", "gloo_available", "measure_accumulated", "measure_checkpointed",
           "measure_distributed", "wrap_checkpoint"]
