"""einops read exactly: every function and both layers checked against PyTorch running them.

Shapes and parameter counts must agree exactly with what PyTorch gives (the same check as
test_layers_vs_torch.py, on sources that import einops); the peak memory of a training step of
small einops models within 1% of what PyTorch's MemTracker measures; patterns einops rejects
are GPM300 with the numbers, at the call.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

pytest.importorskip("einops")

try:  # works whether or not tests/ is a package
    from tests import torch_oracle
    from tests.test_layers_vs_torch import BATCH, _check_against_torch, analyse, model_source
except ImportError:  # pragma: no cover
    import torch_oracle
    from test_layers_vs_torch import BATCH, _check_against_torch, analyse, model_source

from flake8_gpumem.analysis import analyse_source  # noqa: E402
from flake8_gpumem.config import Settings  # noqa: E402

IMPORTS = ("import einops\n"
           "from einops import einsum, pack, rearrange, reduce, repeat, unpack\n"
           "from einops.layers.torch import Rearrange, Reduce\n")


@dataclass(frozen=True)
class Case:
    id: str
    shape: tuple[int, ...]  # per sample; the batch (BATCH) is prepended
    init: tuple[str, ...]
    forward: tuple[str, ...]
    dtype: str = "float32"

    @property
    def source(self) -> str:
        return IMPORTS + model_source(self.shape, self.init, self.forward)


def layer(id, expr, shape):
    return Case(id, shape, (f"self.layer = {expr}",), ("return self.layer(x)",))


def functional(id, expr, shape, init=()):
    """forward returns self.out(expr): the oracle sees expr's shape as the Identity's output."""
    return Case(id, shape, (*init, "self.out = nn.Identity()"), (f"return self.out({expr})",))


PATCHES = "Rearrange('b c (h p1) (w p2) -> b (h w) (p1 p2 c)', p1=4, p2=4)"

CASES = [
    # the layers, alone, in a Sequential and as named submodules
    layer("rearrange-layer-patches", PATCHES, (3, 32, 32)),
    layer("rearrange-layer-then-linear", f"nn.Sequential({PATCHES}, nn.Linear(48, 64))", (3, 32, 32)),
    layer("reduce-layer-mean", "Reduce('b c h w -> b c', 'mean')", (8, 6, 6)),
    layer("reduce-layer-max-pool", "Reduce('b c (h 2) (w 2) -> b c h w', 'max')", (4, 6, 8)),
    layer("reduce-layer-ellipsis-sum", "Reduce('b ... c -> b c', 'sum')", (3, 5, 7)),
    layer("rearrange-layer-ellipsis-heads", "Rearrange('... (h d) -> ... h d', d=4)", (5, 12)),
    Case("layers-as-submodules", (3, 8, 8),
         ("self.to_seq = Rearrange('b c h w -> b (h w) c')", "self.proj = nn.Linear(3, 16)",
          "self.pool = Reduce('b n d -> b d', 'mean')", "self.head = nn.Linear(16, 10)"),
         ("return self.head(self.pool(self.proj(self.to_seq(x))))",)),
    # rearrange: groups on either side, sizes given, ellipsis, 1 and ()
    functional("rearrange-split-group", "rearrange(x, 'b (h w) c -> b c h w', h=4)", (16, 8)),
    functional("rearrange-join-group", "rearrange(x, 'b c h w -> b (c h w)')", (3, 4, 5)),
    functional("rearrange-join-batch", "rearrange(x, 'b c h w -> (b h) w c')", (3, 4, 5)),
    functional("rearrange-groups-both-sides", "rearrange(x, 'b (g c) h w -> b (h w) (c g)', g=2)", (6, 4, 5)),
    functional("rearrange-ellipsis-in-group", "rearrange(x, 'b ... -> b (...)')", (3, 4, 5)),
    functional("rearrange-ellipsis-middle", "rearrange(x, 'b ... c -> b c ...')", (3, 4, 5)),
    functional("rearrange-adds-1-and-()", "rearrange(x, 'b h w -> b 1 h () w')", (4, 5)),
    functional("rearrange-drops-1", "rearrange(x, 'b 1 n -> b n')", (1, 7)),
    functional("rearrange-module-attribute", "einops.rearrange(x, 'b n (h d) -> b h n d', h=2)", (5, 8)),
    functional("rearrange-a-list", "rearrange([x, x], 'n b d -> b n d')", (6,)),
    # repeat: new axes as a view (expand) or a copy (a reshape joins them)
    functional("repeat-new-axis", "repeat(x, 'b c -> b c n', n=3)", (4,)),
    functional("repeat-into-group", "repeat(x, 'b c -> b (c n)', n=3)", (4,)),
    functional("repeat-anonymous", "repeat(x, 'b h w -> b (h 2) (w 2)')", (3, 4)),
    functional("repeat-leading-axes", "repeat(x, 'b d -> b k n d', k=2, n=3)", (4,)),
    # reduce: every reduction, anonymous and named pooling windows, ellipsis
    functional("reduce-mean", "reduce(x, 'b n d -> b d', 'mean')", (5, 8)),
    functional("reduce-max-window", "reduce(x, 'b (h h2) (w w2) -> b h w', 'max', h2=2, w2=2)", (6, 4)),
    functional("reduce-min-keep-axis", "reduce(x, 'b n d -> b 1 d', 'min')", (5, 8)),
    functional("reduce-sum-ellipsis", "reduce(x, 'b ... d -> b d', 'sum')", (3, 5, 8)),
    functional("reduce-prod", "reduce(x, 'b (n k) -> b n', 'prod', k=2)", (6,)),
    # pack / unpack, tensors of different ranks
    functional("pack", "pack([x, x[:, 0]], 'b * d')[0]", (5, 8)),
    Case("pack-then-unpack", (5, 8), ("self.out = nn.Identity()",),
         ("cls = x[:, 0] * 2", "packed, ps = pack([cls, x], 'b * d')", "cls, rest = unpack(packed, ps, 'b * d')",
          "return self.out(rest + cls.unsqueeze(1))")),
    functional("unpack-infers-minus-1", "unpack(x, [(2,), (-1, 2)], 'b * d')[1]", (8, 3)),
    # einops.einsum: tensors first, pattern last; names longer than a letter; ellipsis
    functional("einsum-attention", "einsum(x, x * 2, 'b i d, b j d -> b i j')", (5, 8)),
    functional("einsum-ellipsis-weight", "einops.einsum(x, self.w, '... d_in, d_out d_in -> ... d_out')", (3, 8),
               init=("self.w = nn.Parameter(torch.randn(6, 8))",)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_matches_torch(case):
    _check_against_torch(case)


def test_layer_rows_hold_what_their_steps_allocate():
    """A Rearrange that must copy (its permute leaves no view) holds that copy in its own row."""
    source = Case("patches", (3, 32, 32), (f"self.layer = {PATCHES}",), ("return self.layer(x)",)).source
    rows = analyse(source).models[0].layers
    assert [(r.name, r.type, r.activation_bytes) for r in rows if r.module] == [("layer", "Rearrange",
                                                                                 BATCH * 3 * 32 * 32 * 4)]


# --------------------------------------------------------------------------
# Patterns einops rejects: GPM300 naming the pattern and the numbers, at the call
# --------------------------------------------------------------------------


BAD = [
    # 16 does not split into h=5
    ("does-not-divide", (16, 8), "rearrange(x, 'b (h w) c -> b c h w', h=5)", "GPM300", ("16", "5")),
    ("unknown-axis", (4,), "rearrange(x, 'b c -> b c d')", "GPM300", ("names d on one side only",)),
    ("rank-mismatch", (3, 4), "rearrange(x, 'b c h w -> b (c h w)')", "GPM300", ("needs 4 dimensions, got 3",)),
    ("repeat-without-size", (4,), "repeat(x, 'b c -> b c n')", "GPM300", ("n=",)),
]


@pytest.mark.parametrize("id, shape, expr, code, words", BAD, ids=[b[0] for b in BAD])
def test_bad_pattern(id, shape, expr, code, words):
    source = functional(id, expr, shape).source
    model = torch_oracle.instantiate(torch_oracle.load(source), "M")
    with pytest.raises(RuntimeError):  # einops' EinopsError
        model(torch_oracle.make_input((BATCH, *shape)))
    found = [d for d in analyse(source).diagnostics if d.code == code]
    assert found, f"no {code} for {expr}"
    message = found[0].message
    pattern = re.search(r"'([^']*->[^']*)'", expr).group(1)
    assert pattern in message, message
    for word in words:
        assert word in message, message
    line = next(i for i, text in enumerate(source.splitlines(), 1) if expr in text)
    assert found[0].line == line


def test_a_reduction_gpumem_does_not_know_is_unresolved():
    source = functional("any", "reduce(x > 0, 'b c -> b', 'any')", (4,)).source
    found = [d for d in analyse(source).diagnostics if d.code == "GPM900"]
    assert found and "'any'" in found[0].message


# --------------------------------------------------------------------------
# Memory of a training step against PyTorch's MemTracker
# --------------------------------------------------------------------------


MEMORY_TOLERANCE = 0.01
VIT = """
class PatchEmbed(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Sequential(Rearrange('b c (h p1) (w p2) -> b (h w) (p1 p2 c)', p1=4, p2=4),
                                   nn.Linear(48, 64))
        self.norm = nn.LayerNorm(64)
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        x = self.norm(self.embed(x))
        return self.head(reduce(x, 'b n d -> b d', 'mean'))
"""
HEADS = """
class Heads(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(32, 32), nn.Linear(32, 32), nn.Linear(32, 32)
        self.out = nn.Linear(32, 32)

    def forward(self, x):
        q, k, v = (rearrange(p(x), 'b n (h d) -> b h n d', h=4) for p in (self.q, self.k, self.v))
        att = einsum(q, k, 'b h i d, b h j d -> b h i j').softmax(dim=-1)
        y = einsum(att, v, 'b h i j, b h j d -> b h i d')
        return self.out(rearrange(y, 'b h n d -> b n (h d)'))
"""
CLS_TOKEN = """
class ClsToken(nn.Module):
    def __init__(self):
        super().__init__()
        self.cls = nn.Parameter(torch.zeros(1, 1, 32))
        self.mix = nn.Linear(32, 32)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        x, ps = pack([repeat(self.cls, '1 1 d -> b 1 d', b=x.shape[0]), x], 'b * d')
        cls, rest = unpack(self.mix(x).relu(), ps, 'b * d')
        return self.head(cls + reduce(rest, 'b n d -> b d', 'mean'))
"""
POOLS = """
class Pools(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = Reduce('b c (h 2) (w 2) -> b c h w', 'max')
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.pool(self.conv(x))
        x = repeat(x, 'b c h w -> b c (h 2) (w 2)')
        return self.fc(reduce(x, 'b c h w -> b c', 'max'))
"""
MEMORY = [("vit-patch-embedding", VIT, "PatchEmbed", (3, 32, 32), 8),
          ("attention-heads", HEADS, "Heads", (64, 32), 8),
          ("cls-token-pack-unpack", CLS_TOKEN, "ClsToken", (16, 32), 4),
          ("max-pool-and-repeat", POOLS, "Pools", (3, 16, 16), 4)]


@pytest.mark.parametrize("id, body, name, shape, batch", MEMORY, ids=[m[0] for m in MEMORY])
def test_peak_memory_matches_torch(id, body, name, shape, batch):
    source = IMPORTS + "import torch\nimport torch.nn as nn\n" + body
    settings = Settings(batch_size=batch, input_shape=shape, device="cpu", optimizer="sgd", loss="sum")
    estimate = analyse_source(source, f"{id}.py", settings, model=name).models[0].memory.peak
    torch_oracle.torch.manual_seed(0)
    model = torch_oracle.instantiate(torch_oracle.load(source), name)
    measured = torch_oracle.measure_step(model, (batch, *shape), optimizer="sgd", loss="sum").peak
    assert abs(estimate - measured) <= MEMORY_TOLERANCE * measured, (
        f"estimated peak {estimate:,} B, measured {measured:,} B: {(estimate - measured) / measured:+.2%}")
