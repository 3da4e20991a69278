"""`gpumem report` as a user runs it: the real console script, in a subprocess.

Every expected number here is worked by hand in the test or computed by PyTorch
(tests/torch_oracle.py); none is copied from the tool's own output.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sources import ADAPTIVE

from flake8_gpumem import cli
from flake8_gpumem.config import DEFAULTS

REPO = Path(__file__).resolve().parent.parent
SEED = REPO / "fixtures" / "seed_cnn.py"
GIB = 2 ** 30
MIB = 2 ** 20

# The seed network worked by hand (fixtures/seed_cnn.py, input 3x50x50, batch 64).
# Conv2d(3, 32, 3):          32*3*3*3 + 32   =       896
# Conv2d(32, 64, 3):         64*32*3*3 + 64  =    18,496
# Linear(64*12*12, 500):     9216*500 + 500  = 4,608,500
# Linear(500, 10):           500*10 + 10     =     5,010
SEED_PARAMS = 896 + 18_496 + 4_608_500 + 5_010
assert SEED_PARAMS == 4_632_902
SEED_PARAM_TENSORS = 8  # a weight and a bias for each of the 4 layers with parameters


def run_gpumem(*args, cwd=None, script=False) -> subprocess.CompletedProcess:
    """`gpumem report ARGS...`, through `python -m` or through the installed console script."""
    if script:
        exe = Path(sys.executable).with_name("gpumem")
        cmd = [str(exe), "report", *map(str, args)]
    else:
        cmd = [sys.executable, "-m", "flake8_gpumem.cli", "report", *map(str, args)]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd or REPO, env=env, timeout=120)


def report_json(*args, cwd=None) -> dict:
    proc = run_gpumem(*args, "--format", "json", cwd=cwd)
    assert "Traceback" not in proc.stderr, proc.stderr
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"--format json did not print JSON (rc={proc.returncode})\nstdout:\n{proc.stdout}\n"
                    f"stderr:\n{proc.stderr}")


def only_model(data: dict) -> dict:
    assert len(data["models"]) == 1, [m["name"] for m in data["models"]]
    return data["models"][0]


def write(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source).lstrip("\n"))
    return path


@pytest.fixture(scope="module")
def seed_json() -> dict:
    return report_json(SEED)


@pytest.fixture(scope="module")
def seed_torch():
    """What PyTorch itself says about the seed model: leaf calls in order and the parameter count."""
    torch = pytest.importorskip("torch")
    import torch_oracle

    ns = torch_oracle.load(SEED.read_text())
    model = torch_oracle.instantiate(ns, "SeedCNN")
    torch.manual_seed(0)
    return torch_oracle.profile(model, torch.randn(64, 3, 50, 50))


# ---------------------------------------------------------------- JSON contract

MODEL_KEYS = {"name", "file", "line", "input_shape", "params", "trainable_params", "layers", "memory", "budget",
              "fits", "max_batch_size"}
LAYER_KEYS = {"name", "type", "module", "line", "output_shape", "params", "trainable", "activation_bytes",
              "saved_bytes"}
MEMORY_KEYS = {"weights", "gradients", "optimizer", "activations", "peak", "reserve"}
HOST_KEYS = {"host", "host_pinned"}  # under FSDP's CPU offload only
DIAGNOSTIC_KEYS = {"code", "line", "col", "message"}


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_json_shape(data: dict) -> None:
    assert set(data) == {"models", "diagnostics"}, sorted(data)
    for m in data["models"]:
        assert set(m) == MODEL_KEYS, f"model keys differ from DESIGN.md: {sorted(set(m) ^ MODEL_KEYS)}"
        assert isinstance(m["name"], str) and isinstance(m["file"], str) and is_int(m["line"])
        assert isinstance(m["input_shape"], list) and all(is_int(v) for v in m["input_shape"])
        assert is_int(m["params"])
        assert set(m["memory"]) - HOST_KEYS == MEMORY_KEYS, sorted(set(m["memory"]) ^ MEMORY_KEYS)
        assert set(m["memory"]) & HOST_KEYS in (set(), HOST_KEYS), sorted(m["memory"])
        for k, v in m["memory"].items():
            assert is_int(v), f"memory.{k} = {v!r} is not an integer byte count"
        assert m["budget"] is None or is_int(m["budget"]), m["budget"]
        assert m["fits"] is None or isinstance(m["fits"], bool), m["fits"]
        assert m["max_batch_size"] is None or is_int(m["max_batch_size"]), m["max_batch_size"]
        assert m["layers"], "a model with no layers"
        for layer in m["layers"]:
            assert set(layer) == LAYER_KEYS, f"layer keys differ: {sorted(set(layer) ^ LAYER_KEYS)}"
            assert isinstance(layer["name"], str) and isinstance(layer["type"], str)
            assert isinstance(layer["module"], bool)
            assert is_int(layer["line"]) and is_int(layer["params"])
            assert is_int(layer["activation_bytes"]) and is_int(layer["saved_bytes"]), layer
            assert layer["output_shape"] is None or all(is_int(v) for v in layer["output_shape"])
    for d in data["diagnostics"]:
        assert set(d) == DIAGNOSTIC_KEYS, sorted(d)
        assert isinstance(d["code"], str) and d["code"].startswith("GPM")
        assert is_int(d["line"]) and is_int(d["col"]) and isinstance(d["message"], str)


def test_seed_json_follows_the_contract(seed_json):
    check_json_shape(seed_json)
    m = only_model(seed_json)
    assert m["name"] == "SeedCNN"
    assert m["line"] == 12  # `class SeedCNN(nn.Module):` is line 12 of the fixture
    assert m["input_shape"] == [64, 3, 50, 50], "the inline comment says (3, 50, 50), batch 64"
    assert m["budget"] is None and m["fits"] is None and m["max_batch_size"] is None  # no budget given


def test_seed_json_exit_code_is_zero():
    proc = run_gpumem(SEED, "--format", "json")
    assert proc.returncode == 0, proc.stderr


def test_installed_console_script_runs():
    exe = Path(sys.executable).with_name("gpumem")
    if not exe.exists():
        pytest.skip("no gpumem console script next to the interpreter")
    proc = run_gpumem(SEED, "--format", "json", script=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["models"][0]["params"] == SEED_PARAMS


def test_seed_layer_names_and_params_match_torch(seed_json, seed_torch):
    m = only_model(seed_json)
    modules = [layer for layer in m["layers"] if layer["module"]]
    assert [layer["name"] for layer in modules] == [c.name for c in seed_torch.calls]
    assert [layer["type"] for layer in modules] == [c.type for c in seed_torch.calls]
    assert [tuple(layer["output_shape"]) for layer in modules] == [c.output_shape for c in seed_torch.calls]
    assert m["params"] == seed_torch.params == SEED_PARAMS
    assert sum(layer["params"] for layer in m["layers"]) == seed_torch.params


def test_seed_per_layer_params_by_hand(seed_json):
    params = {layer["name"]: layer["params"] for layer in only_model(seed_json)["layers"]}
    assert params["features.0"] == 32 * 3 * 3 * 3 + 32
    assert params["features.3"] == 64 * 32 * 3 * 3 + 64
    assert params["classifier.1"] == 64 * 12 * 12 * 500 + 500
    assert params["classifier.3"] == 500 * 10 + 10


def test_seed_memory_worked_by_hand(seed_json):
    """float32, adam, batch 64."""
    mem = only_model(seed_json)["memory"]
    weights = SEED_PARAMS * 4  # 4 bytes per float32 parameter; the seed has no buffers
    assert weights == 18_531_608
    assert mem["weights"] == weights
    assert mem["gradients"] == weights  # one float32 gradient per parameter
    # adam: exp_avg and exp_avg_sq (2 x weights) + one float32 `step` scalar per parameter tensor
    assert mem["optimizer"] == 2 * SEED_PARAMS * 4 + 4 * SEED_PARAM_TENSORS
    # the input batch alone, 64x3x50x50 float32, is part of what backward keeps
    assert mem["activations"] >= 64 * 3 * 50 * 50 * 4
    # just before backward (steady state), the weights, the adam state and everything kept for backward
    # are all alive at once, so the peak is at least their sum
    assert mem["weights"] + mem["optimizer"] + mem["activations"] <= mem["peak"]
    assert mem["reserve"] == 0


def test_seed_activation_bytes_by_hand(seed_json):
    """What each layer allocates for its output, in float32, batch 64."""
    act = {layer["name"]: layer["activation_bytes"] for layer in only_model(seed_json)["layers"]}
    assert act["features.0"] == 64 * 32 * 50 * 50 * 4
    assert act["features.3"] == 64 * 64 * 25 * 25 * 4
    assert act["classifier.1"] == 64 * 500 * 4
    # in training, max_pool2d runs max_pool2d_with_indices: a float32 output and int64 indices of the same shape
    assert act["features.2"] == 64 * 32 * 25 * 25 * (4 + 8)
    assert act["features.5"] == 64 * 64 * 12 * 12 * (4 + 8)


@pytest.mark.parametrize("optimizer, states, step", [("sgd", 0, False), ("sgd-momentum", 1, False),
                                                     ("adamw", 2, True), ("rmsprop", 1, True),
                                                     ("adagrad", 1, True)])
def test_optimizer_state_by_hand(optimizer, states, step):
    """torch.optim state: sgd none, momentum one buffer; adam/adamw exp_avg + exp_avg_sq,
    rmsprop square_avg, adagrad sum, each of those three also a float32 `step` per parameter tensor."""
    mem = only_model(report_json(SEED, "--optimizer", optimizer))["memory"]
    assert mem["optimizer"] == states * SEED_PARAMS * 4 + (4 * SEED_PARAM_TENSORS if step else 0), optimizer
    assert mem["weights"] == SEED_PARAMS * 4


def test_sgd_has_no_optimizer_state_and_momentum_is_one_copy():
    sgd = only_model(report_json(SEED, "--optimizer", "sgd"))["memory"]
    momentum = only_model(report_json(SEED, "--optimizer", "sgd-momentum"))["memory"]
    assert sgd["optimizer"] == 0
    assert momentum["optimizer"] == momentum["weights"] == SEED_PARAMS * 4
    # the optimizer is the only thing that changed
    assert momentum["peak"] - sgd["peak"] == SEED_PARAMS * 4


def test_bfloat16_halves_weights_and_gradients(seed_json):
    bf16 = only_model(report_json(SEED, "--dtype", "bfloat16"))["memory"]
    f32 = only_model(seed_json)["memory"]
    assert bf16["weights"] == SEED_PARAMS * 2 == f32["weights"] // 2
    assert bf16["gradients"] == SEED_PARAMS * 2
    # adam state follows the parameter dtype; the step scalars stay float32
    assert bf16["optimizer"] == 2 * SEED_PARAMS * 2 + 4 * SEED_PARAM_TENSORS
    # the bfloat16 input batch alone
    assert bf16["activations"] >= 64 * 3 * 50 * 50 * 2
    assert bf16["activations"] < f32["activations"]


def test_amp_keeps_float32_weights():
    amp = only_model(report_json(SEED, "--dtype", "amp-bf16"))["memory"]
    assert amp["weights"] == SEED_PARAMS * 4, "under autocast the master weights stay float32"
    assert amp["gradients"] == SEED_PARAMS * 4


# ---------------------------------------------------------------- flags


def test_input_shape_and_batch_size_flags(tmp_path):
    path = write(tmp_path, "adaptive.py", ADAPTIVE)
    m = only_model(report_json(path, "--input-shape", "3,32,32", "--batch-size", "8"))
    assert m["input_shape"] == [8, 3, 32, 32], "the command line beats the inline comment"
    shapes = {layer["name"]: layer["output_shape"] for layer in m["layers"]}
    assert shapes["conv"] == [8, 16, 32, 32]
    assert shapes["fc"] == [8, 10]
    assert m["params"] == (16 * 3 * 9 + 16) + (16 * 10 + 10)


def test_input_shape_flag_reaches_the_seed():
    """On the seed a 32x32 input reaches the FC layer as 64 x 8 x 8 = 4096 features, not 9216."""
    data = report_json(SEED, "--input-shape", "3,32,32", "--batch-size", "8")
    gpm300 = [d for d in data["diagnostics"] if d["code"] == "GPM300"]
    assert gpm300, data["diagnostics"]
    assert str(64 * 8 * 8) in gpm300[0]["message"] and str(64 * 12 * 12) in gpm300[0]["message"]
    assert gpm300[0]["line"] == 25  # nn.Linear(64 * 12 * 12, 500)


TWO_MODELS = """
import torch.nn as nn

class A(nn.Module):  # gpumem: input_shape=(20,)
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(20, 5)

    def forward(self, x):
        return self.fc(x)

class B(nn.Module):  # gpumem: input_shape=(3, 8, 8)
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x)
"""


def test_model_flag_picks_one_model(tmp_path):
    path = write(tmp_path, "two.py", TWO_MODELS)
    both = report_json(path)
    assert [(m["name"], m["params"]) for m in both["models"]] == [("A", 20 * 5 + 5), ("B", 4 * 3 * 9 + 4)]
    b = only_model(report_json(path, "--model", "B"))
    assert b["name"] == "B"
    assert b["input_shape"] == [1, 3, 8, 8]
    assert b["layers"][0]["output_shape"] == [1, 4, 6, 6]


NEEDS_ARG = """
import torch.nn as nn

class Net(nn.Module):  # gpumem: input_shape=(20,)
    def __init__(self, num_classes):
        super().__init__()
        self.fc = nn.Linear(20, num_classes)

    def forward(self, x):
        return self.fc(x)
"""


def test_missing_constructor_argument_is_a_clear_error(tmp_path):
    path = write(tmp_path, "needs_arg.py", NEEDS_ARG)
    proc = run_gpumem(path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    assert_clean_error(proc, "num_classes", tmp=tmp_path)


def test_arg_flag_supplies_constructor_argument(tmp_path):
    path = write(tmp_path, "needs_arg.py", NEEDS_ARG)
    proc = run_gpumem(path, "--arg", "num_classes=10", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    m = only_model(json.loads(proc.stdout))
    assert m["params"] == 20 * 10 + 10
    assert m["layers"][0]["output_shape"] == [1, 10]


def test_arg_flag_overrides_a_default():
    m = only_model(report_json(SEED, "--arg", "num_classes=100"))
    assert m["params"] == SEED_PARAMS - 5_010 + (500 * 100 + 100)
    head = [layer for layer in m["layers"] if layer["name"] != "loss"][-1]  # before the step's loss row
    assert head["output_shape"] == [64, 100]


def test_budget_in_gib_fits(seed_json):
    m = only_model(report_json(SEED, "--budget", "12GiB"))
    assert m["budget"] == 12 * 2 ** 30
    # weights + gradients + adam state + the activations of a 64-sample 50x50 batch are far below 12 GiB
    assert m["fits"] is True
    assert is_int(m["max_batch_size"]) and m["max_batch_size"] >= 64


def test_budget_of_one_mib_does_not_fit():
    m = only_model(report_json(SEED, "--budget", "1MiB"))
    assert m["budget"] == 2 ** 20
    assert m["fits"] is False
    # the weights alone are 4,632,902 * 4 bytes = 17.7 MiB, so no batch at all fits in 1 MiB
    assert m["max_batch_size"] == 0


def test_budget_gpu_name():
    m = only_model(report_json(SEED, "--budget", "T4"))
    assert m["budget"] == 16 * 2 ** 30
    m = only_model(report_json(SEED, "--budget", "a100-40gb"))
    assert m["budget"] == 40 * 2 ** 30


def test_reserve_is_reported_and_counted():
    m = only_model(report_json(SEED, "--budget", "2GiB", "--reserve", "300MiB"))
    assert m["memory"]["reserve"] == 300 * 2 ** 20
    no_reserve = only_model(report_json(SEED, "--budget", "2GiB"))
    assert m["max_batch_size"] < no_reserve["max_batch_size"], "a reserve leaves less room for the batch"


@pytest.mark.parametrize("budget, reserve", [("2GiB", None), ("T4", None), ("500MiB", None),
                                             ("1GiB", "300MiB")])
def test_max_batch_size_is_honest(budget, reserve):
    extra = ["--reserve", reserve] if reserve else []
    m = only_model(report_json(SEED, "--budget", budget, *extra))
    limit = m["budget"]
    best = m["max_batch_size"]
    assert is_int(best) and best > 1
    at = only_model(report_json(SEED, "--budget", budget, *extra, "--batch-size", best))
    assert at["input_shape"][0] == best
    total = at["memory"]["peak"] + at["memory"]["reserve"]
    assert total <= limit, f"batch {best} claimed to fit, but peak+reserve {total} > budget {limit}"
    assert at["fits"] is True
    over = only_model(report_json(SEED, "--budget", budget, *extra, "--batch-size", best + 1))
    total = over["memory"]["peak"] + over["memory"]["reserve"]
    assert total > limit, f"batch {best + 1} also fits ({total} <= {limit}): max_batch_size is not the largest"
    assert over["fits"] is False


def test_markdown_format():
    proc = run_gpumem(SEED, "--format", "markdown")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = [line for line in lines if line.startswith("| Layer")]
    assert len(header) == 1, proc.stdout
    rows = [line for line in lines if line.startswith("| features.") or line.startswith("| classifier.")]
    assert len(rows) == 11  # 6 layers in features, 5 in classifier
    assert rows[0].split("|")[1].strip() == "features.0"


def test_table_shows_per_sample_sizes():
    """Per-sample output sizes worked by hand: 32x50x50, 32x25x25, 64x25x25, 64x12x12."""
    proc = run_gpumem(SEED)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("Layer"))
    header, rule = lines[at], lines[at + 1]
    # column spans from the dashed rule under the header ("Output shape", "Per sample" hold spaces)
    spans, start = [], None
    for i, ch in enumerate(rule + " "):
        if ch == "-" and start is None:
            start = i
        elif ch != "-" and start is not None:
            spans.append((start, i))
            start = None
    names = [header[a:b].strip() for a, b in spans]
    a, b = spans[names.index("Per sample")]
    rows = {line.split()[0]: line[a:b].strip() for line in lines if line.startswith(("features.", "classifier."))}
    assert rows["features.0"] == f"{32 * 50 * 50:,}" == "80,000"
    assert rows["features.2"] == f"{32 * 25 * 25:,}" == "20,000"
    assert rows["features.3"] == f"{64 * 25 * 25:,}" == "40,000"
    assert rows["features.5"] == f"{64 * 12 * 12:,}" == "9,216"
    assert rows["classifier.1"] == "500"
    assert f"{SEED_PARAMS:,}" in proc.stdout


def test_seed_pooling_warning_points_at_p2(seed_json):
    """P2 pools 25x25 with a 2x2 window: a row and a column are dropped (GPM200), at line 21 col 13."""
    src = SEED.read_text().splitlines()
    line = next(i for i, text in enumerate(src, 1) if "# P2" in text)
    col = src[line - 1].index("nn.MaxPool2d") + 1  # 1-based, as flake8 prints it
    gpm200 = [d for d in seed_json["diagnostics"] if d["code"] == "GPM200"]
    assert [(d["line"], d["col"]) for d in gpm200] == [(line, col)], seed_json["diagnostics"]
    assert "25" in gpm200[0]["message"] and "12" in gpm200[0]["message"]


# ---------------------------------------------------------------- --help

GROUPED = {  # issue #23: the flags of `gpumem report`, in order, under their headings
    "model and inputs": ["FILE", "--model", "--arg", "--forward-arg", "--input-shape", "--input-dtype", "--batch-size",
                         "--batch-dim", "--hf-config"],
    "training step": ["--dtype", "--optimizer", "--loss", "--device"],
    "set-up": ["--checkpoint", "--checkpoint-every", "--accumulate", "--strategy", "--world-size", "--shard-unit",
               "--param-dtype", "--reduce-dtype", "--offload", "--reshard-after-forward", "--max-gpus"],
    "budget": ["--budget", "--reserve"],
    "output": ["--format", "--timeline", "--snapshot"],
}


def help_of(args: list, capsys, monkeypatch) -> str:
    """What `gpumem ARGS --help` prints, in this process (this checkout's code), each flag's help on one line."""
    monkeypatch.setenv("COLUMNS", "250")
    with pytest.raises(SystemExit) as done:
        cli.main([*args, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def help_sections(text: str) -> dict:
    """{heading: {flag: its help}}, each section's other lines (a description, the epilog's) under ""."""
    sections, entries, flag = {}, None, None
    for line in text.splitlines():
        if re.fullmatch(r"\S.*:", line):
            entries = sections[line[:-1]] = {"": []}
            flag = None
        elif entries is None or not line.strip():
            continue
        elif m := re.match(r"  (FILE|--?[\w-]+)\b,? ?\S*\s*(.*)", line):
            flag = m[1]
            entries[flag] = [m[2]] if m[2] else []
        elif line.startswith("    ") and flag is not None:
            entries[flag].append(line.strip())
        else:
            flag = None
            entries[""].append(line.strip())
    return {heading: {k: " ".join(v) for k, v in entries.items()} for heading, entries in sections.items()}


def test_report_help_puts_each_flag_under_its_heading(capsys, monkeypatch):
    sections = help_sections(help_of(["report"], capsys, monkeypatch))
    for heading, flags in GROUPED.items():
        assert [f for f in sections.get(heading, {}) if f] == flags, (heading, sections.get(heading))
    listed = {f for entries in sections.values() for f in entries if f}
    assert listed == {"-h", *(f for flags in GROUPED.values() for f in flags)}, "a flag outside the five groups"


def test_report_help_states_the_defaults_the_tool_uses(capsys, monkeypatch):
    sections = help_sections(help_of(["report"], capsys, monkeypatch))
    flags = {f: text for entries in sections.values() for f, text in entries.items()}
    settings = [f for group in ("training step", "set-up", "budget") for f in GROUPED[group]]
    for flag in ["--model", "--input-shape", "--input-dtype", "--batch-size", *settings]:
        assert "(default: " in flags[flag], f"{flag} says no default: {flags[flag]}"
        value = getattr(DEFAULTS, flag.removeprefix("--").replace("-", "_"), None)
        if value is not None:  # the built-in default, after whatever the file states that comes first
            stated = re.search(r"\(default: (?:[^()]*, else )?([^()]*)\)$", flags[flag])
            assert stated and stated[1] == ("none" if value == () else str(value)), (flag, value, flags[flag])
    assert "(default: table)" in flags["--format"]
    # warn_fraction has no flag: the budget group says it is a key, and its default
    assert "warn_fraction" in sections["budget"][""] and "--gpumem-warn-fraction" in sections["budget"][""]
    assert f"(default: {DEFAULTS.warn_fraction})" in sections["budget"][""]


def test_report_help_epilog_orders_the_sources_strongest_first(capsys, monkeypatch):
    sources = help_sections(help_of(["report"], capsys, monkeypatch))["where settings come from, strongest first"][""]
    said = [sources.index(words) for words in ("command line", "# gpumem:", "[tool.gpumem.models.", "example input",
                                               "[tool.gpumem] in", "built-in defaults")]
    assert said == sorted(said), sources


def test_report_help_exit_statuses_are_the_real_ones(capsys, monkeypatch, tmp_path):
    """Each status the epilog states, checked against a run that must give it."""
    text = help_sections(help_of(["report"], capsys, monkeypatch))["exit status"][""]
    split = re.split(r"(?:^| )([012])  ", text)
    stated = dict(zip(split[1::2], split[2::2]))
    assert sorted(stated) == ["0", "1", "2"], text
    assert "model analysed" in stated["0"] and "not fit" in stated["1"] and "cannot be read" in stated["2"], stated
    assert run_gpumem(SEED).returncode == 0
    assert run_gpumem(SEED, "--budget", "1MiB").returncode == 1
    assert run_gpumem(tmp_path / "missing.py").returncode == 2


def test_top_level_help_points_at_report(capsys, monkeypatch):
    text = help_of([], capsys, monkeypatch)
    assert re.search(r"^ +report +\S", text, re.MULTILINE), "report listed with a one-line description"
    assert "gpumem report --help" in text


# ---------------------------------------------------------------- errors: one line, non-zero, no traceback

def assert_clean_error(proc: subprocess.CompletedProcess, *must_contain: str, tmp: Path | None = None) -> str:
    """One line on stderr, non-zero exit, no traceback; returns the line with the tmp directory cut out
    (pytest names tmp_path after the test, which would otherwise satisfy any word check)."""
    assert proc.returncode != 0, f"exit code 0 for an error\nstdout:{proc.stdout}\nstderr:{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{proc.stderr}"
    line = lines[0].replace(str(tmp) + os.sep, "") if tmp is not None else lines[0]
    for text in must_contain:
        assert text.lower() in line.lower(), f"{text!r} not in the error line: {lines[0]}"
    return line


def test_error_file_without_model(tmp_path):
    path = write(tmp_path, "plain.py", "x = 1\n\ndef f(y):\n    return y + x\n")
    assert_clean_error(run_gpumem(path), "plain.py", "no nn.Module", tmp=tmp_path)


def test_error_unknown_model_name():
    assert_clean_error(run_gpumem(SEED, "--model", "Nope"), "Nope")


def test_error_missing_file(tmp_path):
    assert_clean_error(run_gpumem(tmp_path / "missing.py"), "missing.py", tmp=tmp_path)


def test_error_undecodable_file(tmp_path):
    path = tmp_path / "binary.py"
    path.write_bytes(b"\xff\xfe\x00garbage")
    assert_clean_error(run_gpumem(path), "binary.py", tmp=tmp_path)


def test_syntax_error_is_reported_as_such(tmp_path):
    """A model file with a syntax error: the one line must say it cannot be parsed, not that it has no model."""
    path = write(tmp_path, "broken.py", """
        import torch.nn as nn

        class Net(nn.Module):  # gpumem: input_shape=(20,)
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(20, 5

            def forward(self, x):
                return self.fc(x)
        """)
    proc = run_gpumem(path)
    line = assert_clean_error(proc, "broken.py", tmp=tmp_path).lower()
    assert "syntax" in line or "parse" in line, (
        f"a syntax error is reported as something else: {proc.stderr.strip()!r}")


def test_syntax_error_in_a_non_model_file(tmp_path):
    path = write(tmp_path, "syn.py", "def f(:\n    pass\n")
    assert_clean_error(run_gpumem(path), "syn.py", tmp=tmp_path)


def test_syntax_error_json_has_a_diagnostic(tmp_path):
    path = write(tmp_path, "syn.py", "def f(:\n    pass\n")
    proc = run_gpumem(path, "--format", "json")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    data = json.loads(proc.stdout)
    assert data["models"] == []
    assert [d["code"] for d in data["diagnostics"]] == ["GPM900"]
    # `def f(:` -- the error is on line 1 (Python itself says line 1, column 7)
    assert data["diagnostics"][0]["line"] == 1, f"syntax error reported at the wrong line: {data['diagnostics']}"


def test_error_unresolvable_layer_argument(tmp_path):
    path = write(tmp_path, "unresolvable.py", """
        import torch.nn as nn

        n_in = len(open('x').read())

        class Net(nn.Module):  # gpumem: input_shape=(5,)
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(n_in, 10)

            def forward(self, x):
                return self.fc(x)
        """)
    proc = run_gpumem(path)
    line = assert_clean_error(proc, "Net", "n_in", tmp=tmp_path)
    assert "line 8" in line, "the error names the line of the layer whose argument is unknown"


@pytest.mark.parametrize("flag, value, mention", [
    ("--budget", "lots", "lots"),
    ("--batch-size", "-3", "-3"),
    ("--batch-size", "0", "0"),
    ("--input-shape", "a,b", "a,b"),
    ("--input-shape", "3,0,5", "3,0,5"),
    ("--optimizer", "foo", "foo"),
    ("--dtype", "float8", "float8"),
    ("--input-dtype", "complex", "complex"),
    ("--reserve", "much", "much"),
    ("--arg", "noequals", "noequals"),
])
def test_error_bad_flag_value(flag, value, mention):
    proc = run_gpumem(SEED, flag, value)
    assert_clean_error(proc)
    assert mention in proc.stderr.replace(" ", ""), f"the error does not show the value {value!r}: {proc.stderr}"
    assert flag.lstrip("-").replace("-", "_") in proc.stderr.replace("-", "_") or flag in proc.stderr, (
        f"the error does not name the setting {flag}: {proc.stderr}")


# ---------------------------------------------------------------- shape mismatch

MISMATCH = """
import torch.nn as nn

class Net(nn.Module):  # gpumem: input_shape=(11, 3, 3)
    def __init__(self):
        super().__init__()
        self.flat = nn.Flatten()
        self.fc = nn.Linear(100, 10)

    def forward(self, x):
        return self.fc(self.flat(x))
"""


def test_cpu_offload_adds_the_host_to_the_json(tmp_path):
    """ADAPTIVE sharded over 2 ranks with FSDP's CPU offload: conv 16x3x3x3 + 16, fc 10x16 + 10, float32
    shards of 8 and 5 rows; the host holds them, their gradients (pinned) and Adam's two states and steps."""
    path = write(tmp_path, "adaptive.py", ADAPTIVE)
    data = report_json(path, "--strategy", "fsdp", "--world-size", "2", "--offload")
    check_json_shape(data)
    shards = (8 * 27 + 8 + 5 * 16 + 5) * 4
    pinned = 2 * (1024 + 32 + 512 + 32)  # each shard and its gradient's, pinned blocks of a power of two bytes
    assert only_model(data)["memory"]["host"] == pinned + 2 * shards + 4 * 4
    assert only_model(data)["memory"]["host_pinned"] == pinned
    assert "host" not in only_model(report_json(path, "--strategy", "fsdp", "--world-size", "2"))["memory"]


def test_shape_mismatch_is_gpm300(tmp_path):
    path = write(tmp_path, "mismatch.py", MISMATCH)
    proc = run_gpumem(path, "--format", "json")
    assert proc.returncode != 0, "a shape mismatch must fail the run"
    assert "Traceback" not in proc.stderr
    data = json.loads(proc.stdout)
    check_json_shape(data)
    src = path.read_text().splitlines()
    line = next(i for i, text in enumerate(src, 1) if "nn.Linear(100" in text)
    col = src[line - 1].index("nn.Linear") + 1  # 1-based, as flake8 prints it
    gpm300 = [d for d in data["diagnostics"] if d["code"] == "GPM300"]
    assert [(d["line"], d["col"]) for d in gpm300] == [(line, col)], data["diagnostics"]
    message = gpm300[0]["message"]
    # flatten of 11x3x3 gives 99 features, the layer expects 100
    assert "Net" in message and str(11 * 3 * 3) in message and "100" in message, message


# ---------------------------------------------------------------- never executes the file

def marker_source(marker: Path, where: str) -> str:
    """A model file that writes MARKER at module level, and also in __init__ or forward if asked."""
    side_effect = '        open(MARKER, "w").write("ran")\n'
    return (
        "import torch.nn as nn\n"
        f"MARKER = {str(marker)!r}\n"
        'open(MARKER, "w").write("ran")\n'
        "\n"
        "class Net(nn.Module):  # gpumem: input_shape=(20,)\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        f"{side_effect if where == 'init' else ''}"
        "        self.fc = nn.Linear(20, 5)\n"
        "\n"
        "    def forward(self, x):\n"
        f"{side_effect if where == 'forward' else ''}"
        "        return self.fc(x)\n"
    )


@pytest.mark.parametrize("where", ["module", "init", "forward"])
def test_never_executes_the_file(tmp_path, where):
    """The marker is written at module level (and in __init__ or forward): gpumem must not write it,
    and a side effect that does not touch the layers must not stop the analysis (it is skipped)."""
    marker = tmp_path / "MARKER"
    path = tmp_path / "side_effects.py"
    path.write_text(marker_source(marker, where))
    proc = run_gpumem(path, "--format", "json")
    assert not marker.exists(), "gpumem executed the model file"
    assert "Traceback" not in proc.stderr, proc.stderr
    data = json.loads(proc.stdout)
    assert [m["name"] for m in data["models"]] == ["Net"], (
        f"a side-effect statement in {where} that does not touch the layers stops the analysis: "
        f"{proc.stderr.strip()}")
    assert data["models"][0]["params"] == 20 * 5 + 5
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------- file encodings and project configuration

def test_declared_source_encoding_is_honoured(tmp_path):
    """Python reads a `# -*- coding: latin-1 -*-` file fine; gpumem should too (PEP 263)."""
    source = (
        "# -*- coding: latin-1 -*-\n"
        "# caf\xe9 au lait\n"
        "import torch.nn as nn\n"
        "\n"
        "class Net(nn.Module):  # gpumem: input_shape=(20,)\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(20, 5)\n"
        "\n"
        "    def forward(self, x):\n"
        "        return self.fc(x)\n"
    )
    path = tmp_path / "latin1.py"
    path.write_bytes(source.encode("latin-1"))
    compile(path.read_bytes(), str(path), "exec")  # valid Python
    proc = run_gpumem(path, "--format", "json")
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 0, f"a valid latin-1 source is refused: {proc.stderr.strip()}"
    assert only_model(json.loads(proc.stdout))["params"] == 20 * 5 + 5


PLAIN_NET = """
import torch.nn as nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(20, 5)

    def forward(self, x):
        return self.fc(x)
"""


def test_report_reads_tool_gpumem_from_pyproject(tmp_path):
    """DESIGN.md: [tool.gpumem] in pyproject.toml, found by walking up from the file, configures the report."""
    (tmp_path / "pyproject.toml").write_text(
        '[tool.gpumem]\nbudget = "T4"\nbatch_size = 32\ninput_shape = [20]\noptimizer = "sgd"\n')
    (tmp_path / "models").mkdir()
    path = write(tmp_path / "models", "net.py", PLAIN_NET)
    proc = run_gpumem(path, "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0, f"pyproject [tool.gpumem] not used: {proc.stderr.strip()}"
    m = only_model(json.loads(proc.stdout))
    assert m["input_shape"] == [32, 20]
    assert m["budget"] == 16 * 2 ** 30
    assert m["memory"]["optimizer"] == 0
    # the command line beats the project file
    m = only_model(report_json(path, "--batch-size", "4", cwd=tmp_path))
    assert m["input_shape"] == [4, 20]


def test_bad_pyproject_setting_is_one_line_naming_file_key_value(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.gpumem]\ninput_shape = [20]\nbatch_size = -4\n')
    path = write(tmp_path, "net.py", PLAIN_NET)
    proc = run_gpumem(path, cwd=tmp_path)
    line = assert_clean_error(proc, tmp=tmp_path)
    assert "pyproject.toml" in line and "batch_size" in line and "-4" in line, line


# A GPT-2 style model as language models are published (fixtures/gpt.py): config dataclass,
# tied embedding and head, forward(idx, targets) returning (logits, loss). Its parameters by hand:
GPT_EXPR = "GPT(GPTConfig(n_layer=2, n_head=4, n_embd=128, block_size=64, vocab_size=65))"
_C, _V, _T = 128, 65, 64
_BLOCK = 2 * _C + (_C * 3 * _C + 3 * _C) + (_C * _C + _C) + 2 * _C + (_C * 4 * _C + 4 * _C) + (4 * _C * _C + _C)
GPT_PARAMS = _V * _C + _T * _C + 2 * _BLOCK + 2 * _C  # wte (= lm_head, counted once), wpe, blocks, ln_f
GPT = REPO / "fixtures" / "gpt.py"


def test_several_inputs_and_the_models_own_loss():
    m = only_model(report_json(GPT, "--model", GPT_EXPR, "--input-shape", "64", "--input-shape", "64",
                               "--input-dtype", "int64", "--batch-size", "4"))
    assert m["input_shape"] == [[4, 64], [4, 64]]
    assert m["params"] == GPT_PARAMS
    assert m["layers"][-1]["type"] == "F.cross_entropy"  # the model's own loss, inside forward
    assert m["layers"][-1]["name"] != "loss"  # not one the step applies
    # one string with ';' is the same as repeating the flag
    again = only_model(report_json(GPT, "--model", GPT_EXPR, "--input-shape", "64;64", "--input-dtype", "int64",
                                   "--batch-size", "4"))
    assert again["memory"] == m["memory"]


def test_without_targets_the_step_applies_the_loss_and_says_so():
    args = (GPT, "--model", GPT_EXPR, "--input-shape", "64", "--input-dtype", "int64", "--batch-size", "4")
    m = only_model(report_json(*args))
    loss = m["layers"][-1]
    assert (loss["name"], loss["type"]) == ("loss", "F.cross_entropy")
    # nanoGPT without targets returns the last position's logits: 4 x 1 x 65, log-softmaxed and kept
    assert loss["saved_bytes"] == 4 * 1 * _V * 4
    table = run_gpumem(*args).stdout
    assert "loss: cross entropy of the first output" in table.splitlines()[0]
    assert "loss" not in [layer["name"] for layer in only_model(report_json(*args, "--loss", "sum"))["layers"]]
    assert "loss: sum of the first output" in run_gpumem(*args, "--loss", "sum").stdout


def test_a_bad_loss_is_one_line_naming_it():
    line = assert_clean_error(run_gpumem(GPT, "--model", GPT_EXPR, "--input-shape", "64", "--loss", "hinge"))
    assert "loss" in line and "hinge" in line and "cross_entropy" in line, line


def test_a_language_model_configured_in_pyproject(tmp_path):
    """Two inputs and their dtype from the model's table; the model is the module-level call."""
    (tmp_path / "pyproject.toml").write_text(
        '[tool.gpumem]\nbatch_size = 4\n\n[tool.gpumem.models."train.py::model"]\n'
        'input_shape = [[64], [64]]\ninput_dtype = "int64"\n')
    source = GPT.read_text() + f"\n\nmodel = {GPT_EXPR}\n"
    path = write(tmp_path, "train.py", source)
    m = only_model(report_json(path, "--model", "model", cwd=tmp_path))
    assert (m["name"], m["input_shape"], m["params"]) == ("model", [[4, 64], [4, 64]], GPT_PARAMS)


def test_the_heading_names_the_training_set_up():
    args = (GPT, "--model", GPT_EXPR, "--input-shape", "64", "--input-dtype", "int64", "--batch-size", "4")
    plain = only_model(report_json(*args))
    heading = run_gpumem(*args, "--checkpoint", "Block", "--accumulate", "2", "--strategy", "fsdp",
                         "--world-size", "4", "--shard-unit", "Block").stdout.splitlines()[0]
    assert ("checkpointing Block" in heading and "accumulating 2 micro-batches" in heading
            and "FSDP on 4 GPUs sharding Block (per GPU)" in heading), heading
    sharded = only_model(report_json(*args, "--strategy", "fsdp", "--world-size", "4", "--shard-unit", "Block"))
    assert sharded["params"] == plain["params"] == GPT_PARAMS  # the model's, not a rank's
    assert sharded["memory"]["weights"] < plain["memory"]["weights"] / 3


# ---------------------------------------------------------------- inputs: scalars, by keyword, batch position

INPUTS = REPO / "fixtures" / "inputs"
# fixtures/inputs/diffusion.py's Denoiser(dim=16): forward(x, t, y), t a timestep and y a class label per sample
DENOISER = (INPUTS / "diffusion.py", "--model", "Denoiser(dim=16)", "--batch-size", "2")


def layer_shapes(m: dict) -> dict:
    return {layer["name"]: layer["output_shape"] for layer in m["layers"]}


def test_a_per_sample_scalar_input_is_the_empty_shape():
    """The issue's command: --input-shape '' is one number per sample, a batch of shape (2,); its int64
    values index the label embedding. By hand, dim 16: time.0 is Linear(16, 64), label Embedding(10, 64)."""
    m = only_model(report_json(*DENOISER, "--input-shape", "3,64,64", "--input-shape", "", "--input-shape", "",
                               "--input-dtype", "float32", "--input-dtype", "int64", "--input-dtype", "int64"))
    assert m["input_shape"] == [[2, 3, 64, 64], [2], [2]]
    shapes = layer_shapes(m)
    assert (shapes["time.0"], shapes["label"], shapes["out"]) == ([2, 64], [2, 64], [2, 3, 64, 64])
    # empty entries in the ';' form are the same inputs
    again = only_model(report_json(*DENOISER, "--input-shape", "3,64,64;;", "--input-dtype", "float32;int64;int64"))
    assert again["memory"] == m["memory"]
    heading = run_gpumem(*DENOISER, "--input-shape", "3,64,64;;", "--input-dtype", "float32;int64;int64").stdout
    assert "input 2x3x64x64 float32, 2 int64, 2 int64, batch 2" in heading.splitlines()[0]


def test_a_scalar_input_in_pyproject(tmp_path):
    """`[]` in a model's table (the fixture's own comment, which would win, left out)."""
    source = (INPUTS / "diffusion.py").read_text().replace("  # gpumem:", "  # was:")
    write(tmp_path, "diffusion.py", source)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.gpumem]\nbatch_size = 3\n\n[tool.gpumem.models."diffusion.py::Denoiser"]\n'
        'input_shape = [[3, 16, 16], [], []]\ninput_dtype = ["float32", "int64", "int64"]\n')
    m = only_model(report_json(tmp_path / "diffusion.py", "--model", "Denoiser", cwd=tmp_path))
    assert m["input_shape"] == [[3, 3, 16, 16], [3], [3]]
    assert layer_shapes(m)["label"] == [3, 128]  # Embedding(10, 32 * 4)


def test_inputs_by_keyword():
    """model(image=x, target=y) into forward(self, **kwargs), and forward(pixel_values, labels=None)
    returning its own loss when given labels: that loss is the step's."""
    keywords = INPUTS / "keywords.py"
    m = only_model(report_json(keywords, "--model", "Distiller", "--input-shape", "image=3,16,16",
                               "--input-shape", "target=", "--input-dtype", "target=int64", "--batch-size", "2"))
    assert m["input_shape"] == [[2, 3, 16, 16], [2]]
    assert (layer_shapes(m)["student.0"], layer_shapes(m)["teacher.7"]) == ([2, 16, 16, 16], [2, 10])
    assert "loss" not in layer_shapes(m)  # the model's own: cross entropy plus mse against the teacher
    m = only_model(report_json(keywords, "--model", "Classifier", "--input-shape", "3,16,16;labels=",
                               "--input-dtype", "float32;int64", "--batch-size", "2"))
    assert m["layers"][-1]["type"] == "F.cross_entropy" and m["layers"][-1]["name"] != "loss"
    heading = run_gpumem(keywords, "--model", "Classifier", "--batch-size", "2").stdout.splitlines()[0]
    assert "input pixel_values=2x3x32x32 float32, labels=2 int64, batch 2" in heading, heading


def test_the_batch_dimension_and_forward_arguments():
    """fixtures/inputs/sequence_first.py's Tagger: nn.LSTM without batch_first, its comment says batch_dim=1."""
    tagger = (INPUTS / "sequence_first.py", "--model", "Tagger", "--batch-size", "3")
    m = only_model(report_json(*tagger))
    assert (m["input_shape"], layer_shapes(m)["lstm"], layer_shapes(m)["head"]) == ([35, 3, 16], [35, 3, 48],
                                                                                    [35, 3, 9])
    first = only_model(report_json(*tagger, "--batch-dim", "0"))  # the command line wins: (B, T, F)
    assert (first["input_shape"], layer_shapes(first)["lstm"]) == ([3, 35, 16], [3, 35, 48])
    assert "randn_like" not in layer_shapes(m)  # forward's default noise_std=0.0
    noisy = only_model(report_json(*tagger, "--forward-arg", "noise_std=0.1"))
    assert layer_shapes(noisy)["randn_like"] == [35, 3, 16]


@pytest.mark.parametrize("flags, words", [
    (["--input-shape", "image=3,16,16;5"], ["input_shape", "position after one given by name"]),
    (["--batch-dim", "first"], ["batch_dim", "'first'"]),
    (["--forward-arg", "0.5"], ["--forward-arg", "'0.5'", "NAME=VALUE"]),
    (["--input-dtype", "labels=int8"], ["input_dtype", "'int8'", "labels"]),
])
def test_bad_input_flags_are_one_line_naming_them(flags, words):
    assert_clean_error(run_gpumem(*DENOISER, *flags), *words)


def test_a_dtype_for_an_input_not_given_by_that_name_says_so():
    proc = run_gpumem(*DENOISER, "--input-shape", "3,16,16;t=;y=", "--input-dtype", "x=float32")
    assert proc.returncode == 2
    assert "no input is given by the name 'x'" in proc.stderr and "inputs given by keyword: t, y" in proc.stderr
