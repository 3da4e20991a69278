"""x-transformers read from its installed source, estimated and measured: one row per configuration.

    python benchmarks/xtransformers.py                  # float32 and amp-bf16, batch 4 x 256 tokens
    python benchmarks/xtransformers.py --batch 2 --tokens 64

Each row is `TransformerWrapper(num_tokens=256, max_seq_len=256, attn_layers=...)` read by gpumem
(never imported by it) with int64 token inputs; the truth is tests/torch_oracle.measure_step
(MemTracker's peak of one steady-state CPU step, Adam) on the model x-transformers itself builds.
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

from flake8_gpumem.analysis import analyse_source  # noqa: E402
from flake8_gpumem.config import Settings  # noqa: E402

LAYERS = (
    "Decoder(dim=256, depth=4, heads=8)",
    "Encoder(dim=256, depth=4, heads=8)",
    "Decoder(dim=256, depth=4, heads=8, rotary_pos_emb=True)",
    "Decoder(dim=256, depth=4, heads=8, attn_flash=True)",
    "Decoder(dim=256, depth=4, heads=8, ff_glu=True)",
    "Decoder(dim=256, depth=4, heads=8, rotary_pos_emb=True, attn_flash=True, ff_glu=True, use_rmsnorm=True)",
    "Decoder(dim=256, depth=4, heads=8, attn_kv_heads=2, attn_qk_norm=True)",
    "Decoder(dim=256, depth=4, heads=8, attn_dropout=0.1, ff_dropout=0.1)",
)
WRAPPER = "TransformerWrapper(num_tokens=256, max_seq_len=256, attn_layers={})"


def measure(layers: str, batch: int, tokens: int, dtype: str) -> tuple:
    """(estimated peak, measured peak, parameters and leaf shapes equal, seconds to estimate)."""
    source = f"from x_transformers import TransformerWrapper, Decoder, Encoder\n\nmodel = {WRAPPER.format(layers)}\n"
    settings = Settings(input_shape=(tokens,), input_dtype="int64", batch_size=batch, dtype=dtype, device="cpu")
    start = time.perf_counter()
    result = analyse_source(source, "train.py", settings, model="model")
    seconds = time.perf_counter() - start
    if not result.models:
        raise SystemExit(f"{layers}: not analysed: {result.skipped}")
    report = result.models[0]
    torch_oracle.torch.manual_seed(0)
    namespace: dict = {}
    exec(source, namespace)
    model = namespace["model"]
    x = torch_oracle.torch.zeros(batch, tokens, dtype=torch_oracle.torch.int64)
    truth = torch_oracle.profile(model, x)
    same = report.params == truth.params and [(r.name, r.type, r.output_shape) for r in report.layers if r.module] == [
        (c.name, c.type, c.output_shape) for c in truth.calls]
    measured = torch_oracle.measure_step(model, (batch, tokens), "int64", report.settings.optimizer, dtype)
    return report.memory.peak, measured.peak, same, seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--tokens", type=int, default=256)
    ns = p.parse_args()
    print(f"{'attn_layers':100} {'dtype':9} {'estimate':>12} {'measured':>12} {'error':>8}  shapes  estimate took")
    errors = []
    for layers in LAYERS:
        for dtype in ("float32", "amp-bf16"):
            est, truth, same, seconds = measure(layers, ns.batch, ns.tokens, dtype)
            errors.append(abs(est - truth) / truth)
            print(f"{layers:100} {dtype:9} {est:>12,} {truth:>12,} {(est - truth) / truth:>+8.2%}  "
                  f"{'exact' if same else 'DIFFER'}  {seconds * 1000:.0f} ms")
    print(f"\n{len(errors)} cases: median |error| {statistics.median(errors):.2%}, worst {max(errors):.2%}")


if __name__ == "__main__":
    main()
