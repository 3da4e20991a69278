"""Training set-ups, estimated and measured: one row per model, dtype and set-up.

    python benchmarks/setups.py            # the MLP and the small GPT, float32 and amp-bf16
    python benchmarks/setups.py --quick    # float32 only, world size 2 only
    python benchmarks/setups.py --policy-only  # FSDP2's MixedPrecisionPolicy rows only
    python benchmarks/setups.py --reshard-only  # FSDP2's reshard_after_forward False and 2 rows only

Set-ups: a single process (torch_oracle.measure_step), every block checkpointed (what-if,
setup_oracle.wrap_checkpoint), gradient accumulation over k=2 and 4 micro-batches, DDP and FSDP2
(fully_shard on every block, then the root) over gloo with 2 and 4 CPU processes, and for the
float32 model also FSDP2's MixedPrecisionPolicy(param_dtype=bf16) with reduce_dtype fp32 and bf16
(`param_dtype`, `reduce_dtype`) in place of autocast, and FSDP2's reshard_after_forward=False (with
and without the fp32-reduce policy) and =2 (world size 4 only) on every block. The batch is per process. Peaks and
MemTracker's categories at the peak are in bytes (rank 0's; `ranks` says when the ranks' peaks differ); seconds are the wall time of the whole
measurement (spawn included) and, for the distributed rows, of the measured step on rank 0.
Each row also has gpumem's estimate of the largest rank's peak and its error; the last line the
median and worst |error|.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import torch  # noqa: E402
import setup_oracle  # noqa: E402
import torch_oracle  # noqa: E402

from flake8_gpumem.analysis import analyse_source  # noqa: E402
from flake8_gpumem.config import Settings  # noqa: E402

MLP_SOURCE = '''
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, d=256, hidden=1024):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, d)

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


class ResidualMLP(nn.Module):
    def __init__(self, depth=4, d=256, classes=10):
        super().__init__()
        self.blocks = nn.Sequential(*[Block(d) for _ in range(depth)])
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        return self.head(self.blocks(x))
'''

MODELS = {
    # name: (source, expression, per-process batch shape, input dtype, optimizer, loss, block class)
    "mlp": (MLP_SOURCE, "ResidualMLP()", (16, 64, 256), "float32", "adam", "cross_entropy", "Block"),
    "gpt": ((ROOT / "fixtures" / "gpt.py").read_text(),
            "GPT(GPTConfig(n_layer=2, n_head=4, n_embd=128, block_size=64, vocab_size=65))",
            ((8, 64), (8, 64)), "int64", "adamw", "cross_entropy", "Block"),
}
SHORT = {"bfloat16": "bf16", "float32": "fp32"}
CATEGORIES = ("Parameter", "Gradient", "Activation", "Temp", "Optstate", "Other")


def build(source: str, expr: str):
    torch.manual_seed(0)
    return eval(expr, torch_oracle.load(source))


def rows(name: str, dtype: str, worlds: tuple, policy_only: bool = False, reshard_only: bool = False):
    source, expr, shape, input_dtype, optimizer, loss, block = MODELS[name]
    common = dict(shape=shape, input_dtype=input_dtype, optimizer=optimizer, dtype=dtype, loss=loss)

    def local(label, fn):
        start = time.perf_counter()
        memory = fn()
        return label, [memory], time.perf_counter() - start, None

    setups = []
    if not (policy_only or reshard_only):
        yield local("single", lambda: torch_oracle.measure_step(build(source, expr), **common)) + ({},)
        yield local(f"checkpoint {block}", lambda: setup_oracle.measure_checkpointed(
            _wrapped(build(source, expr), block), **common)) + ({"checkpoint": (block,)},)
        for k in (2, 4):
            yield local(f"accumulate k={k}", lambda k=k: setup_oracle.measure_accumulated(
                build(source, expr), k=k, **common)) + ({"accumulate": k},)
        setups = [("ddp", None, None), ("fsdp", None, None)]
    if dtype == "float32" and not reshard_only:
        setups += [("fsdp", ("bfloat16", "float32"), None), ("fsdp", ("bfloat16", None), None)]
    if dtype == "float32" and not policy_only:
        setups += [("fsdp", None, False), ("fsdp", None, 2),
                   ("fsdp", ("bfloat16", "float32"), False), ("fsdp", ("bfloat16", "float32"), 2)]
    for strategy, policy, reshard in setups:
        for world in worlds:
            if reshard is not None and reshard is not False and (world % reshard or world == reshard):
                continue  # a number of ranks dividing the world size, and smaller
            start = time.perf_counter()
            results = setup_oracle.measure_distributed(source, expr, strategy=strategy, world_size=world,
                                                       shard_units=(block,), mp_policy=policy, full=True,
                                                       reshard_after_forward=reshard, **common)
            words = "" if policy is None else f" mp {SHORT[policy[0]]}/{SHORT[policy[1] or policy[0]]}"
            words += "" if reshard is None else f" raf={reshard}"
            label = f"{strategy}{words} world {world}"
            setup = {"strategy": strategy, "world_size": world, "shard_unit": (block,)}
            if policy is not None:
                setup.update(param_dtype=policy[0], reduce_dtype=policy[1])
            if reshard is not None:
                setup.update(reshard_after_forward=reshard)
            yield label, [r.memory for r in results], time.perf_counter() - start, results[0].seconds, setup


def estimate(name: str, dtype: str, setup: dict) -> int:
    source, expr, shape, input_dtype, optimizer, loss, _ = MODELS[name]
    several = isinstance(shape[0], tuple)
    per_sample = tuple(s[1:] for s in shape) if several else shape[1:]
    batch = shape[0][0] if several else shape[0]
    settings = Settings(input_shape=per_sample, input_dtype=input_dtype, batch_size=batch, optimizer=optimizer,
                        dtype=dtype, loss=loss, device="cpu", **setup)
    return analyse_source(source, "model.py", settings, model=expr).models[0].memory.peak


def _wrapped(model, block):
    setup_oracle.wrap_checkpoint(model, block)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="float32 only, world size 2 only")
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--policy-only", action="store_true", help="only the MixedPrecisionPolicy rows")
    parser.add_argument("--reshard-only", action="store_true", help="only the reshard_after_forward rows")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    dtypes = ("float32",) if args.quick or args.policy_only or args.reshard_only else ("float32", "amp-bf16")
    worlds = (2,) if args.quick else (2, 4)
    errors = []
    header = (f"{'model':5} {'dtype':9} {'set-up':36} {'estimate':>11} {'error':>7} {'peak':>11} {'weights':>10} "
              f"{'opt state':>10} "
              + " ".join(f"{c:>11}" for c in CATEGORIES) + f" {'seconds':>8} {'step s':>7}  ranks")
    print(header)
    print("-" * len(header))
    for name in args.models:
        for dtype in dtypes:
            for label, memories, seconds, step_seconds, setup in rows(name, dtype, worlds, args.policy_only,
                                                                         args.reshard_only):
                m = memories[0]
                peaks = sorted({r.peak for r in memories})
                ranks = "" if len(peaks) == 1 else "peaks " + "/".join(f"{p:,}" for p in (r.peak for r in memories))
                est = "" if setup is None else estimate(name, dtype, setup)
                error = "" if setup is None else (est - peaks[-1]) / peaks[-1]
                if setup is not None:
                    errors.append(abs(error))
                print(f"{name:5} {dtype:9} {label:36} {est:>11,} {error:>+7.2%} "
                      if setup is not None else f"{name:5} {dtype:9} {label:36} {'-':>11} {'-':>7} ", end="")
                print(f"{m.peak:>11,} {m.weights:>10,} {m.optimizer_state:>10,} "
                      + " ".join(f"{m.categories.get(c, 0):>11,}" for c in CATEGORIES)
                      + f" {seconds:>8.2f} {'' if step_seconds is None else f'{step_seconds:.2f}':>7}  {ranks}",
                      flush=True)
    errors.sort()
    print(f"\n{len(errors)} estimated rows: median |error| {errors[len(errors) // 2]:.2%}, worst {errors[-1]:.2%}")


if __name__ == "__main__":
    main()
