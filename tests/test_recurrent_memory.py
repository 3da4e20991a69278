"""Recurrent layers' training-step peak against PyTorch, beyond the fixtures.

nn.RNN and nn.GRU run ATen's native per-step cells on the CPU; their backward is
modelled step by step (catalogue.elman_step / gru_step / lstm_step). These variants cross
layers, directions, sequence lengths (1, 2, 3 and long), batch sizes and the
weight-dominated shapes where the backward holds the peak, in float32, float16 and
under AMP, time-major and batch-first. The head reads every step's output, so the
layers' output gradient is a real buffer.
"""
from __future__ import annotations

import pytest

pytest.importorskip("torch")
import torch_oracle  # noqa: E402

from flake8_gpumem import catalogue  # noqa: E402
from flake8_gpumem.analysis import analyse_source  # noqa: E402
from flake8_gpumem.config import Settings  # noqa: E402

SOURCE = """\
import torch.nn as nn


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.{kind}({inputs}, {hidden}, num_layers={layers}, bidirectional={bi}, batch_first={bf}{proj})
        self.head = nn.Linear({out} * {directions}, 5)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out)
"""

# (input size, hidden size, layers, bidirectional, steps, batch)
ACTIVATION_BOUND = [(8, 32, 2, False, 30, 4), (8, 32, 2, False, 30, 32), (8, 32, 1, False, 30, 4),
                    (16, 24, 2, True, 12, 8), (16, 24, 3, True, 6, 8), (16, 24, 3, False, 12, 8),
                    (64, 16, 2, False, 20, 4), (8, 32, 2, False, 2, 4), (8, 32, 2, False, 3, 4),
                    (8, 32, 1, False, 1, 4)]
WEIGHT_BOUND = [(256, 512, 2, False, 4, 2), (256, 512, 2, True, 4, 2), (64, 256, 3, False, 10, 2),
                (64, 256, 1, False, 5, 1), (128, 128, 2, True, 16, 4)]
TOLERANCE = {"float32": 0.005, "float16": 0.005, "amp-bf16": 0.03}


def _cases():
    for kind in ("RNN", "GRU", "LSTM", "LSTM-projected"):
        for dims in ACTIVATION_BOUND + WEIGHT_BOUND:
            for dtype in ("float32", "amp-bf16", "float16"):  # float16: the native LSTM cell too
                for batch_first in (False, True):
                    yield pytest.param(kind, dims, dtype, batch_first,
                                       id=f"{kind}-I{dims[0]}-H{dims[1]}-L{dims[2]}-{'bi' if dims[3] else 'uni'}"
                                          f"-T{dims[4]}-N{dims[5]}-{dtype}{'-batch-first' if batch_first else ''}")


@pytest.mark.parametrize("kind, dims, dtype, batch_first", list(_cases()))
def test_recurrent_peak(kind, dims, dtype, batch_first):
    inputs, hidden, layers, bi, steps, batch = dims
    proj = hidden // 2 if kind == "LSTM-projected" else 0  # runs ATen's native LSTM cell, not oneDNN's
    src = SOURCE.format(kind=kind.split("-")[0], inputs=inputs, hidden=hidden, layers=layers, bi=bi, bf=batch_first,
                        proj=f", proj_size={proj}" if proj else "", out=proj or hidden, directions=2 if bi else 1)
    # time-major: the analyser's leading (batch) dimension is the sequence
    lead, shape = (batch, (steps, inputs)) if batch_first else (steps, (batch, inputs))
    settings = Settings(optimizer="sgd", dtype=dtype, device="cpu", batch_size=lead, input_shape=shape)
    result = analyse_source(src, "tagger.py", settings, model="Tagger")
    estimate = result.models[0].memory
    torch_oracle.torch.manual_seed(0)
    model = torch_oracle.instantiate(torch_oracle.load(src), "Tagger")
    measured = torch_oracle.measure_step(model, (lead,) + shape, "float32", "sgd", dtype)
    error = (estimate.peak - measured.peak) / measured.peak
    assert abs(error) <= TOLERANCE[dtype], (
        f"peak estimate {estimate.peak:,} B vs measured {measured.peak:,} B: {error:+.2%} "
        f"(estimated peak at {estimate.peak_phase})")


@pytest.mark.parametrize("step, sizes", [
    ("elman_step", dict(h=40, W=360, b=48, h0=36, w=0)),
    ("gru_step", dict(h=40, W=1080, b=144, h0=36, w=540)),
    ("lstm_step", dict(h=40, p=24, W=240, Wr=60, b=80, h0=48, c0=40, w=120)),
])
@pytest.mark.parametrize("scale", ["h", "W"])  # activation-bound or weight-bound: peaks in other steps
def test_replay_extrapolates_the_alike_steps_exactly(step, sizes, scale):
    """replay runs one of the steps T-2 .. 2 and extrapolates the rest: the same peaks as running all."""
    fn = getattr(catalogue, step)
    args = tuple(v * 50 if k == scale else v for k, v in sizes.items())
    for T in range(1, 12):
        fast, slow = catalogue.Ledger(), catalogue.Ledger()
        catalogue.replay(fast, T, lambda led, t: fn(led, t, T, *args))
        for t in reversed(range(T)):
            fn(slow, t, T, *args)
        assert (fast.before, fast.peak, fast.cur) == (slow.before, slow.peak, slow.cur), T
