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


LIT = """
import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F


class LitClassifier(L.LightningModule):
    def __init__(self, in_dim=64, hidden=128, classes=10):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, classes))
        self.example_input_array = torch.zeros(4, in_dim)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)
"""


def test_a_lightning_module_is_a_model_with_its_example_input_and_optimizer():
    report = analyse_source(LIT, "lit.py").models[0]
    assert report.name == "LitClassifier"
    assert report.input_shape == (4, 64)  # from example_input_array
    assert report.params == 64 * 128 + 128 + 128 * 10 + 10
    assert report.settings.optimizer == "adamw"
    assert [l.name for l in report.layers if l.module] == ["net.0", "net.1", "net.2"]


def test_data_dependent_sizes_are_reported_precisely():
    src = """
import torch.nn as nn

vocab = open("vocab.txt").read().split()


class Tagger(nn.Module):  # gpumem: input_shape=(12,) input_dtype=int64
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(len(vocab), 32)

    def forward(self, x):
        return self.embed(x)
"""
    result = analyse_source(src, "tagger.py")
    assert result.models == []
    (d,) = [d for d in result.diagnostics if d.code == "GPM900"]
    assert d.line == 10  # the Embedding call that needs the vocabulary size
    assert "vocab" in d.message and "open" in d.message


BARE = NET.replace("  # gpumem: input_shape=(8,) batch_size=2", "")


def stated(src):
    """(input shape, batch) the file states for its class Net."""
    from flake8_gpumem.source import read_source
    [net] = [m for m in read_source(src, "net.py").models if m.name == "Net"]
    return net.stated.input_shape, net.stated.batch_size


def test_an_example_bound_in_one_statement_and_used_in_another_is_found():
    # the example tensor at module level, the model built and called inside a function
    src = BARE + "\nx = torch.randn(3, 8)\n\n\ndef main():\n    net = Net()\n    return net(x)\n"
    assert stated(src) == ((8,), 3)
    # the model at module level, called on an example inside a function
    src = BARE + "\nmodel = Net()\n\n\ndef smoke():\n    model(torch.zeros(5, 8))\n"
    assert stated(src) == ((8,), 5)
    # torchinfo's summary inside a function: its size includes the batch
    src = BARE + "\nfrom torchinfo import summary\n\n\ndef show():\n    summary(Net(), input_size=(7, 8))\n"
    assert stated(src) == ((8,), 7)


def test_a_function_that_builds_no_example_states_nothing():
    src = BARE + "\n\ndef make():\n    net = Net()\n    return net\n\n\ndef other(x):\n    return torch.randn(2, 4)\n"
    assert stated(src) == (None, None)
