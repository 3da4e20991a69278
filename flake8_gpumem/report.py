"""Rendering analysis results: a table for people, JSON for tools, Markdown for CI summaries, HTML
(pictures/html.py) for CI artifacts."""
from __future__ import annotations

import json
import math

from .analysis import Analysis, ModelReport
from .diagnostics import human
from .memory import AUTOCAST, OPTIMIZER_STATE

OPTIMIZER_WORDS = {
    "sgd": "none", "sgd-momentum": "momentum_buffer", "adam": "exp_avg + exp_avg_sq + step",
    "adamw": "exp_avg + exp_avg_sq + step", "rmsprop": "square_avg + step", "adagrad": "sum + step",
}


def shape(s) -> str:
    """4x3x32x32; several inputs: 4x64, 4x64."""
    if s and isinstance(s[0], tuple):
        return ", ".join(map(shape, s))
    return "-" if s is None else "x".join(map(str, s)) or "scalar"


def to_json(analysis: Analysis) -> str:
    return json.dumps({
        "models": [_model_json(m) for m in analysis.models],
        "diagnostics": [{"code": d.code, "line": d.line, "col": d.col + 1, "message": d.message}
                        for d in analysis.diagnostics],
    }, indent=2)


def _model_json(m: ModelReport) -> dict:
    return {
        "name": m.name, "file": m.file, "line": m.line, "input_shape": _listed(m.input_shape), "params": m.params,
        "layers": [{"name": l.name, "type": l.type, "module": l.module, "line": l.line,
                    "output_shape": list(l.output_shape) if l.output_shape is not None else None,
                    "params": l.params, "activation_bytes": l.activation_bytes, "saved_bytes": l.saved_bytes}
                   for l in m.layers],
        "memory": {"weights": m.memory.weights, "gradients": m.memory.gradients, "optimizer": m.memory.optimizer,
                   "activations": m.memory.activations, "peak": m.memory.peak, "reserve": m.memory.reserve},
        "budget": m.budget, "fits": m.fits, "max_batch_size": m.max_batch_size,
    }


def _listed(value):
    """A shape, or a tuple of shapes, as JSON lists."""
    return [_listed(v) for v in value] if isinstance(value, tuple) else value


def _rows(m: ModelReport) -> list[tuple]:
    batch = m.batch
    rows = [("Layer", "Type", "Output shape", "Per sample", "Params", "Activation", "Kept for backward")]
    for l in m.layers:
        per_sample = math.prod(l.output_shape[1:]) if l.output_shape else None  # a loss is one number
        rows.append((l.name, l.type, shape(l.output_shape), f"{per_sample:,}" if batch and per_sample is not None
                     else "-",
                     f"{l.params:,}", human(l.activation_bytes), human(l.saved_bytes)))
    return rows


def _totals(m: ModelReport) -> list[tuple[str, str]]:
    s, mem = m.settings, m.memory
    states = OPTIMIZER_STATE[s.optimizer][0]
    dtype = f"{s.dtype}, computing in {AUTOCAST[s.dtype]}" if s.dtype in AUTOCAST else s.dtype
    out = [
        ("parameters", f"{m.params:,}"),
        ("weights", f"{human(mem.weights)}  (parameters and buffers, {dtype})"),
        ("gradients", f"{human(mem.gradients)}  (one per parameter)"),
        ("optimizer", f"{human(mem.optimizer)}  ({s.optimizer}: {OPTIMIZER_WORDS[s.optimizer]}"
                      f"{f', {states}x the weights' if states else ''})"),
        ("activations", f"{human(mem.activations)}  (alive when backward starts: the input batch and what "
                        "autograd keeps)"),
        ("peak", f"{human(mem.peak)}  (largest total during the step: {mem.peak_phase})"),
        ("on a GPU", f"+{human(mem.cuda_rounding)} allocator rounding of weights, gradients and optimizer state "
                     "to 512-byte blocks; + the CUDA context (~300-500 MiB), outside torch's counters"),
    ]
    if mem.reserve:
        out.append(("reserve", f"{human(mem.reserve)}  (set aside for the CUDA context etc.)"))
    if m.budget is not None:
        verdict = "fits" if m.fits else "does NOT fit"
        out.append(("budget", f"{human(m.budget)}: {verdict}; largest batch that fits: {m.max_batch_size}"))
    return out


LOSS_WORDS = {"forward": "the loss forward returns", "cross_entropy": "cross entropy of the first output",
              "mse": "mse of the first output", "sum": "sum of the first output"}


def _heading(m: ModelReport) -> str:
    s = m.settings
    dtypes = s.input_dtype if isinstance(s.input_dtype, str) else ", ".join(s.input_dtype or (s.dtype,))
    return (f"{m.name}  ({m.file}:{m.line})  input {shape(m.input_shape)} {dtypes}, batch {m.batch}, "
            f"{s.dtype}, {s.optimizer}, loss: {LOSS_WORDS.get(m.loss, m.loss)}{setup_words(s)}")


def setup_words(s) -> str:
    """The training set-up, as the heading and GPM100 name it: ', checkpointing Block, 4 micro-batches'."""
    words = [f"checkpointing {' and '.join(s.checkpoint)}"] if s.checkpoint else []
    if s.accumulate and s.accumulate > 1:
        words.append(f"accumulating {s.accumulate} micro-batches per optimizer step")
    if s.strategy == "ddp":
        words.append(f"DDP on {s.world_size} GPUs (per GPU)")
    elif s.strategy == "fsdp":
        units = f" sharding {' and '.join(s.shard_unit)}" if s.shard_unit else ""
        words.append(f"FSDP on {s.world_size} GPUs{units} (per GPU)")
    return "".join(f", {w}" for w in words)


def to_table(analysis: Analysis) -> str:
    parts = []
    for m in analysis.models:
        rows = _rows(m)
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [_heading(m), ""]
        for i, r in enumerate(rows):
            cells = [c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))]
            lines.append("  ".join(cells).rstrip())
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.append("")
        lines += [f"{k:<12} {v}" for k, v in _totals(m)]
        parts.append("\n".join(lines))
    parts += _diagnostic_lines(analysis)
    return "\n\n".join(parts) + "\n"


def to_markdown(analysis: Analysis) -> str:
    """Totals first, the pictures the CLI wrote, then the per-layer table folded (GitHub renders
    Markdown inside <details> when blank lines surround it)."""
    parts = []
    for m in analysis.models:
        rows = _rows(m)
        lines = [f"### {_heading(m)}", ""]
        if "timeline" in m.pictures:
            lines += [f"![Memory during one training step of {m.name}]({m.pictures['timeline']})", ""]
        if "snapshot" in m.pictures:
            lines += [f"Memory snapshot: `{m.pictures['snapshot']}` (drop it on https://pytorch.org/memory_viz)", ""]
        lines += ["| total | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in _totals(m)]
        lines += ["", f"<details><summary>Per-layer table ({len(rows) - 1} rows)</summary>", "",
                  "| " + " | ".join(rows[0]) + " |",
                  "|" + "|".join(["---", "---"] + ["---:"] * (len(rows[0]) - 2)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        lines += ["", "</details>"]
        parts.append("\n".join(lines))
    diags = _diagnostic_lines(analysis)
    if diags:
        parts.append("\n".join(f"- `{d}`" for d in diags[0].splitlines()))
    return "\n\n".join(parts) + "\n"


def _diagnostic_lines(analysis: Analysis) -> list[str]:
    if not analysis.diagnostics:
        return []
    return ["\n".join(f"line {d.line}:{d.col + 1} {d.code} {d.message}" for d in analysis.diagnostics)]


def to_html(analysis: Analysis) -> str:
    from .pictures.html import page  # the pictures only when asked for

    return page(analysis)


RENDERERS = {"table": to_table, "json": to_json, "markdown": to_markdown, "html": to_html}
