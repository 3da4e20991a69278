"""FSDP2's CPUOffloadPolicy: what stays on the GPU and what the host holds.

The CPU oracle cannot measure it: on a CPU device FSDP2's host-to-device and device-to-host copies
are no-ops, so everything is host memory. The expected figures are hand calculations from what
FSDP2's source does (parallel.py's docstring names the lines), written out in each test.
"""
from __future__ import annotations

import pytest

from flake8_gpumem.analysis import analyse_source
from flake8_gpumem.cli import overrides_from, parser
from flake8_gpumem.config import DEFAULTS, ConfigError, Settings, settings_from

MLP = """
import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(64, 64) for _ in range(2)])

    def forward(self, x):
        return self.layers[1](torch.relu(self.layers[0](x)))
"""

BATCH = 8
ACTIVATION = BATCH * 64 * 4  # one 8 x 64 float32 tensor
UNIT = (64 * 64 + 64) * 4  # one Linear gathered: weight and bias, float32
SHARD = UNIT // 2  # its shard on each of 2 ranks (64 rows split evenly)


def memory(offload: str, **setup):
    settings = Settings(input_shape=(64,), batch_size=BATCH, loss="sum", optimizer="adam", strategy="fsdp",
                        world_size=2, shard_unit=("Linear",), offload=offload, **setup)
    return analyse_source(MLP, "mlp.py", settings, model="MLP").models[0].memory


def test_the_host_holds_shards_gradients_and_optimizer_state():
    pinned, pageable = memory("pinned"), memory("pageable")
    shards = 2 * SHARD  # both units; the root owns no parameter; 8,192- and 128-byte shards, powers of two:
    # the pinned blocks are their size
    adam = 2 * shards + 4 * 4  # exp_avg and exp_avg_sq of every shard, a float32 step per parameter
    assert pinned.host == pageable.host == shards + shards + adam  # the shards, their gradients, Adam's state
    assert pinned.pinned == 2 * shards  # CPUOffloadPolicy(pin_memory=True) pins the shards and their gradients
    assert pageable.pinned == 0
    # the GPU keeps no weight (the model has no buffers), no gradient and no optimizer state
    assert (pinned.weights, pinned.gradients, pinned.optimizer) == (0, 0, 0)


def test_pinned_blocks_are_rounded_up_to_a_power_of_two():
    """PyTorch's pinned-memory allocator rounds every block up to a power of two: 48-wide Linears at 2
    ranks have 24 x 48 x 4 = 4,608-byte weight shards (8,192-byte blocks) and 96-byte bias shards (128)."""
    source = MLP.replace("64", "48")
    pinned, pageable = (analyse_source(source, "mlp.py", Settings(
        input_shape=(48,), batch_size=BATCH, loss="sum", strategy="fsdp", world_size=2, shard_unit=("Linear",),
        offload=offload), model="MLP").models[0].memory for offload in ("pinned", "pageable"))
    shards = 2 * (4608 + 96)
    adam = 2 * shards + 4 * 4
    assert pinned.pinned == 2 * 2 * (8192 + 128)  # each shard and each gradient's shard, one block per parameter
    assert pinned.host == pinned.pinned + adam  # Adam's state is pageable: no rounding
    assert pageable.host == 2 * shards + adam


def test_the_gpu_peak_without_what_lives_on_the_host():
    """layers.1's backward, by hand: the input, relu's output and the model's output (3 activations),
    layers.1 gathered, layers.0's all-gather prefetched, the input's gradient and layers.1's unsharded
    weight gradients (a unit's size). Nothing of the shards, gradients' shards or Adam's state."""
    off, offloaded = memory("off"), memory("pinned")
    assert offloaded.peak == 3 * ACTIVATION + 2 * UNIT + ACTIVATION + UNIT
    assert offloaded.peak_phase == "backward, layers.1"
    assert offloaded.host == off.weights + off.gradients + off.optimizer  # what FSDP without offload keeps on the GPU


def test_the_host_copy_of_each_shard_lives_until_the_all_gather():
    """Forward's first gather: the input, layers.0's all-gather output and its shard copied from the host."""
    from flake8_gpumem.trace import Reach

    settings = Settings(input_shape=(64,), batch_size=BATCH, loss="sum", strategy="fsdp", world_size=2,
                        shard_unit=("Linear",), offload="pinned")
    timeline = analyse_source(MLP, "mlp.py", settings, model="MLP", timeline=True).models[0].timeline
    first = next(r.total for r in timeline.records
                 if isinstance(r, Reach) and r.phase == "forward, all-gather before layers.0")
    assert first == ACTIVATION + UNIT + SHARD


def test_offload_setting_key_flag_and_errors():
    assert DEFAULTS.offload == "off"
    assert [settings_from({"offload": v}, "here").offload for v in (True, False, "Pageable", "true")] == [
        "pinned", "off", "pageable", "pinned"]
    with pytest.raises(ConfigError, match=r"offload = 'yes'.*pinned, pageable, off"):
        settings_from({"offload": "yes"}, "here")
    given = [overrides_from(parser().parse_args(["report", "m.py", *flag])).offload
             for flag in ([], ["--offload"], ["--offload", "pageable"])]
    assert given == [None, "pinned", "pageable"]  # no flag: the file's or the configuration's
    result = analyse_source(MLP, "mlp.py", Settings(input_shape=(64,), strategy="ddp", world_size=2, offload="pinned"),
                            model="MLP")
    assert not result.models
    assert [(d.code, "needs strategy = fsdp" in d.message) for d in result.diagnostics] == [("GPM001", True)]


SHARDED = "from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard\n" + MLP + """
model = MLP()
for layer in model.layers:
    fully_shard(layer, offload_policy=POLICY)
fully_shard(model, offload_policy=POLICY)
"""


@pytest.mark.parametrize("policy, offload, unread", [
    ("CPUOffloadPolicy()", "pinned", False),
    ("CPUOffloadPolicy(pin_memory=False)", "pageable", False),
    ("OffloadPolicy()", "off", False),
    ("make_policy()", "off", True),  # a call gpumem cannot read: GPM900, figures without offload
])
def test_offload_policy_as_the_file_passes_it(policy, offload, unread):
    source = SHARDED.replace("POLICY", policy)
    result = analyse_source(source, "train.py", Settings(input_shape=(64,), world_size=2), model="MLP")
    assert result.models[0].settings.offload == offload
    notes = [d.message for d in result.diagnostics if d.code == "GPM900" and "offload_policy" in d.message]
    assert bool(notes) == unread, result.diagnostics
    given = analyse_source(source, "train.py", Settings(input_shape=(64,), world_size=2, offload="off"), model="MLP")
    assert given.models[0].settings.offload == "off"  # the command line wins


def test_different_offload_policies_per_unit_are_said():
    source = SHARDED.replace("POLICY", "CPUOffloadPolicy()", 1).replace("POLICY", "CPUOffloadPolicy(pin_memory=False)")
    result = analyse_source(source, "train.py", Settings(input_shape=(64,), world_size=2), model="MLP")
    assert result.models[0].settings.offload == "pinned"  # the first
    assert any("different offload policies" in d.message for d in result.diagnostics if d.code == "GPM900")
