"""Selective activation checkpointing and every-n-th-block checkpointing, estimated and measured.

    python benchmarks/selective_checkpoint.py
    python benchmarks/selective_checkpoint.py --fsdp-only   # just the FSDP2 rows

The residual MLP and the small GPT (4 blocks) of tests/test_selective_checkpoint.py, each block or
every second one under torch.utils.checkpoint, fully or with
context_fn=partial(create_selective_checkpoint_contexts, ops): ops the matrix products (mm,
addmm) and, for the GPT, the CPU's fused attention too, or torchtitan's policy (every second mm
recomputed); the MLP also through torch.distributed's checkpoint_wrapper. One process on the CPU,
AdamW, float32; four rows again under amp-bf16 (autocast); then rows under FSDP2 (fully_shard on
every block, then the root) on 2 and 4 gloo processes, the largest rank, some with the bf16/fp32
MixedPrecisionPolicy and reshard_after_forward=False as torchtitan trains. MemTracker's peak of the second step (tests/torch_oracle.py,
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
from test_selective_checkpoint import GPT_INPUT, MLP_INPUT, SOURCE, estimate, measure  # noqa: E402

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
# under FSDP2 (each block sharded, then the root): (expression, ranks, the bf16/fp32 policy and
# reshard_after_forward=False on every block, as torchtitan trains)
FSDP_ROWS = [("sac_gpt()", 2, False), ("sac_gpt('attention')", 2, False), ("sac_gpt('attention', every=2)", 2, False),
             ("sac_gpt('attention')", 4, False), ("sac_gpt('attention')", 2, True), ("sac_gpt('attention')", 4, True),
             ("ResidualMLP('addmm')", 2, False), ("ResidualMLP('addmm')", 4, False), ("ResidualMLP('addmm')", 4, True)]
MIB = 2 ** 20


def fsdp(expr: str, world: int, titan: bool) -> tuple:
    """The largest rank's peak under FSDP2 on `world` gloo processes, measured and estimated."""
    lm = expr.startswith("sac_gpt")
    unit, shape = ("Block", [(8, 64), (8, 64)]) if lm else ("ResidualBlock", (64, *MLP_INPUT))
    policy = {"param_dtype": "bfloat16", "reduce_dtype": "float32", "reshard_after_forward": False} if titan else {}
    settings = Settings(input_shape=GPT_INPUT if lm else MLP_INPUT, input_dtype="int64" if lm else None,
                        batch_size=shape[0][0] if lm else shape[0], device="cpu", optimizer="adamw", strategy="fsdp",
                        world_size=world, shard_unit=(unit,), **policy)
    estimated = analyse_source(SOURCE, "model.py", settings, model=expr).models[0].memory.peak
    ranks = setup_oracle.measure_distributed(SOURCE, expr, shape, "int64" if lm else "float32", "adamw", "float32",
                                             "cross_entropy", "fsdp", world, (unit,),
                                             mp_policy=("bfloat16", "float32") if titan else None,
                                             reshard_after_forward=False if titan else None)
    return max(r.peak for r in ranks), estimated


def main() -> None:
    """`--fsdp-only`: just the FSDP2 rows."""
    errors = []
    print(f"{'model':<80} {'MemTracker':>10} {'gpumem':>8} {'error':>7}")
    rows = [] if "--fsdp-only" in sys.argv else [(expr, lambda e=expr: (measure(e), estimate(e))) for expr in ROWS] + [
        (f"{expr}, amp-bf16", lambda e=expr: (measure(e, "amp-bf16"), estimate(e, dtype="amp-bf16")))
        for expr in AMP_ROWS]
    if setup_oracle.gloo_available():
        rows += [(f"{expr}, FSDP2 x{world}" + (", bf16/fp32 policy, reshard_after_forward=False" if titan else ""),
                  lambda e=expr, w=world, t=titan: fsdp(e, w, t)) for expr, world, titan in FSDP_ROWS]
    for name, run in rows:
        measured, estimated = run()
        errors.append((estimated - measured) / measured)
        print(f"{name:<80} {measured / MIB:>10.2f} {estimated / MIB:>8.2f} {errors[-1]:>+7.2%}")
    print(f"median |error| {statistics.median(abs(e) for e in errors):.2%}, worst {max(abs(e) for e in errors):.2%}")


if __name__ == "__main__":
    main()
