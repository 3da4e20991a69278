"""A model set up for training in the code: `torch.compile(model)`, `DDP(model, device_ids=[rank])`,
`model.to(device)` and `.bfloat16()` are the model they are given, on a device the code may pick at
run time.
"""
from __future__ import annotations

from flake8_gpumem.analysis import analyse_source
from flake8_gpumem.config import Settings

HEAD = """\
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Net(nn.Module):
    def __init__(self, width=64):
        super().__init__()
        self.fc1 = nn.Linear(64, width)
        self.fc2 = nn.Linear(width, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))
"""
NET_PARAMS = 64 * 64 + 64 + 64 * 10 + 10
BASE = Settings(input_shape=(64,), batch_size=8, optimizer="adam", device="cpu")


def analyse(src: str, model: str | None = None, **settings):
    return analyse_source(src, "net.py", Settings(**{**BASE.__dict__, **settings}), model=model)


def only(result):
    assert len(result.models) == 1, ([m.name for m in result.models], result.diagnostics)
    return result.models[0]


def test_a_model_named_by_an_expression_runs_through_its_wrappers_and_placements():
    for expression in ("torch.compile(Net())", "Net().to(device)", "Net().bfloat16()", "nn.DataParallel(Net().cuda())",
                       "DDP(Net(), device_ids=[int(os.environ['LOCAL_RANK'])])"):
        result = analyse(HEAD, expression)
        assert only(result).params == NET_PARAMS, expression
