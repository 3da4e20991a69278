"""The set-up oracle (tests/setup_oracle.py) on small models, so that it cannot rot unnoticed.

Checkpointing, gradient accumulation, DDP and FSDP2 over gloo: what each one must show of
itself in MemTracker's numbers, whatever the analyser says about them.
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import setup_oracle  # noqa: E402
import torch_oracle  # noqa: E402

SOURCE = '''
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class Block(nn.Module):
    def __init__(self, d=64, hidden=256):
        super().__init__()
        self.fc1 = nn.Linear(d, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, d)

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(x)))


class Net(nn.Module):
    def __init__(self, checkpointed=False):
        super().__init__()
        self.blocks = nn.ModuleList([Block() for _ in range(3)])
        self.head = nn.Linear(64, 10)
        self.checkpointed = checkpointed

    def forward(self, x):
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if self.checkpointed else block(x)
        return self.head(x)
'''
SHAPE = (32, 16, 64)


def build(**kwargs):
    torch.manual_seed(0)
    return torch_oracle.load(SOURCE)["Net"](**kwargs)


def test_wrap_checkpoint_is_the_checkpoint_the_source_could_have_written():
    plain = torch_oracle.measure_step(build(), SHAPE)
    in_source = setup_oracle.measure_checkpointed(build(checkpointed=True), SHAPE)
    model = build()
    assert setup_oracle.wrap_checkpoint(model, "Block") == 3
    wrapped = setup_oracle.measure_checkpointed(model, SHAPE)
    assert wrapped.peak == in_source.peak
    assert wrapped.categories == in_source.categories
    assert wrapped.peak < plain.peak
    with pytest.raises(ValueError, match="no module of class"):
        setup_oracle.wrap_checkpoint(build(), "Missing")


def test_accumulation_of_one_micro_batch_is_measure_step_and_more_keep_the_gradients():
    plain = torch_oracle.measure_step(build(), SHAPE)
    one = setup_oracle.measure_accumulated(build(), SHAPE, k=1)
    two = setup_oracle.measure_accumulated(build(), SHAPE, k=2)
    assert one == plain
    assert two.peak > plain.peak
    # from the second micro-batch on, every gradient exists all through backward
    assert two.categories["Gradient"] == plain.weights
    assert two.weights == plain.weights and two.optimizer_state == plain.optimizer_state


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_distributed_ranks_report_their_own_memory(strategy):
    if not setup_oracle.gloo_available():
        pytest.skip("no gloo backend in this PyTorch build")
    plain = torch_oracle.measure_step(build(), SHAPE)
    ranks = setup_oracle.measure_distributed(SOURCE, "Net()", SHAPE, strategy=strategy, world_size=2,
                                             shard_units=("Block",), timeout=240)
    assert len(ranks) == 2 and ranks[0] == ranks[1]
    rank = ranks[0]
    if strategy == "ddp":
        # the reducer's gradient buckets: one more copy of every gradient, held across steps
        assert rank.weights == plain.weights
        assert rank.categories["Other"] == plain.weights
        assert rank.peak == plain.peak + plain.weights
    else:
        # every parameter of this model has an even first dimension: exactly half on each rank
        assert rank.weights == plain.weights // 2
        assert rank.optimizer_state < plain.optimizer_state
        assert rank.peak < plain.peak + plain.weights
