"""Accuracy of the training-step memory estimate against PyTorch, fixture by fixture.

Prints, for every accuracy case (tests/memory_cases.py: each fixture model with
Adam in float32, again with another optimizer under AMP bf16, some in pure
bfloat16), the estimated peak, the peak PyTorch's MemTracker measures on one
steady-state CPU training step, the signed error, and the median and worst.

    python benchmarks/accuracy.py [--markdown]

With a CUDA GPU present it also measures `torch.cuda.max_memory_allocated` on
real CUDA steps of the float32 cases and compares the CUDA-kernel estimate.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

import memory_cases  # noqa: E402
import torch_oracle  # noqa: E402


def cuda_rows(cases) -> list[str]:
    import torch

    from flake8_gpumem.analysis import analyse_source
    from flake8_gpumem.config import Settings

    rows = []
    for case in cases:
        if case.dtype != "float32":
            continue
        src = case.model.path.read_text()
        model = torch_oracle.instantiate(torch_oracle.load(src), case.model.name).cuda().train()
        host = torch_oracle.make_input(case.model.full_shape, case.model.dtype)
        opt = torch_oracle.OPTIMIZERS[case.optimizer](model.parameters())

        def step():
            opt.zero_grad(set_to_none=True)
            out = model(host.cuda())
            while isinstance(out, (tuple, list)):
                out = out[0]
            out.sum().backward()
            opt.step()

        step()
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        measured = torch.cuda.max_memory_allocated()
        result = analyse_source(src, str(case.model.path), Settings(optimizer=case.optimizer, device="cuda"),
                                model=case.model.name)
        est = next(m for m in result.models if m.name == case.model.name).memory
        err = (est.peak + est.cuda_rounding - measured) / measured
        rows.append(f"| {case.id} | {est.peak + est.cuda_rounding:,} | {measured:,} | {err:+.2%} | "
                    f"(steady state before the step: {base:,}) |")
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--markdown", action="store_true", help="print a Markdown table (for the README)")
    args = p.parse_args()
    cases = memory_cases.cases()
    errors = []
    if args.markdown:
        print("| model [optimizer, dtype] | estimate (B) | measured (B) | error | peak at |")
        print("|---|---:|---:|---:|---|")
    else:
        print(f"{'model [optimizer, dtype]':58} {'estimate':>12} {'measured':>12} {'error':>8}  peak at")
    refused = []
    for case in cases:
        try:
            outcome = memory_cases.run(case)
        except torch_oracle.OracleRefused as exc:
            refused.append(f"{case.id}: {exc}")
            continue
        errors.append(abs(outcome.error))
        est, truth = outcome.estimate, outcome.measured
        if args.markdown:
            print(f"| {case.id} | {est.peak:,} | {truth.peak:,} | {outcome.error:+.2%} | {est.peak_phase} |")
        else:
            print(f"{case.id:58} {est.peak:>12,} {truth.peak:>12,} {outcome.error:>+8.2%}  {est.peak_phase}")
    print()
    print(f"cases: {len(errors)}   median |error|: {memory_cases.median(errors):.2%}   "
          f"worst |error|: {max(errors):.2%}   within 3%: {sum(e <= 0.03 for e in errors)}/{len(errors)}")
    print(f"CPU {torch_oracle.cpu_capability()}: {len(refused)} case(s) PyTorch cannot run here")
    print("\n".join(refused))
    try:
        import torch
        if torch.cuda.is_available():
            print("\nCUDA: estimate (device=cuda, + 512-byte block rounding of parameters) vs "
                  "torch.cuda.max_memory_allocated")
            print("\n".join(cuda_rows(cases)))
        else:
            print("\nno CUDA device here: CUDA figures not measured")
    except ImportError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
