"""Selective activation checkpointing against PyTorch, and the ATen ops the catalogue names for it.

`checkpoint(fn, x, use_reentrant=False, context_fn=partial(create_selective_checkpoint_contexts,
ops))` caches in forward the results of the ATen ops in `ops` and reuses them when backward runs
the region again. The policy sees ops after decomposition, so each catalogue entry that may
dispatch one of catalogue.SAC_OPS names it (Op.aten): the first tests run the real op under a
TorchDispatchMode and check that name and that its result is the entry's result (the same memory).
Then the peaks of a residual MLP and a small GPT, every block or every second one checkpointed,
against MemTracker (tests/torch_oracle.py), within 1%.
"""
from __future__ import annotations

from dataclasses import replace

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
import torch_oracle  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from flake8_gpumem import catalogue  # noqa: E402
from flake8_gpumem.analysis import analyse_source  # noqa: E402
from flake8_gpumem.catalogue import Args  # noqa: E402
from flake8_gpumem.config import Settings  # noqa: E402
from flake8_gpumem.summary import setup_words  # noqa: E402
from flake8_gpumem.values import Tensor  # noqa: E402

F = torch.nn.functional


class _Dispatched(TorchDispatchMode):
    """Each ATen op a call dispatches, with the storage of its tensor results."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        results = out if isinstance(out, (tuple, list)) else (out,)
        storages = [r.untyped_storage().data_ptr() for r in results if isinstance(r, torch.Tensor) and r.numel()]
        self.ops.append((func.__name__.split(".")[0], storages))
        return out


def _dispatch(call, *tensors):
    with _Dispatched() as mode:
        out = call(*tensors)
    first = out[0] if isinstance(out, tuple) else out
    return mode.ops, first.untyped_storage().data_ptr()


def _shape(t: torch.Tensor) -> Tensor:
    """gpumem's tensor of the same shape and memory order."""
    order = tuple(sorted(range(t.dim()), key=lambda d: -t.stride(d)))
    return Tensor(tuple(t.shape), requires_grad=t.requires_grad,
                  layout=None if t.is_contiguous() else order)


def _r(*shape):
    return torch.randn(*shape, requires_grad=True)


LINEAR = catalogue.MODULES["Linear"]
CASES = [  # (entry, its bound arguments from the real tensors, the real call, its tensors)
    ("Linear 2-d, bias", LINEAR, lambda x: dict(input=x, bias=True), torch.nn.Linear(8, 6), [_r(4, 8)]),
    ("Linear 3-d, bias", LINEAR, lambda x: dict(input=x, bias=True), torch.nn.Linear(8, 6), [_r(2, 4, 8)]),
    ("Linear 3-d", LINEAR, lambda x: dict(input=x, bias=False), torch.nn.Linear(8, 6, bias=False), [_r(2, 4, 8)]),
    ("Linear 3-d transposed", LINEAR, lambda x: dict(input=x, bias=False), torch.nn.Linear(8, 6, bias=False),
     [_r(4, 2, 8).transpose(0, 1)]),
    ("F.linear", catalogue.FUNCTIONS["torch.nn.functional.linear"], lambda x, w: dict(input=x, weight=w, bias=None),
     F.linear, [_r(2, 4, 8), _r(6, 8)]),
    ("matmul 2-d", catalogue.FUNCTIONS["torch.matmul"], lambda x, y: dict(input=x, other=y), torch.matmul,
     [_r(4, 8), _r(8, 3)]),
    ("matmul 3-d @ 2-d", catalogue.FUNCTIONS["torch.matmul"], lambda x, y: dict(input=x, other=y), torch.matmul,
     [_r(2, 4, 8), _r(8, 3)]),
    ("matmul 4-d", catalogue.FUNCTIONS["torch.matmul"], lambda x, y: dict(input=x, other=y), torch.matmul,
     [_r(2, 3, 4, 5), _r(2, 3, 5, 6)]),
    ("bmm", catalogue.FUNCTIONS["torch.bmm"], lambda x, y: dict(input=x, mat2=y), torch.bmm,
     [_r(2, 3, 4), _r(2, 4, 5)]),
    ("baddbmm", catalogue.FUNCTIONS["torch.baddbmm"], lambda b, x, y: dict(input=b, batch1=x, batch2=y),
     torch.baddbmm, [_r(2, 3, 5), _r(2, 3, 4), _r(2, 4, 5)]),
    ("addmm", catalogue.FUNCTIONS["torch.addmm"], lambda b, x, y: dict(input=b, mat1=x, mat2=y), torch.addmm,
     [_r(5), _r(3, 4), _r(4, 5)]),
    ("einsum", catalogue.FUNCTIONS["torch.einsum"], lambda x, y: dict(equation="bhqd,bhkd->bhqk", operands=(x, y)),
     lambda x, y: torch.einsum("bhqd,bhkd->bhqk", x, y), [_r(2, 3, 4, 5), _r(2, 3, 6, 5)]),
    ("SDPA on the CPU", catalogue.FUNCTIONS["torch.nn.functional.scaled_dot_product_attention"],
     lambda q, k, v: dict(query=q, key=k, value=v, dropout_p=0.0, _device="cpu"),
     lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), [_r(2, 3, 16, 8)] * 3),
]


@pytest.mark.parametrize("name, entry, bound, call, tensors", CASES, ids=[c[0] for c in CASES])
def test_the_aten_op_the_catalogue_names_makes_the_result(name, entry, bound, call, tensors):
    ops, result = _dispatch(call, *tensors)
    names = entry.aten(Args(bound(*(_shape(t) for t in tensors))))
    assert names is not None and len(names) == 1 and names[0] in catalogue.SAC_OPS, name
    makers = [op for op, storages in ops if result in storages]
    assert makers[0] == names[0], f"{name}: {ops}"
    # the policy sees no other product or attention op that it could cache instead
    assert [op for op, _ in ops if op in catalogue.SAC_OPS] == [names[0]], f"{name}: {ops}"


NO_PRODUCT = [  # entries without `aten`: what they dispatch holds none of SAC_OPS
    (lambda x: F.gelu(x), [_r(2, 4, 8)]),
    (lambda x: F.layer_norm(x, (8,)), [_r(2, 4, 8)]),
    (lambda x: F.softmax(x, -1), [_r(2, 4, 8)]),
    (lambda x: F.dropout(x, 0.1), [_r(2, 4, 8)]),
    (lambda x: x + x * 2, [_r(2, 4, 8)]),
    (lambda x: x.view(8, 8).transpose(0, 1).reshape(64), [_r(2, 4, 8)]),
    (lambda x: F.conv2d(x, torch.randn(4, 3, 3, 3)), [_r(2, 3, 8, 8)]),
    (lambda x: torch.nn.Embedding(10, 4)(x), [torch.tensor([[1, 2], [3, 4]])]),
    (lambda x: F.cross_entropy(x, torch.tensor([1, 2])), [_r(2, 8)]),
    (lambda x: F.rms_norm(x, (8,)), [_r(2, 4, 8)]),
]


@pytest.mark.parametrize("call, tensors", NO_PRODUCT)
def test_entries_without_aten_dispatch_no_product(call, tensors):
    ops, _ = _dispatch(call, *tensors)
    assert not [op for op, _ in ops if op in catalogue.SAC_OPS], ops


def test_cuda_attention_is_one_of_three_kernels_and_a_partial_list_is_not_guessed():
    sdpa = catalogue.FUNCTIONS["torch.nn.functional.scaled_dot_product_attention"]
    q = Tensor((2, 3, 16, 8), requires_grad=True)
    assert len(sdpa.aten(Args(query=q, key=q, value=q, dropout_p=0.0, _device="cuda"))) == 3
    source = SOURCE.replace("torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default",
                            "torch.ops.aten._scaled_dot_product_flash_attention.default")
    settings = Settings(input_shape=((64,), (64,)), input_dtype="int64", batch_size=4, device="cuda")
    result = analyse_source(source, "model.py", settings, model="sac_gpt('attention')")
    assert not result.models
    assert any(d.code == "GPM900" and "save all or none" in d.message for d in result.diagnostics)


GPT = (Path(__file__).resolve().parent.parent / "fixtures" / "gpt.py").read_text()
SOURCE = GPT + '''

from functools import partial

from collections import defaultdict

from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

MATMULS = [torch.ops.aten.mm.default, torch.ops.aten.addmm.default]
SAVED = {"matmuls": MATMULS, "mm": [torch.ops.aten.mm.default], "addmm": [torch.ops.aten.addmm.default],
         "attention": MATMULS + [torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default],
         "products": MATMULS + [torch.ops.aten.bmm.default]}

# torchtitan's policy: the listed ops' results saved, but every second mm's recomputed
_save_list = {torch.ops.aten.mm.default, torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default,
              torch.ops._c10d_functional.reduce_scatter_tensor.default}


def _get_custom_policy(meta):
    def _custom_policy(ctx, func, *args, **kwargs):
        mode = "recompute" if ctx.is_recompute else "forward"
        mm_count_key = f"{mode}_mm_count"
        if func == torch.ops.aten.mm.default:
            meta[mm_count_key] += 1
        to_save = func in _save_list and not (func == torch.ops.aten.mm.default and meta[mm_count_key] % 2 == 0)
        return CheckpointPolicy.MUST_SAVE if to_save else CheckpointPolicy.PREFER_RECOMPUTE
    return _custom_policy


def selective_checkpointing_context_fn():
    meta = defaultdict(int)
    return create_selective_checkpoint_contexts(_get_custom_policy(meta))


class Checkpointed(nn.Module):
    """A block run under checkpoint: fully, or keeping what the policy's ops make."""

    def __init__(self, block, save=None):
        super().__init__()
        self.block = block
        self.save = save

    def forward(self, x):
        if self.save is None:
            return checkpoint(self.block, x, use_reentrant=False)
        if self.save == "torchtitan":
            return checkpoint(self.block, x, use_reentrant=False, context_fn=selective_checkpointing_context_fn)
        context = partial(create_selective_checkpoint_contexts, SAVED[self.save])
        return checkpoint(self.block, x, use_reentrant=False, context_fn=context)


def sac_gpt(save=None, every=1, bias=True, flash=True):
    """torchtitan's apply_ac: blocks i % every == 0 wrapped."""
    model = GPT(GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=65, bias=bias, flash=flash))
    for i, block in enumerate(model.transformer.h):
        if i % every == 0:
            model.transformer.h[i] = Checkpointed(block, save)
    return model


class ResidualBlock(nn.Module):
    def __init__(self, d=256, hidden=1024):
        super().__init__()
        self.fc1 = nn.Linear(d, hidden)
        self.fc2 = nn.Linear(hidden, d)

    def forward(self, x):
        return x + self.fc2(F.gelu(self.fc1(x)))


class ResidualMLP(nn.Module):
    def __init__(self, save=None, every=1, depth=4, early_stop=True):
        super().__init__()
        self.blocks = nn.ModuleList([ResidualBlock() for _ in range(depth)])
        self.head = nn.Linear(256, 10)
        self.save, self.every, self.early_stop = save, every, early_stop

    def forward(self, x):
        for i, block in enumerate(self.blocks):
            if self.every is None or i % self.every:
                x = block(x)
            elif self.save is None:
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = checkpoint(block, x, use_reentrant=False, early_stop=self.early_stop,
                               context_fn=partial(create_selective_checkpoint_contexts, SAVED[self.save]))
        return self.head(x)


def wrapped_mlp(save, every=1):
    """torch.distributed's checkpoint_wrapper on blocks i % every == 0, with the policy as context_fn."""
    model = ResidualMLP(every=None)
    for i, block in enumerate(model.blocks):
        if i % every == 0:
            context = partial(create_selective_checkpoint_contexts, SAVED[save])
            model.blocks[i] = checkpoint_wrapper(block, context_fn=context, preserve_rng_state=False)
    return model
'''
MLP_INPUT = (32, 256)
GPT_INPUT = ((64,), (64,))


def _lm(expr: str) -> bool:
    return expr.startswith(("GPT", "sac_gpt"))


def estimate(expr: str, source: str = SOURCE, dtype: str = "float32"):
    lm = _lm(expr)
    settings = Settings(input_shape=GPT_INPUT if lm else MLP_INPUT, input_dtype="int64" if lm else None,
                        batch_size=8 if lm else 64, device="cpu", optimizer="adamw", dtype=dtype)
    result = analyse_source(source, "model.py", settings, model=expr)
    assert result.models, [(d.code, d.message) for d in result.diagnostics]
    return result.models[0].memory.peak


def measure(expr: str, dtype: str = "float32") -> int:
    torch.manual_seed(0)
    model = eval(expr, torch_oracle.load(SOURCE))
    if _lm(expr):
        return torch_oracle.measure_step(model, [(8, 64), (8, 64)], "int64", "adamw", dtype=dtype).peak
    return torch_oracle.measure_step(model, (64,) + MLP_INPUT, optimizer="adamw", dtype=dtype).peak


@pytest.mark.parametrize("expr", [
    "ResidualMLP('addmm')",
    "ResidualMLP('addmm', every=2)",
    "ResidualMLP('addmm', early_stop=False)",  # the whole block recomputed: no result held past its use
    "wrapped_mlp('addmm', every=2)",
    "sac_gpt('matmuls')",
    "sac_gpt('attention')",
    "sac_gpt('attention', every=2)",
    "sac_gpt('torchtitan', bias=False)",
    "sac_gpt('products', flash=False)",  # q @ k^T and att @ v: bmm of copies of the transposed heads
])
def test_selective_checkpointing_against_pytorch(expr):
    estimated, measured = estimate(expr), measure(expr)
    error = (estimated - measured) / measured
    assert abs(error) <= 0.01, f"{expr}: {estimated:,} vs {measured:,} ({error:+.2%})"


def test_a_policy_keeps_more_than_the_full_checkpoint_and_less_than_none():
    plain = estimate("GPT(GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=65))")
    assert estimate("sac_gpt()") < estimate("sac_gpt('attention')") < plain
    # the list is read, not dropped: naming only mm keeps nothing of Linear layers with a bias (addmm)
    assert estimate("ResidualMLP('mm')") == estimate("ResidualMLP()") < estimate("ResidualMLP('addmm')")


def test_the_checkpoint_every_setting_is_every_second_block_written_in_the_source():
    """`--checkpoint ResidualBlock --checkpoint-every 2` on the plain model: blocks 0 and 2 checkpointed,
    as ResidualMLP(every=2) writes it, which MemTracker measures above."""
    settings = Settings(input_shape=MLP_INPUT, batch_size=64, device="cpu", optimizer="adamw",
                        checkpoint=("ResidualBlock",), checkpoint_every=2)
    report = analyse_source(SOURCE, "model.py", settings, model="ResidualMLP(every=None)").models[0]
    assert report.memory.peak == estimate("ResidualMLP(every=2)") < estimate("ResidualMLP(every=None)")
    assert setup_words(settings) == ", checkpointing ResidualBlock (1 call in 2)"
    alone = analyse_source(SOURCE, "model.py", replace(settings, checkpoint=()), model="ResidualMLP(every=None)")
    assert not alone.models
    assert [(d.code, "give checkpoint = [CLASS] too" in d.message) for d in alone.diagnostics] == [("GPM001", True)]


@pytest.mark.parametrize("policy, words", [
    ("SAVE = [torch.ops.aten.mm.default, torch.ops.aten.gelu.default]", "saving aten.gelu"),
    ("SAVE = [torch.ops.aten.mm]", "no op overload"),
])
def test_a_policy_beyond_the_products_it_reads_is_gpm900(policy, words):
    source = SOURCE.replace("MATMULS = [", f"{policy}\nMATMULS = [")
    source = source.replace('"mm": [torch.ops.aten.mm.default]', '"mm": SAVE')
    result = analyse_source(source, "model.py", Settings(input_shape=MLP_INPUT, batch_size=64, device="cpu"),
                            model="ResidualMLP('mm')")
    assert not result.models
    assert any(d.code == "GPM900" and words in d.message for d in result.diagnostics), result.diagnostics


def test_a_policy_function_saving_what_it_does_not_name_is_gpm900():
    source = SOURCE.replace("to_save = func in _save_list and", "to_save = func not in _save_list or")
    result = analyse_source(source, "model.py", Settings(input_shape=GPT_INPUT, input_dtype="int64", batch_size=8,
                                                         device="cpu"), model="sac_gpt('torchtitan')")
    assert not result.models
    assert any(d.code == "GPM900" and "does not name" in d.message for d in result.diagnostics), result.diagnostics


def test_selective_checkpointing_under_fsdp2_per_rank():
    """fully_shard on every Block (inside its checkpoint wrapper), then the root, 2 ranks over gloo."""
    import setup_oracle

    if not setup_oracle.gloo_available():
        pytest.skip("this PyTorch build has no gloo backend: the distributed oracle cannot run")
    expr = "sac_gpt('attention')"
    settings = Settings(input_shape=GPT_INPUT, input_dtype="int64", batch_size=8, device="cpu", optimizer="adamw",
                        strategy="fsdp", world_size=2, shard_unit=("Block",))
    report = analyse_source(SOURCE, "model.py", settings, model=expr).models[0]
    ranks = setup_oracle.measure_distributed(SOURCE, expr, [(8, 64), (8, 64)], "int64", "adamw", "float32",
                                             "cross_entropy", "fsdp", 2, ("Block",))
    peak = max(r.peak for r in ranks)
    error = (report.memory.peak - peak) / peak
    assert abs(error) <= 0.01, f"{expr} FSDP x2: {report.memory.peak:,} vs {peak:,} ({error:+.2%})"
