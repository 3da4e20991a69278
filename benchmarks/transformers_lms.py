"""transformers' causal language models read from source: how many gpumem reads exactly.

    python benchmarks/transformers_lms.py                  # every architecture of the causal-LM mapping
    python benchmarks/transformers_lms.py --only gpt2,llama --peak

Every entry of transformers' MODEL_FOR_CAUSAL_LM_MAPPING_NAMES is built from its config class at a
small size (2 layers, hidden 64, 4 heads of 16, 2 key/value heads, intermediate 128, vocabulary
1,000 with its special token ids 0-2: each of the config's usual size keys that it has; a hybrid
of attention and Mamba or linear-attention layers gets a 2-layer pattern holding each kind,
HYBRID), as a script would write it:

    from transformers import LlamaConfig, LlamaForCausalLM
    model = LlamaForCausalLM(LlamaConfig(num_hidden_layers=2, hidden_size=64, ...))

gpumem reads the script (input: 2 x 16 int64 token ids); transformers, imported here as the
oracle, builds the same model and runs one training-mode forward. Each model has --timeout
seconds for both, and the process at most --memory GiB (some architectures ignore the size keys
and build themselves at full size). A model is read when gpumem's
parameter count and every leaf call (name, type, output shape) equal PyTorch's. `--peak` also
measures one training step with MemTracker (tests/torch_oracle.py) for the models read. The
reasons the others are not read are counted.
"""
from __future__ import annotations

import argparse
import collections
import re
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import torchvision_oracle  # noqa: E402,F401  (transformers imports torchvision, which needs it beside the CPU torch)
import torch_oracle  # noqa: E402

from flake8_gpumem.analysis import analyse_source  # noqa: E402
from flake8_gpumem.config import Settings  # noqa: E402

SIZES = {  # the usual size keys of transformers' configs, at the small size
    "num_hidden_layers": 2, "n_layer": 2, "num_layers": 2, "decoder_layers": 2, "encoder_layers": 2,
    "hidden_size": 64, "n_embd": 64, "d_model": 64,
    "intermediate_size": 128, "n_inner": 128, "ffn_dim": 128, "decoder_ffn_dim": 128, "encoder_ffn_dim": 128,
    "num_attention_heads": 4, "n_head": 4, "num_heads": 4, "decoder_attention_heads": 4,
    "encoder_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 1000,
    "num_experts": 4, "num_local_experts": 4, "n_routed_experts": 4, "num_experts_per_tok": 2,
    "moe_intermediate_size": 64,
    "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,  # token ids inside the small vocabulary
}
# hybrids: their default layer pattern cut to 2 layers may hold no attention layer (transformers
# then refuses); a small pattern with each kind of layer, in the keys each config reads
HYBRID = {
    "bamba": {"attn_layer_indices": [1]},
    "bailing_hybrid": {"layer_types": ["linear_attention", "full_attention"], "mlp_layer_types": ["dense", "sparse"]},
    "gemma3n_text": {"layer_types": ["sliding_attention", "full_attention"], "num_kv_shared_layers": 0},
    "granitemoehybrid": {"layer_types": ["linear_attention", "full_attention"]},
    "jamba": {"attn_layer_period": 2, "attn_layer_offset": 1, "expert_layer_period": 2, "expert_layer_offset": 1},
    "kimi_linear": {"layer_types": ["linear_attention", "full_attention"], "mlp_layer_types": ["dense", "sparse"]},
    "lfm3": {"layer_types": ["conv", "full_attention"]},
    "qwen3_5_text": {"layer_types": ["linear_attention", "full_attention"]},
    "qwen3_5_moe_text": {"layer_types": ["linear_attention", "full_attention"]},
    "qwen3_next": {"layer_types": ["linear_attention", "full_attention"]},
    "qwen4_exp_text": {"layer_types": ["linear_attention", "indexed_attention"]},
    "recurrent_gemma": {"block_types": ["recurrent", "attention"]},
    "zamba": {"layers_block_type": ["linear_attention", "hybrid"]},
    "zamba2": {"layers_block_type": ["linear_attention", "hybrid"]},
}
BATCH, SEQ = 2, 16


class TimedOut(BaseException):  # not caught where the oracle's own errors are
    pass


def _alarm(signum, frame):
    raise TimedOut()


def small_kwargs(config_cls) -> dict:
    """The size keys the config has (its fields, or names its attribute_map maps)."""
    try:
        default = config_cls()
    except Exception:  # noqa: BLE001 - a config that needs arguments: none of ours then
        return {}
    out = {}
    for key, value in SIZES.items():
        try:
            present = hasattr(default, key)
        except Exception:  # noqa: BLE001 - heterogeneous configs refuse some global reads
            present = False
        if present:
            out[key] = value
    return out


def reason(message: str) -> str:
    """A GPM900 message without its positions and names, to count alike reasons together."""
    message = re.sub(r"^line \d+: ", "", message)
    message = re.sub(r"'model' could not be resolved: ", "", message)
    message = re.sub(r"cannot follow the import of [\w.]+: ", "", message)
    return message[:90]


def one(model_type: str, class_name: str, transformers, peak: bool) -> tuple[str, str, dict]:
    """(outcome, detail, figures): outcome is read / differs / not read / transformers refuses."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    config_name = CONFIG_MAPPING_NAMES[model_type]
    config_cls, model_cls = getattr(transformers, config_name), getattr(transformers, class_name)
    kwargs = {**small_kwargs(config_cls), **HYBRID.get(model_type, {})}
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    torch_oracle.torch.manual_seed(0)
    try:
        model = model_cls(config_cls(**kwargs))
        truth = torch_oracle.profile(model, torch_oracle.torch.zeros(BATCH, SEQ, dtype=torch_oracle.torch.int64))
    except Exception as exc:  # noqa: BLE001 - the oracle itself: what transformers says
        return "transformers refuses", f"{type(exc).__name__}: {str(exc)[:80]}", {}
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "train.py"
        script.write_text(f"from transformers import {config_name}, {class_name}\n\n"
                          f"model = {class_name}({config_name}({args}))\n")
        settings = Settings(input_shape=(SEQ,), input_dtype="int64", batch_size=BATCH, device="cpu")
        start = time.perf_counter()
        result = analyse_source(script.read_text(), str(script), settings, model="model")
        seconds = time.perf_counter() - start
    if not result.models:
        why = result.skipped[0][1] if result.skipped else (result.error or "no model")
        return "not read", reason(why), {"seconds": seconds}
    report = result.models[0]
    # a module outside the model's tree (transformers' module-level `gelu = get_activation("gelu")`)
    # is called, and its row is in gpumem's table, but PyTorch's module hooks cannot see it
    mine = [(r.name, r.type, r.output_shape) for r in report.layers if r.module and not r.name.startswith("<")]
    theirs = [(c.name, c.type, c.output_shape) for c in truth.calls]
    if report.params != truth.params or mine != theirs:
        first = next((f"{a} vs {b}" for a, b in zip(mine, theirs) if a != b), f"{len(mine)} vs {len(theirs)} calls")
        return "differs", f"params {report.params:,} vs {truth.params:,}; {first}"[:120], {"seconds": seconds}
    figures = {"seconds": seconds, "params": truth.params}
    if peak:
        measured = torch_oracle.measure_step(model, (BATCH, SEQ), "int64")
        figures.update(estimate=report.memory.peak, measured=measured.peak)
    return "read", "", figures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", help="comma-separated model types (keys of the mapping)")
    p.add_argument("--peak", action="store_true", help="also measure the training step of the models read")
    p.add_argument("--timeout", type=int, default=90, help="seconds per model (default 90)")
    p.add_argument("--memory", type=int, default=6, help="GiB for the process (default 6)")
    ns = p.parse_args()
    signal.signal(signal.SIGALRM, _alarm)
    resource.setrlimit(resource.RLIMIT_AS, (ns.memory * 2**30, resource.RLIM_INFINITY))
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    transformers.logging.set_verbosity_error()
    wanted = set(ns.only.split(",")) if ns.only else None
    outcomes, reasons = collections.Counter(), collections.Counter()
    for model_type, class_name in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.items():
        if wanted is not None and model_type not in wanted:
            continue
        signal.alarm(ns.timeout)
        try:
            try:
                outcome, detail, figures = one(model_type, class_name, transformers, ns.peak)
            finally:
                signal.alarm(0)
        except TimedOut:  # also one that strikes as the alarm is cleared
            outcome, detail, figures = "over limits", f"over {ns.timeout} s", {}
        except MemoryError:
            outcome, detail, figures = "over limits", f"over {ns.memory} GiB", {}
        outcomes[outcome] += 1
        if outcome != "read":
            reasons[f"{outcome}: {detail}" if outcome != "differs" else "differs"] += 1
        peak = ""
        if "measured" in figures:
            error = (figures["estimate"] - figures["measured"]) / figures["measured"]
            peak = f"  peak {figures['estimate'] / 2**20:.3f} vs {figures['measured'] / 2**20:.3f} MiB {error:+.2%}"
        took = f"  {figures['seconds']:.1f}s" if "seconds" in figures else ""
        print(f"{class_name:45s} {outcome:20s}{took}{peak}  {detail}", flush=True)
    total = sum(outcomes.values())
    built = total - outcomes["transformers refuses"] - outcomes["over limits"]
    print(f"\n{total} architectures; transformers builds {built} at this size; gpumem reads {outcomes['read']} "
          f"exactly ({outcomes['read'] / max(built, 1):.0%} of those), {outcomes['differs']} differ, "
          f"{outcomes['not read']} not read, {outcomes['over limits']} over the time or memory limit")
    for why, n in reasons.most_common():
        print(f"{n:4d}  {why}")


if __name__ == "__main__":
    main()
