"""gpumem on torchvision's classification zoo, each factory read from its own source file.

Prints, for every factory of torchvision.models (batch 2, 3x224x224, inception_v3 3x299x299,
Adam, float32, CPU kernels), torch's parameter count, gpumem's (or why gpumem did not analyse
it), whether every leaf module call's output shape matches torch's, and how long gpumem took;
then how many factories were analysed, how many have exact parameters and exact shapes.

    python benchmarks/torchvision_zoo.py [--peak N | --peak-models resnet18,swin_t,...]

With --peak N, the first N factories gpumem analyses exactly (with --peak-models, the named
ones) also get one steady-state Adam training step measured by PyTorch's MemTracker, compared
with gpumem's estimated peak (signed error in bytes and relative, per factory, then the median
and worst |error|).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

import torch_oracle  # noqa: E402
import torchvision_oracle  # noqa: E402
from flake8_gpumem.analysis import analyse_source  # noqa: E402
from flake8_gpumem.config import Settings  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peak", type=int, default=0, metavar="N",
                   help="measure the training-step peak of the first N exactly analysed factories")
    p.add_argument("--peak-models", default="", metavar="NAMES",
                   help="comma-separated factories to measure the peak of (instead of the first N)")
    args = p.parse_args()
    chosen = [n for n in args.peak_models.split(",") if n]
    print(f"{'factory':20} {'torch params':>13} {'gpumem params':>13} {'shapes':>6} {'time':>7}")
    analysed = exact_params = exact_shapes = 0
    exact = []  # (name, gpumem's estimated peak) of factories with exact params and shapes
    for name in torchvision_oracle.FACTORIES:
        shape = torchvision_oracle.input_shape(name)
        path = torchvision_oracle.source_file(name)
        settings = Settings(optimizer="adam", dtype="float32", device="cpu", batch_size=2, input_shape=shape)
        start = time.perf_counter()
        result = analyse_source(path.read_text(), str(path), settings, model=name)
        took = time.perf_counter() - start
        truth = torchvision_oracle.profile(name)
        if len(result.models) != 1:
            why = result.error or "; ".join(reason for _, reason in result.skipped) or "no model of that name"
            print(f"{name:20} {truth.params:>13,} {'-':>13} {'-':>6} {took:>6.2f}s  {why}")
            continue
        report = result.models[0]
        ours = [(r.name, r.type, tuple(r.output_shape)) for r in report.layers if r.module]
        shapes_ok = ours == [(c.name, c.type, c.output_shape) for c in truth.calls]
        analysed += 1
        exact_params += report.params == truth.params
        exact_shapes += shapes_ok
        if shapes_ok and report.params == truth.params:
            exact.append((name, report.memory.peak))
        print(f"{name:20} {truth.params:>13,} {report.params:>13,} {'yes' if shapes_ok else 'NO':>6} {took:>6.2f}s")
    n = len(torchvision_oracle.FACTORIES)
    print(f"\nanalysed: {analysed}/{n}   exact params: {exact_params}/{n}   exact shapes: {exact_shapes}/{n}")
    if chosen:
        exact = [(name, peak) for name, peak in exact if name in chosen]
        args.peak = len(exact)
    if args.peak:
        print(f"\n{'factory':20} {'estimate':>15} {'measured':>15} {'est-meas':>10} {'error':>8}")
        errors = []
        for name, estimate in exact[:args.peak]:
            model, full = torchvision_oracle.build(name), (2,) + torchvision_oracle.input_shape(name)
            measured = torch_oracle.measure_step(model, full, "float32", "adam", "float32").peak
            errors.append((estimate - measured) / measured)
            print(f"{name:20} {estimate:>15,} {measured:>15,} {estimate - measured:>+10,} {errors[-1]:>+8.2%}")
        if errors:
            worst = max(errors, key=abs)
            print(f"\nfactories: {len(errors)}   median |error|: {statistics.median(map(abs, errors)):.2%}   "
                  f"worst: {worst:+.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
