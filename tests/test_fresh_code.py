"""Constructs met on public model files gpumem had not seen: a config object filled through
`self.__dict__` (minGPT), a drop-path mask written in place in training (ConvNeXt, timm), category
offsets computed as a small tensor with `cumsum` (tab-transformer), augmented assignments of every
operator; and from the public yardstick (benchmarks/yardstick.py): the legacy `torch.Tensor(sizes)`,
shifts of int64 lengths, `key in` a ModuleDict, a class defined in another's body, a subclass of
nn.Transformer. fixtures/fresh holds the model files; PyTorch runs them (the oracle), gpumem reads them."""
from pathlib import Path

import pytest

pytest.importorskip("torch")
import torch  # noqa: E402
import torch_oracle  # noqa: E402
from test_lm_ops import check_op, op_case  # noqa: E402

from flake8_gpumem.analysis import analyse_source  # noqa: E402
from flake8_gpumem.config import Settings  # noqa: E402

FRESH = Path(__file__).resolve().parent.parent / "fixtures" / "fresh"

OP_CASES = [
    # timm's drop_path: a new (batch, 1, 1) mask, written in place, kept by the multiply
    op_case("drop-path-bernoulli_", "h * mask",
            setup=("mask = h.new_empty((h.shape[0], 1, 1)).bernoulli_(0.8)", "mask.div_(0.8)")),
    op_case("drop-path-rand-floor_", "h.div(0.8) * mask",
            setup=("mask = 0.8 + torch.rand((h.shape[0], 1, 1), dtype=h.dtype)", "mask.floor_()")),
    op_case("torch-bernoulli", "h * torch.bernoulli(torch.full((h.shape[0], 1, 1), 0.8))"),
    op_case("zeros_like-needs-no-gradient", "h + torch.zeros_like(h).bernoulli_(0.5)"),
    op_case("cumsum", "h.cumsum(dim=1) + torch.cumsum(h, -1)"),
    # category offsets: int64 values, a buffer added to the input's indices
    op_case("cumsum-offsets", "self.table(x + self.offsets)",
            init=("offsets = F.pad(torch.tensor([3, 5, 4]), (1, 0), value=2).cumsum(dim=-1)[:-1]",
                  "self.register_buffer('offsets', offsets)",
                  "self.table = nn.Embedding(int(offsets[-1]) + 4, 16)"),
            shape=(3,), dtype="int64"),
    # x-transformers' attention: heads split out of a projection are copied for bmm
    op_case("einsum-copies-split-heads", "torch.einsum('b h i d, b h j d -> b h i j', q, q * 2)",
            setup=("q = h.view(h.shape[0], 8, 2, 8).transpose(1, 2)",)),
    op_case("where", "torch.where(h > 0, h, h * 2)"),  # backward keeps the condition
    op_case("einsum-viewable-operands", "torch.einsum('bij,bjk->bik', h, h.transpose(1, 2))"),
    # the public yardstick: the legacy constructor's sizes (conformer, rtdl) and data (TabNet)
    op_case("legacy-Tensor-sizes-and-data", "h * self.u + torch.FloatTensor([0.5])",
            init=("self.u = nn.Parameter(torch.Tensor(8, 16))", "nn.init.zeros_(self.u)")),
    op_case("shifts-of-int64", "self.table((x >> 1) + (x << 2))", init=("self.table = nn.Embedding(16, 16)",),
            shape=(3,), dtype="int64"),  # conformer's `input_lengths >> 2`
    op_case("key-in-ModuleDict", "self.blocks['norm'](h) if 'norm' in self.blocks else h",
            init=("self.blocks = nn.ModuleDict({'norm': nn.LayerNorm(16)})",)),  # rtdl's `norm_key in layer`
    op_case("module-__setattr__-__getattr__", "self.__getattr__('level_%d' % 1)(h)",
            init=("self.__setattr__('level_%d' % 1, nn.Linear(16, 16))",)),  # pytorch-cifar's DLA
    op_case("reshape-by-keyword", "h.reshape(shape=(h.shape[0], 16, 8)) + torch.reshape(h, shape=(-1, 16, 8))"),
    # DiT's and MAE's sin-cos position table, made with numpy (meshgrid's "xy": each grid (2, 4)) and copied in
    op_case("numpy-sin-cos-table", "h + self.pos.T + (h[:, :2, :4] + self.grid).sum()", init=(
        "import numpy as np",
        "grid = np.stack(np.meshgrid(np.arange(4, dtype=np.float32), np.arange(2, dtype=np.float32)), axis=0)",
        "omega = 1.0 / 10000 ** (np.arange(4, dtype=np.float64) / 4.0)",
        "out = np.einsum('m,d->md', grid.reshape(-1), omega)",
        "self.pos = nn.Parameter(torch.zeros(16, 8), requires_grad=False)",
        "self.pos.data.copy_(torch.from_numpy(np.concatenate([np.sin(out), np.cos(out)], axis=1)).float())",
        "self.register_buffer('grid', torch.from_numpy(grid[0]).float())")),
]


@pytest.mark.parametrize("case", OP_CASES, ids=lambda c: c.id)
def test_op_matches_torch(case):
    check_op(case)


@pytest.mark.parametrize("file, model, build, shape, input_dtype", [
    ("mingpt.py", "model", lambda ns: ns["model"], (4, 32), "int64"),
    ("convnext.py", "Stage", lambda ns: ns["Stage"](), (4, 3, 32, 32), "float32"),
    ("convnext.py", "Stage(rand=True)", lambda ns: ns["Stage"](rand=True), (4, 3, 32, 32), "float32"),
    ("tab_transformer.py", "TabTransformer", lambda ns: ns["TabTransformer"](), (8, 4), "int64"),
    ("decorated_experts.py", "model", lambda ns: ns["model"], (4, 16), "float32"),
    ("public_constructs.py", "Tokens", lambda ns: ns["Tokens"](), (4, 16), "float32"),
    ("public_constructs.py", "Encoder", lambda ns: ns["Encoder"](), (6, 12), "int64"),
    ("public_constructs.py", "Fields", lambda ns: ns["Fields"](), (8, 3), "int64"),
])
def test_a_fresh_model_file_matches_a_training_step(file, model, build, shape, input_dtype):
    """Parameters (the tab-transformer's head is sized from the offsets' values), every leaf call's
    shape, and the training step's peak within 3% of MemTracker's."""
    path = FRESH / file
    source = path.read_text()
    settings = Settings(input_shape=shape[1:], input_dtype=input_dtype, batch_size=shape[0], device="cpu")
    result = analyse_source(source, str(path), settings, model=model)
    assert len(result.models) == 1, result.skipped
    report = result.models[0]
    torch.manual_seed(0)
    net = build(torch_oracle.load(source))
    x = torch_oracle.make_input(shape, input_dtype)
    truth = torch_oracle.profile(net, x)
    assert report.params == truth.params
    assert [(r.name, r.type, r.output_shape) for r in report.layers if r.module] == [
        (c.name, c.type, c.output_shape) for c in truth.calls]
    measured = torch_oracle.measure_step(net, shape, input_dtype, report.settings.optimizer)
    assert report.memory.peak == pytest.approx(measured.peak, rel=0.03)


AUGMENTED = """\
import torch.nn as nn

FLAGS = {"a"}
SEEN = FLAGS
FLAGS |= {"b", "c"}  # in place: SEEN is the same set
FLAGS &= {"a", "b"}
FLAGS ^= {"d"}
SIZES = [2]
ALIAS = SIZES
SIZES *= 3  # in place: ALIAS is the same list
WIDTH = 1
WIDTH <<= 4
WIDTH >>= 1
WIDTH ^= 3
MASK = True
MASK &= len(SEEN) == 3


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(WIDTH * len(SEEN) + sum(ALIAS), 2 if MASK else 5)

    def forward(self, x):
        return self.fc(x)
"""


def test_augmented_assignments_of_every_operator_are_evaluated_as_python_does():
    namespace = torch_oracle.load(AUGMENTED)
    expected = sum(p.numel() for p in namespace["Net"]().parameters())  # Linear(11 * 3 + 6, 2)
    result = analyse_source(AUGMENTED, "net.py", Settings(input_shape=(39,)), model="Net")
    assert len(result.models) == 1, result.skipped
    assert result.models[0].params == expected == 39 * 2 + 2
