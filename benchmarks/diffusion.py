"""The diffusion training step: the estimate against PyTorch on fixtures/diffusion/.

Prints, for each case of tests/diffusion_cases.py (a DDPM UNet, the step as a module drawing its own
timestep, a DiT, an improved-diffusion UNet with and without its own checkpoint helper; then larger
sizes and AMP bf16), one noise-prediction step with Adam: the estimated peak, the peak MemTracker
measures on one steady-state CPU training step, and the difference in MiB and percent.

    python benchmarks/diffusion.py
    python benchmarks/diffusion.py --example 2   # docs/examples.md: train_ddpm.py at batch 2, with its EMA
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

import diffusion_cases as cases  # noqa: E402

MIB = 2 ** 20


def example(batch: int) -> None:
    """fixtures/diffusion/train_ddpm.py (DDPM's 64x64 UNet, an EMA copy, Adam) at `batch`, float32, CPU:
    gpumem's figures and MemTracker's, the copy's weights counted by both."""
    import torch
    import torch_oracle
    from test_diffusion import _Beside

    from flake8_gpumem.analysis import analyse_source
    from flake8_gpumem.config import Settings

    path = cases.DIFFUSION / "train_ddpm.py"
    sys.path.insert(0, str(cases.DIFFUSION))
    namespace = torch_oracle.load(path.read_text())
    report = analyse_source(path.read_text(), str(path), Settings(batch_size=batch, device="cpu"), model="model")
    est = report.models[0].memory
    with torch_oracle.no_cyclic_collection():
        truth = torch_oracle.measure_step(
            _Beside(namespace["model"], namespace["ema"]), [(batch, 3, 64, 64), (batch,)], ["float32", "int64"],
            lambda m: torch.optim.Adam(m.model.parameters(), foreach=True), loss="mse")
    print("| | gpumem (MiB) | MemTracker (MiB) |")
    print("|---|---:|---:|")
    for what, ours, theirs in (("weights (model + EMA)", est.weights, truth.weights),
                               ("gradients", est.gradients, truth.gradients),
                               ("optimizer", est.optimizer, truth.optimizer_state), ("peak", est.peak, truth.peak)):
        print(f"| {what} | {ours / MIB:.2f} | {theirs / MIB:.2f} |")
    print(f"peak difference: {est.peak - truth.peak:+,} B ({(est.peak - truth.peak) / truth.peak:+.2%})")


def main() -> None:
    if sys.argv[1:2] == ["--example"]:
        return example(int(sys.argv[2]))
    print("| model | inputs | dtype | gpumem (MiB) | MemTracker (MiB) | difference |")
    print("|---|---|---|---:|---:|---:|")
    for case in cases.CASES + cases.MORE:
        est, truth = cases.analysed(case).memory.peak, cases.measured(case).peak
        inputs = ", ".join("x".join(map(str, s)) + f" {d}" for s, d in zip(case.full, case.dtypes))
        print(f"| `{case.model}` | {inputs} | {case.dtype} | {est / MIB:.3f} | {truth / MIB:.3f} | "
              f"{est - truth:+,} B ({(est - truth) / truth:+.2%}) |")


if __name__ == "__main__":
    main()
