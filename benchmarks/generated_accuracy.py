"""Accuracy of the training-step estimate on seeded generated models (tests/generated_models.py).

For each seed, a model of one of five families (tests/generated_models.py) drawn at random is estimated and measured
(PyTorch's MemTracker, one steady-state CPU step) in float32 and under AMP bf16.
Prints the distribution of the signed error, overall and per family, and every case
off by more than 1%.

    python benchmarks/generated_accuracy.py [--seeds 600]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

import generated_models  # noqa: E402
import torch_oracle  # noqa: E402


def summary(label: str, errors: list) -> str:
    errors = sorted(abs(e) for e in errors)
    n = len(errors)
    return (f"{label:10} cases {n:5}   median |error| {errors[n // 2]:.2%}   p95 {errors[int(n * 0.95)]:.2%}   "
            f"worst {errors[-1]:.2%}   within 1%: {sum(e <= 0.01 for e in errors)}/{n}   "
            f"within 3%: {sum(e <= 0.03 for e in errors)}/{n}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=600)
    args = parser.parse_args()
    start = time.perf_counter()
    outcomes, refused = [], 0
    for seed in range(args.seeds):
        for dtype in ("float32", "amp-bf16"):
            try:
                outcome = generated_models.run(seed, dtype)
            except torch_oracle.OracleRefused:
                refused += 1
                continue
            outcomes.append(outcome)
            if abs(outcome.error) > 0.01:
                print(f"seed {seed:4} {outcome.model.family:8} {dtype:8} {outcome.optimizer:12} "
                      f"estimate {outcome.estimate:>12,} measured {outcome.measured:>12,} {outcome.error:+.2%}  "
                      f"{outcome.phase}")
        if seed % 50 == 49:
            print(f"... {seed + 1} seeds, {time.perf_counter() - start:.0f} s", file=sys.stderr)
    print()
    print(f"CPU {torch_oracle.cpu_capability()}: {refused} case(s) PyTorch cannot run here")
    print(summary("all", [o.error for o in outcomes]))
    for family in ("cnn", "mlp", "sequence", "decoder", "conv1d"):
        print(summary(family, [o.error for o in outcomes if o.model.family == family]))
    for dtype in ("float32", "amp-bf16"):
        print(summary(dtype, [o.error for o in outcomes if o.dtype == dtype]))


if __name__ == "__main__":
    main()
