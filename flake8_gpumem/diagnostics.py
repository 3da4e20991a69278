"""The GPM codes, and the budget checks (GPM100/GPM101) on an analysed model.

The shape checks (GPM200, GPM201, GPM300) come from the catalogue's rules as the
model is read; GPM900 from whatever could not be resolved.
"""
from __future__ import annotations

from dataclasses import replace

CODES = {
    "GPM001": "the [tool.gpumem] configuration or a gpumem option cannot be used",
    "GPM100": "the training footprint is over the GPU budget",
    "GPM101": "the training footprint is above the warn fraction of the budget",
    "GPM200": "a pooling or strided window does not tile its input (rows/columns dropped)",
    "GPM201": "a spatial or temporal size collapses to zero or less",
    "GPM300": "shapes of connected layers do not fit",
    "GPM900": "a model was found but could not be fully analysed",
}


def human(n: int) -> str:
    """Bytes in binary units: 512 B, 19.5 KiB, 1.21 GiB."""
    for unit, size in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}" if abs(n) < 10 * size else f"{n / size:.1f} {unit}"
    return f"{n} B"


def warns(mem, s) -> bool:
    """Whether a footprint is above the budget's warn fraction: a GPM100 or GPM101 message."""
    return s.budget is not None and mem is not None and mem.peak + mem.reserve > s.budget * s.warn_fraction


def budget_check(report, peak_with) -> tuple[str, str] | None:
    """(code, message) when the model's footprint is over the budget or its warn fraction.

    `peak_with(settings)` re-runs the model with other settings (for the AMP hint)."""
    s, mem = report.settings, report.memory
    if not warns(mem, s):
        return None
    need = mem.peak + mem.reserve
    parts = {"weights": mem.weights, "gradients": mem.gradients, "optimizer state": mem.optimizer,
             "activations": mem.activations}
    biggest = max(parts, key=parts.get)
    kept = max(report.layers, key=lambda l: l.saved_bytes + l.activation_bytes, default=None)
    where = f", most at {kept.name} ({kept.type})" if biggest == "activations" and kept is not None else ""
    reserve = f" + {human(mem.reserve)} reserve" if mem.reserve else ""
    what = (f"{report.name} needs {human(mem.peak)}{reserve} to train (batch {report.batch}, "
            f"{s.dtype}, {s.optimizer}; peak in {mem.peak_phase})")
    if need > s.budget:
        hints = [f"largest batch that fits: {report.max_batch_size}" if report.max_batch_size
                 else "even batch 1 does not fit"]
        fixes = _fixes(report, peak_with)
        if fixes:
            hints.append("fits " + ", or ".join(f"{how} ({human(peak)})" for how, peak in fixes))
        elif s.dtype == "float32":
            hints.append(f"amp-bf16 would need {human(peak_with(replace(s, dtype='amp-bf16')))}")
        return ("GPM100", f"{what}, over the {human(s.budget)} budget; biggest: {biggest} "
                          f"{human(parts[biggest])}{where}; {'; '.join(hints)}")
    return ("GPM101", f"{what}, {need / s.budget:.0%} of the {human(s.budget)} budget (warn above "
                      f"{s.warn_fraction:.0%}); biggest: {biggest} {human(parts[biggest])}{where}")


def _fixes(report, peak_with) -> list[tuple[str, int]]:
    """What would make the step fit, each simulated: AMP, checkpointing the model's block, the same
    samples in micro-batches, FSDP over the fewest GPUs; (how, footprint) for those that fit."""
    s = report.settings
    block = next(iter(report.blocks), None)
    tries = []
    if s.dtype == "float32":
        tries.append(("with --dtype amp-bf16", replace(s, dtype="amp-bf16")))
    if block and block not in s.checkpoint:
        tries.append((f"with activation checkpointing on {block}", replace(s, checkpoint=s.checkpoint + (block,))))
    k = next((k for k in (2, 4, 8, 16) if s.batch_size % k == 0 and s.batch_size > k), None)
    if k:
        tries.append((f"with --accumulate {k * s.accumulate} at batch {s.batch_size // k}",
                      replace(s, batch_size=s.batch_size // k, accumulate=k * s.accumulate)))
    fits = []
    for how, settings in tries:
        peak = peak_with(settings)
        if peak <= s.budget:
            fits.append((how, peak))
    if block and s.strategy == "single":
        for world in (2, 4, 8):
            peak = peak_with(replace(s, strategy="fsdp", world_size=world, shard_unit=(block,)))
            if peak <= s.budget:
                fits.append((f"on {world} GPUs with FSDP sharding {block}", peak))
                break
    return fits
