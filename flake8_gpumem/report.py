"""Rendering analysis results: a table for people, JSON for tools, Markdown for CI summaries, HTML
(pictures/html.py) for CI artifacts."""
from __future__ import annotations

import json

from .analysis import Analysis, ModelReport
from .summary import diagnostic_lines, heading, rows, totals


def to_json(analysis: Analysis) -> str:
    return json.dumps({
        "models": [_model_json(m) for m in analysis.models],
        "diagnostics": [{"code": d.code, "line": d.line, "col": d.col + 1, "message": d.message}
                        for d in analysis.diagnostics],
    }, indent=2)


def _model_json(m: ModelReport) -> dict:
    return {
        "name": m.name, "file": m.file, "line": m.line, "input_shape": _listed(m.input_shape), "params": m.params,
        "trainable_params": m.trainable_params,
        "layers": [{"name": l.name, "type": l.type, "module": l.module, "line": l.line,
                    "output_shape": list(l.output_shape) if l.output_shape is not None else None,
                    "params": l.params, "trainable": l.trainable_params > 0 if l.params else None,
                    "activation_bytes": l.activation_bytes, "saved_bytes": l.saved_bytes}
                   for l in m.layers],
        "memory": {"weights": m.memory.weights, "gradients": m.memory.gradients, "optimizer": m.memory.optimizer,
                   "activations": m.memory.activations, "peak": m.memory.peak, "reserve": m.memory.reserve,
                   # under CPU offload only: what one rank holds in host memory, and how much of it is pinned
                   **({"host": m.memory.host, "host_pinned": m.memory.pinned} if m.memory.host else {})},
        "budget": m.budget, "fits": m.fits, "max_batch_size": m.max_batch_size,
    }


def _listed(value):
    """A shape, or a tuple of shapes, as JSON lists."""
    return [_listed(v) for v in value] if isinstance(value, tuple) else value


def to_table(analysis: Analysis) -> str:
    parts = []
    for m in analysis.models:
        table = rows(m)
        widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
        lines = [heading(m), ""]
        for i, r in enumerate(table):
            cells = [c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))]
            lines.append("  ".join(cells).rstrip())
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.append("")
        lines += [f"{k:<12} {v}" for k, v in totals(m)]
        parts.append("\n".join(lines))
    parts += diagnostic_lines(analysis)
    return "\n\n".join(parts) + "\n"


def to_markdown(analysis: Analysis) -> str:
    """Totals first, the pictures the CLI wrote, then the per-layer table folded (GitHub renders
    Markdown inside <details> when blank lines surround it)."""
    parts = []
    for m in analysis.models:
        table = rows(m)
        lines = [f"### {heading(m)}", ""]
        if "timeline" in m.pictures:
            lines += [f"![Memory during one training step of {m.name}]({m.pictures['timeline']})", ""]
        if "snapshot" in m.pictures:
            lines += [f"Memory snapshot: `{m.pictures['snapshot']}` (drop it on https://pytorch.org/memory_viz)", ""]
        lines += ["| total | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in totals(m)]
        lines += ["", f"<details><summary>Per-layer table ({len(table) - 1} rows)</summary>", "",
                  "| " + " | ".join(table[0]) + " |",
                  "|" + "|".join(["---", "---"] + ["---:"] * (len(table[0]) - 2)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in table[1:]]
        lines += ["", "</details>"]
        parts.append("\n".join(lines))
    diags = diagnostic_lines(analysis)
    if diags:
        parts.append("\n".join(f"- `{d}`" for d in diags[0].splitlines()))
    return "\n\n".join(parts) + "\n"


def to_html(analysis: Analysis) -> str:
    from .pictures.html import page  # the pictures only when asked for

    return page(analysis)


RENDERERS = {"table": to_table, "json": to_json, "markdown": to_markdown, "html": to_html}
