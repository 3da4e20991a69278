"""What does not train: the estimate against PyTorch on fixtures/finetuning/.

Prints, for each model there (fine-tuning torchvision models, frozen backbones, no_grad, detach,
teachers, momentum encoders) with Adam in float32 and with SGD momentum under AMP bf16: the
parameters and those that train (PyTorch's counts), the estimated peak, the peak MemTracker
measures on one steady-state CPU training step, the signed error, and the median and worst.

    python benchmarks/finetuning.py [--example]

--example: the worked example of docs/examples.md instead, the tutorial's feature extraction
(model_ft) and the whole network (model_all) at 3x224x224, batch 32, SGD with momentum.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

import finetuning_cases as cases  # noqa: E402


def example() -> None:
    print("| model | gpumem | MemTracker | error |")
    print("|---|---:|---:|---:|")
    for fx in (m for m in cases.MODELS if m.name in ("model_ft", "model_all")):
        fx = dataclasses.replace(fx, input_shape=(3, 224, 224), batch_size=32)
        est = cases.report(fx, "sgd-momentum", "float32").memory.peak
        truth = cases.measured(fx, "sgd-momentum", "float32").peak
        print(f"| {fx.name} | {est / 2**20:.1f} MiB | {truth / 2**20:.1f} MiB | {est / truth - 1:+.2%} |")


def main() -> None:
    print("| model | step | params | trainable | gpumem peak | MemTracker peak | error |")
    print("|---|---|---:|---:|---:|---:|---:|")
    errors = []
    for fx, optimizer, dtype in cases.STEPS:
        model, est = cases.built(fx), cases.report(fx, optimizer, dtype)
        truth = cases.measured(fx, optimizer, dtype)
        error = est.memory.peak / truth.peak - 1
        errors.append(abs(error))
        known = cases.step_id(fx, optimizer, dtype) in cases.KNOWN_GAPS
        gap = " (known: MemTracker keeps a detached graph)" if known else ""
        print(f"| {fx.id} | {optimizer}, {dtype} | {sum(p.numel() for p in model.parameters()):,} | "
              f"{sum(p.numel() for p in model.parameters() if p.requires_grad):,} | "
              f"{est.memory.peak / 2**20:.2f} MiB | {truth.peak / 2**20:.2f} MiB | {error:+.2%}{gap} |")
    errors.sort()
    print(f"\n{len(errors)} steps: median |error| {errors[len(errors) // 2]:.2%}, worst {errors[-1]:.2%}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--example", action="store_true", help="the worked example of docs/examples.md")
    example() if p.parse_args().example else main()
