"""Language models and ViTs as they are published, estimated and measured: one row per model and dtype.

    python benchmarks/language_models.py                 # the LM/ViT fixtures, float32 and amp-bf16
    python benchmarks/language_models.py --gpt2 4 1024   # also GPT-2 small (124M), batch 4 x 1024 tokens

The fixtures are fixtures/gpt.py, char_lms.py, llama.py and vit.py, each with the input its
`# gpumem:` comment gives; the truth is tests/torch_oracle.measure_step (MemTracker's peak of
one steady-state CPU step, AdamW as the GPT file builds, Adam elsewhere). GPT-2 small at a real
batch needs the memory it reports (4 x 1024 tokens: about 7 GiB of this machine's RAM).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import torch_oracle  # noqa: E402
from fixture_models import discover  # noqa: E402

from flake8_gpumem.analysis import analyse_source  # noqa: E402
from flake8_gpumem.config import Settings  # noqa: E402

FILES = ("gpt.py", "char_lms.py", "llama.py", "vit.py")
GPT2 = "GPT(GPTConfig())"  # fixtures/gpt.py's defaults are GPT-2 small's


def measure(path: Path, expr: str, shapes: list, input_dtype: str, batch: int, dtype: str) -> tuple:
    """(estimated peak, measured peak, params equal, seconds to estimate)."""
    source = path.read_text()
    settings = Settings(input_shape=tuple(shapes) if len(shapes) > 1 else shapes[0], input_dtype=input_dtype,
                        batch_size=batch, dtype=dtype, device="cpu")
    start = time.perf_counter()
    result = analyse_source(source, f"fixtures/{path.name}", settings, model=expr)
    seconds = time.perf_counter() - start
    if not result.models:
        raise SystemExit(f"{path.name}::{expr}: not analysed: {result.skipped}")
    report = result.models[0]
    torch_oracle.torch.manual_seed(0)
    model = eval(expr, torch_oracle.load(source))
    model = model() if isinstance(model, type) else model
    full = [(batch,) + tuple(s) for s in shapes]
    measured = torch_oracle.measure_step(model, full, input_dtype, report.settings.optimizer, dtype)
    params = sum(p.numel() for p in model.parameters())
    return report.memory.peak, measured.peak, report.params == params, seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpt2", nargs=2, type=int, metavar=("BATCH", "TOKENS"), help="also GPT-2 small at this size")
    ns = p.parse_args()
    rows = []
    for fx in discover():
        if fx.path.name not in FILES:
            continue
        for dtype in ("float32", "amp-bf16"):
            rows.append((fx.id, dtype, *measure(fx.path, fx.name, fx.inputs, fx.dtype, fx.batch_size, dtype)))
    if ns.gpt2:
        batch, tokens = ns.gpt2
        for dtype in ("float32", "amp-bf16"):
            rows.append((f"GPT-2 small {batch}x{tokens}", dtype,
                         *measure(ROOT / "fixtures" / "gpt.py", GPT2, [(tokens,), (tokens,)], "int64", batch, dtype)))
    print(f"{'model':32} {'dtype':9} {'estimate':>14} {'measured':>14} {'error':>8}  params  estimate took")
    errors = []
    for name, dtype, est, truth, same, seconds in rows:
        error = (est - truth) / truth
        errors.append(abs(error))
        print(f"{name:32} {dtype:9} {est:>14,} {truth:>14,} {error:>+8.2%}  {'exact' if same else 'DIFFER'}"
              f"  {seconds * 1000:.0f} ms")
    print(f"\n{len(rows)} cases: median |error| {statistics.median(errors):.2%}, worst {max(errors):.2%}")


if __name__ == "__main__":
    main()
