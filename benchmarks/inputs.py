"""Inputs as real models take them: the estimate against PyTorch on fixtures/inputs/.

Prints, for each model there (a denoiser's per-sample timestep and label, a sequence-first LSTM
with and without a forward argument, a sequence-first transformer encoder, a distiller taking
**kwargs, a classifier returning its own loss given labels=) with Adam and SGD in float32: the
estimated peak, the peak MemTracker measures on one steady-state CPU training step, and the
difference in bytes and percent.

    python benchmarks/inputs.py
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

import input_cases as cases  # noqa: E402


def main() -> None:
    print("| model | inputs | optimizer | gpumem (B) | MemTracker (B) | difference |")
    print("|---|---|---|---:|---:|---:|")
    for case, optimizer in cases.STEPS:
        est, truth = cases.analysed(case, optimizer).memory.peak, cases.measured(case, optimizer).peak
        inputs = ", ".join(f"{n + '=' if n else ''}{'x'.join(map(str, s))} {d}"
                           for n, s, d in zip(case.names, case.shapes, case.dtypes))
        print(f"| {case.id} | {inputs} | {optimizer} | {est:,} | {truth:,} | {est - truth:+,} B "
              f"({(est - truth) / truth:+.3%}) |")


if __name__ == "__main__":
    main()
