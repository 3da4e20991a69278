"""Sizes PyTorch refuses are reported, not carried into the figures.

For each case torch itself (the oracle) must raise when the layer is built or run; gpumem must
then report the model with GPM300 (shapes that cannot be) or GPM201 and produce no memory figures
for it. Cases torch accepts (a zero-width layer) must stay silent.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from flake8_gpumem.analysis import analyse_source

SOURCE = """\
import torch.nn as nn


class Net(nn.Module):  # gpumem: input_shape=(4, 8, 8) batch_size=2
    def __init__(self):
        super().__init__()
        self.layer = {layer}

    def forward(self, x):
        return self.layer(x)
"""
BUILT, CALLED = 7, 10  # the lines of `self.layer = ...` and of `return self.layer(x)`
REFUSED = {  # layer source -> (code, line): a layer refused when built, or an output refused when run
    "nn.Linear(8, -3)": ("GPM300", BUILT),
    "nn.Linear(8, 2.5)": ("GPM300", BUILT),
    "nn.Conv2d(4, -8, 3)": ("GPM300", BUILT),
    "nn.Conv2d(4, 8, 3, groups=-1)": ("GPM300", BUILT),
    "nn.BatchNorm2d(-4)": ("GPM300", BUILT),
    "nn.Upsample(scale_factor=-2)": ("GPM300", CALLED),
    "nn.Conv2d(4, 8, 0)": ("GPM201", BUILT),
    "nn.MaxPool2d(-1)": ("GPM201", BUILT),
}
ACCEPTED = ["nn.Linear(8, 0)", "nn.Flatten(0, 0)"]


def torch_refuses(layer: str) -> bool:
    try:
        eval(layer, {"nn": nn})(torch.zeros(2, 4, 8, 8))  # the test's own literal, not linted code
    except (RuntimeError, TypeError, ValueError):
        return True
    return False


@pytest.mark.parametrize("layer", REFUSED)
def test_a_size_torch_refuses_is_reported(layer):
    assert torch_refuses(layer), f"the oracle accepts {layer}: the case is wrong"
    result = analyse_source(SOURCE.format(layer=layer), "net.py")
    assert result.models == [], f"{layer} was analysed into figures: {result.models[0].memory}"
    assert [(d.code, d.line) for d in result.diagnostics] == [REFUSED[layer]], result.diagnostics


@pytest.mark.parametrize("layer", ACCEPTED)
def test_sizes_torch_accepts_are_not_reported(layer):
    assert not torch_refuses(layer), f"the oracle refuses {layer}: the case is wrong"
    result = analyse_source(SOURCE.format(layer=layer), "net.py")
    assert result.diagnostics == [] and [m.name for m in result.models] == ["Net"], result.diagnostics
