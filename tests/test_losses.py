"""Where backward starts: the loss forward returns, or the one the step applies, against PyTorch.

Each model is a small source; the analyser reads it with the settings a user would give
(`loss`, several `input_shape`s), PyTorch runs one steady-state step of it
(tests/torch_oracle.measure_step) and the peaks must agree within 1%. Parameters count a
tied weight once, as `model.parameters()` does.
"""
from __future__ import annotations

import textwrap

import pytest

torch = pytest.importorskip("torch")
import torch_oracle  # noqa: E402

from flake8_gpumem.analysis import analyse_source  # noqa: E402
from flake8_gpumem.config import Settings  # noqa: E402

HEAD = """\
import torch
import torch.nn as nn
import torch.nn.functional as F
"""

TOKENS = HEAD + """
class TokenModel(nn.Module):
    def __init__(self, vocab=300, dim=48):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.mix = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, vocab, bias=False)

    def forward(self, idx):
        return self.head(torch.tanh(self.mix(self.emb(idx))))
"""

OWN_LOSS = HEAD + """
class OwnLoss(nn.Module):
    def __init__(self, vocab=300, dim=48, tie=True, as_dict=False, module_loss=False):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.mix = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        if tie:
            self.emb.weight = self.head.weight
        self.as_dict = as_dict
        self.criterion = nn.CrossEntropyLoss() if module_loss else None

    def forward(self, idx, targets=None):
        logits = self.head(torch.tanh(self.mix(self.emb(idx))))
        if targets is None:
            return logits
        flat, wanted = logits.view(-1, logits.size(-1)), targets.view(-1)
        if self.criterion is not None:
            loss = self.criterion(flat, wanted)
        else:
            loss = F.cross_entropy(flat, wanted, ignore_index=-1)
        return {"logits": logits, "loss": loss} if self.as_dict else (logits, loss)
"""

REGRESSION = HEAD + """
class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 8))

    def forward(self, x):
        return self.net(x)
"""


def _both(source: str, expr: str, shapes, input_dtype, batch: int, loss: str = "cross_entropy",
          dtype: str = "float32", optimizer: str = "adam"):
    settings = Settings(input_shape=shapes, input_dtype=input_dtype, batch_size=batch, loss=loss, dtype=dtype,
                        optimizer=optimizer, device="cpu")
    result = analyse_source(source, "model.py", settings, model=expr)
    assert result.models, result.skipped
    report = result.models[0]
    torch.manual_seed(0)
    model = eval(expr, torch_oracle.load(source))
    several = isinstance(shapes[0], tuple)
    full = [(batch,) + s for s in shapes] if several else (batch,) + shapes
    measured = torch_oracle.measure_step(model, full, input_dtype, optimizer, dtype, loss)
    return report, measured, sum(p.numel() for p in model.parameters())


def _close(report, measured):
    error = (report.memory.peak - measured.peak) / measured.peak
    assert abs(error) <= 0.01, (f"peak {report.memory.peak:,} vs measured {measured.peak:,} ({error:+.2%}); "
                                f"estimated at {report.memory.peak_phase}")


@pytest.mark.parametrize("loss", ["cross_entropy", "mse", "sum"])
@pytest.mark.parametrize("dtype", ["float32", "amp-bf16"])
def test_the_loss_the_step_applies(loss, dtype):
    source, expr, shape, input_dtype = ((TOKENS, "TokenModel()", (16,), "int64") if loss != "mse"
                                        else (REGRESSION, "Regressor()", (20,), "float32"))
    report, measured, params = _both(source, expr, shape, input_dtype, 8, loss, dtype)
    assert report.loss == loss
    assert report.params == params
    _close(report, measured)


def test_cross_entropy_keeps_a_log_softmax_as_large_as_the_logits():
    """The step's loss is a row of its own; what it keeps is the logits' size: 8 x 16 x 300 floats."""
    report, measured, _ = _both(TOKENS, "TokenModel()", (16,), "int64", 8)
    loss = next(r for r in report.layers if r.name == "loss")
    assert loss.type == "F.cross_entropy"
    assert loss.saved_bytes == 8 * 16 * 300 * 4
    _close(report, measured)


@pytest.mark.parametrize("variant", ["OwnLoss()", "OwnLoss(tie=False)", "OwnLoss(as_dict=True)",
                                     "OwnLoss(module_loss=True)"])
@pytest.mark.parametrize("dtype", ["float32", "amp-bf16"])
def test_a_loss_forward_returns_is_where_backward_starts(variant, dtype):
    report, measured, params = _both(OWN_LOSS, variant, ((16,), (16,)), "int64", 8, dtype=dtype)
    assert report.loss == "forward"
    assert report.params == params  # the tied weight once: 300 x 48 fewer than untied
    assert report.input_shape == ((8, 16), (8, 16))
    _close(report, measured)


def test_a_tied_weight_is_one_parameter_with_one_gradient():
    tied, _, torch_tied = _both(OWN_LOSS, "OwnLoss()", ((16,), (16,)), "int64", 8)
    untied, _, torch_untied = _both(OWN_LOSS, "OwnLoss(tie=False)", ((16,), (16,)), "int64", 8)
    assert torch_untied - torch_tied == 300 * 48
    assert (tied.params, untied.params) == (torch_tied, torch_untied)
    assert untied.memory.gradients - tied.memory.gradients == 300 * 48 * 4
    assert untied.memory.optimizer - tied.memory.optimizer == 2 * 300 * 48 * 4 + 4  # Adam: two moments, a step


def test_without_targets_the_step_applies_the_loss_to_the_logits():
    """`forward(idx, targets=None)` given only idx returns logits: the step's cross entropy applies."""
    report, measured, _ = _both(OWN_LOSS, "OwnLoss()", (16,), "int64", 8)
    assert report.loss == "cross_entropy"
    _close(report, measured)


def test_a_number_forward_returns_is_the_loss():
    """`return self.fc(x).mean()`: backward starts there, whatever `loss` says."""
    source = HEAD + textwrap.dedent("""
        class Scalar(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 1)

            def forward(self, x):
                return self.fc(x).mean()
    """)
    report, measured, _ = _both(source, "Scalar()", (4,), "float32", 2, loss="mse")
    assert report.loss == "forward"
    _close(report, measured)


def test_one_dtype_per_input_must_match_the_inputs():
    result = analyse_source(OWN_LOSS, "model.py", Settings(input_shape=((16,), (16,)),
                                                           input_dtype=("int64", "int64", "int64")), model="OwnLoss()")
    assert not result.models
    assert "3 dtypes for 2 inputs" in result.skipped[0][1]
