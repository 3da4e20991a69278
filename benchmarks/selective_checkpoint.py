"""Selective activation checkpointing and every-n-th-block checkpointing, estimated and measured.

    python benchmarks/selective_checkpoint.py

The residual MLP and the small GPT (4 blocks) of tests/test_selective_checkpoint.py, each block or
every second one under torch.utils.checkpoint, fully or with
context_fn=partial(create_selective_checkpoint_contexts, ops): ops the matrix products (mm,
addmm) and, for the GPT, the CPU's fused attention too. One process on the CPU, AdamW; MemTracker's
peak of the second step (tests/torch_oracle.py) against gpumem's, in MiB, and the error; the last
line the median and worst |error|.
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_selective_checkpoint import estimate, measure  # noqa: E402

ROWS = [
    "ResidualMLP(every=None)",  # no checkpointing
    "ResidualMLP()",
    "ResidualMLP('addmm')",
    "ResidualMLP(every=2)",
    "ResidualMLP('addmm', every=2)",
    "wrapped_mlp('addmm', every=2)",  # checkpoint_wrapper(block, context_fn=...)
    "GPT(GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=65))",
    "sac_gpt()",
    "sac_gpt('matmuls')",
    "sac_gpt('attention')",
    "sac_gpt(every=2)",
    "sac_gpt('attention', every=2)",
    "sac_gpt(bias=False)",
    "sac_gpt('torchtitan', bias=False)",  # torchtitan's policy: every second mm recomputed
]
MIB = 2 ** 20


def main() -> None:
    errors = []
    print(f"{'model':<80} {'MemTracker':>10} {'gpumem':>8} {'error':>7}")
    for expr in ROWS:
        measured, estimated = measure(expr), estimate(expr)
        errors.append((estimated - measured) / measured)
        print(f"{expr:<80} {measured / MIB:>10.2f} {estimated / MIB:>8.2f} {errors[-1]:>+7.2%}")
    print(f"median |error| {statistics.median(abs(e) for e in errors):.2%}, worst {max(abs(e) for e in errors):.2%}")


if __name__ == "__main__":
    main()
