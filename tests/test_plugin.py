"""The flake8 plugin, exercised through real flake8 runs in a subprocess.

Every test builds a small project in a temporary directory (its own pyproject.toml,
model files), runs `python -m flake8 ...` there, and checks what flake8 prints:
which GPM codes fire, at which line and 1-based column, with which numbers, and that
nothing ever escapes the plugin as a traceback.

Expected lines and columns are computed from the fixture sources (the line holding
the constructor, `str.index` of the constructor on it, + 1 because flake8 prints
1-based columns). Budgets for GPM100/GPM101 are picked around the estimate
`gpumem report --format json` gives; the assertions are about the plugin: it fires
or not, where, and that its message carries the budget, batch, dtype, optimizer and
a largest batch the report confirms (fits at N, not at N + 1).
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from sources import CNN

from flake8_gpumem.config import Named

TIMEOUT = 60  # seconds per flake8 run: the plugin must finish within a bounded time
MIB = 2 ** 20

# ----------------------------------------------------------------- fixture sources

# A clean CNN: 32x32 input, two 2x2 pools (32 -> 16 -> 8), flatten, two Linear layers.

# Parameters by hand: conv1 3*32*9+32, conv2 32*64*9+64, fc1 4096*256+256, fc2 256*10+10.
CNN_PARAMS = (3 * 32 * 9 + 32) + (32 * 64 * 9 + 64) + (64 * 8 * 8 * 256 + 256) + (256 * 10 + 10)


def pool_net(side_after_pool: int, noqa_pool: str = "", noqa_call: str = "") -> str:
    """A conv (same padding) and one MaxPool2d(2); the Linear expects `side_after_pool`."""
    return f"""\
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2){noqa_pool}
        self.fc = nn.Linear(8 * {side_after_pool} * {side_after_pool}, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv(x))){noqa_call}
        x = x.flatten(1)
        return self.fc(x)
"""


POOL_TOO_BIG = """\
import torch.nn as nn


class Tiny(nn.Module):  # gpumem: input_shape=(4, 3, 3)
    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool2d(5)

    def forward(self, x):
        return self.pool(x)
"""

LINEAR_MISMATCH = """\
import torch.nn as nn


class Lin(nn.Module):  # gpumem: input_shape=(99,)
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(100, 10)

    def forward(self, x):
        return self.fc(x)
"""

CONV_MISMATCH = """\
import torch.nn as nn


class Conv(nn.Module):  # gpumem: input_shape=(3, 8, 8)
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3)
        self.c2 = nn.Conv2d(8, 4, 3)

    def forward(self, x):
        return self.c2(self.c1(x))
"""

SEQUENTIAL_MISMATCH = """\
import torch.nn as nn

seq = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(7, 2))  # gpumem: input_shape=(4,)
"""

NO_SHAPE = """\
import torch.nn as nn


class NoShape(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)
"""

FROM_FILE = """\
import json
import torch.nn as nn

CFG = json.load(open("cfg.json"))


class FromFile(nn.Module):  # gpumem: input_shape=(4,)
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, CFG["hidden"])

    def forward(self, x):
        return self.fc(x)
"""

PLAIN = """\
import os


def main():
    print(os.getcwd())


if __name__ == "__main__":
    main()
"""

TORCH_NO_MODULE = """\
import torch
import torch.nn.functional as F

x = torch.randn(4, 3, 25, 25)
y = F.max_pool2d(x, 2)  # drops a row and a column, but this is no model
print(y.shape)
"""

MENTIONS_SEQUENTIAL = '''\
"""Notes: an nn.Module or an nn.Sequential would go here one day."""
LAYERS = ["Sequential", "Module"]
'''


# ----------------------------------------------------------------- helpers

@dataclass
class Hit:
    path: str
    row: int
    col: int
    code: str
    text: str


LINE = re.compile(r"^(?P<path>.+?):(?P<row>\d+):(?P<col>\d+): (?P<code>[A-Z]+[0-9]+) (?P<text>.*)$")


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    hits: list

    def gpm(self) -> list:
        return [h for h in self.hits if h.code.startswith("GPM")]


def make_project(root: Path, files: dict, pyproject: str | None = None) -> Path:
    """Write `files` ({relative path: str or bytes}) and pyproject.toml under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    if pyproject is not None:
        (root / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return root


def assert_no_crash(output: str) -> None:
    assert "Traceback" not in output, output
    assert "failed during execution" not in output, output  # flake8's PluginExecutionFailed
    assert "raised an unexpected exception" not in output, output
    assert "critical error" not in output, output
    assert "gpumem failed on this file" not in output, output  # the plugin's own last-resort boundary


def flake8(cwd: Path, *args: str, stdin: str | None = None, timeout: int = TIMEOUT) -> Run:
    proc = subprocess.run([sys.executable, "-m", "flake8", *args], cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=timeout)
    assert_no_crash(proc.stdout + proc.stderr)
    hits = []
    for line in proc.stdout.splitlines():
        m = LINE.match(line)
        if m:
            hits.append(Hit(m["path"], int(m["row"]), int(m["col"]), m["code"], m["text"]))
    return Run(proc.returncode, proc.stdout, proc.stderr, hits)


def gpumem_json(cwd: Path, file: str, *flags: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "flake8_gpumem.cli", "report", file, "--format", "json", *flags],
                          cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)
    assert "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)


def need_at(cwd: Path, file: str, batch: int, *flags: str) -> int:
    """Peak + reserve of the only model of `file` at `batch`, as `gpumem report` estimates it."""
    models = gpumem_json(cwd, file, "--batch-size", str(batch), *flags)["models"]
    assert len(models) == 1, models
    mem = models[0]["memory"]
    return mem["peak"] + mem["reserve"]


def fits(cwd: Path, file: str, batch: int, budget: str, *flags: str) -> bool:
    models = gpumem_json(cwd, file, "--batch-size", str(batch), "--budget", budget, *flags)["models"]
    return models[0]["fits"]


def line_of(source: str, needle: str) -> int:
    """1-based number of the one line of `source` that contains `needle`."""
    found = [i for i, text in enumerate(source.splitlines(), 1) if needle in text]
    assert len(found) == 1, (needle, found)
    return found[0]


def pos_of(source: str, needle: str, at: str | None = None) -> tuple:
    """(line, 1-based column) of `at` (default: `needle`) on the one line containing `needle`."""
    row = line_of(source, needle)
    return row, source.splitlines()[row - 1].index(at or needle) + 1


def human_mib(n_mib: float) -> str:
    """How the plugin writes a budget of n MiB (binary units, 3 significant figures)."""
    return f"{n_mib:.2f} MiB" if n_mib < 10 else f"{n_mib:.1f} MiB"


def pyproject(**settings) -> str:
    lines = ["[tool.gpumem]"]
    for key, value in settings.items():
        lines.append(f"{key} = {json.dumps(list(value) if isinstance(value, tuple) else value)}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------- GPM200 / GPM201 / GPM300

def test_gpm200_two_by_two_pool_on_25x25_drops_a_row_and_a_column(tmp_path):
    src = pool_net(12)
    make_project(tmp_path, {"models/net.py": src}, pyproject(input_shape=(3, 25, 25)))
    run = flake8(tmp_path, "models/net.py")
    row, col = pos_of(src, "nn.MaxPool2d(2)")
    assert [(h.path, h.row, h.col, h.code) for h in run.gpm()] == [("models/net.py", row, col, "GPM200")]
    text = run.gpm()[0].text
    assert "Net" in text
    assert "1 row and 1 column" in text
    assert f"25x25 -> {25 // 2}x{25 // 2}" in text  # floor(25 / 2) = 12
    assert f"{math.ceil(25 / 2) * 2}x{math.ceil(25 / 2) * 2}" in text  # 26: the next size 2x2 tiles
    assert run.rc == 1


def test_the_suggested_26x26_is_clean(tmp_path):
    make_project(tmp_path, {"models/net.py": pool_net(13)}, pyproject(input_shape=(3, 26, 26)))
    run = flake8(tmp_path, "--select", "GPM", "--extend-select", "GPM9", "models/net.py")
    assert run.hits == [] and run.rc == 0, run.stdout


def test_gpm200_on_a_functional_pool_points_at_the_call(tmp_path):
    src = """\
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        x = F.max_pool2d(self.conv(x), 2)
        x = F.max_pool2d(x, 2)
        return x
"""
    make_project(tmp_path, {"f.py": src}, pyproject(input_shape=(3, 50, 50)))
    run = flake8(tmp_path, "--select", "GPM", "f.py")
    # 50 -> 25 tiles; the second pool gets 25x25 and drops a row and a column
    row, col = pos_of(src, "x = F.max_pool2d(x, 2)", "F.max_pool2d")
    assert [(h.row, h.col, h.code) for h in run.gpm()] == [(row, col, "GPM200")]
    assert "25x25 -> 12x12" in run.gpm()[0].text


def test_gpm201_pool_window_larger_than_the_map(tmp_path):
    make_project(tmp_path, {"tiny.py": POOL_TOO_BIG}, pyproject())
    run = flake8(tmp_path, "tiny.py")
    row, col = pos_of(POOL_TOO_BIG, "nn.MaxPool2d(5)")
    assert [(h.row, h.col, h.code) for h in run.gpm()] == [(row, col, "GPM201")]
    text = run.gpm()[0].text
    assert "Tiny" in text and "5" in text and "3x3" in text
    assert run.rc == 1


def test_gpm300_linear_receives_99_features_not_100(tmp_path):
    make_project(tmp_path, {"lin.py": LINEAR_MISMATCH}, pyproject())
    run = flake8(tmp_path, "lin.py")
    row, col = pos_of(LINEAR_MISMATCH, "nn.Linear(100, 10)")
    assert [(h.row, h.col, h.code) for h in run.gpm()] == [(row, col, "GPM300")]
    text = run.gpm()[0].text
    assert "Lin" in text and "100" in text and "99" in text
    assert run.rc == 1


def test_gpm300_conv_in_channels_mismatch_points_at_the_second_conv(tmp_path):
    make_project(tmp_path, {"conv.py": CONV_MISMATCH}, pyproject())
    run = flake8(tmp_path, "conv.py")
    row, col = pos_of(CONV_MISMATCH, "nn.Conv2d(8, 4, 3)")
    assert [(h.row, h.col, h.code) for h in run.gpm()] == [(row, col, "GPM300")]
    text = run.gpm()[0].text
    assert "in_channels" in text and "8" in text and "16" in text


def test_gpm300_inside_a_sequential_points_at_the_layer_on_the_line(tmp_path):
    make_project(tmp_path, {"seq.py": SEQUENTIAL_MISMATCH}, pyproject())
    run = flake8(tmp_path, "--select", "GPM", "seq.py")
    row, col = pos_of(SEQUENTIAL_MISMATCH, "nn.Linear(7, 2)")
    assert [(h.row, h.col, h.code) for h in run.gpm()] == [(row, col, "GPM300")]
    assert "7" in run.gpm()[0].text and "8" in run.gpm()[0].text


# ----------------------------------------------------------------- GPM900

def test_gpm900_is_silent_by_default(tmp_path):
    make_project(tmp_path, {"noshape.py": NO_SHAPE, "fromfile.py": FROM_FILE}, pyproject(budget="1MiB"))
    run = flake8(tmp_path, "noshape.py", "fromfile.py")
    assert run.gpm() == [] and run.rc == 0, run.stdout


def test_gpm900_with_extend_select(tmp_path):
    make_project(tmp_path, {"noshape.py": NO_SHAPE, "fromfile.py": FROM_FILE}, pyproject(budget="1MiB"))
    run = flake8(tmp_path, "--extend-select", "GPM9", "noshape.py", "fromfile.py")
    got = {(h.path, h.row, h.col, h.code) for h in run.gpm()}
    cls_row, cls_col = pos_of(NO_SHAPE, "class NoShape")
    arg_row, arg_col = pos_of(FROM_FILE, 'CFG["hidden"]')
    assert got == {("noshape.py", cls_row, cls_col, "GPM900"), ("fromfile.py", arg_row, arg_col, "GPM900")}
    by_file = {h.path: h.text for h in run.gpm()}
    assert "NoShape" in by_file["noshape.py"] and "input shape" in by_file["noshape.py"]
    assert "FromFile" in by_file["fromfile.py"] and "CFG" in by_file["fromfile.py"]
    # a 1 MiB budget and no input shape: no guess, so no GPM100 either
    assert run.rc == 1


def test_without_input_shape_there_is_no_budget_guess(tmp_path):
    make_project(tmp_path, {"cnn.py": CNN}, pyproject(budget="1MiB", batch_size=64))
    run = flake8(tmp_path, "--select", "GPM", "--extend-select", "GPM9", "cnn.py")
    assert [h.code for h in run.gpm()] == ["GPM900"]
    assert run.gpm()[0].row == line_of(CNN, "class CNN")


# ----------------------------------------------------------------- clean and non-model files

def test_clean_cnn_is_silent_even_with_gpm9(tmp_path):
    make_project(tmp_path, {"cnn.py": CNN}, pyproject(input_shape=(3, 32, 32), batch_size=64, budget="T4"))
    run = flake8(tmp_path, "--select", "GPM", "--extend-select", "GPM9", "cnn.py")
    assert run.hits == [] and run.rc == 0, run.stdout


@pytest.mark.parametrize("source", [PLAIN, TORCH_NO_MODULE, MENTIONS_SEQUENTIAL, ""],
                         ids=["plain", "torch-no-module", "mentions-sequential", "empty"])
def test_non_model_files_are_silent(tmp_path, source):
    make_project(tmp_path, {"mod.py": source}, pyproject(input_shape=(3, 25, 25), budget="1KiB"))
    run = flake8(tmp_path, "--select", "GPM", "--extend-select", "GPM9", "mod.py")
    assert run.hits == [] and run.rc == 0, run.stdout


def test_without_a_budget_there_is_no_gpm100_or_gpm101(tmp_path):
    make_project(tmp_path, {"cnn.py": CNN}, pyproject(input_shape=(3, 32, 32), batch_size=4096))
    run = flake8(tmp_path, "--select", "GPM", "--extend-select", "GPM9", "cnn.py")
    assert run.hits == [] and run.rc == 0, run.stdout


# ----------------------------------------------------------------- GPM100 / GPM101

@pytest.mark.parametrize("dtype, optimizer", [("float32", "adam"), ("bfloat16", "sgd-momentum"),
                                              ("amp-fp16", "adamw")])
def test_gpm100_over_budget_names_everything_and_an_honest_largest_batch(tmp_path, dtype, optimizer):
    batch = 64
    make_project(tmp_path, {"cnn.py": CNN},
                 pyproject(input_shape=(3, 32, 32), batch_size=batch, dtype=dtype, optimizer=optimizer))
    flags = ("--dtype", dtype, "--optimizer", optimizer)
    need1, need = need_at(tmp_path, "cnn.py", 1, *flags), need_at(tmp_path, "cnn.py", batch, *flags)
    budget_mib = (need1 + need) // 2 // MIB  # batch 1 fits, batch 64 does not
    assert need1 < budget_mib * MIB < need, (need1, budget_mib, need)
    (tmp_path / "pyproject.toml").write_text(
        pyproject(input_shape=(3, 32, 32), batch_size=batch, dtype=dtype, optimizer=optimizer,
                  budget=f"{budget_mib}MiB"))

    run = flake8(tmp_path, "cnn.py")
    row, col = pos_of(CNN, "class CNN")
    assert [(h.row, h.col, h.code) for h in run.gpm()] == [(row, col, "GPM100")]
    assert run.rc == 1
    text = run.gpm()[0].text
    assert text.startswith("CNN ")
    assert human_mib(budget_mib) in text
    assert f"batch {batch}" in text
    assert dtype in text and optimizer in text
    assert "biggest: " in text
    m = re.search(r"largest batch that fits: (\d+)", text)
    assert m, text
    n = int(m.group(1))
    assert 1 <= n < batch
    budget = f"{budget_mib}MiB"
    assert fits(tmp_path, "cnn.py", n, budget, *flags) is True
    assert fits(tmp_path, "cnn.py", n + 1, budget, *flags) is False


def test_gpm100_biggest_contributor_is_adam_state_worked_by_hand(tmp_path):
    # batch 16: Adam's two float32 moments (8 bytes per parameter) and its float32 step
    # count (4 bytes per parameter tensor, 8 tensors) outweigh the activations
    make_project(tmp_path, {"cnn.py": CNN}, pyproject(input_shape=(3, 32, 32), batch_size=16))
    data = gpumem_json(tmp_path, "cnn.py")["models"][0]
    assert data["params"] == CNN_PARAMS
    mem = data["memory"]
    adam_state = 8 * CNN_PARAMS + 4 * 8
    assert mem["optimizer"] == adam_state and mem["activations"] < mem["optimizer"]
    budget_mib = (mem["peak"] - 1) // MIB  # just under what batch 16 needs
    run = flake8(tmp_path, "--gpumem-budget", f"{budget_mib}MiB", "cnn.py")
    assert [h.code for h in run.gpm()] == ["GPM100"]
    assert f"biggest: optimizer state {adam_state / MIB:.2f} MiB" in run.gpm()[0].text


def test_gpm100_says_what_gpumem_report_says(tmp_path):
    """The plugin reads no layer positions and skips what it does not show; its message must still be
    the one the CLI gives for the same project, word for word (biggest part and the layer it peaks at)."""
    make_project(tmp_path, {"cnn.py": CNN}, pyproject(input_shape=(3, 32, 32), batch_size=64))
    budget = (need_at(tmp_path, "cnn.py", 1) + need_at(tmp_path, "cnn.py", 64)) // 2  # batch 64 does not fit
    [hit] = flake8(tmp_path, "--gpumem-budget", str(budget), "cnn.py").gpm()
    cli = gpumem_json(tmp_path, "cnn.py", "--budget", str(budget))["diagnostics"]
    assert [hit.text] == [d["message"] for d in cli if d["code"] == "GPM100"]
    assert "biggest: activations" in hit.text and "most at " in hit.text, hit.text


def test_gpm100_for_models_whose_inputs_are_given_by_keyword(tmp_path):
    """fixtures/inputs/keywords.py: forward(**kwargs) and forward(pixel_values, labels=None), their inputs
    named in their comments; batch 8 does not fit 1 MiB (the input batch alone is 8x3x32x32 floats, 96 KiB)."""
    source = (Path(__file__).resolve().parent.parent / "fixtures" / "inputs" / "keywords.py").read_text()
    make_project(tmp_path, {"keywords.py": source}, pyproject(batch_size=8))
    hits = flake8(tmp_path, "--gpumem-budget", "1MiB", "keywords.py").gpm()
    cli = gpumem_json(tmp_path, "keywords.py", "--budget", "1MiB")["diagnostics"]
    assert [(h.code, h.row) for h in hits] == [(d["code"], d["line"]) for d in cli] == [
        ("GPM100", line_of(source, "class Distiller")), ("GPM100", line_of(source, "class Classifier"))]
    assert [h.text for h in hits] == [d["message"] for d in cli]


def test_gpm100_when_even_batch_one_does_not_fit(tmp_path):
    make_project(tmp_path, {"cnn.py": CNN}, pyproject(input_shape=(3, 32, 32), batch_size=8, budget="4MiB"))
    # the weights alone are 4 bytes per parameter, more than 4 MiB
    assert 4 * CNN_PARAMS > 4 * MIB
    run = flake8(tmp_path, "cnn.py")
    assert [h.code for h in run.gpm()] == ["GPM100"]
    assert "even batch 1 does not fit" in run.gpm()[0].text
    assert "largest batch that fits" not in run.gpm()[0].text


def test_gpm101_above_a_warn_fraction_of_one_half(tmp_path):
    make_project(tmp_path, {"cnn.py": CNN}, pyproject(input_shape=(3, 32, 32), batch_size=16))
    need = need_at(tmp_path, "cnn.py", 16)
    budget_mib = math.ceil(need * 1.5 / MIB)  # fits, but needs about two thirds of it
    (tmp_path / "pyproject.toml").write_text(
        pyproject(input_shape=(3, 32, 32), batch_size=16, budget=f"{budget_mib}MiB", warn_fraction=0.5))
    run = flake8(tmp_path, "cnn.py")
    row, col = pos_of(CNN, "class CNN")
    assert [(h.row, h.col, h.code) for h in run.gpm()] == [(row, col, "GPM101")]
    text = run.gpm()[0].text
    assert human_mib(budget_mib) in text
    assert f"{need / (budget_mib * MIB):.0%} of the" in text
    assert "warn above 50%" in text
    assert "batch 16" in text and "float32" in text and "adam" in text


def test_gpm101_default_warn_fraction_is_90_percent(tmp_path):
    make_project(tmp_path, {"cnn.py": CNN}, pyproject(input_shape=(3, 32, 32), batch_size=16))
    need = need_at(tmp_path, "cnn.py", 16)
    above, below = int(need / 0.95), int(need / 0.85)  # 95% and 85% of the budget
    run = flake8(tmp_path, "--gpumem-budget", str(above), "cnn.py")
    assert [h.code for h in run.gpm()] == ["GPM101"]
    assert "95% of the" in run.gpm()[0].text and "warn above 90%" in run.gpm()[0].text
    run = flake8(tmp_path, "--gpumem-budget", str(below), "cnn.py")
    assert run.gpm() == [] and run.rc == 0, run.stdout
    run = flake8(tmp_path, "--gpumem-budget", str(need), "cnn.py")  # exactly fits: still a warning
    assert [h.code for h in run.gpm()] == ["GPM101"]
    run = flake8(tmp_path, "--gpumem-budget", str(need - 1), "cnn.py")  # one byte short
    assert [h.code for h in run.gpm()] == ["GPM100"]


# ----------------------------------------------------------------- noqa

def test_noqa_gpm200_on_the_pool_line_suppresses_it(tmp_path):
    make_project(tmp_path, {"net.py": pool_net(12, noqa_pool="  # noqa: GPM200")},
                 pyproject(input_shape=(3, 25, 25)))
    run = flake8(tmp_path, "--select", "GPM", "net.py")
    assert run.hits == [] and run.rc == 0, run.stdout


def test_noqa_prefix_gpm2_suppresses_it(tmp_path):
    make_project(tmp_path, {"net.py": pool_net(12, noqa_pool="  # noqa: GPM2")}, pyproject(input_shape=(3, 25, 25)))
    run = flake8(tmp_path, "--select", "GPM", "net.py")
    assert run.hits == [], run.stdout


@pytest.mark.parametrize("where", ["call", "other-code"])
def test_noqa_elsewhere_or_for_another_code_does_not(tmp_path, where):
    src = (pool_net(12, noqa_call="  # noqa") if where == "call"
           else pool_net(12, noqa_pool="  # noqa: E501"))
    make_project(tmp_path, {"net.py": src}, pyproject(input_shape=(3, 25, 25)))
    run = flake8(tmp_path, "--select", "GPM", "net.py")
    row, col = pos_of(src, "nn.MaxPool2d(2)")
    assert [(h.row, h.col, h.code) for h in run.gpm()] == [(row, col, "GPM200")]


# ----------------------------------------------------------------- stdin

STDIN_PROJECT = """\
[tool.gpumem]
input_shape = [3, 32, 32]

[tool.gpumem.models."models/net.py::Net"]
input_shape = [3, 25, 25]
"""


def test_stdin_uses_the_per_model_table_of_the_display_name(tmp_path):
    # an unsaved buffer: models/net.py does not exist on disk
    make_project(tmp_path, {}, STDIN_PROJECT)
    src = pool_net(12)
    run = flake8(tmp_path, "--select", "GPM", "--stdin-display-name", "models/net.py", "-", stdin=src)
    row, col = pos_of(src, "nn.MaxPool2d(2)")
    assert [(h.path, h.row, h.col, h.code) for h in run.gpm()] == [("models/net.py", row, col, "GPM200")]
    assert "25x25 -> 12x12" in run.gpm()[0].text


def test_stdin_reads_the_buffer_not_the_file_on_disk(tmp_path):
    make_project(tmp_path, {"models/net.py": PLAIN}, STDIN_PROJECT)  # the saved file is harmless
    run = flake8(tmp_path, "--select", "GPM", "--stdin-display-name", "models/net.py", "-", stdin=pool_net(12))
    assert [h.code for h in run.gpm()] == ["GPM200"]


def test_stdin_other_display_name_gets_the_project_defaults(tmp_path):
    make_project(tmp_path, {}, STDIN_PROJECT)
    src = pool_net(12)
    run = flake8(tmp_path, "--select", "GPM", "--stdin-display-name", "models/other.py", "-", stdin=src)
    # 32x32 -> 16x16: the Linear expecting 8*12*12 gets 8*16*16
    row, col = pos_of(src, "nn.Linear(8 * 12 * 12, 10)", "nn.Linear")
    assert [(h.path, h.row, h.col, h.code) for h in run.gpm()] == [("models/other.py", row, col, "GPM300")]
    assert str(8 * 12 * 12) in run.gpm()[0].text and str(8 * 16 * 16) in run.gpm()[0].text


def test_stdin_from_a_subdirectory_walks_up_to_the_pyproject(tmp_path):
    make_project(tmp_path, {"models/__init__.py": ""}, STDIN_PROJECT)
    run = flake8(tmp_path / "models", "--select", "GPM", "--stdin-display-name", "net.py", "-", stdin=pool_net(12))
    assert [h.code for h in run.gpm()] == ["GPM200"]


# ----------------------------------------------------------------- precedence

def cnn_over_budget_project(tmp_path, inline: str = "") -> Path:
    """CNN in models/cnn.py, 20 MiB budget (too small at any batch); [tool.gpumem] batch 4, its table 16."""
    src = CNN.replace("class CNN(nn.Module):", f"class CNN(nn.Module):{inline}")
    return make_project(tmp_path, {"models/cnn.py": src}, "\n".join([
        "[tool.gpumem]", "input_shape = [3, 32, 32]", 'budget = "20MiB"', "batch_size = 4", "",
        '[tool.gpumem.models."models/cnn.py::CNN"]', "batch_size = 16", ""]))


def batch_in(run: Run, code: str = "GPM100") -> int:
    """The batch size the one `code` message of `run` was computed at."""
    [hit] = [h for h in run.gpm() if h.code == code]
    return int(re.search(r"\(batch (\d+),", hit.text).group(1))


def test_command_line_budget_beats_pyproject(tmp_path):
    make_project(tmp_path, {"cnn.py": CNN}, pyproject(input_shape=(3, 32, 32), batch_size=16, budget="T4"))
    assert flake8(tmp_path, "cnn.py").gpm() == []
    run = flake8(tmp_path, "--gpumem-budget", "20MiB", "cnn.py")
    assert [h.code for h in run.gpm()] == ["GPM100"] and "20.0 MiB" in run.gpm()[0].text
    # and the other way round: a generous command line silences a tight pyproject
    (tmp_path / "pyproject.toml").write_text(pyproject(input_shape=(3, 32, 32), batch_size=16, budget="20MiB"))
    assert [h.code for h in flake8(tmp_path, "cnn.py").gpm()] == ["GPM100"]
    assert flake8(tmp_path, "--gpumem-budget", "T4", "cnn.py").gpm() == []


def test_flake8_config_file_option_beats_pyproject(tmp_path):
    make_project(tmp_path, {"cnn.py": CNN, ".flake8": "[flake8]\ngpumem-budget = 20MiB\n"},
                 pyproject(input_shape=(3, 32, 32), batch_size=16, budget="T4"))
    run = flake8(tmp_path, "cnn.py")
    assert [h.code for h in run.gpm()] == ["GPM100"] and "20.0 MiB" in run.gpm()[0].text


def test_per_model_table_beats_tool_gpumem_defaults(tmp_path):
    cnn_over_budget_project(tmp_path)
    assert batch_in(flake8(tmp_path, "models/cnn.py")) == 16


def test_tool_gpumem_beats_built_in_defaults(tmp_path):
    make_project(tmp_path, {"models/cnn.py": CNN}, pyproject(input_shape=(3, 32, 32), budget="20MiB", batch_size=4))
    assert batch_in(flake8(tmp_path, "models/cnn.py")) == 4
    (tmp_path / "pyproject.toml").write_text(pyproject(input_shape=(3, 32, 32), budget="20MiB"))
    assert batch_in(flake8(tmp_path, "models/cnn.py")) == 1  # the built-in default


def test_inline_comment_beats_the_per_model_table(tmp_path):
    cnn_over_budget_project(tmp_path, inline="  # gpumem: batch_size=32")
    assert batch_in(flake8(tmp_path, "models/cnn.py")) == 32


def test_command_line_beats_the_inline_comment(tmp_path):
    cnn_over_budget_project(tmp_path, inline="  # gpumem: batch_size=32")
    assert batch_in(flake8(tmp_path, "--gpumem-batch-size", "8", "models/cnn.py")) == 8


def test_per_model_table_for_another_file_does_not_apply(tmp_path):
    cnn_over_budget_project(tmp_path)
    (tmp_path / "models" / "cnn.py").rename(tmp_path / "models" / "other.py")
    assert batch_in(flake8(tmp_path, "models/other.py")) == 4


def test_inline_input_shape_beats_the_per_model_table(tmp_path):
    src = pool_net(12).replace("class Net(nn.Module):", "class Net(nn.Module):  # gpumem: input_shape=(3, 25, 25)")
    make_project(tmp_path, {"models/net.py": src},
                 STDIN_PROJECT.replace("[3, 25, 25]", "[3, 24, 24]"))  # 24x24 would be clean, and mis-sized
    assert [h.code for h in flake8(tmp_path, "--select", "GPM", "models/net.py").gpm()] == ["GPM200"]


EXAMPLE = """\
import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        return self.pool(F.relu(self.conv(x)))


model = Net()
out = model(torch.randn(4, 3, 25, 25))
"""


def test_the_files_own_example_gives_the_input_shape_and_batch(tmp_path):
    make_project(tmp_path, {"net.py": EXAMPLE}, pyproject(budget="200KiB"))
    run = flake8(tmp_path, "--select", "GPM", "--extend-select", "GPM9", "net.py")
    # 4x3x25x25 from the file: the pool drops a row and a column; 200 KiB is too small at batch 4
    assert sorted(h.code for h in run.gpm()) == ["GPM100", "GPM200"], run.stdout
    [pool] = [h for h in run.gpm() if h.code == "GPM200"]
    assert "25x25 -> 12x12" in pool.text
    assert batch_in(run) == 4


def test_example_input_array_gives_the_input_shape(tmp_path):
    example = "        self.example_input_array = torch.randn(2, 3, 25, 25)\n"
    src = EXAMPLE.replace("        self.pool = nn.MaxPool2d(2)\n", "        self.pool = nn.MaxPool2d(2)\n" + example)
    src = src[:src.index("model = Net()")]
    make_project(tmp_path, {"net.py": src}, pyproject())
    run = flake8(tmp_path, "--select", "GPM", "--extend-select", "GPM9", "net.py")
    assert [h.code for h in run.gpm()] == ["GPM200"], run.stdout


def test_the_files_own_example_beats_tool_gpumem_defaults(tmp_path):
    make_project(tmp_path, {"net.py": EXAMPLE}, pyproject(input_shape=(3, 32, 32), batch_size=64, budget="200KiB"))
    run = flake8(tmp_path, "--select", "GPM", "net.py")
    # DESIGN.md: the file's example shape is stronger than [tool.gpumem] (25x25 -> GPM200) ...
    assert sorted(h.code for h in run.gpm()) == ["GPM100", "GPM200"], run.stdout
    # ... but a configured batch_size beats the example's batch (often a smoke test's)
    assert batch_in(run) == 64


def test_the_files_own_example_sets_the_batch_when_nothing_else_does(tmp_path):
    make_project(tmp_path, {"net.py": EXAMPLE}, pyproject(budget="200KiB"))
    run = flake8(tmp_path, "--select", "GPM", "net.py")
    assert batch_in(run) == 4


def test_inline_comment_beats_the_files_own_example(tmp_path):
    src = EXAMPLE.replace("class Net(nn.Module):", "class Net(nn.Module):  # gpumem: input_shape=(3, 32, 32)")
    make_project(tmp_path, {"net.py": src}, pyproject())
    run = flake8(tmp_path, "--select", "GPM", "--extend-select", "GPM9", "net.py")
    assert run.gpm() == [], run.stdout  # 32x32 tiles; the example's 25x25 would not


def test_per_model_table_beats_the_files_own_example(tmp_path):
    make_project(tmp_path, {"net.py": EXAMPLE},
                 '[tool.gpumem]\n\n[tool.gpumem.models."net.py::Net"]\ninput_shape = [3, 32, 32]\n')
    run = flake8(tmp_path, "--select", "GPM", "--extend-select", "GPM9", "net.py")
    assert run.gpm() == [], run.stdout  # 32x32 tiles; the example's 25x25 would not


# ----------------------------------------------------------------- bad configuration

BAD_PYPROJECT = [
    ("unknown-key", 'colour = "red"', ["colour", "red"]),
    ("budget-lots", 'budget = "lots"', ["budget", "lots"]),
    ("batch-zero", "batch_size = 0", ["batch_size", "0"]),
    ("batch-negative", "batch_size = -3", ["batch_size", "-3"]),
    ("shape-abc", 'input_shape = "abc"', ["input_shape", "abc"]),
    ("optimizer-int", "optimizer = 3", ["optimizer", "3"]),
    ("dtype-float64", 'dtype = "float64"', ["dtype", "float64"]),
    ("warn-fraction-2", "warn_fraction = 2", ["warn_fraction", "2"]),
    ("shape-negative", "input_shape = [3, -1, 32]", ["input_shape", "-1"]),
    ("budget-bool", "budget = true", ["budget", "True"]),
    ("per-model-batch", 'input_shape = [3, 32, 32]\n\n[tool.gpumem.models."cnn.py::CNN"]\nbatch_size = "x"',
     ["cnn.py::CNN", "batch_size", "x"]),
    ("broken-toml", "budget = [1", ["invalid TOML"]),
]


@pytest.mark.parametrize("setting, mentions", [c[1:] for c in BAD_PYPROJECT], ids=[c[0] for c in BAD_PYPROJECT])
def test_bad_pyproject_is_one_line_naming_file_key_and_value(tmp_path, setting, mentions):
    make_project(tmp_path, {"cnn.py": CNN}, f"[tool.gpumem]\n{setting}\n")
    run = flake8(tmp_path, "cnn.py")
    assert run.rc != 0
    assert run.stderr == ""
    lines = [line for line in run.stdout.splitlines() if "GPM" in line]
    assert len(lines) == 1, run.stdout
    assert [h.code for h in run.gpm()] == ["GPM001"]
    text = run.gpm()[0].text
    assert str(tmp_path / "pyproject.toml") in text
    for word in mentions:
        assert word in text, (word, text)


@pytest.mark.parametrize("option, value", [("--gpumem-budget", "lots"), ("--gpumem-batch-size", "0"),
                                           ("--gpumem-optimizer", "lion"), ("--gpumem-input-shape", "abc")])
def test_bad_command_line_option_is_one_line_naming_key_and_value(tmp_path, option, value):
    make_project(tmp_path, {"cnn.py": CNN}, pyproject(input_shape=(3, 32, 32)))
    run = flake8(tmp_path, option, value, "cnn.py")
    assert run.rc != 0
    assert [h.code for h in run.gpm()] == ["GPM001"], run.stdout
    text = run.gpm()[0].text
    assert option.removeprefix("--gpumem-").replace("-", "_") in text and value in text


def test_bad_inline_comment_is_reported_by_default(tmp_path):
    src = CNN.replace("class CNN(nn.Module):", "class CNN(nn.Module):  # gpumem: batch_size=0")
    make_project(tmp_path, {"cnn.py": src}, pyproject(input_shape=(3, 32, 32)))
    run = flake8(tmp_path, "cnn.py")
    assert run.rc != 0
    assert len(run.gpm()) == 1 and "batch_size" in run.gpm()[0].text and "0" in run.gpm()[0].text


# ----------------------------------------------------------------- the options themselves

# Every flake8 option of the contract, as a flake8 config file writes it, and the setting it must give.
CONFIG_FILE_OPTIONS = {
    "gpumem-budget": ("T4", 16 * 2 ** 30),
    "gpumem-batch-size": ("8", 8),
    "gpumem-input-shape": ("3,32,32;10;labels=", ((3, 32, 32), (10,), Named("labels", ()))),
    "gpumem-dtype": ("bfloat16", "bfloat16"),
    "gpumem-input-dtype": ("labels=int64", (Named("labels", "int64"),)),
    "gpumem-batch-dim": ("1;0", (1, 0)),
    "gpumem-loss": ("mse", "mse"),
    "gpumem-checkpoint": ("Block, Head", ("Block", "Head")),
    "gpumem-checkpoint-every": ("2", 2),
    "gpumem-accumulate": ("4", 4),
    "gpumem-strategy": ("fsdp", "fsdp"),
    "gpumem-world-size": ("2", 2),
    "gpumem-shard-unit": ("Block", ("Block",)),
    "gpumem-param-dtype": ("bfloat16", "bfloat16"),
    "gpumem-reduce-dtype": ("float32", "float32"),
    "gpumem-offload": ("true", "pinned"),
    "gpumem-reshard-after-forward": ("false", False),
    "gpumem-max-gpus": ("64", 64),
    "gpumem-optimizer": ("sgd-momentum", "sgd-momentum"),
    "gpumem-warn-fraction": ("0.5", 0.5),
    "gpumem-reserve": ("1GiB", 2 ** 30),
    "gpumem-device": ("cpu", "cpu"),
    "gpumem-hf-config": ("configs/llama.json", "configs/llama.json"),
}


def test_every_option_keeps_its_name_and_is_read_from_flake8_config_files(tmp_path, monkeypatch):
    """flake8's own option manager, in this process: a renamed option, or one without parse_from_config,
    leaves its setting unset."""
    from flake8.api import legacy

    from flake8_gpumem.plugin import Plugin

    for attr in ("overrides", "option_error", "report_unshaped"):  # parse_options sets them on the class
        monkeypatch.setattr(Plugin, attr, getattr(Plugin, attr))
    (tmp_path / ".flake8").write_text("[flake8]\n" + "".join(f"{name} = {written}\n" for name, (written, _)
                                                             in CONFIG_FILE_OPTIONS.items()))
    monkeypatch.chdir(tmp_path)
    legacy.get_style_guide()
    assert Plugin.option_error is None
    got = {name: getattr(Plugin.overrides, name.removeprefix("gpumem-").replace("-", "_"))
           for name in CONFIG_FILE_OPTIONS}
    assert got == {name: setting for name, (_, setting) in CONFIG_FILE_OPTIONS.items()}


def test_flake8_help_lists_every_option_with_its_default(tmp_path):
    out = subprocess.run([sys.executable, "-m", "flake8", "--help"], capture_output=True, text=True, cwd=tmp_path,
                         timeout=TIMEOUT, env={**os.environ, "COLUMNS": "250"}).stdout
    entries = dict(re.findall(r"^  --(gpumem-[\w-]+) \S+\s+(gpumem: .*?)(?=\n  -|\n\n)", out, re.MULTILINE | re.DOTALL))
    assert sorted(entries) == sorted(CONFIG_FILE_OPTIONS), out
    assert all(re.search(r"\(default: [^()]+\)$", text) for text in entries.values()), entries


# ----------------------------------------------------------------- hostile files

MODEL_TEMPLATE = """\
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear({a}, {b})

    def forward(self, x):
        return self.fc(x)
"""

RECURSIVE = """\
import torch.nn as nn


class Loop(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = Loop()

    def forward(self, x):
        return self.inner(x)


class Forward(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        return self.forward(self.fc(x))
"""

SYNTAX_ERROR = """\
import torch.nn as nn


class Broken(nn.Module):
    def __init__(self:
        pass
"""

LATIN1 = ("# -*- coding: latin-1 -*-\n"
          "import torch.nn as nn\n\n"
          "# caf\xe9, na\xefve, \xfcber\n\n\n"
          "class Net(nn.Module):  # \xe9t\xe9\n"
          "    def __init__(self):\n"
          "        super().__init__()\n"
          "        self.fc = nn.Linear(3, 2)\n\n"
          "    def forward(self, x):\n"
          "        return self.fc(x)\n").encode("latin-1")

POOL_25 = """\
import torch.nn as nn


class Net(nn.Module):  # gpumem: input_shape=(4, 25, 25)
    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        return self.pool(x)
"""
CRLF = POOL_25.replace("\n", "\r\n").encode()
TABS = POOL_25.replace("        ", "\t\t").replace("    ", "\t").encode()
DEEP_SEQUENTIAL = "import torch.nn as nn\n\nmodel = " + "nn.Sequential(" * 150 + "nn.Linear(2, 2)" + ")" * 150 + "\n"

# name -> (file contents, expected GPM (code, line, column) with GPM9 selected; None: anything but a crash)
HOSTILE = {
    "billion-layers": ("import torch.nn as nn\n\nmodel = nn.Sequential(*[nn.Linear(2, 2) for _ in range(10 ** 9)])\n",
                       [("GPM900", 3, 1)]),
    "googol-features": (MODEL_TEMPLATE.format(a="10 ** 100", b=2), [("GPM900", 7, 29)]),
    "tower-of-powers": (MODEL_TEMPLATE.format(a=2, b="10 ** 10 ** 10 ** 10"), None),
    "recursive": (RECURSIVE, [("GPM900", 7, 22), ("GPM900", 19, 16)]),
    "syntax-error": (SYNTAX_ERROR, []),
    "latin-1": (LATIN1, [("GPM300", 10, 19)]),  # Linear(3, 2) fed 2 features: the file was decoded right
    "crlf": (CRLF, [("GPM200", 7, 21)]),
    "tabs": (TABS, [("GPM200", 7, 15)]),  # flake8 counts a tab as one column
    "huge-int-literal": (MODEL_TEMPLATE.format(a=2, b="1" + "0" * 5000), []),  # E999 from Python itself
    "deep-parens": (MODEL_TEMPLATE.format(a="(" * 150 + "2" + ")" * 150, b=2), []),
    "deep-sequential": (DEEP_SEQUENTIAL, None),
    "empty-class": ("import torch.nn as nn\n\n\nclass Net(nn.Module):\n    pass\n", None),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_files_never_crash_flake8(tmp_path, name):
    content, expected = HOSTILE[name]
    make_project(tmp_path, {"hostile.py": content}, pyproject(input_shape=(2,), budget="1GiB"))
    run = flake8(tmp_path, "--extend-select", "GPM9", "hostile.py")  # asserts no traceback, no plugin failure
    if expected is not None:
        assert [(h.code, h.row, h.col) for h in run.gpm()] == expected, run.stdout
    if name == "syntax-error":
        assert [h.code for h in run.hits] == ["E999"], run.stdout
    if name in ("googol-features", "tower-of-powers"):
        assert all("too large" in h.text for h in run.gpm()), run.stdout


def test_hostile_files_in_one_parallel_run(tmp_path):
    files = {f"h_{i}.py": content for i, (content, _) in enumerate(HOSTILE.values())}
    make_project(tmp_path, files, pyproject(input_shape=(2,), budget="1GiB"))
    proc = subprocess.run([sys.executable, "-m", "flake8", "-j", "2", "."], cwd=tmp_path,
                          capture_output=True, text=True, timeout=TIMEOUT)
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output and "failed during execution" not in output, output
    assert "E999" in output  # the syntax error is flake8's to report


# ----------------------------------------------------------------- parallel

def test_parallel_jobs_give_the_same_output(tmp_path):
    files = {
        "models/cnn.py": CNN,
        "models/net.py": pool_net(12),
        "models/tiny.py": POOL_TOO_BIG,
        "models/lin.py": LINEAR_MISMATCH,
        "models/conv.py": CONV_MISMATCH,
        "models/fromfile.py": FROM_FILE,
        "models/plain.py": PLAIN,
    }
    project = "\n".join([
        "[tool.gpumem]", "input_shape = [3, 32, 32]", "batch_size = 16", 'budget = "21MiB"', "",
        '[tool.gpumem.models."models/net.py::Net"]', "input_shape = [3, 25, 25]", ""])
    make_project(tmp_path, files, project)
    serial = flake8(tmp_path, "-j", "1", "--extend-select", "GPM9", "models")
    parallel = flake8(tmp_path, "-j", "2", "--extend-select", "GPM9", "models")
    assert parallel.stdout == serial.stdout
    assert parallel.rc == serial.rc == 1
    codes = {(Path(h.path).name, h.code) for h in serial.gpm()}
    assert codes == {("cnn.py", "GPM100"), ("net.py", "GPM200"), ("tiny.py", "GPM201"), ("lin.py", "GPM300"),
                     ("conv.py", "GPM300"), ("fromfile.py", "GPM900")}
    # the command-line budget reaches the workers too
    serial = flake8(tmp_path, "-j", "1", "--gpumem-budget", "T4", "models")
    parallel = flake8(tmp_path, "-j", "2", "--gpumem-budget", "T4", "models")
    assert parallel.stdout == serial.stdout
    assert "GPM100" not in serial.stdout


def test_parallel_bad_config_in_every_worker(tmp_path):
    files = {f"m{i}.py": CNN for i in range(4)}
    make_project(tmp_path, files, '[tool.gpumem]\nbudget = "lots"\n')
    serial = flake8(tmp_path, "-j", "1", ".")
    parallel = flake8(tmp_path, "-j", "2", ".")
    assert parallel.stdout == serial.stdout
    assert [h.code for h in parallel.gpm()] == ["GPM001"] * 4
    assert parallel.rc != 0


def test_plugin_is_registered():
    out = subprocess.run([sys.executable, "-m", "flake8", "--version"], capture_output=True, text=True,
                         timeout=TIMEOUT).stdout
    assert "flake8-gpumem" in out, out
