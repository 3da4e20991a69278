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


class Cycle:
    """An object in a reference cycle: only the cyclic collector can free it."""

    def __init__(self):
        self.me = self


def test_the_plugin_freezes_what_outlives_a_file_and_hands_it_back():
    import ast
    import weakref

    from flake8_gpumem import collector, plugin

    src = MODEL.format(width=4)

    def lint():
        assert list(plugin.Plugin(ast.parse(src), src.splitlines(True), "net.py").run()) == []

    gc.unfreeze()
    collector._frozen_files = 0
    try:
        held = Cycle()
        freed = []
        weakref.finalize(held, freed.append, True)
        lint()  # `held` is alive here: it is frozen with everything else
        assert gc.get_freeze_count() > 0
        del held
        gc.collect()
        assert not freed  # frozen garbage waits ...
        for _ in range(collector.FREEZE_SPAN):
            lint()
        assert freed  # ... at most FREEZE_SPAN files, then the collector gets it back
    finally:
        gc.unfreeze()
        collector._frozen_files = 0



def test_no_middle_or_full_collection_runs_while_models_are_analysed(monkeypatch):
    """The trees an analysis keeps are walked while young at most: 20 models of 60 layers make
    enough objects for middle collections at the usual pace, and none runs; young ones do."""
    from flake8_gpumem import analysis

    source = "import torch.nn as nn\n" + "".join(
        f"\nm{i} = nn.Sequential(\n" + "    nn.Linear(8, 8),\n" * 60 + ")\n" for i in range(20))
    inside, started = [], []
    analyse_model = analysis._analyse_model

    def analysed(*args, **kwargs):
        inside.append(True)
        try:
            return analyse_model(*args, **kwargs)
        finally:
            inside.pop()

    def seen(phase, info):
        if phase == "start" and inside:
            started.append(info["generation"])

    monkeypatch.setattr(analysis, "_analyse_model", analysed)
    gc.collect()
    gc.callbacks.append(seen)
    try:
        result = analyse_source(source, "many.py", Settings(batch_size=2, input_shape=(8,)))
    finally:
        gc.callbacks.remove(seen)
    assert len(result.models) == 20
    assert started and set(started) == {0}
