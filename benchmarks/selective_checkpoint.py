"""Selective activation checkpointing and every-n-th-block checkpointing, estimated and measured.

    python benchmarks/selective_checkpoint.py

The residual MLP and the small GPT (4 blocks) of tests/test_selective_checkpoint.py, each block or
every second one under torch.utils.checkpoint, fully or with
context_fn=partial(create_selective_checkpoint_contexts, ops): ops the matrix products (mm,
addmm) and, for the GPT, the CPU's fused attention too, or torchtitan's policy (every second mm
recomputed); the MLP also through torch.distributed's checkpoint_wrapper. One process on the CPU,
AdamW, float32; four rows again under amp-bf16 (autocast); then three GPT rows under FSDP2 (fully_shard on every Block, then the root) on 2 gloo
processes, the largest rank. MemTracker's peak of the second step (tests/torch_oracle.py,
tests/setup_oracle.py) against gpumem's, in MiB, and the error; the last line the median and worst
|error|.
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import setup_oracle  # noqa: E402
from test_selective_checkpoint import GPT_INPUT, SOURCE, estimate, measure  # noqa: E402

from flake8_gpumem.analysis import analyse_source  # noqa: E402
from flake8_gpumem.config import Settings  # noqa: E402

ROWS = [
    "ResidualMLP(every=None)",  # no checkpointing
    "ResidualMLP()",
    "ResidualMLP('addmm')",
    "ResidualMLP(every=2)",
    "ResidualMLP('addmm', every=2)",
    "ResidualMLP('addmm', early_stop=False)",
    "wrapped_mlp('addmm', every=2)",  # checkpoint_wrapper(block, context_fn=...)
    "GPT(GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=65))",
    "sac_gpt()",
    "sac_gpt('matmuls')",
    "sac_gpt('attention')",
    "sac_gpt(every=2)",
    "sac_gpt('attention', every=2)",
    "sac_gpt(bias=False)",
    "sac_gpt('torchtitan', bias=False)",  # torchtitan's policy: every second mm recomputed
    "sac_gpt(flash=False)",  # attention written out: q @ k^T, softmax, att @ v
    "sac_gpt('products', flash=False)",  # saving mm, addmm and bmm
]
AMP_ROWS = ["ResidualMLP()", "ResidualMLP('addmm')", "sac_gpt()", "sac_gpt('attention')"]  # under amp-bf16
FSDP_ROWS = ["sac_gpt()", "sac_gpt('attention')", "sac_gpt('attention', every=2)"]  # 2 ranks, each Block sharded
MIB = 2 ** 20


def fsdp(expr: str) -> tuple:
    """The largest rank's peak under FSDP2 on 2 gloo processes, measured and estimated."""
    settings = Settings(input_shape=GPT_INPUT, input_dtype="int64", batch_size=8, device="cpu", optimizer="adamw",
                        strategy="fsdp", world_size=2, shard_unit=("Block",))
    estimated = analyse_source(SOURCE, "model.py", settings, model=expr).models[0].memory.peak
    ranks = setup_oracle.measure_distributed(SOURCE, expr, [(8, 64), (8, 64)], "int64", "adamw", "float32",
                                             "cross_entropy", "fsdp", 2, ("Block",))
    return max(r.peak for r in ranks), estimated


def main() -> None:
    errors = []
    print(f"{'model':<80} {'MemTracker':>10} {'gpumem':>8} {'error':>7}")
    rows = [(expr, lambda e=expr: (measure(e), estimate(e))) for expr in ROWS]
    rows += [(f"{expr}, amp-bf16", lambda e=expr: (measure(e, "amp-bf16"), estimate(e, dtype="amp-bf16")))
             for expr in AMP_ROWS]
    if setup_oracle.gloo_available():
        rows += [(f"{expr}, FSDP2 x2", lambda e=expr: fsdp(e)) for expr in FSDP_ROWS]
    for name, run in rows:
        measured, estimated = run()
        errors.append((estimated - measured) / measured)
        print(f"{name:<80} {measured / MIB:>10.2f} {estimated / MIB:>8.2f} {errors[-1]:>+7.2%}")
    print(f"median |error| {statistics.median(abs(e) for e in errors):.2%}, worst {max(abs(e) for e in errors):.2%}")


if __name__ == "__main__":
    main()
