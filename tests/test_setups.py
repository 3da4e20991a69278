"""Training set-ups against PyTorch: activation checkpointing and gradient accumulation.

Each model is a small source the analyser reads; PyTorch runs the same step
(tests/torch_oracle.py, tests/setup_oracle.py: MemTracker, second step, CPU) and the
peaks must agree within 1%: checkpoint calls written in the source (non-reentrant,
reentrant, checkpoint_sequential), the what-if `checkpoint` setting against the same
model with its blocks wrapped in torch.utils.checkpoint, and K micro-batches per
optimizer step.
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import setup_oracle  # noqa: E402
import torch_oracle  # noqa: E402

from flake8_gpumem.analysis import analyse_source  # noqa: E402
from flake8_gpumem.config import Settings  # noqa: E402

SOURCE = """\
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint, checkpoint_sequential


class Block(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x):
        return x + self.fc2(F.gelu(self.fc1(self.ln(x))))


class Net(nn.Module):
    def __init__(self, n=3, mode="none", reentrant=False, stem=False):
        super().__init__()
        self.stem = nn.Linear(64, 64) if stem else nn.Identity()
        self.blocks = nn.ModuleList([Block() for _ in range(n)])
        self.head = nn.Linear(64, 10)
        self.mode = mode
        self.reentrant = reentrant

    def forward(self, x):
        x = self.stem(x)
        for b in self.blocks:
            x = checkpoint(b, x, use_reentrant=self.reentrant) if self.mode == "ckpt" else b(x)
        return self.head(x)


class ConvSeq(nn.Module):
    def __init__(self, segments=2):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.body = nn.Sequential(*[nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
                                    for _ in range(6)])
        self.head = nn.Linear(16, 10)
        self.segments = segments

    def forward(self, x):
        x = checkpoint_sequential(self.body, self.segments, self.stem(x), use_reentrant=False)
        return self.head(x.mean((2, 3)))
"""
TOKENS = (24, 64)
IMAGE = (3, 16, 16)


def _estimate(expr: str, shape, dtype: str, **setup):
    settings = Settings(input_shape=shape, batch_size=4, dtype=dtype, device="cpu", **setup)
    result = analyse_source(SOURCE, "model.py", settings, model=expr)
    assert result.models, result.skipped
    return result.models[0]


def _model(expr: str):
    torch.manual_seed(0)
    return eval(expr, torch_oracle.load(SOURCE))


def _close(estimate: int, measured: int, what: str):
    error = (estimate - measured) / measured
    assert abs(error) <= 0.01, f"{what}: estimate {estimate:,} vs measured {measured:,} ({error:+.2%})"


@pytest.mark.parametrize("expr, shape", [
    ("Net(mode='ckpt')", TOKENS),
    ("Net(mode='ckpt', reentrant=True, stem=True)", TOKENS),
    ("ConvSeq(2)", IMAGE),
    ("ConvSeq(3)", IMAGE),
])
@pytest.mark.parametrize("dtype", ["float32", "amp-bf16"])
def test_checkpoint_calls_in_the_source(expr, shape, dtype):
    report = _estimate(expr, shape, dtype)
    measured = setup_oracle.measure_checkpointed(_model(expr), (4,) + shape, dtype=dtype)
    _close(report.memory.peak, measured.peak, expr)


def test_checkpointing_lowers_the_peak_by_what_the_blocks_keep():
    plain = _estimate("Net()", TOKENS, "float32").memory
    checkpointed = _estimate("Net(mode='ckpt')", TOKENS, "float32").memory
    assert checkpointed.peak < plain.peak
    assert checkpointed.activations < plain.activations


def test_a_reentrant_checkpoint_of_inputs_without_gradient_trains_nothing_inside():
    """PyTorch's pitfall: use_reentrant=True around a call whose inputs need no gradient gives its
    parameters no gradient, so the optimizer keeps no state for them either."""
    report = _estimate("Net(mode='ckpt', reentrant=True)", TOKENS, "float32")
    model = _model("Net(mode='ckpt', reentrant=True)")
    measured = setup_oracle.measure_checkpointed(model, (4,) + TOKENS)
    head = 64 * 10 + 10
    assert report.memory.gradients == head * 4
    assert measured.optimizer_state == report.memory.optimizer == 2 * head * 4 + 2 * 4
    _close(report.memory.peak, measured.peak, "reentrant without gradients")


@pytest.mark.parametrize("dtype", ["float32", "amp-bf16"])
def test_what_if_every_block_were_checkpointed(dtype):
    report = _estimate("Net()", TOKENS, dtype, checkpoint=("Block",))
    model = _model("Net()")
    assert setup_oracle.wrap_checkpoint(model, "Block") == 3
    measured = setup_oracle.measure_checkpointed(model, (4,) + TOKENS, dtype=dtype)
    _close(report.memory.peak, measured.peak, "--checkpoint Block")
    assert report.memory.peak == _estimate("Net(mode='ckpt')", TOKENS, dtype).memory.peak


@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("dtype", ["float32", "amp-bf16"])
def test_gradient_accumulation(k, dtype):
    report = _estimate("Net()", TOKENS, dtype, accumulate=k)
    measured = setup_oracle.measure_accumulated(_model("Net()"), (4,) + TOKENS, dtype=dtype, k=k)
    _close(report.memory.peak, measured.peak, f"accumulate {k}")
    single = _estimate("Net()", TOKENS, dtype).memory
    assert report.memory.peak > single.peak  # the gradients exist while the next micro-batch runs
    assert (report.memory.weights, report.memory.gradients) == (single.weights, single.gradients)


@pytest.mark.parametrize("dtype", ["float32", "amp-bf16"])
def test_accumulating_a_language_model_keeps_the_last_logits_through_the_next_forward(dtype):
    """`logits, loss = model(x, y)` in a loop: the previous micro-batch's logits live until the next
    forward returns, so the second micro-batch peaks above the first by more than the gradients."""
    from pathlib import Path

    source = (Path(__file__).resolve().parent.parent / "fixtures" / "gpt.py").read_text()
    expr = "GPT(GPTConfig(n_layer=2, n_head=4, n_embd=128, block_size=64, vocab_size=65))"
    settings = Settings(input_shape=((64,), (64,)), input_dtype="int64", batch_size=4, dtype=dtype, device="cpu",
                        accumulate=2)
    report = analyse_source(source, "gpt.py", settings, model=expr).models[0]
    torch.manual_seed(0)
    model = eval(expr, torch_oracle.load(source))
    measured = setup_oracle.measure_accumulated(model, [(4, 64), (4, 64)], "int64", "adamw", dtype, k=2)
    _close(report.memory.peak, measured.peak, "GPT, 2 micro-batches")


# ------------------------------------------------------------------ DDP and FSDP2, per rank, over gloo

GPT_EXPR = "GPT(GPTConfig(n_layer=2, n_head=4, n_embd=128, block_size=64, vocab_size=65))"


@pytest.mark.parametrize("strategy, world, dtype", [
    ("ddp", 2, "float32"),
    ("fsdp", 2, "float32"),
    ("fsdp", 2, "amp-bf16"),
    ("fsdp", 4, "float32"),
])
def test_the_largest_rank_of_a_language_model(strategy, world, dtype):
    if not setup_oracle.gloo_available():
        pytest.skip("this PyTorch build has no gloo backend: the distributed oracle cannot run")
    from pathlib import Path

    source = (Path(__file__).resolve().parent.parent / "fixtures" / "gpt.py").read_text()
    settings = Settings(input_shape=((64,), (64,)), input_dtype="int64", batch_size=8, dtype=dtype, device="cpu",
                        strategy=strategy, world_size=world, shard_unit=("Block",))
    report = analyse_source(source, "gpt.py", settings, model=GPT_EXPR).models[0]
    ranks = setup_oracle.measure_distributed(source, GPT_EXPR, [(8, 64), (8, 64)], "int64", "adamw", dtype,
                                             "cross_entropy", strategy, world, ("Block",))
    rank0 = ranks[0]
    assert (report.memory.weights, report.memory.optimizer) == (rank0.weights, rank0.optimizer_state)
    tolerance = 0.01 if dtype == "float32" else 0.03  # FSDP under autocast: within 1.4% (see the README)
    error = (report.memory.peak - max(r.peak for r in ranks)) / max(r.peak for r in ranks)
    assert abs(error) <= tolerance, f"{strategy} x{world} {dtype}: {error:+.2%} ({report.memory.peak_phase})"


@pytest.mark.parametrize("world, reduce_dtype", [(2, "float32"), (4, None)])
def test_fsdp_mixed_precision_policy(world, reduce_dtype):
    """MixedPrecisionPolicy(param_dtype=bf16): float32 shards and Adam state, bf16 gathers, compute and
    unsharded gradients, the reduce-scatter in reduce_dtype (None: bf16, its output cast back)."""
    if not setup_oracle.gloo_available():
        pytest.skip("this PyTorch build has no gloo backend: the distributed oracle cannot run")
    from pathlib import Path

    source = (Path(__file__).resolve().parent.parent / "fixtures" / "gpt.py").read_text()
    settings = Settings(input_shape=((64,), (64,)), input_dtype="int64", batch_size=8, device="cpu",
                        strategy="fsdp", world_size=world, shard_unit=("Block",), param_dtype="bfloat16",
                        reduce_dtype=reduce_dtype)
    report = analyse_source(source, "gpt.py", settings, model=GPT_EXPR).models[0]
    ranks = setup_oracle.measure_distributed(source, GPT_EXPR, [(8, 64), (8, 64)], "int64", "adamw", "float32",
                                             "cross_entropy", "fsdp", world, ("Block",),
                                             mp_policy=("bfloat16", reduce_dtype))
    assert (report.memory.weights, report.memory.optimizer) == (ranks[0].weights, ranks[0].optimizer_state)
    peak = max(r.peak for r in ranks)
    error = (report.memory.peak - peak) / peak
    assert abs(error) <= 0.01, f"x{world} reduce {reduce_dtype}: {error:+.2%} ({report.memory.peak_phase})"


@pytest.mark.parametrize("world, reshard, policy", [(2, False, None), (4, 2, ("bfloat16", "float32"))])
def test_fsdp_reshard_after_forward(world, reshard, policy):
    """reshard_after_forward on every block: False keeps a block's gathered parameters from its forward to
    its backward, which gathers nothing; 2 keeps a slice of them for 2 ranks, gathered from those in backward."""
    if not setup_oracle.gloo_available():
        pytest.skip("this PyTorch build has no gloo backend: the distributed oracle cannot run")
    from pathlib import Path

    source = (Path(__file__).resolve().parent.parent / "fixtures" / "gpt.py").read_text()
    settings = Settings(input_shape=((64,), (64,)), input_dtype="int64", batch_size=8, device="cpu",
                        strategy="fsdp", world_size=world, shard_unit=("Block",), reshard_after_forward=reshard,
                        param_dtype=policy and policy[0], reduce_dtype=policy and policy[1])
    report = analyse_source(source, "gpt.py", settings, model=GPT_EXPR).models[0]
    ranks = setup_oracle.measure_distributed(source, GPT_EXPR, [(8, 64), (8, 64)], "int64", "adamw", "float32",
                                             "cross_entropy", "fsdp", world, ("Block",), mp_policy=policy,
                                             reshard_after_forward=reshard)
    assert (report.memory.weights, report.memory.optimizer) == (ranks[0].weights, ranks[0].optimizer_state)
    peak = max(r.peak for r in ranks)
    error = (report.memory.peak - peak) / peak
    assert abs(error) <= 0.01, f"x{world} reshard {reshard}: {error:+.2%} ({report.memory.peak_phase})"


def test_reshard_after_forward_is_fully_shards():
    from pathlib import Path

    from flake8_gpumem.summary import setup_words

    source = (Path(__file__).resolve().parent.parent / "fixtures" / "gpt.py").read_text()
    for value, words in ((False, "units kept gathered from forward to backward"), (2, "units resharded to 2 ranks")):
        settings = Settings(input_shape=((64,), (64,)), input_dtype="int64", shard_unit=("Block",), strategy="fsdp",
                            world_size=4, reshard_after_forward=value)
        assert words in setup_words(analyse_source(source, "gpt.py", settings, model=GPT_EXPR).models[0].settings)
    for setup, words in (({"strategy": "ddp", "world_size": 2, "reshard_after_forward": False}, "strategy = fsdp"),
                         ({"strategy": "fsdp", "world_size": 4, "reshard_after_forward": 3}, "divides the world")):
        settings = Settings(input_shape=((64,), (64,)), input_dtype="int64", shard_unit=("Block",), **setup)
        result = analyse_source(source, "gpt.py", settings, model=GPT_EXPR)
        assert not result.models
        assert [(d.code, words in d.message) for d in result.diagnostics] == [("GPM001", True)], result.diagnostics


def test_a_mixed_precision_policy_needs_fsdp_and_float32_shards():
    from pathlib import Path

    source = (Path(__file__).resolve().parent.parent / "fixtures" / "gpt.py").read_text()
    for setup, words in (({"strategy": "ddp", "world_size": 2}, "need strategy = fsdp"),
                         ({"strategy": "fsdp", "world_size": 2, "dtype": "amp-bf16"}, "give dtype = float32")):
        settings = Settings(input_shape=((64,), (64,)), input_dtype="int64", param_dtype="bfloat16", **setup)
        result = analyse_source(source, "gpt.py", settings, model=GPT_EXPR)
        assert not result.models
        assert [(d.code, words in d.message) for d in result.diagnostics] == [("GPM001", True)], result.diagnostics


SHARDED_SCRIPT = """
import os
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

mesh = init_device_mesh("cuda", MESH)
model = Net(n=4)
policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
for i, block in enumerate(model.blocks[:-1]):
    fully_shard(block, mesh=mesh, mp_policy=policy, reshard_after_forward=RESHARD)
fully_shard(model.blocks[-1], mesh=mesh, mp_policy=policy, reshard_after_forward=False)  # backward needs it first
fully_shard(model, mesh=mesh, mp_policy=policy)
"""


def test_fully_shard_as_the_file_calls_it():
    """The set-up read from the file's own FSDP2 calls: a unit per block, the root, the mesh's ranks, the
    policy and each block's reshard_after_forward (`i > 0` in the loop, the last block's call False:
    the first block resharded, the others kept); MemTracker per rank measures the same set-up."""
    if not setup_oracle.gloo_available():
        pytest.skip("this PyTorch build has no gloo backend: the distributed oracle cannot run")
    script = SOURCE + SHARDED_SCRIPT.replace("MESH", "(2,)").replace("RESHARD", "i > 0")
    settings = Settings(input_shape=TOKENS, batch_size=4, device="cpu")
    report = analyse_source(script, "train.py", settings, model="model").models[0]
    s = report.settings
    assert (s.strategy, s.world_size, s.shard_unit, s.param_dtype, s.reduce_dtype) == (
        "fsdp", 2, ("Block",), "bfloat16", "float32")
    ranks = setup_oracle.measure_distributed(SOURCE, "Net(n=4)", (4, *TOKENS), "float32", "adam", "float32",
                                             "cross_entropy", "fsdp", 2, ("Block",), mp_policy=("bfloat16", "float32"),
                                             reshard_after_forward=(True, False, False, False))
    assert (report.memory.weights, report.memory.optimizer) == (ranks[0].weights, ranks[0].optimizer_state)
    _close(report.memory.peak, max(r.peak for r in ranks), "fully_shard in the file")


def test_what_the_file_shards_with_that_gpumem_cannot_read_is_said():
    script = (SOURCE + SHARDED_SCRIPT).replace("MESH", "(int(os.environ['WORLD_SIZE']),)").replace(
        "RESHARD", "int(os.environ['RESHARD'])").replace(
        "fully_shard(model, mesh=mesh, mp_policy=policy)", "fully_shard(model, mesh=mesh, reshard_after_forward=True)")

    def notes(**given):
        result = analyse_source(script, "train.py", Settings(input_shape=TOKENS, **given), model="model")
        return result.models[0].settings, [d.message for d in result.diagnostics if d.code == "GPM900"]

    settings, said = notes(world_size=8)
    assert settings.world_size == 8  # as given: the mesh's size needs no word
    assert not any("device mesh" in n for n in said), said
    assert any("reshard_after_forward given as `int(os.environ['RESHARD'])`" in n for n in said), said
    assert any("reshard_after_forward=True on the root is not modelled" in n for n in said), said
    assert any("device mesh whose size gpumem cannot read" in n for n in notes()[1])


TORCHTITAN_SCRIPT = """
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

mesh = init_device_mesh("cuda", (2,))
model = Net(n=4)
fsdp_config = {"mesh": mesh, "mp_policy": MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)}
OFFLOAD
for layer_id, block in enumerate(model.blocks):
    reshard_after_forward = int(layer_id) < len(model.blocks) - 1
    fully_shard(block, **fsdp_config, reshard_after_forward=reshard_after_forward)
fully_shard(model, **fsdp_config)
"""


def test_fully_shard_as_torchtitan_calls_it():
    """torchtitan's spelling: the keywords in a dict of the file given as `**fsdp_config` (an entry
    added after), reshard_after_forward computed in the loop (every block but the last resharded).
    It must read as the same set-up written out call by call, which the oracle test above measures."""
    def report(script, **given):
        settings = Settings(input_shape=TOKENS, batch_size=4, device="cpu", **given)
        return analyse_source(SOURCE + script, "train.py", settings, model="model").models[0]

    written_out = SHARDED_SCRIPT.replace("MESH", "(2,)").replace("RESHARD", "True").replace(
        "reshard_after_forward=False)  #", "reshard_after_forward=False, offload_policy=OFFLOAD)  #").replace(
        "fully_shard(block, mesh=mesh, mp_policy=policy, reshard_after_forward=True)",
        "fully_shard(block, mesh=mesh, mp_policy=policy, reshard_after_forward=True, offload_policy=OFFLOAD)")
    for offload, policy in (("", "OffloadPolicy()"), ('fsdp_config["offload_policy"] = CPUOffloadPolicy()',
                                                      "CPUOffloadPolicy()")):
        titan = report(TORCHTITAN_SCRIPT.replace("OFFLOAD", offload))
        plain = report("from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy\n" + written_out.replace(
            "OFFLOAD", policy))
        s = titan.settings
        assert (s.strategy, s.world_size, s.shard_unit, s.param_dtype) == ("fsdp", 2, ("Block",), "bfloat16")
        assert s.offload == plain.settings.offload == ("pinned" if offload else "off")
        assert titan.memory == plain.memory
    everywhere = report(TORCHTITAN_SCRIPT.replace("OFFLOAD", ""), reshard_after_forward=True)
    assert everywhere.memory.peak != titan.memory.peak  # the last block's False was read, not the default


def test_keywords_fully_shard_takes_from_elsewhere_are_said():
    script = TORCHTITAN_SCRIPT.replace("OFFLOAD", "fsdp_config = make_config(fsdp_config)")
    result = analyse_source(SOURCE + "\ndef make_config(config):\n    return config\n" + script, "train.py",
                            Settings(input_shape=TOKENS), model="model")
    assert any("**fsdp_config) with keywords gpumem cannot read" in d.message
               for d in result.diagnostics if d.code == "GPM900"), result.diagnostics
    for changed in ("if offload:\n    fsdp_config['offload_policy'] = CPUOffloadPolicy()",
                    "fsdp_config.update(offload_policy=CPUOffloadPolicy())"):
        result = analyse_source(SOURCE + TORCHTITAN_SCRIPT.replace("OFFLOAD", changed), "train.py",
                                Settings(input_shape=TOKENS), model="model")
        assert any("**fsdp_config) with keywords gpumem cannot read" in d.message
                   for d in result.diagnostics if d.code == "GPM900"), (changed, result.diagnostics)


def test_sharding_divides_what_each_gpu_holds():
    from pathlib import Path

    source = (Path(__file__).resolve().parent.parent / "fixtures" / "gpt.py").read_text()

    def memory(**setup):
        settings = Settings(input_shape=((64,), (64,)), input_dtype="int64", batch_size=8, device="cpu", **setup)
        return analyse_source(source, "gpt.py", settings, model=GPT_EXPR).models[0].memory

    single, ddp = memory(), memory(strategy="ddp", world_size=4)
    two, four = (memory(strategy="fsdp", world_size=w, shard_unit=("Block",)) for w in (2, 4))
    assert ddp.weights == single.weights and ddp.peak == single.peak + single.weights  # the reducer's buckets
    # by hand: 413,312 parameters; the 65-row tied embedding is padded to 66 rows at 2 ranks and 68 at 4
    assert single.weights == 413_312 * 4
    assert two.weights < single.weights / 2 + 4 * 128 * 4 and four.weights < single.weights / 4 + 4 * 128 * 4
    assert four.peak < two.peak < single.peak


# ------------------------------------------------------------------ GPM100's advice, checked

ADVICE = {  # how GPM100 words a change -> the settings it stands for
    r"--dtype amp-bf16": lambda m: {"dtype": "amp-bf16"},
    r"--param-dtype bfloat16 --reduce-dtype float32": lambda m: {"dtype": "float32", "param_dtype": "bfloat16",
                                                                  "reduce_dtype": "float32"},
    r"activation checkpointing on (\w+)": lambda m: {"checkpoint": (m[1],)},
    r"--accumulate (\d+) at batch (\d+)": lambda m: {"accumulate": int(m[1]), "batch_size": int(m[2])},
    r"FSDP sharding (\w+)": lambda m: {"strategy": "fsdp", "shard_unit": (m[1],)},
    r"CPU offload \(--offload: (.*) of host memory per rank\)": lambda m: {"offload": "pinned"},
}


def advised(how: str) -> dict:
    """The settings a set-up GPM100 proposes stands for: '[on N GPUs] with CHANGE[, CHANGE...]'."""
    import re

    gpus = re.fullmatch(r"on (\d+) GPUs (with .*)", how)
    settings = {"world_size": int(gpus[1])} if gpus else {}
    for change in re.fullmatch(r"with (.*)", gpus[2] if gpus else how)[1].split(", "):
        pattern = next(p for p in ADVICE if re.fullmatch(p, change))
        settings.update(ADVICE[pattern](re.fullmatch(pattern, change)))
    return settings


@pytest.mark.parametrize("model, mib, setup", [
    ("model_sdpa", 13, {}),
    ("model_manual", 13, {}),
    # no single change fits: FSDP with the mixed-precision policy, then checkpointing too, then CPU offload,
    # each on fewer GPUs
    ("model_sdpa", 6.5, {}),
    # FSDP under autocast: the policy in its place, or more GPUs
    ("model_sdpa", 9, {"dtype": "amp-bf16", "strategy": "fsdp", "world_size": 2, "shard_unit": ("Block",)}),
    # resharding to 8 ranks after forward: no set-up on fewer GPUs than that
    ("model_sdpa", 9, {"strategy": "fsdp", "world_size": 8, "shard_unit": ("Block",), "reshard_after_forward": 8}),
])
def test_every_set_up_gpm100_suggests_fits_when_simulated(model, mib, setup):
    import re
    from dataclasses import replace
    from pathlib import Path

    from flake8_gpumem.diagnostics import human

    source = (Path(__file__).resolve().parent.parent / "fixtures" / "gpt.py").read_text()
    budget = int(mib * 2 ** 20)
    base = Settings(budget=budget, batch_size=8, **setup)
    result = analyse_source(source, "fixtures/gpt.py", base, model=model)
    message = next(d.message for d in result.diagnostics if d.code == "GPM100")
    suggested = re.search(r"; fits (.*)$", message)
    assert suggested, message
    checked = 0
    for part in suggested[1].split(", or "):
        how, shown = re.fullmatch(r"(.*) \((.*)\)", part).groups()
        settings = replace(base, **advised(how))
        again = analyse_source(source, "fixtures/gpt.py", settings, model=model).models[0]
        assert again.fits, f"{how}: {again.memory.peak:,} B over {budget:,}"
        assert human(again.memory.peak) == shown, (how, shown)
        host = re.search(r"--offload: (.*) of host memory", how)
        assert human(again.memory.host) == host[1] if host else not again.memory.host, (how, again.memory.host)
        checked += 1
    assert checked >= 2, message
