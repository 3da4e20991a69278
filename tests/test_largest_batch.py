"""The largest batch that fits: the closed form (flake8_gpumem/batch.py) against the search it replaces.

The closed form draws each point of the simulated step as a line through batches 2 and 3 and
checks it at the first batch it says does not fit; where the step is not affine in the batch it
falls back to the search. Both must give the same answer on every fixture model and on the
generated models, at a budget the model fits by far, one near its configured batch, and one
below batch 1's needs.
"""
from __future__ import annotations

from dataclasses import replace

import generated_models
import pytest
from fixture_models import discover

from flake8_gpumem import analysis
from flake8_gpumem.analysis import analyse_source
from flake8_gpumem.batch import affine_at, largest_batch
from flake8_gpumem.config import Settings

MIB = 2 ** 20
FIXTURES = discover()
SEEDS = range(120)
# What the oneDNN workspace of a recurrent layer on the CPU rounds up to 4096-byte pages: a step in
# the batch, not a line. These fixtures take the search.
NOT_AFFINE = {"lstm_classifier.py::LSTMClassifier", "rnn_models.py::GRUClassifier", "rnn_models.py::SequenceTagger",
              "rnn_models.py::StackedBiGRU", "rnn_models.py::BiRNNTagger"}


class Spy:
    """Counts the interpretations (`_run`) and the searches while a model is analysed."""

    def __init__(self, monkeypatch):
        self.runs = self.searches = 0
        run, search = analysis._run, analysis._search

        def counted_run(*args):
            self.runs += 1
            return run(*args)

        def counted_search(*args):
            self.searches += 1
            return search(*args)

        monkeypatch.setattr(analysis, "_run", counted_run)
        monkeypatch.setattr(analysis, "_search", counted_search)


def both_answers(monkeypatch, source: str, filename: str, name: str, settings: Settings) -> tuple:
    """(closed form, search, whether the closed form fell back) for one model and budget."""
    spy = Spy(monkeypatch)
    closed = analyse_source(source, filename, settings, model=name).models[0].max_batch_size
    fell_back = spy.searches > 0
    with monkeypatch.context() as m:
        m.setattr(analysis, "_max_batch", analysis._search)
        searched = analyse_source(source, filename, settings, model=name).models[0].max_batch_size
    return closed, searched, fell_back


def budgets(peak: int) -> list:
    """(budget, reserve): fits by far (and a reserve), near the configured batch, below batch 1."""
    return [(peak * 40 + 300 * MIB, 300 * MIB), (peak * 5 // 2, 0), (peak // 3, 0)]


def check(monkeypatch, source: str, filename: str, name: str, base: Settings) -> set:
    peak = analyse_source(source, filename, base, model=name).models[0].memory.peak
    fell_back = set()
    for budget, reserve in budgets(peak):
        closed, searched, fell = both_answers(monkeypatch, source, filename, name,
                                              replace(base, budget=budget, reserve=reserve))
        assert closed == searched, f"budget {budget}, reserve {reserve}: closed form {closed}, search {searched}"
        if fell:
            fell_back.add(budget)
    return fell_back


@pytest.mark.parametrize("fx", FIXTURES, ids=lambda fx: fx.id)
def test_fixture_closed_form_equals_search(monkeypatch, fx):
    fell_back = check(monkeypatch, fx.path.read_text(), f"fixtures/{fx.path.name}", fx.name, Settings())
    if fx.id in NOT_AFFINE:
        assert fell_back, "a page-rounded workspace is not affine in the batch: the search should answer"
    else:
        assert not fell_back, "an affine step should be solved in closed form"


@pytest.mark.parametrize("seed", SEEDS)
def test_generated_closed_form_equals_search(monkeypatch, seed):
    g = generated_models.generate(seed)
    base = Settings(batch_size=g.batch, input_shape=g.input_shape, input_dtype=g.input_dtype)
    fell_back = check(monkeypatch, g.source, "generated.py", g.name, base)
    if "nn.LSTM(" not in g.source and "nn.GRU(" not in g.source:
        assert not fell_back, "only a recurrent layer's page-rounded workspace is not affine here"


def test_closed_form_takes_three_interpretations(monkeypatch):
    source = ("import torch.nn as nn\n\n"
              "net = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))  # gpumem: input_shape=(64,)\n")
    spy = Spy(monkeypatch)
    report = analyse_source(source, "net.py", Settings(budget=8 * 2 ** 30, batch_size=32)).models[0]
    # one run at the configured batch; batches 2, 3 and the first that does not fit
    assert (spy.runs, spy.searches) == (4, 0)
    assert report.max_batch_size > 10 ** 6


QUADRATIC = """\
import torch.nn as nn


class Gram(nn.Module):  # gpumem: input_shape=(64,)
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 64)

    def forward(self, x):
        h = self.fc(x)
        return h @ h.t()  # batch x batch scores: quadratic in the batch
"""

BRANCHY = """\
import torch.nn as nn


class Branchy(nn.Module):  # gpumem: input_shape=(64,)
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        if x.shape[0] > 2:  # control flow on the batch: other points at batch 3 than at batch 2
            x = x * 2
        return self.fc(x)
"""


@pytest.mark.parametrize("source, name", [(QUADRATIC, "Gram"), (BRANCHY, "Branchy")])
def test_a_step_that_is_not_affine_falls_back_to_the_search(monkeypatch, source, name):
    closed, searched, fell_back = both_answers(monkeypatch, source, "m.py", name, Settings(budget=64 * MIB))
    assert fell_back
    assert closed == searched and closed > 3


def test_largest_batch_by_hand():
    two = [("forward, a", 100), ("backward, a", 150)]
    three = [("forward, a", 110), ("backward, a", 170)]
    # a: 100 + 10(b - 2) <= 200 up to b = 12; b: 150 + 20(b - 2) <= 200 up to b = 4 (190), not 5 (210)
    assert largest_batch(two, three, 200) == 4
    assert largest_batch(two, three, 149) == 1  # batch 2 does not fit: batch 1 is the caller's to check
    assert largest_batch(two, three[:1], 200) is None  # the points do not pair up
    assert largest_batch(two, [("forward, a", 90), ("backward, a", 170)], 200) is None  # a total that shrinks
    assert affine_at(two, three, [("forward, a", 130), ("backward, a", 210)], 5)
    assert not affine_at(two, three, [("forward, a", 130), ("backward, a", 212)], 5)


def test_the_plugin_computes_no_largest_batch_for_a_model_that_fits(monkeypatch):
    source = "import torch.nn as nn\n\nnet = nn.Sequential(nn.Linear(64, 10))  # gpumem: input_shape=(64,)\n"
    spy = Spy(monkeypatch)
    fits = analyse_source(source, "net.py", Settings(budget=2 ** 30), layers=False)
    assert fits.diagnostics == [] and spy.runs == 1 and fits.models[0].max_batch_size is None
    over = analyse_source(source, "net.py", Settings(budget=25 * 2 ** 10, batch_size=64), layers=False)
    assert [d.code for d in over.diagnostics] == ["GPM100"] and 1 < over.models[0].max_batch_size < 64
    assert f"largest batch that fits: {over.models[0].max_batch_size}" in over.diagnostics[0].message


HELPER = """\
import torch.nn as nn


def mlp(width):
    return nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))
"""

USES_HELPER = """\
import torch.nn as nn
from helpers import mlp

small = mlp(128)  # gpumem: input_shape=(64,)
large = mlp(4096)  # gpumem: input_shape=(64,)


def make(width):
    return nn.Sequential(nn.Linear(64, width), nn.Linear(width, 10))
"""


def test_each_statement_and_expression_is_parsed_once_per_process(tmp_path, monkeypatch):
    """Several models, each run at several batches (a budget none fits), a model named by an
    expression, and a second file importing the same module: libcst reads each text once."""
    import libcst

    (tmp_path / "pyproject.toml").write_text("[tool.gpumem]\n")
    (tmp_path / "helpers.py").write_text(HELPER)
    for name in ("a.py", "b.py"):
        (tmp_path / name).write_text(USES_HELPER)
    parsed: list = []
    for fn in ("parse_module", "parse_expression"):
        real = getattr(libcst, fn)
        monkeypatch.setattr(libcst, fn, lambda text, _real=real, **kw: parsed.append(text) or _real(text, **kw))
    spy = Spy(monkeypatch)
    tight = Settings(budget=2 ** 20, batch_size=4096)
    for name in ("a.py", "b.py"):
        result = analyse_source(USES_HELPER, str(tmp_path / name), tight, layers=False)
        assert [d.code for d in result.diagnostics] == ["GPM100", "GPM100"]
    made = analyse_source(USES_HELPER, str(tmp_path / "a.py"), replace(tight, input_shape=(64,)),
                          model="make(512)").models[0]
    assert made.max_batch_size > 1 and spy.runs > 10  # every model ran at several batches
    repeated = {text for text in parsed if parsed.count(text) > 1}
    # each file's own statements once per file (a and b are two files with the same text); the
    # helper module and the expression once in all
    assert all(parsed.count(text) == 2 for text in repeated) and "make(512)" not in repeated
    assert sum("def mlp" in text for text in parsed) == 1
