"""What a report says of each model, as plain strings: its heading, per-layer rows and totals, and the
diagnostics' lines. The renderers (report.py's table, JSON and Markdown, pictures/) only lay them out."""
from __future__ import annotations

import math

from .analysis import Analysis, ModelReport
from .config import forward_inputs
from .diagnostics import human
from .memory import AUTOCAST, OPTIMIZER_STATE, param_dtype

OPTIMIZER_WORDS = {
    "sgd": "none", "sgd-momentum": "momentum_buffer", "adam": "exp_avg + exp_avg_sq + step",
    "adamw": "exp_avg + exp_avg_sq + step", "rmsprop": "square_avg + step", "adagrad": "sum + step",
}


def shape(s) -> str:
    """4x3x32x32; several inputs: 4x64, 4x64."""
    if s and isinstance(s[0], tuple):
        return ", ".join(map(shape, s))
    return "-" if s is None else "x".join(map(str, s)) or "scalar"


def rows(m: ModelReport) -> list[tuple]:
    batch = m.batch
    out = [("Layer", "Type", "Output shape", "Per sample", "Params", "Activation", "Kept for backward")]
    for l in m.layers:
        per_sample = _per_sample(l.output_shape, batch)
        out.append((l.name, l.type, shape(l.output_shape), f"{per_sample:,}" if per_sample is not None else "-",
                    _params_cell(l), human(l.activation_bytes), human(l.saved_bytes)))
    return out


def _per_sample(output_shape, batch) -> int | None:
    """Elements per sample of an output with the batch first, or elsewhere (a sequence-first LSTM's
    T x B x H); None for one without the batch in it (a loss, a table of positions)."""
    if not output_shape or not batch:
        return None
    return math.prod(output_shape) // batch if batch in output_shape else None


def _params_cell(l) -> str:
    """A layer's parameters, and whether they train where some do not."""
    frozen = l.params - l.trainable_params
    if not frozen:
        return f"{l.params:,}"
    return f"{l.params:,} frozen" if frozen == l.params else f"{l.params:,} ({frozen:,} frozen)"


def totals(m: ModelReport) -> list[tuple[str, str]]:
    s, mem = m.settings, m.memory
    states = OPTIMIZER_STATE[s.optimizer][0]
    dtype = f"{s.dtype}, computing in {AUTOCAST[s.dtype]}" if s.dtype in AUTOCAST else s.dtype
    frozen = m.params - m.trainable_params
    trained = " that get a gradient" if frozen else ""
    each = "trainable parameter backward reaches" if frozen else "parameter"
    held = "buffers; the parameters are on the host" if mem.host else "parameters and buffers"
    out = [
        ("parameters", f"{m.params:,}" + (f"  ({m.trainable_params:,} trainable, {frozen:,} frozen)" if frozen
                                          else "")),
        ("weights", f"{human(mem.weights)}  ({held}, {dtype}"
                    + "".join(f"; with the copy `{name}` kept beside it, {human(size)}: no gradients, no optimizer "
                              "state" for name, size in m.copies) + ")"),
        ("gradients", f"{human(mem.gradients)}  ("
                      + ("each shard copied to the host as it is reduce-scattered)" if mem.host else f"one per {each})")),
        ("optimizer", f"{human(mem.optimizer)}  ({s.optimizer}: {OPTIMIZER_WORDS[s.optimizer]}"
                      + (", on the host)" if mem.host else f"{f', {states}x the weights{trained}' if states else ''})")),
        ("activations", f"{human(mem.activations)}  (alive when backward starts: the input batch and what "
                        "autograd keeps)"),
        ("peak", f"{human(mem.peak)}  (largest total during the step: {mem.peak_phase})"),
        *_host(s, mem),
        ("on a GPU", f"+{human(mem.cuda_rounding)} allocator rounding of weights, gradients and optimizer state "
                     "to 512-byte blocks; + the CUDA context (~300-500 MiB), outside torch's counters"),
    ]
    if mem.reserve:
        out.append(("reserve", f"{human(mem.reserve)}  (set aside for the CUDA context etc.)"))
    if m.budget is not None:
        verdict = "fits" if m.fits else "does NOT fit"
        out.append(("budget", f"{human(m.budget)}: {verdict}; largest batch that fits: {m.max_batch_size}"))
    return out


def _host(s, mem) -> list[tuple[str, str]]:
    """Under FSDP's CPU offload, what one rank keeps in host memory, beside the GPU's figures."""
    if not mem.host:
        return []
    pinned = f"{human(mem.pinned)} of it pinned" if mem.pinned else "pageable: pin_memory=False"
    return [("host", f"{human(mem.host)}  (CPU offload, per rank: the sharded weights, their gradients and "
                     f"{s.optimizer}'s state, which steps on the CPU; {pinned}; not in the GPU's peak)")]


LOSS_WORDS = {"forward": "the loss forward returns", "cross_entropy": "cross entropy of the first output",
              "mse": "mse of the first output", "sum": "sum of the first output"}


# what the heading says of a wrapper the file runs the model in (DDP: the strategy's words)
WRAPPER_WORDS = {"torch.compile": "torch.compile: the eager step",
                 "DataParallel": "nn.DataParallel: GPU 0 as if alone, the whole batch"}


def heading(m: ModelReport) -> str:
    s = m.settings
    wrappers = "".join(f" ({WRAPPER_WORDS[w]})" for w in m.wrappers if w in WRAPPER_WORDS)
    return (f"{m.name}  ({m.file}:{m.line}){wrappers}  input {inputs_words(m)}, batch {m.batch}, "
            f"{s.dtype}, {s.optimizer}, loss: {LOSS_WORDS.get(m.loss, m.loss)}{setup_words(s)}")


def inputs_words(m: ModelReport) -> str:
    """Each input as the step builds it, batch included: '4x3x64x64 float32, 4 int64, labels=4 int64'."""
    given = forward_inputs(m.settings, param_dtype(m.settings.dtype))
    shapes = [m.input_shape] if len(given) == 1 else m.input_shape
    return ", ".join(f"{x.name + '=' if x.name else ''}{shape(full)} {x.dtype}" for x, full in zip(given, shapes))


def setup_words(s) -> str:
    """The training set-up, as the heading and GPM100 name it: ', checkpointing Block, 4 micro-batches'."""
    every = f" (1 call in {s.checkpoint_every})" if (s.checkpoint_every or 1) > 1 else ""
    words = [f"checkpointing {' and '.join(s.checkpoint)}{every}"] if s.checkpoint else []
    if s.accumulate and s.accumulate > 1:
        words.append(f"accumulating {s.accumulate} micro-batches per optimizer step")
    if s.strategy == "ddp":  # one GPU's figures are the same on any number of them
        words.append(f"DDP on {s.world_size} GPUs (per GPU)" if s.world_size > 1 else "DDP (per GPU)")
    elif s.strategy == "fsdp":
        units = f" sharding {' and '.join(s.shard_unit)}" if s.shard_unit else ""
        policy = (f", parameters in {s.param_dtype or 'float32'}, gradients reduced in "
                  f"{s.reduce_dtype or s.param_dtype or 'float32'}" if s.param_dtype or s.reduce_dtype else "")
        offload = f", CPU offload ({s.offload})" if s.offload not in (None, "off") else ""
        raf = s.reshard_after_forward
        kept = ("" if raf is None or raf is True
                else ", units kept gathered from forward to backward" if raf is False or raf == 1
                else "" if raf == s.world_size else f", units resharded to {raf} ranks after forward")
        words.append(f"FSDP on {s.world_size} GPUs{units}{policy}{kept}{offload} (per GPU)")
    return "".join(f", {w}" for w in words)


def diagnostic_lines(analysis: Analysis) -> list[str]:
    if not analysis.diagnostics:
        return []
    return ["\n".join(f"line {d.line}:{d.col + 1} {d.code} {d.message}" for d in analysis.diagnostics)]
