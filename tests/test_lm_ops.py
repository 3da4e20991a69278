"""The ops language models use in their forward pass, checked against PyTorch.

Rotary embeddings (LLaMA's complex64 `freqs_cis`, GPT-NeoX's rotate_half with cos/sin buffers),
causal masks (tril/triu, masked_fill, a sliced mask buffer), RMSNorm written by hand, SwiGLU,
grouped-query heads (repeat_interleave), F.embedding, tanh GELU, nanoGPT's `x[:, [-1], :]` and
the initialisation code of GPT-style models.

Each case is a tiny model source: the analyser reads it, PyTorch runs it. They must agree on
the leaf calls' shapes and the parameters (as in test_layers_vs_torch.py), on the bytes the
forward pass allocates (every new storage an op makes, dtype included: complex64 is 8 bytes)
and on the bytes autograd keeps for backward (every storage a saved tensor uses, once). Then a
few small models' peak memory of a training step against the measured one.
"""
from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import torch_oracle
from test_layers_vs_torch import BATCH, Case, _check_against_torch, analyse, analyser_side

from flake8_gpumem.analysis import analyse_source
from flake8_gpumem.config import Settings

T, D = 8, 16  # sequence length and model width of the per-op cases

ROTARY_INIT = (  # LLaMA's precompute_freqs_cis, kept as a complex64 buffer
    "freqs = 1.0 / (10000.0 ** (torch.arange(0, 16, 2)[: (16 // 2)].float() / 16))",
    "freqs = torch.outer(torch.arange(8), freqs).float()",
    "self.register_buffer('freqs_cis', torch.polar(torch.ones_like(freqs), freqs), persistent=False)",
)
NEOX_INIT = (  # GPT-NeoX / Hugging Face rotary: cos and sin buffers from inv_freq
    "inv_freq = 1.0 / (10000 ** (torch.arange(0, 16, 2).float() / 16))",
    "self.register_buffer('inv_freq', inv_freq, persistent=False)",
    "t = torch.arange(8, dtype=self.inv_freq.dtype)",
    "emb = torch.cat((torch.einsum('i,j->ij', t, self.inv_freq),) * 2, dim=-1)",
    "self.register_buffer('cos_cached', emb.cos()[None, :, :], persistent=False)",
    "self.register_buffer('sin_cached', emb.sin()[None, :, :], persistent=False)",
)


def op_case(id, expr, setup=(), init=(), shape=(T, D), dtype="float32"):
    """`return self.out(<expr>)` after `h = self.lin(x)`: h is an activation that needs a gradient."""
    first = () if dtype == "int64" else ("h = self.lin(x)",)
    width = shape[-1]
    return Case(id=id, shape=shape, init=(f"self.lin = nn.Linear({width}, {width})", *init, "self.out = nn.Identity()"),
                forward=(*first, *setup, f"return self.out({expr})"), dtype=dtype)


OP_CASES = [
    # rotary embeddings, LLaMA: complex64 pairs times freqs_cis, back to real pairs
    op_case("view_as_complex-mul-view_as_real",
            "torch.view_as_real(xq_ * self.freqs_cis).flatten(2).type_as(h)",
            setup=("xq_ = torch.view_as_complex(h.float().reshape(*h.shape[:-1], -1, 2))",), init=ROTARY_INIT),
    op_case("polar-in-forward", "torch.polar(torch.ones_like(h), h)"),
    op_case("outer", "torch.outer(h[0, 0], h[0, 1])"),
    op_case("complex-broadcast-mul", "torch.view_as_real(torch.view_as_complex(h.reshape(2, 8, 8, 2)) * c)",
            setup=("c = torch.view_as_complex(self.lin2(x).reshape(2, 8, 8, 2))[:, :1]",),
            init=("self.lin2 = nn.Linear(16, 16)",)),
    # rotary embeddings, GPT-NeoX: rotate_half and cos/sin buffers
    op_case("rotate_half", "torch.cat((-h[..., h.shape[-1] // 2:], h[..., : h.shape[-1] // 2]), dim=-1)"),
    op_case("neox-rotary", "(h * cos) + (torch.cat((-h[..., 8:], h[..., :8]), dim=-1) * sin)",
            setup=("cos, sin = self.cos_cached[:, :8, ...].to(h.dtype), self.sin_cached[:, :8, ...].to(h.dtype)",),
            init=NEOX_INIT),
    op_case("sin-cos", "h.sin() * torch.cos(h)"),
    op_case("pow-scalar-base", "2.0 ** h"),
    op_case("pow-tensor", "h ** 2 + h.pow(3)"),
    # causal masks
    op_case("tril-masked_fill", "h.masked_fill(self.bias[:, :8, :8] == 0, float('-inf'))",
            init=("self.register_buffer('bias', torch.tril(torch.ones(16, 16)).view(1, 16, 16))",),
            shape=(T, T)),
    op_case("triu-additive-mask", "h + torch.full((8, 8), float('-inf')).triu(1)", shape=(T, T)),
    op_case("triu-function", "torch.triu(h, diagonal=1) + torch.tril(h)", shape=(T, T)),
    op_case("masked_fill_-in-place", "h", setup=("h = h * 2", "h.masked_fill_(h > 0, 0.0)")),
    # in place on the shape: the name holds the new shape afterwards (as the tensor it names does)
    op_case("unsqueeze_-in-place", "h", setup=("h = h * 2", "h.unsqueeze_(1)")),
    op_case("squeeze_-transpose_-in-place", "h + 1", setup=("h = h.unsqueeze(1) * 2", "h.squeeze_(1)",
                                                            "h.transpose_(1, 2)")),
    op_case("t_-in-place", "h", setup=("h = h[0] * 2", "h.t_()")),
    op_case("in-place-chain", "h", setup=("h = h * 2", "h.relu_().unsqueeze_(0).transpose_(0, 1)")),
    op_case("unsqueeze_-result", "h.unsqueeze_(0) + h", setup=("h = h * 2",)),
    # normalisation, feed-forward, heads
    # a Linear's result is contiguous even when its input is transposed and keeps its width
    # (diffusers' attention on a 4-d input): transposing it back needs a copy to be contiguous
    op_case("linear-of-transposed-same-width", "self.lin2(h.transpose(1, 2)).transpose(1, 2).contiguous()",
            init=("self.lin2 = nn.Linear(16, 16, bias=False)",), shape=(D, D)),
    # einsum returns bmm's (batch, kept, kept) result permuted to the output's letters, a view
    # (Mamba-2's chunked scan): made contiguous it is copied, multiplied it keeps that order
    op_case("einsum-permuted-result", "torch.einsum('blhn,bshn->blsh', q, q * 2).contiguous()",
            setup=("q = h.view(h.shape[0], 8, 2, 8)",)),
    op_case("einsum-of-einsum-result", "torch.einsum('blsh,bshp->blhp', g * 3, q)",
            setup=("q = h.view(h.shape[0], 8, 2, 8)", "g = torch.einsum('blhn,bshn->blsh', q, q * 2)")),
    # padding keeps a channels-last input's order (Mamba-2's chunk padding of heads of size 1):
    # made contiguous it is copied
    op_case("pad-channels-last", "torch.nn.functional.pad(h.view(h.shape[0], 4, 4, 16).permute(0, 3, 1, 2), "
            "(1, 1, 1, 1)).contiguous()", shape=(D, D)),
    # group_norm makes an input in another order contiguous first, and keeps that copy
    op_case("group_norm-transposed", "torch.nn.functional.group_norm(h.transpose(1, 2), 4)"),
    # cat writes channels-last when every input is so (a UNet's skip connections after attention)
    op_case("cat-channels-last", "torch.cat([a, a * 2], dim=1).contiguous()",
            setup=("a = h.view(h.shape[0], 4, 4, 16).permute(0, 3, 1, 2)",), shape=(D, D)),
    op_case("rmsnorm", "h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)"),
    op_case("rms_norm-fn", "F.rms_norm(h, (16,), eps=1e-6)"),
    op_case("rms_norm-weight", "F.rms_norm(h, [16], self.w)", init=("self.w = nn.Parameter(torch.ones(16))",)),
    op_case("rms_norm-bfloat16", "F.rms_norm(h.bfloat16(), (8, 16), self.w.bfloat16())",
            init=("self.w = nn.Parameter(torch.ones(8, 16))",)),
    op_case("var", "h - h.var(-1, keepdim=True) + torch.var(h, dim=1, unbiased=False).unsqueeze(1)"),
    op_case("norm", "h / h.norm(p=2, dim=-1, keepdim=True) + torch.norm(h, dim=(1, 2), keepdim=True)"),
    op_case("unfold", "h.unfold(-1, 4, 2) * 2 + h.unfold(-1, 4, 2).sum(-1, keepdim=True)"),
    op_case("unfold-overlapping-contiguous", "h.view(2, 8, 4, 4).unfold(1, 3, 1).contiguous()"),
    op_case("eye", "h @ torch.eye(16) + torch.eye(8, 16, dtype=torch.float64).float()"),
    op_case("swiglu", "F.silu(h) * self.up(x)", init=("self.up = nn.Linear(16, 16)",)),
    op_case("gelu-tanh", "nn.functional.gelu(F.gelu(h, approximate='tanh'), approximate='tanh')"),
    op_case("repeat_interleave-gqa", "h.view(2, 8, 4, 4).repeat_interleave(2, dim=2)"),
    op_case("repeat_interleave-flat", "torch.repeat_interleave(h, 3)"),
    op_case("topk", "torch.topk(h, 3, dim=-1)[0]"),
    op_case("embedding-fn", "F.embedding(x, self.table)", init=("self.table = nn.Parameter(torch.randn(50, 16))",),
            shape=(T,), dtype="int64"),
    # nanoGPT's inference head: a list of ints is an index of known length
    op_case("list-index-last", "h[:, [-1], :]"),
    op_case("list-index-two", "h[:, [0, -1]]"),
    # bool reductions, and conditions on tensors made of known numbers (transformers' default
    # all-ones attention mask: `mask.sum() == mask.numel()` decides whether a causal mask is built)
    op_case("all-any", "h * (h > 0).all(-1, keepdim=True) + h * torch.any(h > 1, dim=-1, keepdim=True)"),
    op_case("greater", "h * torch.greater(h, 0)"),
    op_case("bitwise-not", "h.masked_fill(~(h > 0), 0.0)"),
    # BERT's token-type ids: a buffer gathered at the positions; a gradient through gather too
    op_case("gather", "torch.gather(h, 1, i) + h.gather(dim=-1, index=i.flip(-1))",
            setup=("i = torch.arange(8).repeat(2).expand(2, 8, 16)",)),
    # transformers' grouped mixture of experts: token-expert pairs sorted by expert, counted per
    # expert, each group times its expert's weight; the shapes do not depend on the routing
    op_case("moe-grouped_mm", "F.grouped_mm(rows, self.w, offs=offs) + (h.reshape(-1, 16) % 3).sum()",
            setup=("ids, perm = torch.sort(torch.topk(h, 2, dim=-1)[1].reshape(-1))",
                   "offs = torch.cumsum(torch.histc(ids.float(), bins=16, min=0, max=15), dim=0, dtype=torch.int32)",
                   "rows = h.reshape(-1, 16)[perm // 2]"),
            init=("self.w = nn.Parameter(torch.randn(16, 16, 16))",)),
    op_case("sort-method", "h.sort(dim=1, descending=True)[0] + torch.sort(h).values"),
    # torch.return_types: the values and indices by name (DeepSeek's group scores)
    op_case("max-values-by-name", "h.max(dim=-1, keepdim=True).values * torch.topk(h, 2).values.sum(-1, True)"),
    # BLOOM's ALiBi scores; logsumexp; rows by index; masks combined; a mask scattered from top-k groups
    op_case("baddbmm", "torch.baddbmm(h[:, :1], h, h.transpose(1, 2), beta=0.5, alpha=2.0) + b.baddbmm(h, h)",
            setup=("b = torch.zeros(2, 8, 8)",), shape=(T, T)),
    op_case("logsumexp", "h - torch.logsumexp(h, dim=-1, keepdim=True) + h.logsumexp((0, 2))[None, :, None]"),
    op_case("index_select", "torch.index_select(h, 1, i) + h.index_select(-1, i.flip(0))[:, :, :8].sum()",
            setup=("i = torch.arange(8).flip(0)",)),
    op_case("logical", "h * torch.logical_or(h > 0, h < -1) + h * (h > 1).logical_not() * (h > 0).logical_and(h < 1)"),
    op_case("scatter_-mask", "h.masked_fill(~m.bool(), 0.0) + torch.clone(h) * h.clone()",
            setup=("m = torch.zeros(2, 8, 16)", "m.scatter_(2, torch.topk(h, 4)[1], 1)")),
    op_case("solve_triangular", "torch.linalg.solve_triangular(a, h, upper=False, unitriangular=True)",
            setup=("a = torch.tril(h[:, :, :8] * 0.1, -1) + torch.eye(8)",)),
    op_case("multiply", "torch.multiply(h, h.sigmoid())"),  # torch.mul's other name (Gemma 3n)
    op_case("normal-parameter", "h * self.w", init=("self.w = nn.Parameter(torch.normal(0, 0.1, size=(16,)))",)),
    op_case("all-ones-mask-known", "h * 2 if m.sum() == m.numel() and m.all() else h",
            setup=("m = torch.ones(2, 8).to(dtype=torch.bool)",)),
    op_case("zeros-mask-known", "h * 2 if torch.any(m.bool()) or m.sum() > 0 else h",
            setup=("m = torch.zeros(2, 8, dtype=torch.long)",)),
]


def _torch_bytes(case: Case) -> tuple[int, int]:
    """(bytes the forward pass allocates, bytes autograd keeps): storages, each counted once, not
    the input batch's or the parameters' (a buffer kept for backward counts, as in the report)."""
    model = torch_oracle.instantiate(torch_oracle.load(case.source), "M")
    torch.manual_seed(0)
    x = torch_oracle.make_input((BATCH, *case.shape), case.dtype)
    weights = {t.untyped_storage().data_ptr() for t in [x, *model.parameters()]}
    buffers = {t.untyped_storage().data_ptr() for t in model.buffers()}
    made, kept, alive = {}, {}, []  # outputs stay alive: a freed address reused is a new allocation

    class Allocations(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    made.setdefault(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
                    alive.append(t)
            return out

    def pack(t):
        kept.setdefault(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        return t

    with Allocations(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return (sum(n for p, n in made.items() if p not in weights | buffers),
            sum(n for p, n in kept.items() if p not in weights))


def _loss_sum(accepts) -> dict:
    """The summed output as the loss, where the settings and the oracle know of losses."""
    return {"loss": "sum"} if "loss" in accepts else {}


SETTING_NAMES = {f.name for f in dataclasses.fields(Settings)}


def _analysed(source: str):
    """The analysis and its layer records, the loss a sum of the output (no loss rows)."""
    result = analyse_source(source, "case.py", Settings(**_loss_sum(SETTING_NAMES)))
    return result, result.models[0].layers


@pytest.mark.parametrize("case", OP_CASES, ids=lambda c: c.id)
def test_op_matches_torch(case):
    check_op(case)


def check_op(case):
    """Shapes and parameters, the bytes the forward allocates and those autograd keeps, against torch."""
    _check_against_torch(case)
    allocated, kept = _torch_bytes(case)
    _, layers = _analysed(case.source)
    got = (sum(r.activation_bytes for r in layers), sum(r.saved_bytes for r in layers))
    assert got == (allocated, kept), f"(allocated, kept) analyser {got} != torch {(allocated, kept)}\n{case.source}"


def test_condition_on_the_token_ids_stays_unknown():
    """`(x == pad).any()` on the input's values: what the data holds, never guessed (GPM900)."""
    case = op_case("pad-check", "h * 2 if (x == 0).any() else h")
    result = analyse(case.source)
    assert not result.models
    assert "a condition on tensor values depends on the data" in result.skipped[0][1]


def test_list_index_out_of_range_is_a_shape_error_at_its_line():
    case = op_case("bad", "h[:, [0, 8]]")
    result = analyse(case.source)
    assert [(d.code, d.line) for d in result.diagnostics] == [("GPM300", case.source.splitlines().index(
        "        return self.out(h[:, [0, 8]])") + 1)]
    assert "index 8 is out of range for dimension 1 of size 8" in result.diagnostics[0].message


def test_complex_dtypes_are_sized():
    case = op_case("complex128", "torch.polar(h.double(), h.double())")
    report, _ = analyser_side(analyse(case.source))
    polar = next(r for r in report.layers if r.type == "torch.polar")
    assert polar.activation_bytes == BATCH * T * D * 16


# --------------------------------------------------------------------------
# Initialisation code: no memory, no diagnostics, parameters as torch counts them
# --------------------------------------------------------------------------

INIT_SOURCE = """import math
import torch
import torch.nn as nn
import torch.nn.functional as F


class M(nn.Module):  # gpumem: input_shape=(8,) batch_size=2 input_dtype=int64
    def __init__(self, n_layer=4):
        super().__init__()
        self.wte = nn.Embedding(50, 16)
        self.c_proj = nn.Linear(16, 16)
        self.ln = nn.LayerNorm(16)
        self.head = nn.Linear(16, 50, bias=False)
        self.wte.weight = self.head.weight
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():
            if pn.endswith('c_proj.weight'):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))
        g = torch.Generator().manual_seed(42)
        torch.manual_seed(1337)
        self.register_buffer('noise', torch.randn(4, generator=g))

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, x):
        return self.head(self.ln(F.gelu(self.c_proj(self.wte(x)))))
"""


def test_initialisation_costs_nothing_and_raises_nothing():
    result, layers = _analysed(INIT_SOURCE)
    assert not result.diagnostics, [d.message for d in result.diagnostics]
    report, calls = analyser_side(result)
    model = torch_oracle.instantiate(torch_oracle.load(INIT_SOURCE), "M")
    assert report.params == sum(p.numel() for p in model.parameters()) == 50 * 16 + 16 * 16 + 16 + 2 * 16
    assert [c[0] for c in calls] == ["wte", "c_proj", "ln", "head"]
    assert report.memory.weights == (report.params + 4) * 4  # the tied weight once, the noise buffer
    assert [r.name for r in layers if not r.module] == ["gelu"]  # init code computes nothing


# --------------------------------------------------------------------------
# Peak memory of a training step, estimated and measured
# --------------------------------------------------------------------------

HEADER = "import math\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n\n"

ROTARY_BLOCK = HEADER + '''def precompute_freqs_cis(dim, end, theta=10000.0):
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: (dim // 2)].float() / dim))
    t = torch.arange(end, device=freqs.device)
    freqs = torch.outer(t, freqs).float()
    return torch.polar(torch.ones_like(freqs), freqs)


def apply_rotary_emb(xq, xk, freqs_cis):
    xq_ = torch.view_as_complex(xq.float().reshape(*xq.shape[:-1], -1, 2))
    xk_ = torch.view_as_complex(xk.float().reshape(*xk.shape[:-1], -1, 2))
    freqs_cis = freqs_cis.view(1, xq_.shape[1], 1, xq_.shape[-1])
    xq_out = torch.view_as_real(xq_ * freqs_cis).flatten(3)
    xk_out = torch.view_as_real(xk_ * freqs_cis).flatten(3)
    return xq_out.type_as(xq), xk_out.type_as(xk)


class Block(nn.Module):
    def __init__(self, dim=64, n_heads=4, seq=32):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, dim // n_heads
        self.wq = nn.Linear(dim, dim, bias=False)
        self.wk = nn.Linear(dim, dim, bias=False)
        self.wv = nn.Linear(dim, dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)
        self.register_buffer("freqs_cis", precompute_freqs_cis(self.head_dim, seq * 2), persistent=False)

    def forward(self, x):
        bsz, seqlen, _ = x.shape
        xq = self.wq(x).view(bsz, seqlen, self.n_heads, self.head_dim)
        xk = self.wk(x).view(bsz, seqlen, self.n_heads, self.head_dim)
        xv = self.wv(x).view(bsz, seqlen, self.n_heads, self.head_dim)
        xq, xk = apply_rotary_emb(xq, xk, self.freqs_cis[:seqlen])
        xq, xk, xv = xq.transpose(1, 2), xk.transpose(1, 2), xv.transpose(1, 2)
        scores = torch.matmul(xq, xk.transpose(2, 3)) / math.sqrt(self.head_dim)
        scores = F.softmax(scores.float(), dim=-1).type_as(xq)
        out = torch.matmul(scores, xv).transpose(1, 2).contiguous().view(bsz, seqlen, -1)
        return self.wo(out)
'''

NEOX_BLOCK = HEADER + '''def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


class Block(nn.Module):
    def __init__(self, dim=64, n_head=4, max_pos=64, base=10000):
        super().__init__()
        self.h, self.d = n_head, dim // n_head
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        inv_freq = 1.0 / (base ** (torch.arange(0, self.d, 2).float() / self.d))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        t = torch.arange(max_pos, dtype=self.inv_freq.dtype)
        emb = torch.cat((torch.einsum("i,j->ij", t, self.inv_freq),) * 2, dim=-1)
        self.register_buffer("cos_cached", emb.cos()[None, None, :, :], persistent=False)
        self.register_buffer("sin_cached", emb.sin()[None, None, :, :], persistent=False)
        self.register_buffer("bias", torch.tril(torch.ones(max_pos, max_pos)).view(1, 1, max_pos, max_pos))

    def forward(self, x):
        B, T, C = x.shape
        q = self.q_proj(x).view(B, T, self.h, self.d).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.h, self.d).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.h, self.d).transpose(1, 2)
        cos, sin = self.cos_cached[:, :, :T, ...].to(x.dtype), self.sin_cached[:, :, :T, ...].to(x.dtype)
        q = (q * cos) + (rotate_half(q) * sin)
        k = (k * cos) + (rotate_half(k) * sin)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float('-inf'))
        y = F.softmax(att, dim=-1) @ v
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))
'''

RMSNORM_SWIGLU = HEADER + '''class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def _norm(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)

    def forward(self, x):
        return self._norm(x.float()).type_as(x) * self.weight


class Block(nn.Module):
    def __init__(self, dim=64, hidden=172):
        super().__init__()
        self.norm = RMSNorm(dim)
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)

    def forward(self, x):
        h = self.norm(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))
'''

GATHER_HEAD = HEADER + '''class Block(nn.Module):
    def __init__(self, vocab=97, dim=64, n_kv=2, n_head=4, T=32):
        super().__init__()
        self.n_kv, self.n_head, self.hd = n_kv, n_head, dim // n_head
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(T, dim)
        self.kv = nn.Linear(dim, 2 * n_kv * self.hd)
        self.q = nn.Linear(dim, dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx):
        B, T = idx.shape
        pos = torch.arange(0, T, dtype=torch.long, device=idx.device)
        x = F.gelu(self.wte(idx) + self.wpe(pos), approximate='tanh')
        q = self.q(x).view(B, T, self.n_head, self.hd).transpose(1, 2)
        k, v = self.kv(x).split(self.n_kv * self.hd, dim=2)
        k = k.reshape(B, T, self.n_kv, self.hd).transpose(1, 2).repeat_interleave(self.n_head // self.n_kv, dim=1)
        v = torch.repeat_interleave(v.reshape(B, T, self.n_kv, self.hd).transpose(1, 2), 2, dim=1)
        mask = torch.full((T, T), float('-inf'), device=idx.device).triu(1)
        att = F.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.hd) + mask, dim=-1)
        x = x + (att @ v).transpose(1, 2).reshape(B, T, -1)
        return self.lm_head(x[:, [-1], :])
'''

MEMORY_CASES = [  # (id, source, per-sample input, input dtype, batch)
    ("rotary-complex64-attention", ROTARY_BLOCK, (32, 64), "float32", 4),
    ("neox-rotary-causal-attention", NEOX_BLOCK, (32, 64), "float32", 4),
    ("rmsnorm-swiglu", RMSNORM_SWIGLU, (32, 64), "float32", 4),
    ("gqa-gather-head", GATHER_HEAD, (32,), "int64", 4),
]


@pytest.mark.parametrize("id, source, shape, input_dtype, batch", MEMORY_CASES, ids=[c[0] for c in MEMORY_CASES])
def test_peak_matches_measured(id, source, shape, input_dtype, batch):
    settings = Settings(batch_size=batch, device="cpu", optimizer="sgd", input_shape=shape, input_dtype=input_dtype,
                        **_loss_sum(SETTING_NAMES))
    result = analyse_source(source, f"{id}.py", settings, model="Block")
    assert not result.diagnostics, [d.message for d in result.diagnostics]
    estimate = result.models[0].memory.peak
    torch.manual_seed(0)
    model = torch_oracle.instantiate(torch_oracle.load(source), "Block")
    measured = torch_oracle.measure_step(model, (batch, *shape), input_dtype, "sgd", "float32",
                                         **_loss_sum(inspect.signature(torch_oracle.measure_step).parameters)).peak
    assert abs(estimate - measured) / measured <= 0.01, (estimate, measured)
