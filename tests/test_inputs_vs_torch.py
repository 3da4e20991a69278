"""Inputs as real models take them, against PyTorch: the models in fixtures/inputs/.

A denoiser's per-sample timestep and class label (shape (batch,), int64), a sequence-first LSTM
(the batch is the input's second dimension) with a float argument of forward, a distiller whose
forward takes only **kwargs, and a classifier that returns its own loss when given `labels=`.
gpumem reads each model's inputs from its `# gpumem:` comment; PyTorch runs the model on the
inputs written out here by hand (tests/torch_oracle.py): every leaf call's name, type and output
shape, and one training step measured by MemTracker, its peak within 3%.
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import torch_oracle  # noqa: E402
from input_cases import CASES, STEPS, Case, analysed, built, measured  # noqa: E402

from flake8_gpumem.analysis import analyse_source  # noqa: E402
from flake8_gpumem.config import Settings  # noqa: E402

TOLERANCE = 0.03


def _inputs(case: Case) -> tuple[list, dict]:
    xs = [torch_oracle.make_input(s, d) for s, d in zip(case.shapes, case.dtypes)]
    kwargs = dict(case.forward_args)
    kwargs.update((n, x) for n, x in zip(case.names, xs) if n is not None)
    return [x for n, x in zip(case.names, xs) if n is None], kwargs


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_leaf_call_and_the_inputs(case):
    report = analysed(case)
    truth = torch_oracle.profile(built(case), *_inputs(case))
    assert report.params == truth.params
    assert [(l.name, l.type, l.output_shape) for l in report.layers if l.module] == [
        (c.name, c.type, c.output_shape) for c in truth.calls]
    shapes = report.input_shape if len(case.shapes) > 1 else [report.input_shape]
    assert list(shapes) == case.shapes


@pytest.mark.parametrize("case, optimizer", STEPS, ids=[f"{c.id}-{o}" for c, o in STEPS])
def test_the_step(case, optimizer):
    est = analysed(case, optimizer).memory
    truth = measured(case, optimizer)
    assert abs(est.peak - truth.peak) <= TOLERANCE * truth.peak, (
        f"peak {est.peak:,} B vs measured {truth.peak:,} B ({(est.peak - truth.peak) / truth.peak:+.2%}), "
        f"estimated at {est.peak_phase}; measured at the peak: {truth.categories}")
    assert (est.weights, est.gradients, est.optimizer) == (truth.weights, truth.gradients, truth.optimizer_state)


def test_the_models_own_loss_is_the_one_backward_starts_from():
    """Given labels=, the classifier's returned loss is the step's: no loss applied after forward."""
    report = analysed(CASES[-1])
    assert report.loss == "forward"
    assert "loss" not in [l.name for l in report.layers]


def test_a_forward_argument_given_takes_the_branch_it_decides():
    """noise_std=0.0 (forward's default) adds no noise; 0.1 draws it: torch.randn_like of the input."""
    plain, noisy = analysed(CASES[1]), analysed(CASES[2])
    assert "torch.randn_like" not in [l.type for l in plain.layers]
    noise = next(l for l in noisy.layers if l.type == "torch.randn_like")
    assert noise.output_shape == (35, 4, 16) and noise.activation_bytes == 35 * 4 * 16 * 4


def test_the_largest_batch_grows_the_batch_dimension():
    """A budget of the measured peak at (64, 16, 32) fits batch 16 of the sequence-first encoder: the
    search grows the second dimension. Grown in the first, the sequence, attention's S x S scores
    would grow with the square of the batch."""
    case = next(c for c in CASES if c.model == "Encoder")
    measured = torch_oracle.measure_step(built(case), [(64, 16, 32)], "float32", "adam").peak
    report = analysed(case, budget=measured)
    assert 15 <= report.max_batch_size <= 17, report.max_batch_size


RANDOM_BRANCH = """
import random
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x, squash_ratio=0.5):
        if random.random() < squash_ratio:
            x = torch.tanh(x)
        return self.fc(x)
"""


@pytest.mark.parametrize("ratio, squashed", [(None, None), (0.0, False), (1.0, True), (0.25, None)])
def test_a_forward_argument_that_decides_a_random_branch(ratio, squashed):
    """`random.random() < ratio`, as teacher forcing is written: a ratio of 0 or 1 decides it, any other
    leaves it to chance, and gpumem does not guess (forward's default 0.5 included)."""
    given = {"squash_ratio": ratio} if ratio is not None else {}
    result = analyse_source(RANDOM_BRANCH, "net.py", Settings(input_shape=(8,), batch_size=2, forward_args=given),
                            model="Net")
    if squashed is None:
        assert not result.models and "holds or not by chance" in result.skipped[0][1], result.skipped
    else:
        types = [layer.type for layer in result.models[0].layers]
        assert ("torch.tanh" in types) is squashed, types


WRITTEN_INTO_ZEROS = """
import torch
from torch import nn


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.step = nn.Linear(16, 16)

    def forward(self, x):
        outputs = torch.zeros(4, x.shape[0], 16)
        for t in range(4):
            x = self.step(x)
            outputs[t] = x
        return outputs
"""


def test_a_gradient_written_into_a_buffer_by_item_assignment_is_not_guessed():
    """`outputs[t] = output` into torch.zeros, as seq2seq decoders collect their steps: autograd's
    CopySlices makes the buffer part of the graph, and the Linear's parameters get gradients (PyTorch
    says so); gpumem does not model that graph, and says so rather than report no gradients."""
    model = torch_oracle.load(WRITTEN_INTO_ZEROS)["Decoder"]()
    assert torch_oracle.measure_step(model, (2, 16), loss="sum").gradients == (16 * 16 + 16) * 4
    result = analyse_source(WRITTEN_INTO_ZEROS, "dec.py", Settings(input_shape=(16,), batch_size=2), model="Decoder")
    assert not result.models and "outputs[t] = ... writes a tensor that needs a gradient" in result.skipped[0][1]
