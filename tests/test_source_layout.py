"""Where diagnostics land now that each top-level statement is its own lazily parsed segment.

Python's `ast` splits a file into top-level statements (statements sharing a line grouped,
decorators included); libcst parses one only when the interpreter needs a name it binds, and a
node's (line, col) is its position in that statement offset by the statement's first line. These
tests pin the offsets down for layouts that could shift them: a layer built in another statement
(a component class defined later, a helper function, a module-level container), decorators above
the class, two statements on a line, CRLF line endings, a BOM, class-like text inside strings.

Every expected (line, col) below is counted by hand from the test's own source text (the reasoning
is in a comment next to it; columns are 0-based, flake8 prints them + 1). `points_at` re-checks
each count against the text, so a miscounted fixture fails loudly instead of testing nothing.
"""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from flake8_gpumem.analysis import analyse_source

TIMEOUT = 60  # seconds for a flake8 run
BOM = "\ufeff"
POOL = "nn.MaxPool2d("
FLAKE8_LINE = re.compile(r"^(?P<path>.+?):(?P<row>\d+):(?P<col>\d+): (?P<code>[A-Z]+\d+) (?P<text>.*)$")


# ----------------------------------------------------------------- helpers

def analyse(source: str, **kwargs):
    return analyse_source(source, "net.py", **kwargs)


def at(analysis, code: str) -> list:
    """(line, col) of each `code` diagnostic."""
    return [(d.line, d.col) for d in analysis.diagnostics if d.code == code]


def points_at(source: str, line: int, col: int, text: str) -> bool:
    """Whether `text` starts at 1-based `line`, 0-based character `col` of `source` (a leading BOM
    is not a column: flake8 and Python drop it)."""
    lines = source.removeprefix(BOM).splitlines()
    return line <= len(lines) and lines[line - 1][col:].startswith(text)


def only_model(analysis, name: str = "Net"):
    assert [m.name for m in analysis.models] == [name], (analysis.diagnostics, analysis.skipped)
    return analysis.models[0]


# ----------------------------------------------------------------- fixture sources
# Each GPM200 fixture pools a 25x25 map with a 2x2 window somewhere: row and column 25 are dropped.

PLAIN = """\
import torch.nn as nn


class Net(nn.Module):  # gpumem: input_shape=(1, 25, 25) batch_size=2
    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        return self.pool(x)
"""
# class on line 4, col 0; pool on line 7: 8 spaces + "self.pool = " (12) -> col 20.

COMPONENT_AFTER = """\
import torch.nn as nn


class Net(nn.Module):  # gpumem: input_shape=(1, 25, 25) batch_size=2
    def __init__(self):
        super().__init__()
        self.block = Block()

    def forward(self, x):
        return self.block(x)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        return self.pool(x)
"""
# Net on line 4; Block's pool on line 16: 8 spaces + "self.pool = " (12) -> col 20.

HELPER = """\
import torch.nn as nn


def make_features():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.MaxPool2d(2),
    )


class Net(nn.Module):  # gpumem: input_shape=(1, 25, 25) batch_size=2
    def __init__(self):
        super().__init__()
        self.features = make_features()

    def forward(self, x):
        return self.features(x)
"""
# Net on line 11; the pool is line 7, after 8 spaces -> col 8; it is features[1].

MODULE_FEATURES = """\
import torch.nn as nn

features = nn.Sequential(
    nn.Conv2d(1, 4, 3, padding=1),
    nn.MaxPool2d(2),
)


class Net(nn.Module):  # gpumem: input_shape=(1, 25, 25) batch_size=2
    def __init__(self):
        super().__init__()
        self.features = features

    def forward(self, x):
        return self.features(x)
"""
# Net on line 9; the pool is line 5, after 4 spaces -> col 4. (`features` is itself a model
# candidate without an input shape: a GPM900 of its own, not a GPM200.)

DECORATED = """\
import torch.nn as nn


def register(*names):
    def wrap(cls):
        return cls
    return wrap


@register(
    "net",
)
@register()
class Net(nn.Module):  # gpumem: input_shape=(1, 25, 25) batch_size=2
    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        return self.pool(x)
"""
# Decorators on lines 10-13, `class` on line 14, col 0; pool on line 17, col 8 + 12 = 20.

TWO_IMPORTS = "import torch; import torch.nn as nn\n" + PLAIN.split("\n", 1)[1]
# PLAIN with its line 1 replaced by two statements: same line numbers, class line 4, pool (7, 20).

SHARED_LINE = """\
import torch.nn as nn
K = 2; POOL = nn.MaxPool2d(K)


class Net(nn.Module):  # gpumem: input_shape=(1, 25, 25) batch_size=2
    def __init__(self):
        super().__init__()
        self.pool = POOL

    def forward(self, x):
        return self.pool(x)
"""
# The pool is the second statement of line 2: "K = 2; " (7) + "POOL = " (7) -> col 14. Net on line 5.

ONE_LINER = "import torch.nn as nn; seq = nn.Sequential(nn.MaxPool2d(2))  # gpumem: input_shape=(1, 25, 25)\n"
# Everything on line 1: `seq` after "import torch.nn as nn; " (23) -> col 23;
# the pool after that + "seq = nn.Sequential(" (20) -> col 43.

DOCSTRINGS = '''\
"""Models.

class Fake(nn.Module):  # gpumem: input_shape=(1, 25, 25)
    pass
"""
import torch.nn as nn

NOTES = """
class Fake2(nn.Module):  # gpumem: input_shape=(1, 25, 25)
"""


class Net(nn.Module):  # gpumem: input_shape=(1, 25, 25) batch_size=2
    """A model.

    class Fake3(nn.Module):  # gpumem: input_shape=(1, 25, 25)
    """

    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        return self.pool(x)
'''
# Class-like text only inside strings (lines 3, 9, 16). Net on line 13; pool on line 21, col 8 + 12 = 20.


MEMBERS = """\
import torch.nn as nn


class Net(nn.Module):  # gpumem: input_shape=(1, 25, 25) batch_size=2
    def __init__(self):
        super().__init__()
        self.pool = self.make_pool()

    @property
    def window(self):
        return self.WINDOW

    def make_pool(self):
        return nn.MaxPool2d(self.window)

    WINDOW = 2

    def forward(self, x):
        return self.pool(x)
"""
# Each method is parsed apart from the class (its first statement a method, a class attribute between
# methods). Net on line 4; the pool on line 14: 8 spaces + "return " (7) -> col 15. With tabs for the
# indentation the pool is 2 tabs + 7 -> col 9.


def chain_function(op: str, operands: int = 5000) -> str:
    """A top-level function whose body is one flat `x and x and ...` chain (over libcst's limit)."""
    return f"def unrelated(x):\n    return {f' {op} '.join(['x'] * operands)}\n"


UNRELATED_CHAIN_AFTER = PLAIN + "\n\n" + chain_function("and")
# PLAIN untouched above the chain: class (4, 0), pool (7, 20).
UNRELATED_CHAIN_BEFORE = chain_function("and") + "\n\n" + PLAIN
# The chain function takes lines 1-2, two blank lines 3-4: PLAIN moves down 4 -> class (8, 0), pool (11, 20).


# name -> (source, (model line, col), model name, (pool line, col), qualified name of the pool layer)
CASES = {
    "component_defined_after_model": (COMPONENT_AFTER, (4, 0), "Net", (16, 20), "block.pool"),
    "helper_function": (HELPER, (11, 0), "Net", (7, 8), "features.1"),
    "module_level_sequential": (MODULE_FEATURES, (9, 0), "Net", (5, 4), "features.1"),
    "decorated_model": (DECORATED, (14, 0), "Net", (17, 20), "pool"),
    "after_two_imports_on_a_line": (TWO_IMPORTS, (4, 0), "Net", (7, 20), "pool"),
    "second_statement_of_a_line": (SHARED_LINE, (5, 0), "Net", (2, 14), "pool"),
    "container_after_semicolon": (ONE_LINER, (1, 23), "seq", (1, 43), "0"),
    "crlf": (COMPONENT_AFTER.replace("\n", "\r\n"), (4, 0), "Net", (16, 20), "block.pool"),
    "crlf_helper": (HELPER.replace("\n", "\r\n"), (11, 0), "Net", (7, 8), "features.1"),
    "bom": (BOM + COMPONENT_AFTER, (4, 0), "Net", (16, 20), "block.pool"),
    "bom_on_the_pools_line": (BOM + ONE_LINER, (1, 23), "seq", (1, 43), "0"),
    "class_text_in_strings": (DOCSTRINGS, (13, 0), "Net", (21, 20), "pool"),
    "unrelated_and_chain_after": (UNRELATED_CHAIN_AFTER, (4, 0), "Net", (7, 20), "pool"),
    "unrelated_and_chain_before": (UNRELATED_CHAIN_BEFORE, (8, 0), "Net", (11, 20), "pool"),
    "methods_parsed_apart": (MEMBERS, (4, 0), "Net", (14, 15), "pool"),
    "methods_parsed_apart_tabs": (MEMBERS.replace("    ", "\t"), (4, 0), "Net", (14, 9), "pool"),
    "methods_parsed_apart_crlf": (MEMBERS.replace("\n", "\r\n"), (4, 0), "Net", (14, 15), "pool"),
}
IDS = list(CASES)


@pytest.mark.parametrize("case", IDS)
def test_fixture_counts_point_at_the_text(case):
    """The hand counts are right: the model and the pool start where the table says."""
    source, (mline, mcol), name, (pline, pcol), _ = CASES[case]
    assert points_at(source, pline, pcol, POOL)
    assert points_at(source, mline, mcol, f"class {name}(" if mcol == 0 else f"{name} = ")


# ----------------------------------------------------------------- 1. GPM200 line and column

@pytest.mark.parametrize("case", IDS)
def test_gpm200_points_at_the_pool_constructor(case):
    source, _, name, pool, _ = CASES[case]
    result = analyse(source)
    assert result.error is None
    assert at(result, "GPM200") == [pool], result.diagnostics
    assert all(d.message.startswith(f"{name}: ") for d in result.diagnostics if d.code == "GPM200")


@pytest.fixture(scope="module")
def flake8_hits(tmp_path_factory) -> dict:
    """One `flake8 --select GPM` run over every case, each in its own file (bytes as written:
    CRLF and BOM kept): {case: [(row, col, code)]}, columns 1-based as flake8 prints them."""
    root = tmp_path_factory.mktemp("layout")
    for case, (source, *_rest) in CASES.items():
        (root / f"{case}.py").write_bytes(source.encode("utf-8"))
    proc = subprocess.run([sys.executable, "-m", "flake8", "--select", "GPM", "."], cwd=root,
                          capture_output=True, text=True, timeout=TIMEOUT)
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output and "failed during execution" not in output, output
    assert "gpumem failed on this file" not in output, output
    hits: dict = {case: [] for case in CASES}
    for line in proc.stdout.splitlines():
        m = FLAKE8_LINE.match(line)
        assert m, line
        hits[m["path"].removeprefix("./").removesuffix(".py")].append((int(m["row"]), int(m["col"]), m["code"]))
    return hits


@pytest.mark.parametrize("case", IDS)
def test_flake8_prints_the_pools_line_and_column(case, flake8_hits):
    _, _, _, (line, col), _ = CASES[case]
    assert [h for h in flake8_hits[case] if h[2] == "GPM200"] == [(line, col + 1, "GPM200")], flake8_hits[case]


def test_class_text_inside_strings_is_not_a_model():
    result = analyse(DOCSTRINGS)
    only_model(result)
    assert result.skipped == []
    assert not any("Fake" in d.message for d in result.diagnostics), result.diagnostics


# ----------------------------------------------------------------- 2. model and layer positions

@pytest.mark.parametrize("case", IDS)
def test_model_report_is_at_its_class_or_assignment(case):
    """A decorated class is reported at its `class` line, not at its first decorator (line 10)."""
    source, position, name, _, _ = CASES[case]
    report = only_model(analyse(source), name)
    assert (report.line, report.col) == position


@pytest.mark.parametrize("case", IDS)
def test_layer_record_line_is_its_construction_line(case):
    """A layer built in another statement (a later class, a helper, a module-level container,
    the second statement of a line) is recorded at the line that constructs it."""
    source, _, name, (line, _), layer = CASES[case]
    records = {r.name: r for r in only_model(analyse(source), name).layers}
    assert records[layer].type == "MaxPool2d"
    assert records[layer].line == line
    channels = 4 if layer.startswith("features") else 1  # the helpers' Conv2d makes 4 channels
    assert records[layer].output_shape[1:] == (channels, 12, 12)  # 25 // 2 = 12


# ----------------------------------------------------------------- 3. long and/or chains

@pytest.mark.parametrize("op", ["and", "or"])
def test_unrelated_boolean_chain_leaves_the_model_analysed(op):
    """libcst never sees the unrelated statement: the model is reported, nothing is refused."""
    source = PLAIN + "\n\n" + chain_function(op)
    result = analyse(source)
    assert result.error is None and result.skipped == []
    only_model(result)
    assert [(d.code, d.line, d.col) for d in result.diagnostics] == [("GPM200", 7, 20)]  # PLAIN's pool


def test_chain_in_a_helper_the_model_calls_is_gpm900_naming_the_limit():
    source = PLAIN.replace("return self.pool(x)", "return self.pool(helper(x))") + "\n\n" + \
        chain_function("and").replace("unrelated", "helper")
    # PLAIN is 10 lines, 2 blank -> `def helper` on line 13. The failure is where `helper` is used:
    # line 10, 8 spaces + "return self.pool(" (17) -> col 25.
    assert points_at(source, 13, 0, "def helper(") and points_at(source, 10, 25, "helper(x)")
    result = analyse(source)
    assert result.models == []
    [(line, col, message)] = [(d.line, d.col, d.message) for d in result.diagnostics]
    assert (line, col) == (10, 25)
    assert message.startswith("Net: ") and "more than 4000 and/or operators" in message


def test_chain_in_a_method_nothing_calls_leaves_the_model_analysed():
    """A class's methods are parsed one by one as they are called: one libcst cannot read (here,
    over its operator limit) stops the model only where the model calls it."""
    unused = "\n    def unused(self, x):\n        return " + " and ".join(["x"] * 5000) + "\n"
    result = analyse(PLAIN + unused)
    assert result.error is None and result.skipped == []
    only_model(result)
    assert [(d.code, d.line, d.col) for d in result.diagnostics] == [("GPM200", 7, 20)]  # PLAIN's pool


def test_chain_inside_the_model_is_gpm900_naming_the_limit():
    source = PLAIN.replace("        return self.pool(x)",
                           "        flag = " + " and ".join(["x"] * 5000) + "\n        return self.pool(x)")
    result = analyse(source)
    assert result.models == []
    gpm900 = [d for d in result.diagnostics if d.code == "GPM900"]
    assert len(gpm900) == 1, result.diagnostics
    assert gpm900[0].message.startswith("Net: ") and "4000 and/or operators" in gpm900[0].message


# ----------------------------------------------------------------- 4. report_unshaped

NO_SHAPE = """\
import torch.nn as nn


class NoShape(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)
"""
# class on line 4, col 0.
BAD_COMMENT = NO_SHAPE.replace("class NoShape(nn.Module):", "class NoShape(nn.Module):  # gpumem: batch_size=abc")


def test_unshaped_model_is_silent_without_report_unshaped():
    result = analyse(NO_SHAPE, report_unshaped=False)
    assert result.diagnostics == [] and result.models == [] and result.skipped == []


def test_unshaped_model_is_gpm900_with_report_unshaped():
    result = analyse(NO_SHAPE, report_unshaped=True)
    assert at(result, "GPM900") == [(4, 0)] and len(result.diagnostics) == 1
    assert result.diagnostics[0].message.startswith("NoShape: no input shape")


@pytest.mark.parametrize("report_unshaped", [False, True])
def test_unreadable_inline_comment_is_gpm001_either_way(report_unshaped):
    result = analyse(BAD_COMMENT, report_unshaped=report_unshaped)
    assert at(result, "GPM001") == [(4, 0)]
    assert "batch_size" in next(d.message for d in result.diagnostics if d.code == "GPM001")
    assert at(result, "GPM900") == ([(4, 0)] if report_unshaped else [])


# ----------------------------------------------------------------- 5. a name bound more than once

WIDTH_NET = """\
import torch.nn as nn
{bindings}


class Net(nn.Module):  # gpumem: input_shape=({n},) batch_size=2
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(WIDTH, 4)

    def forward(self, x):
        return self.fc(x)
"""
# Every `bindings` below is two lines (2-3): the Linear is on line 9, 8 spaces + "self.fc = " (10) -> col 18.
LINEAR = (9, 18)
REBINDINGS = {
    "two_assignments": "WIDTH = 8\nWIDTH = 16",
    "one_line": "WIDTH = 8; WIDTH = 16\n",
    "annotated": "WIDTH = 8\nWIDTH: int = 16",
    "after_unpacking": "WIDTH, DEPTH = 8, 1\nWIDTH = 16",
    "after_an_import": "from config import WIDTH\nWIDTH = 16",
}


def width_net(bindings: str, n: int) -> str:
    source = WIDTH_NET.format(bindings=bindings, n=n)
    assert points_at(source, *LINEAR, "nn.Linear(WIDTH, 4)")
    return source


@pytest.mark.parametrize("bindings", list(REBINDINGS.values()), ids=list(REBINDINGS))
def test_last_binding_wins(bindings):
    ok = analyse(width_net(bindings, 16))  # WIDTH is 16 when Net is built: 16 inputs fit
    assert ok.diagnostics == [] and only_model(ok).layers[0].output_shape == (2, 4)
    bad = analyse(width_net(bindings, 8))  # in_features 16, 8 arrive
    assert at(bad, "GPM300") == [LINEAR] and len(bad.diagnostics) == 1, bad.diagnostics
    assert "in_features=16" in bad.diagnostics[0].message


REDEFINED_HELPER = """\
import torch.nn as nn


def make_pool():
    return nn.MaxPool2d(5)


def make_pool():
    return nn.MaxPool2d(2)


class Net(nn.Module):  # gpumem: input_shape=(1, {side}, {side}) batch_size=2
    def __init__(self):
        super().__init__()
        self.pool = make_pool()

    def forward(self, x):
        return self.pool(x)
"""
# The second make_pool's pool is line 9, 4 spaces + "return " (7) -> col 11. On 24x24 it tiles (the
# first one, a 5x5 window, would drop 4 rows); on 25x25 it drops a row and a column.


def test_redefined_helper_uses_the_last_definition():
    assert points_at(REDEFINED_HELPER, 9, 11, "nn.MaxPool2d(2)")
    tiles = analyse(REDEFINED_HELPER.format(side=24))
    assert tiles.diagnostics == [] and only_model(tiles).layers[0].line == 9
    drops = analyse(REDEFINED_HELPER.format(side=25))
    assert at(drops, "GPM200") == [(9, 11)]


@pytest.mark.parametrize("bindings", ["WIDTH = 8\nWIDTH = WIDTH * 2", "WIDTH = 8\nWIDTH += 8",
                                      "WIDTH = 2 + 2\nWIDTH *= WIDTH"],
                         ids=["self_referencing", "augmented", "squared"])
def test_rebinding_from_the_previous_value(bindings):
    result = analyse(width_net(bindings, 16))  # Python: WIDTH is 16 in each
    assert result.diagnostics == [], result.diagnostics
    only_model(result)
    assert [d.code for d in analyse(width_net(bindings, 8)).diagnostics] == ["GPM300"]


def test_augmenting_an_unbound_name_is_not_guessed():
    result = analyse(width_net("OTHER = 1\nWIDTH += 8", 16))  # Python: NameError
    assert [d.code for d in result.diagnostics] == ["GPM900"] and "WIDTH" in result.diagnostics[0].message


def test_container_column_after_non_ascii_is_in_characters():
    source = "import torch.nn as nn\nµ = 1; seq = nn.Sequential(nn.Linear(4, 8))  # gpumem: input_shape=(4,)\n"
    # Line 2: "µ = 1; " is 7 characters (8 bytes) -> `seq` at col 7.
    assert points_at(source, 2, 7, "seq = ")
    report = only_model(analyse(source), "seq")
    assert (report.line, report.col) == (2, 7)
