"""The analysis slows Python's cyclic collector down while it runs and gives the caller its pace
back, also when the analysis fails."""
from __future__ import annotations

import gc

from flake8_gpumem.analysis import analyse_source
from flake8_gpumem.config import Settings

MODEL = """\
import torch.nn as nn


class Net(nn.Module):  # gpumem: input_shape=(8,)
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, {width})

    def forward(self, x):
        return self.fc(x)
"""


def test_the_collector_gets_its_pace_back():
    pace = gc.get_threshold()
    assert len(analyse_source(MODEL.format(width=4), "net.py", Settings(batch_size=2)).models) == 1
    assert gc.get_threshold() == pace
    failed = analyse_source(MODEL.format(width="undefined_name"), "net.py", Settings(batch_size=2))
    assert not failed.models and failed.skipped
    assert gc.get_threshold() == pace
