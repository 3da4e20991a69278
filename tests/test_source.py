"""What the file itself says: the optimizer a torch.optim call builds, example inputs."""
from __future__ import annotations

from flake8_gpumem.analysis import analyse_source
from flake8_gpumem.config import Settings

NET = """
import torch
import torch.nn as nn
import torch.optim as optim

class Net(nn.Module):  # gpumem: input_shape=(8,) batch_size=2
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 2)   # 8*2 + 2 = 18 parameters in 2 tensors

    def forward(self, x):
        return self.fc(x)
"""
PARAMS, TENSORS = 18, 2


def memory(source, **overrides):
    return analyse_source(source, "net.py", Settings(**overrides)).models[0]


def test_sgd_with_momentum_in_the_file_is_the_optimizer():
    src = NET + "\nmodel = Net()\nopt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)\n"
    report = memory(src)
    assert report.settings.optimizer == "sgd-momentum"
    assert report.memory.optimizer == PARAMS * 4  # one momentum buffer, no step counter


def test_plain_sgd_and_zero_momentum_keep_no_state():
    src = NET + "\nopt = torch.optim.SGD(Net().parameters(), lr=0.1, momentum=0)\n"
    assert memory(src).memory.optimizer == 0


def test_lightning_configure_optimizers_adamw():
    src = NET.replace("return self.fc(x)", """return self.fc(x)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)""")
    report = memory(src)
    assert report.settings.optimizer == "adamw"
    assert report.memory.optimizer == 2 * PARAMS * 4 + 4 * TENSORS  # exp_avg, exp_avg_sq, step


def test_the_command_line_beats_the_files_optimizer():
    src = NET + "\nopt = optim.Adam(Net().parameters())\n"
    assert memory(src, optimizer="sgd").memory.optimizer == 0
