"""What gpumem does to Python's cyclic collector: the analysis restores its pace; the plugin
freezes what outlives each file, collects it once the frozen set has doubled, and leaves a host
that freezes objects itself alone."""
from __future__ import annotations

import gc
import weakref

import pytest

from flake8_gpumem.analysis import analyse_source
from flake8_gpumem.config import Settings
from flake8_gpumem.plugin import LongLived

MODEL = """\
import torch.nn as nn


class Net(nn.Module):  # gpumem: input_shape=(8,)
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(x)
"""


class Cycle:
    def __init__(self):
        self.me = self


@pytest.fixture
def fresh():
    """The collector as a new flake8 process finds it."""
    gc.unfreeze()
    LongLived.settled = None
    yield
    gc.unfreeze()
    LongLived.settled = None


def test_the_analysis_gives_the_collector_its_pace_back():
    pace = gc.get_threshold()
    assert len(analyse_source(MODEL, "net.py", Settings(batch_size=2)).models) == 1
    assert gc.get_threshold() == pace


def test_a_frozen_cycle_is_collected_once_the_frozen_set_has_doubled(fresh):
    cycle = Cycle()
    alive = weakref.ref(cycle)
    LongLived.set_aside()  # after the first file: everything alive is frozen
    settled = gc.get_freeze_count()
    assert LongLived.settled == settled > 0
    del cycle
    gc.collect()
    assert alive() is not None  # frozen: no collection walks it
    LongLived.set_aside()  # the next file, not yet double
    assert alive() is not None
    ballast = [[] for _ in range(settled + 1)]  # what later files keep: more than doubles the set
    LongLived.set_aside()
    assert alive() is None  # the reckoning gave everything back and collected it
    assert LongLived.settled > settled  # the reckoning counted the set anew
    del ballast


def test_a_host_that_froze_objects_itself_is_left_alone(fresh):
    kept = [Cycle()]
    gc.freeze()  # the host's own, e.g. before forking workers
    frozen = gc.get_freeze_count()
    LongLived.set_aside()
    assert gc.get_freeze_count() == frozen and LongLived.settled == -1
    del kept
