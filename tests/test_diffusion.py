"""The diffusion training step against PyTorch: the models of fixtures/diffusion/.

A DDPM-style UNet (forward(x, t)), a DiT (forward(x, t, y): patches, adaLN-Zero, a null class for
classifier-free guidance, learned sigma) and an improved-diffusion UNet whose own `checkpoint` helper
is a custom torch.autograd.Function that runs each block under no_grad and again in backward. PyTorch
builds each (tests/diffusion_cases.py): parameters and every leaf call's output shape exactly, and one
noise-prediction step (MSE against a target of the output's shape; the timestep and the label int64,
one per sample, allocated in the step) measured by MemTracker: the peak within 3%, weights,
gradients and Adam's state exactly. Also: the step written as a module (GaussianDiffusion draws its
own timestep and noise), an EMA copy a training script keeps beside its model (weights only), custom
autograd Functions other than checkpointing and while loops (what is read, what is a GPM900).
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import torch_oracle  # noqa: E402
from diffusion_cases import CASES, DIFFUSION, IMAGE_T, Case, analysed, built, measured  # noqa: E402
from test_lm_ops import check_op, op_case  # noqa: E402

from flake8_gpumem.analysis import analyse_source  # noqa: E402
from flake8_gpumem.config import Settings  # noqa: E402

TOLERANCE = 0.03
SHAPES = sorted({c for c in CASES if c.dtype == "float32"}, key=lambda c: c.id)


@pytest.mark.parametrize("case", SHAPES, ids=[c.id for c in SHAPES])
def test_parameters_and_every_leaf_call(case):
    ours, model = analysed(case), built(case)
    with torch_oracle.views_made_without_grad_untracked():
        truth = torch_oracle.profile(model, [torch_oracle.make_input(s, d) for s, d in zip(case.full, case.dtypes)])
    assert ours.params == truth.params
    assert [(l.name, l.type, l.output_shape) for l in ours.layers if l.module] == [
        (c.name, c.type, c.output_shape) for c in truth.calls]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_noise_prediction_step(case):
    est, truth = analysed(case).memory, measured(case)
    assert abs(est.peak - truth.peak) <= TOLERANCE * truth.peak, (
        f"peak {est.peak:,} B vs measured {truth.peak:,} B ({(est.peak - truth.peak) / truth.peak:+.2%}), "
        f"estimated at {est.peak_phase}; measured at the peak: {truth.categories}")
    assert (est.weights, est.gradients, est.optimizer) == (truth.weights, truth.gradients, truth.optimizer_state)


def test_the_dit_embeds_the_null_class_and_doubles_the_channels():
    """num_classes=10 with label dropout: an 11-row table, as classifier-free guidance needs; learned
    sigma: 8 channels out of 4 in, the patches put back by einsum."""
    report = analysed(next(c for c in CASES if c.model == "DiT"))
    layers = {l.name: l for l in report.layers}
    assert layers["y_embedder.table"].params == 11 * 96
    einsum = next(l for l in report.layers if l.type == "torch.einsum")
    assert einsum.output_shape == (4, 8, 8, 2, 8, 2)  # (n, c, h, p, w, q), reshaped to (4, 8, 16, 16)


def test_use_checkpoint_keeps_less_and_gpumem_says_how_much():
    """The same UNet with and without its own checkpoint helper: PyTorch's peaks differ, and gpumem's
    by what PyTorch's do, within the tolerance of each."""
    on, off = (next(c for c in CASES if c.file == "improved.py" and c.model == m)
               for m in ("UNetModel", "UNetModel(use_checkpoint=False)"))
    measured_saving = measured(off).peak - measured(on).peak
    estimated_saving = analysed(off).memory.peak - analysed(on).memory.peak
    assert measured_saving > 0.4 * measured(off).peak
    assert abs(estimated_saving - measured_saving) <= TOLERANCE * measured(off).peak


def test_the_custom_checkpoint_under_autocast_is_not_guessed():
    """Under AMP the helper's backward runs the block again outside autocast: PyTorch stops on the
    dtypes (bf16 activations into a float32 conv), and gpumem says so instead of a number."""
    case = Case("improved.py", "UNetModel", *IMAGE_T, dtype="amp-bf16")
    with pytest.raises(RuntimeError, match="should be the same"):
        measured(case)
    path = DIFFUSION / case.file
    result = analyse_source(path.read_text(), str(path), Settings(
        input_shape=case.shapes, input_dtype=case.dtypes, batch_size=4, dtype="amp-bf16", loss="mse"),
        model="UNetModel")
    assert not result.models
    assert "Recompute.apply under autocast" in result.skipped[0][1] and "give --dtype float32" in result.skipped[0][1]


OTHER_FUNCTION = """
import torch
from torch import nn


class Clamp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(0, 1)

    @staticmethod
    def backward(ctx, grad):
        return grad


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        return Clamp.apply(self.fc(x))
"""


def test_any_other_custom_autograd_function_is_a_gpm900():
    """A straight-through clamp keeps what its own backward decides: not read, said at its line."""
    result = analyse_source(OTHER_FUNCTION, "net.py", Settings(input_shape=(8,), batch_size=2), model="Net")
    assert not result.models
    line, reason = result.skipped[0][1].split(": ", 1)
    assert line == "line 23" and reason.startswith("Clamp.apply: a custom torch.autograd.Function")


WHILE_LOOPS = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)
        self.conv = nn.Conv2d(4, 6, 1)

    def forward(self, x):
        h = self.fc(x)
        while h.ndim < 4:
            h = h[..., None]
        while h.sum() > 0:
            h = h / 2
        return self.conv(h)
"""


def test_a_while_loop_on_shapes_runs_and_one_on_values_does_not():
    """`while len(emb.shape) < len(h.shape)` (improved-diffusion's ResBlock) unrolls: the shapes are
    known; a condition on tensor values is the data's, and stops the model."""
    source = WHILE_LOOPS.replace("        while h.sum() > 0:\n            h = h / 2\n", "")
    result = analyse_source(source, "net.py", Settings(input_shape=(8,), batch_size=2, loss="sum"), model="Net")
    truth = torch_oracle.profile(torch_oracle.load(source)["Net"](), torch.randn(2, 8))
    assert [l.output_shape for l in result.models[0].layers if l.module] == [c.output_shape for c in truth.calls]
    assert truth.calls[-1].output_shape == (2, 6, 1, 1)
    result = analyse_source(WHILE_LOOPS, "net.py", Settings(input_shape=(8,), batch_size=2), model="Net")
    assert "a condition on tensor values depends on the data" in result.skipped[0][1]


class _Beside(torch.nn.Module):
    """The script's model and its EMA copy in one module, so that MemTracker counts the copy's weights
    (it tracks the modules it is given); forward is the model's alone."""

    def __init__(self, model, ema):
        super().__init__()
        self.model, self.ema = model, ema

    def forward(self, *xs):
        return self.model(*xs)


def test_an_ema_copy_at_module_level_is_weights_only(monkeypatch, capsys):
    """train_dit.py: `ema = copy.deepcopy(model)`, `ema.requires_grad_(False)`, AdamW over the model.
    PyTorch keeps the copy's weights through the step and nothing else of it: gpumem's weights are the
    model's and the copy's, its gradients and AdamW's state the model's only, its peak within 3%."""
    monkeypatch.syspath_prepend(str(DIFFUSION))  # the script imports dit.py beside it
    path = DIFFUSION / "train_dit.py"
    namespace = torch_oracle.load(path.read_text())
    model, ema = namespace["model"], namespace["ema"]
    params = sum(p.numel() for p in model.parameters())
    with torch_oracle.no_cyclic_collection():
        truth = torch_oracle.measure_step(
            _Beside(model, ema), [(4, 4, 16, 16), (4,), (4,)], ["float32", "int64", "int64"],
            lambda m: torch.optim.AdamW(m.model.parameters(), lr=1e-4, weight_decay=0, foreach=True), loss="mse")
    result = analyse_source(path.read_text(), str(path), Settings(device="cpu"), model="model")
    assert [m.name for m in result.models] == ["model"], result.skipped
    report = result.models[0]
    est = report.memory
    assert report.params == params and report.settings.optimizer == "adamw"
    assert (est.weights, est.gradients, est.optimizer) == (truth.weights, truth.gradients, truth.optimizer_state)
    assert est.weights == 2 * (params * 4 + ema.pos_embed.nbytes)  # the model and its copy
    assert abs(est.peak - truth.peak) <= TOLERANCE * truth.peak, (est.peak, truth.peak)
    assert report.copies == (("ema", est.weights // 2),)
    assert "ema" not in [name for name, _ in result.skipped]  # the copy is no model of its own


CAST_COPY = """
import copy
from torch import nn

model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
ema = copy.deepcopy(model).half()
"""


def test_a_copy_cast_to_another_dtype_says_how_it_was_counted():
    """Weights are counted in the step's dtype: a half copy of a float32 model is 2x what it holds,
    and a GPM900 at the cast says so rather than pass it silently."""
    result = analyse_source(CAST_COPY, "train.py", Settings(input_shape=(8,), batch_size=2), model="model")
    params = 8 * 16 + 16 + 16 * 4 + 4
    assert result.models[0].copies == (("ema", params * 4),)
    notes = [(d.line, d.message) for d in result.diagnostics if d.code == "GPM900"]
    assert notes == [(6, "model: the copy `ema` is cast to float16: its weights are counted in the model's dtype, "
                         "float32")]


def test_cumprod_keeps_its_input_and_its_result():
    """A noise schedule's alpha-bar, `torch.cumprod(1 - betas, dim=0)`, on an activation: the bytes it
    allocates and those autograd keeps (its input and its result), as PyTorch's saved-tensor hooks see them."""
    check_op(op_case("cumprod", "h.cumprod(dim=1) + torch.cumprod(h, -1)"))
