"""The LoRA example of docs/examples.md, scaled down until the CPU runs it, against PyTorch.

fixtures/examples/llama_lora.py's `build(num_hidden_layers=LAYERS)` (TinyLlama-1.1B's widths, LoRA
r=16 on q/k/v/o, in bfloat16 with AdamW, as the file builds them) at batch 1 of SEQ tokens: the
parameters and those that train (PyTorch's counts over the real peft model), gpumem's peak and the
peak MemTracker measures on one steady-state CPU training step, and the error.

    python benchmarks/llama_lora_example.py [--layers 2] [--seq 64]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

import torchvision_oracle  # noqa: E402,F401  (torchvision importable beside the CPU torch)
import torch_oracle  # noqa: E402

from flake8_gpumem.analysis import analyse_source  # noqa: E402
from flake8_gpumem.config import Settings  # noqa: E402

FILE = ROOT / "fixtures" / "examples" / "llama_lora.py"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seq", type=int, default=64)
    args = parser.parse_args()
    call = f"build(num_hidden_layers={args.layers})"
    source = FILE.read_text()
    settings = Settings(input_shape=(args.seq,), input_dtype="int64", batch_size=1, dtype="bfloat16",
                        optimizer="adamw", device="cpu")
    result = analyse_source(source, str(FILE), settings, model=call)
    ours = result.models[0]
    torch_oracle.torch.manual_seed(0)
    namespace = torch_oracle.load(source.split("\nmodel = build()")[0])  # the file, less its full-size model
    model = eval(call, namespace)
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    with torch_oracle.no_cyclic_collection():
        step = torch_oracle.measure_step(model, (1, args.seq), "int64", "adamw", dtype="bfloat16")
    mib = 2 ** 20
    print(f"{call}, batch 1 x {args.seq} tokens, bfloat16, adamw")
    print(f"parameters  gpumem {ours.params:,} ({ours.trainable_params:,} trainable), "
          f"PyTorch {params:,} ({trainable:,} trainable)")
    print(f"peak        gpumem {ours.memory.peak:,} B ({ours.memory.peak / mib:.1f} MiB), "
          f"MemTracker {step.peak:,} B ({step.peak / mib:.1f} MiB), "
          f"error {(ours.memory.peak - step.peak) / step.peak:+.2%}")


if __name__ == "__main__":
    main()
