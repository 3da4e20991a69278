"""The analyser against PyTorch, model by model, on every file in fixtures/.

Each model in a fixture carries its input on its definition line:

    class Net(nn.Module):  # gpumem: input_shape=(3, 50, 50) batch_size=64
    model = nn.Sequential(  # gpumem: input_shape=(784,) batch_size=32

The test reads that comment itself, runs the model for real with torch
(tests/torch_oracle.py) and requires the analyser, which only reads the source,
to agree exactly: total parameters, and for every leaf-module call in the order
they run, its qualified name, its class name and its output shape.
"""
from __future__ import annotations

import functools
import itertools
import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
import torch_oracle  # noqa: E402  (tests/ is on sys.path, see conftest.py)

from fixture_models import (  # noqa: E402
    _ASSIGN_LINE, _CLASS_LINE, FIXTURES, FixtureModel, discover, _parse_spec)

MODELS = discover()


# --------------------------------------------------------------------------- oracle / analyser


@functools.lru_cache(maxsize=None)
def oracle(fx: FixtureModel) -> torch_oracle.TorchProfile:
    torch.manual_seed(0)
    namespace = torch_oracle.load(fx.path.read_text())
    model = torch_oracle.instantiate(namespace, fx.name)
    x = torch_oracle.make_input(fx.full_shape, fx.dtype)
    return torch_oracle.profile(model, x)


@functools.lru_cache(maxsize=None)
def analyse(path: Path):
    from flake8_gpumem.analysis import analyse_source

    return analyse_source(path.read_text(), filename=f"fixtures/{path.name}")


def report_for(fx: FixtureModel):
    result = analyse(fx.path)
    for report in result.models:
        if report.name == fx.name:
            return report
    found = [m.name for m in result.models]
    diagnostics = "\n".join(f"  {d.code} {d.line}:{d.col} {d.message}" for d in result.diagnostics)
    pytest.fail(f"analyser found no model {fx.name!r} in {fx.path.name}; it found {found}\n"
                f"diagnostics:\n{diagnostics or '  (none)'}")


def _fmt(row) -> str:
    if row is None:
        return "-"
    name, type_, shape = row
    return f"{name} {type_} {tuple(shape)}"


def side_by_side(ours: list, theirs: list) -> str:
    """Both layer lists as one table, mismatched rows marked with '!!'."""
    left = [_fmt(r) for r in ours]
    width = max([len("analyser"), *map(len, left)])
    out = [f"    # {'analyser'.ljust(width)}   torch", f"    - {'-' * width}   -----"]
    for i, (a, t) in enumerate(itertools.zip_longest(ours, theirs)):
        mark = "  " if a == t else "!!"
        out.append(f"{mark}{i:3d} {_fmt(a).ljust(width)}   {_fmt(t)}")
    return "\n".join(out)


# --------------------------------------------------------------------------- the fixtures themselves


def test_enough_fixtures_and_every_file_has_a_model():
    files = sorted(FIXTURES.glob("*.py"))
    assert len(files) >= 14, [f.name for f in files]
    with_models = {fx.path for fx in MODELS}
    assert [f.name for f in files if f not in with_models] == []
    ids = [fx.id for fx in MODELS]
    assert len(ids) == len(set(ids)), ids


def test_comment_parser():
    line = "class Net(nn.Module):  # gpumem: input_shape=(3, 50, 50) batch_size=64"
    m = _CLASS_LINE.match(line)
    fx = _parse_spec(Path("x.py"), 1, m["name"], m["spec"])
    assert (fx.name, fx.input_shape, fx.batch_size, fx.dtype) == ("Net", (3, 50, 50), 64, "float32")
    line = "model = nn.Sequential(  # gpumem: input_shape=(20,) batch_size=8 input_dtype=int64"
    m = _ASSIGN_LINE.match(line)
    fx = _parse_spec(Path("x.py"), 1, m["name"], m["spec"])
    assert (fx.name, fx.input_shape, fx.batch_size, fx.dtype) == ("model", (20,), 8, "int64")
    assert _ASSIGN_LINE.match("        self.fc = nn.Linear(3, 4)  # gpumem: input_shape=(3,) batch_size=1") is None


@pytest.mark.parametrize("fx", MODELS, ids=lambda fx: fx.id)
def test_fixture_runs_in_torch(fx):
    """The fixture side alone: the model builds with defaults and runs on its stated input."""
    prof = oracle(fx)
    assert prof.params > 0
    assert prof.calls, "no leaf module ran"
    assert all(c.output_shape and c.output_shape[0] > 0 for c in prof.calls)


# --------------------------------------------------------------------------- analyser vs torch


@pytest.mark.parametrize("fx", MODELS, ids=lambda fx: fx.id)
def test_analyser_matches_torch(fx):
    prof = oracle(fx)
    report = report_for(fx)

    full = tuple(fx.full_shape) if isinstance(fx.full_shape, list) else fx.full_shape
    assert tuple(report.input_shape) == full, (
        f"{fx.id}: input shape: analyser {tuple(report.input_shape)}, comment says {full}")

    ours = [(r.name, r.type, tuple(r.output_shape)) for r in report.layers if r.module]
    theirs = [(c.name, c.type, tuple(c.output_shape)) for c in prof.calls]
    table = side_by_side(ours, theirs)

    assert report.params == prof.params, (
        f"{fx.id}: parameters: analyser {report.params:,}, torch {prof.params:,}\n{table}")
    assert [(n, s) for n, _, s in ours] == [(n, s) for n, _, s in theirs], (
        f"{fx.id}: leaf-module calls (name, output shape) differ\n{table}")
    assert [t for _, t, _ in ours] == [t for _, t, _ in theirs], (
        f"{fx.id}: leaf-module types differ\n{table}")


@pytest.mark.parametrize("path", sorted({fx.path for fx in MODELS}), ids=lambda p: p.name)
def test_no_false_shape_errors(path):
    """Every fixture runs in torch, so no shape mismatch or collapse may be reported."""
    result = analyse(path)
    wrong = [d for d in result.diagnostics if d.code in ("GPM300", "GPM201")]
    assert wrong == [], "\n".join(f"{d.code} {d.line}:{d.col} {d.message}" for d in wrong)


# --------------------------------------------------------------------------- the seed question by hand


def test_seed_cnn_hand_calculation():
    """The seed question's numbers, worked by hand, against the analyser's layer records.

    Per sample (batch 64), output elements:
      C1 Conv2d(3, 32, 3, padding=1)   50*50*32 = 80,000
      P1 MaxPool2d(2, 2)               25*25*32 = 20,000
      C2 Conv2d(32, 64, 3, padding=1)  25*25*64 = 40,000
      P2 MaxPool2d(2, 2)               12*12*64 =  9,216  (floor(25/2) = 12: a row and a column dropped)
      FC Linear(9216, 500)                         500
      out Linear(500, 10), softmax                  10
    Parameters:
      C1 3*3*3*32 + 32   =       896
      C2 3*3*32*64 + 64  =    18,496
      FC 9216*500 + 500  = 4,608,500
      out 500*10 + 10    =     5,010
      total              = 4,632,902
    """
    (fx,) = [m for m in MODELS if m.id == "seed_cnn.py::SeedCNN"]
    report = report_for(fx)
    batch = 64
    assert tuple(report.input_shape) == (batch, 3, 50, 50)

    layers = {r.name: r for r in report.layers if r.module}
    expected = [
        # name, type, per-sample output elements, params (the hand numbers above)
        ("features.0", "Conv2d", 80_000, 896),
        ("features.1", "ReLU", 80_000, 0),
        ("features.2", "MaxPool2d", 20_000, 0),
        ("features.3", "Conv2d", 40_000, 18_496),
        ("features.4", "ReLU", 40_000, 0),
        ("features.5", "MaxPool2d", 9_216, 0),
        ("classifier.0", "Flatten", 9_216, 0),
        ("classifier.1", "Linear", 500, 4_608_500),
        ("classifier.2", "ReLU", 500, 0),
        ("classifier.3", "Linear", 10, 5_010),
        ("classifier.4", "Softmax", 10, 0),
    ]
    # the hand arithmetic itself
    assert (50 * 50 * 32, 25 * 25 * 32, 25 * 25 * 64, 12 * 12 * 64) == (80_000, 20_000, 40_000, 9_216)
    assert (3 * 3 * 3 * 32 + 32, 3 * 3 * 32 * 64 + 64, 9216 * 500 + 500, 500 * 10 + 10) == (
        896, 18_496, 4_608_500, 5_010)

    assert list(layers) == [n for n, *_ in expected], list(layers)
    assert all(layers[n].output_shape[0] == batch for n in layers), [layers[n].output_shape for n in layers]
    got = [(n, layers[n].type, math.prod(layers[n].output_shape) // batch, layers[n].params)
           for n, *_ in expected]
    assert got == expected
    assert tuple(layers["features.2"].output_shape) == (batch, 32, 25, 25)
    assert tuple(layers["features.5"].output_shape) == (batch, 64, 12, 12)
    assert tuple(layers["classifier.4"].output_shape) == (batch, 10)
    assert report.params == 896 + 18_496 + 4_608_500 + 5_010 == 4_632_902


def test_seed_cnn_flags_dropped_row_at_p2():
    """P2 pools a 25x25 map with a 2x2 window: row and column 25 are dropped (GPM200 at P2)."""
    path = FIXTURES / "seed_cnn.py"
    lines = path.read_text().splitlines()
    pool_lines = [i for i, text in enumerate(lines, start=1) if "nn.MaxPool2d(2, 2)" in text]
    assert len(pool_lines) == 2
    p2_line = pool_lines[1]
    p2_col = lines[p2_line - 1].index("nn.MaxPool2d")
    result = analyse(path)
    at_p2 = [d for d in result.diagnostics if d.code == "GPM200" and d.line == p2_line]
    listing = "\n".join(f"{d.code} {d.line}:{d.col} {d.message}" for d in result.diagnostics)
    assert at_p2, f"no GPM200 on line {p2_line}; diagnostics:\n{listing}"
    (diag,) = at_p2
    assert diag.col == p2_col
    assert "SeedCNN" in diag.message and "25" in diag.message, diag.message


# Where a fixture really loses input rows/columns. Worked per window (out = floor((n + 2p - d(k-1) - 1)/s) + 1;
# the last window ends at input index (out-1)*s - p + d(k-1); a row is dropped when that is < n - 1):
#   seed_cnn.py P2    MaxPool2d(2, 2) on 25:      out 12, last window ends at 23 < 24 -> row/col 24 dropped
#   conv1d_net.py pool2 MaxPool1d(3, stride=2) on 64: out 31, ends at 62 < 63 -> position 63 dropped
# Not dropping anything (so no GPM200):
#   Conv2d(k=3, s=2, p=1) on an even n (ResNet/MobileNet downsampling): out n/2, last window ends at
#     (n/2-1)*2 - 1 + 2 = n - 1: every real row is read, only the zero padding column is unused;
#   Conv2d(k=1, s=2) (ResNet downsample shortcut): k < s subsamples by design, not a tiling mistake.
def _line_of(filename: str, snippet: str) -> int:
    (line,) = [i for i, text in enumerate((FIXTURES / filename).read_text().splitlines(), start=1)
               if snippet in text]
    return line


EXPECTED_GPM200 = {
    ("seed_cnn.py", _line_of("seed_cnn.py", "# P2 ->")),
    ("conv1d_net.py", _line_of("conv1d_net.py", "self.pool2 = nn.MaxPool1d(kernel_size=3, stride=2)")),
}


def test_gpm200_only_where_input_rows_are_really_dropped():
    got = set()
    listing = []
    for path in sorted({fx.path for fx in MODELS}):
        for d in analyse(path).diagnostics:
            if d.code == "GPM200":
                got.add((path.name, d.line))
                listing.append(f"{path.name}:{d.line}:{d.col} {d.message}")
    assert got == EXPECTED_GPM200, "GPM200 reported:\n" + "\n".join(listing)


@pytest.mark.parametrize("fx", MODELS, ids=lambda fx: fx.id)
def test_layer_names_unique_for_non_module_records(fx):
    """Contract: functional ops / tensor methods get a name unique within the model,
    never colliding with a module's qualified name."""
    report = report_for(fx)
    module_names = {r.name for r in report.layers if r.module}
    others = [r.name for r in report.layers if not r.module]
    assert len(others) == len(set(others)), others
    assert not module_names & set(others), module_names & set(others)
