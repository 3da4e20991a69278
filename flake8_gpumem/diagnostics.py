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


def budget_check(report, memory_with) -> tuple[str, str] | None:
    """(code, message) when the model's footprint is over the budget or its warn fraction.

    `memory_with(settings)` re-runs the model with other settings (the set-ups the advice tries)."""
    s, mem = report.settings, report.memory

    def peak_with(settings) -> int:
        found = memory_with(settings)
        return found.peak + found.reserve

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
        if s.strategy == "fsdp" and s.dtype.startswith("amp"):
            hints.append("under FSDP, autocast keeps a half-precision copy of every gathered weight until forward "
                         "ends; FSDP's MixedPrecisionPolicy casts them once per gather instead")
        fixes = _fixes(report, peak_with, memory_with)
        if fixes:
            hints.append("fits " + ", or ".join(f"{how} ({human(peak)})" for how, peak in fixes))
        elif s.dtype == "float32" and not s.param_dtype:
            hints.append(f"amp-bf16 would need {human(peak_with(replace(s, dtype='amp-bf16')))}")
        return ("GPM100", f"{what}, over the {human(s.budget)} budget; biggest: {biggest} "
                          f"{human(parts[biggest])}{where}; {'; '.join(hints)}")
    return ("GPM101", f"{what}, {need / s.budget:.0%} of the {human(s.budget)} budget (warn above "
                      f"{s.warn_fraction:.0%}); biggest: {biggest} {human(parts[biggest])}{where}")


POLICY = {"dtype": "float32", "param_dtype": "bfloat16", "reduce_dtype": "float32"}  # torchtitan's
POLICY_WORDS = "--param-dtype bfloat16 --reduce-dtype float32"
OFFLOAD_WORDS = "CPU offload"  # FSDP2's CPUOffloadPolicy(), pinned: --offload


def _policy_fits(s) -> bool:
    """Whether FSDP's mixed-precision policy is a change to try: none set, and bf16 or no AMP."""
    return not s.param_dtype and s.dtype in ("float32", "amp-bf16")


def _fixes(report, peak_with, memory_with) -> list[tuple[str, int]]:
    """What would make the step fit, each simulated: one change (AMP, or under FSDP its
    mixed-precision policy; checkpointing the model's block; the same samples in micro-batches),
    then FSDP over the fewest GPUs; (how, footprint) for those that fit."""
    s = report.settings
    block = next(iter(report.blocks), None)
    tries = []
    if s.strategy == "fsdp" and _policy_fits(s):
        tries.append((f"with {POLICY_WORDS}", replace(s, **POLICY)))
    elif s.dtype == "float32" and not s.param_dtype:
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
    if block and s.strategy != "ddp":
        fits += _fewest_gpus(s, block, peak_with, memory_with, enough=bool(fits))
    return fits


def _fewest_gpus(s, block: str, peak_with, memory_with, enough: bool) -> list[tuple[str, int]]:
    """FSDP sharding `block`, then with the mixed-precision policy, then checkpointing `block` too,
    then offloading to the CPU (its host memory said): for each, the fewest GPUs (a power of two up to
    max_gpus) on which it fits, listed where it needs fewer than those before it. `enough`: the first
    that fits will do."""
    sharded = {"strategy": "fsdp", "shard_unit": s.shard_unit if block in s.shard_unit else s.shard_unit + (block,)}
    rungs = [([f"with FSDP sharding {block}"], sharded)]
    if _policy_fits(s):
        rungs.append((rungs[-1][0] + [POLICY_WORDS], {**rungs[-1][1], **POLICY}))
    if block not in s.checkpoint:
        rungs.append((rungs[-1][0] + [f"activation checkpointing on {block}"],
                      {**rungs[-1][1], "checkpoint": s.checkpoint + (block,)}))
    if s.offload in (None, "off"):
        rungs.append((rungs[-1][0] + [OFFLOAD_WORDS], {**rungs[-1][1], "offload": "pinned"}))
    ranks = s.reshard_after_forward  # a number of ranks FSDP2 reshards to divides the world size
    worlds = [w for w in (2 ** n for n in range(1, s.max_gpus.bit_length()))
              if ranks is None or isinstance(ranks, bool) or w % ranks == 0]
    found, fewest = [], len(worlds)
    for words, change in rungs:
        # the peak falls as the world grows: the fewest GPUs that fit, by bisection
        lo, hi, peaks = 0, fewest, {}
        while lo < hi:
            mid = (lo + hi) // 2
            peaks[mid] = peak_with(replace(s, world_size=worlds[mid], **change))
            lo, hi = (lo, mid) if peaks[mid] <= s.budget else (mid + 1, hi)
        if lo < fewest:
            fewest = lo
            chosen = replace(s, world_size=worlds[lo], **change)
            if OFFLOAD_WORDS in words:
                words = [*words[:-1], f"{OFFLOAD_WORDS} (--offload: {human(memory_with(chosen).host)} of host memory per rank)"]
            found.append((f"on {worlds[lo]} GPUs {', '.join(words)}", peaks[lo]))
            if enough:
                break
    return found
