"""Regular expressions the interpreter runs on the strings it knows: the patterns model code uses
give Python's own results, and the ones that can backtrack without end are refused, not run
(Python's re has no timeout: one such statement held flake8 for minutes)."""
from __future__ import annotations

import re

import pytest

from flake8_gpumem.analysis import analyse_source
from flake8_gpumem.config import Settings
from flake8_gpumem.interpreter import parse_expression, regex
from flake8_gpumem.source import read_source
from flake8_gpumem.values import Unresolved

# (function, pattern, subject): patterns of installed libraries' model code, on the strings they read
REAL = [
    ("split", r"(\d.*)", "k3"),  # timm's _decode_block_str, on each part of "ir_r1_k3_s1_e1_c16"
    ("split", r"(\d.*)", "se0.25"),
    ("split", r"(\d.*)", "ir_r1_k3_s1_e1_c16"),
    ("split", r"(\d+)", "resnet50d_gn"),  # timm's natural sort key of model names
    ("match", r"^(\w+)(\d+)$", "layer4"),
    ("match", r".+_[0-9]+$", "conv_12"),  # torchvision's feature_extraction, node names
    ("match", r"(drive|docs)[.]google[.]com", "drive.google.com"),  # torchvision's datasets/utils
    ("match", r"/file/d/(?P<id>[^/]*)", "/file/d/1a2b3c/view"),
    ("match", r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$",
     "features.denseblock1.denselayer1.norm.1.weight"),  # torchvision's densenet, state dict keys
    ("findall", r"\d+", "ir_r1_k3_s1_e1_c16"),
    ("sub", r"\s+", "conv  3x3"),
    ("fullmatch", r"[a-z]+\d*", "resnet50"),
    ("search", r"_(\d+)$", "efficientnet_b3_288"),
]

# patterns with a quantifier over a quantifier (or over an alternation of overlapping branches):
# a backtracking matcher tries about 2**34 ways on these subjects before it fails
PATHOLOGICAL = [
    (r"(a+)+$", "a" * 34 + "b"),
    (r"(a*)*$", "a" * 34 + "b"),
    (r"(a|aa)+$", "a" * 34 + "b"),
    (r"(\w+\s?)*$", "a" * 34 + "!"),
]


def _evaluate(expression: str):
    """`expression` as the interpreter evaluates it in a file that imports re."""
    src = read_source("import re\n", "case.py")
    return src.probe.eval(parse_expression(expression), src.scope)


def _value(result):
    """What a test can compare: a match by the groups it found."""
    return result.groups() if isinstance(result, re.Match) else result


@pytest.mark.parametrize("function, pattern, subject", REAL, ids=lambda v: v if isinstance(v, str) else None)
def test_a_pattern_model_code_uses_gives_pythons_result(function, pattern, subject):
    want = _value(getattr(re, function)(*([pattern, " ", subject] if function == "sub" else [pattern, subject])))
    args = f"{pattern!r}, ' ', {subject!r}" if function == "sub" else f"{pattern!r}, {subject!r}"
    assert _value(_evaluate(f"re.{function}({args})")) == want


@pytest.mark.parametrize("pattern, subject", PATHOLOGICAL, ids=[p for p, _ in PATHOLOGICAL])
def test_a_pattern_that_can_backtrack_without_end_is_not_run(pattern, subject):
    with pytest.raises(Unresolved) as caught:
        _evaluate(f"re.match({pattern!r}, {subject!r})")
    assert caught.value.message == (f"re.match({pattern!r}, ...) on a string of 35 characters could take more than "
                                    "10,000,000 backtracking steps: not run (Python's re has no timeout)")


def test_the_bound_grows_with_the_subject_as_backtracking_does():
    """`(a+)+$` tries about 2**n ways: on a 3-character subject it runs. `.*.*.*x`, with no nested
    quantifier, tries each start, each of n + 2 counts (0 to n + 1) of each `.*`, and each way walks
    up to n + 1 characters: on 10 characters 11 * 12**3 * 11 steps at most, and it runs; on 300
    characters 301 * 302**3 * 301, and it is refused."""
    assert re.match(r"(a+)+$", "aab") is None and _evaluate("re.match(r'(a+)+$', 'aab')") is None
    assert regex.steps(r".*.*.*x", 10, anchored=False) == 11 * 12 ** 3 * 11
    assert _evaluate("re.search(r'.*.*.*x', 'a' * 10)") is None
    assert regex.steps(r".*.*.*x", 300, anchored=False) > regex.MAX_MATCHER_STEPS
    with pytest.raises(Unresolved):
        _evaluate("re.search(r'.*.*.*x', 'a' * 300)")


MODULE_LEVEL = """\
import re

import torch.nn as nn

OK = re.match(r"(a+)+$", "a" * 34 + "b")


class Net(nn.Module):  # gpumem: input_shape=(8,) batch_size=2
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, WIDTH)

    def forward(self, x):
        return self.fc(x)
"""


def test_a_pathological_pattern_at_module_level_is_said_not_run():
    """The statement a model uses is a GPM900 naming the pattern; one no model uses costs nothing."""
    used = analyse_source(MODULE_LEVEL.replace("WIDTH", "2 if OK else 3"), "case.py", Settings(device="cpu"))
    assert [(d.code, d.message) for d in used.diagnostics] == [(
        "GPM900", "Net: 'OK' could not be resolved: re.match('(a+)+$', ...) on a string of 35 characters could take "
                  "more than 10,000,000 backtracking steps: not run (Python's re has no timeout)")]
    unused = analyse_source(MODULE_LEVEL.replace("WIDTH", "3"), "case.py", Settings(device="cpu"))
    assert [(m.name, m.params) for m in unused.models] == [("Net", 8 * 3 + 3)] and unused.diagnostics == []
