"""diffusers' models read from its installed source, estimated and measured: one row per configuration.

    python benchmarks/diffusers_models.py               # float32 and amp-bf16, batch 2
    python benchmarks/diffusers_models.py --batch 4 --dtypes float32

Each row is a model built by a diffusers constructor, read by gpumem (never imported by it), with
the inputs of one noise-prediction step: the noisy sample, a per-sample int64 timestep, and the
conditioning the model takes (`encoder_hidden_states` of 77 tokens, or DiT's class label); the loss
is MSE against noise of the output's shape. The truth is tests/torch_oracle.measure_step
(MemTracker's peak of one steady-state CPU step, Adam) on the model diffusers itself builds.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import torchvision_oracle  # noqa: E402,F401  (stubs torchvision registrations that diffusers' imports reach)
import torch_oracle  # noqa: E402

from flake8_gpumem.analysis import analyse_source  # noqa: E402
from flake8_gpumem.config import Named, Settings  # noqa: E402

IMAGE = [(None, (3, 32, 32), "float32"), (None, (), "int64")]
LATENT = [(None, (4, 16, 16), "float32"), (None, (), "int64"), ("encoder_hidden_states", (77, 32), "float32")]
LABELLED = [(None, (4, 32, 32), "float32"), ("timestep", (), "int64"), ("class_labels", (), "int64")]
MODELS = (  # (constructor call, forward's inputs: name or None, per-sample shape, dtype)
    ('UNet2DModel(sample_size=32, block_out_channels=(32, 64), down_block_types=("DownBlock2D", "AttnDownBlock2D"), '
     'up_block_types=("AttnUpBlock2D", "UpBlock2D"), layers_per_block=1, norm_num_groups=8)', IMAGE),
    ('UNet2DModel(sample_size=32, block_out_channels=(32, 64, 64), down_block_types=("DownBlock2D", '
     '"AttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), '
     'layers_per_block=2, norm_num_groups=8)', IMAGE),
    ('UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64), '
     'down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", '
     '"CrossAttnUpBlock2D"), layers_per_block=1, norm_num_groups=8, cross_attention_dim=32, attention_head_dim=8)',
     LATENT),
    ('UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64, 64), '
     'down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=('
     '"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=2, norm_num_groups=8, '
     'cross_attention_dim=32, attention_head_dim=8)', LATENT),
    ("DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=16, in_channels=4, num_layers=4, "
     "sample_size=32, patch_size=2, num_embeds_ada_norm=10)", LABELLED),
)


def measure(build: str, inputs: list, batch: int, dtype: str) -> tuple:
    """(estimated peak, measured peak, parameters exact, leaf shapes exact, seconds to estimate)."""
    import diffusers

    head = build.partition("(")[0]
    source = f"from diffusers import {head}\n\nmodel = {build}\n"
    names = [n for n, _, _ in inputs]
    settings = Settings(input_shape=tuple(Named(n, s) if n else s for n, s, _ in inputs),
                        input_dtype=tuple(d for _, _, d in inputs), batch_size=batch, dtype=dtype, device="cpu",
                        loss="mse")
    seconds = -time.perf_counter()
    result = analyse_source(source, "train.py", settings, model="model")
    seconds += time.perf_counter()
    report = next(iter(result.models), None)
    if report is None:
        raise SystemExit(f"{head}: not analysed: {result.skipped or result.error}")
    torch_oracle.torch.manual_seed(0)
    model = eval(build, {head: getattr(diffusers, head)})
    xs = [torch_oracle.make_input((batch, *s), d) for _, s, d in inputs]
    truth = torch_oracle.profile(model, [x for n, x in zip(names, xs) if n is None],
                                 {n: x for n, x in zip(names, xs) if n is not None})
    leaves = [(r.name, r.type, r.output_shape) for r in report.layers if r.module] == [
        (c.name, c.type, c.output_shape) for c in truth.calls]
    measured = torch_oracle.measure_step(model, [(batch, *s) for _, s, _ in inputs], [d for _, _, d in inputs],
                                         report.settings.optimizer, dtype, loss="mse", names=names)
    return report.memory.peak, measured.peak, report.params == truth.params, leaves, seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--dtypes", default="float32,amp-bf16", help="comma-separated step dtypes")
    ns = p.parse_args()
    print(f"{'model':22} {'depth':>6} {'dtype':9} {'params':>6} {'leaves':>6} {'estimate MiB':>12} "
          f"{'measured MiB':>12} {'error':>8}  estimate took")
    errors = []
    for build, inputs in MODELS:
        depth = build.count("Block2D") // 2 if "UNet" in build else build.split("num_layers=")[1].split(",")[0]
        for dtype in ns.dtypes.split(","):
            est, truth, params, leaves, seconds = measure(build, inputs, ns.batch, dtype)
            errors.append(abs(est - truth) / truth)
            print(f"{build.partition('(')[0]:22} {depth:>6} {dtype:9} {'exact' if params else 'DIFFER':>6} "
                  f"{'exact' if leaves else 'DIFFER':>6} {est / 2 ** 20:>12.3f} {truth / 2 ** 20:>12.3f} "
                  f"{(est - truth) / truth:>+8.2%}  {seconds:.1f} s", flush=True)
    print(f"\n{len(errors)} cases: median |error| {statistics.median(errors):.2%}, worst {max(errors):.2%}")


if __name__ == "__main__":
    main()
