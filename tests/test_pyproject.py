"""[tool.gpumem] in pyproject.toml: finding it, reading it, per-model tables, errors, and the CLI using it.

Every expected value is written by hand in the test; none is read back from the module.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flake8_gpumem.config import (NO_PROJECT, ConfigError, ProjectConfig, Settings, find_pyproject, load_project,
                                  per_model_for, project_for)

REPO = Path(__file__).resolve().parent.parent
GIB = 2 ** 30
MIB = 2 ** 20


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def pyproject(directory: Path, text: str) -> Path:
    return write(directory / "pyproject.toml", text)


# ---------------------------------------------------------------- find_pyproject

def test_find_walks_up_from_a_file(tmp_path):
    root = pyproject(tmp_path, "[tool.gpumem]\nbatch_size = 2\n")
    model = write(tmp_path / "src" / "pkg" / "models" / "cnn.py", "x = 1\n")
    assert find_pyproject(model) == root
    assert find_pyproject(model.parent) == root
    assert find_pyproject(tmp_path) == root


def test_find_nearest_wins(tmp_path):
    outer = pyproject(tmp_path, "[tool.gpumem]\nbatch_size = 2\n")
    inner = pyproject(tmp_path / "sub", "[tool.gpumem]\nbatch_size = 3\n")
    deep = write(tmp_path / "sub" / "a" / "b" / "net.py", "x = 1\n")
    assert find_pyproject(deep) == inner
    assert find_pyproject(tmp_path / "other.py") == outer


def test_find_nearest_wins_even_without_a_gpumem_table(tmp_path):
    """The nearest pyproject.toml is the project; if it has no [tool.gpumem], there are no settings."""
    pyproject(tmp_path, "[tool.gpumem]\nbatch_size = 2\n")
    inner = pyproject(tmp_path / "sub", "[project]\nname = 'x'\n")
    net = write(tmp_path / "sub" / "net.py", "x = 1\n")
    assert find_pyproject(net) == inner
    project = project_for(net)
    assert project.settings == Settings() and project.models == {}


def test_find_from_a_name_that_does_not_exist(tmp_path):
    """flake8's --stdin-display-name may name a file that is not on disk: walk up from its directory."""
    root = pyproject(tmp_path, "[tool.gpumem]\n")
    assert find_pyproject(tmp_path / "models" / "unsaved.py") == root


def test_find_ignores_a_directory_named_pyproject_toml(tmp_path):
    root = pyproject(tmp_path, "[tool.gpumem]\n")
    (tmp_path / "sub" / "pyproject.toml").mkdir(parents=True)
    assert find_pyproject(tmp_path / "sub" / "net.py") == root


def test_find_none_above(tmp_path):
    if any((d / "pyproject.toml").is_file() for d in (tmp_path, *tmp_path.parents)):
        pytest.skip("a pyproject.toml above the temporary directory")
    assert find_pyproject(tmp_path / "net.py") is None
    assert project_for(tmp_path / "net.py") is NO_PROJECT


def test_find_relative_start(tmp_path, monkeypatch):
    root = pyproject(tmp_path, "[tool.gpumem]\n")
    write(tmp_path / "models" / "cnn.py", "x = 1\n")
    monkeypatch.chdir(tmp_path / "models")
    assert find_pyproject(Path("cnn.py")) == root
    assert find_pyproject("cnn.py") == root


# ---------------------------------------------------------------- load_project

FULL = """
[project]
name = "demo"

[tool.black]
line-length = 100

[tool.gpumem]
budget = "12GiB"
batch_size = 64
input_shape = [3, 50, 50]
dtype = "float16"
input_dtype = "float16"
optimizer = "sgd-momentum"
warn_fraction = 0.8
reserve = "300MiB"
device = "cpu"

[tool.gpumem.args]
num_classes = 10

[tool.gpumem.models."models/cnn.py::Net"]
input_shape = [3, 224, 224]
batch_size = 32

[tool.gpumem.models."models/cnn.py::Small"]
budget = "T4"
optimizer = "adamw"
args = { width = 8 }
"""


def test_load_project_settings(tmp_path):
    path = pyproject(tmp_path, FULL)
    project = load_project(path)
    assert isinstance(project, ProjectConfig)
    assert project.path == path
    assert project.settings == Settings(budget=12 * GIB, batch_size=64, input_shape=(3, 50, 50), dtype="float16",
                                        input_dtype="float16", optimizer="sgd-momentum", warn_fraction=0.8,
                                        reserve=300 * MIB, device="cpu", args={"num_classes": 10})


def test_load_project_per_model_tables_keyed_as_written(tmp_path):
    project = load_project(pyproject(tmp_path, FULL))
    assert set(project.models) == {"models/cnn.py::Net", "models/cnn.py::Small"}
    assert project.models["models/cnn.py::Net"] == Settings(input_shape=(3, 224, 224), batch_size=32)
    assert project.models["models/cnn.py::Small"] == Settings(budget=16 * GIB, optimizer="adamw",
                                                              args={"width": 8})


def test_load_project_without_gpumem_table(tmp_path):
    project = load_project(pyproject(tmp_path, "[project]\nname = 'x'\n"))
    assert project.settings == Settings() and project.models == {}


def test_load_project_empty_gpumem_table(tmp_path):
    project = load_project(pyproject(tmp_path, "[tool.gpumem]\n"))
    assert project.settings == Settings() and project.models == {}


def test_load_project_accepts_dashed_keys(tmp_path):
    project = load_project(pyproject(tmp_path, '[tool.gpumem]\nbatch-size = 5\ninput-shape = "3,8,8"\n'))
    assert project.settings.batch_size == 5 and project.settings.input_shape == (3, 8, 8)


def test_load_project_cached_while_unchanged(tmp_path):
    path = pyproject(tmp_path, "[tool.gpumem]\nbatch_size = 8\n")
    first = load_project(path)
    assert load_project(path) is first
    assert load_project(str(path)) is first
    assert load_project(tmp_path / "sub" / ".." / "pyproject.toml") is first


def test_load_project_rereads_after_a_change(tmp_path):
    path = pyproject(tmp_path, "[tool.gpumem]\nbatch_size = 8\n")
    first = load_project(path)
    assert first.settings.batch_size == 8
    path.write_text("[tool.gpumem]\nbatch_size = 16\n")  # same size: only the mtime tells
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    second = load_project(path)
    assert second is not first
    assert second.settings.batch_size == 16
    assert load_project(path) is second


def test_load_project_rereads_a_fixed_error(tmp_path):
    path = pyproject(tmp_path, "[tool.gpumem]\nbatch_size = 0\n")
    with pytest.raises(ConfigError):
        load_project(path)
    with pytest.raises(ConfigError):  # the cached error is raised again, still one clean line
        load_project(path)
    path.write_text("[tool.gpumem]\nbatch_size = 12\n")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    assert load_project(path).settings.batch_size == 12


def test_load_project_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_project(tmp_path / "pyproject.toml")
    assert "pyproject.toml" in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------- per_model_for

def project_with(tmp_path: Path, *keys: str) -> ProjectConfig:
    tables = "".join(f'[tool.gpumem.models."{k}"]\nbatch_size = {i + 2}\n\n' for i, k in enumerate(keys))
    return load_project(pyproject(tmp_path, "[tool.gpumem]\nbatch_size = 1\n\n" + tables))


def test_per_model_for_relative_key(tmp_path):
    project = project_with(tmp_path, "models/cnn.py::Net")
    assert per_model_for(project, str(tmp_path / "models" / "cnn.py")) == {"Net": Settings(batch_size=2)}


@pytest.mark.parametrize("key", ["./models/cnn.py::Net", "models\\\\cnn.py::Net", "models//cnn.py::Net",
                                 "models/./cnn.py::Net", "models/x/../cnn.py::Net"])
def test_per_model_for_spellings_of_the_path(tmp_path, key):
    project = project_with(tmp_path, key)
    assert per_model_for(project, str(tmp_path / "models" / "cnn.py")) == {"Net": Settings(batch_size=2)}


def test_per_model_for_relative_filename_from_the_working_directory(tmp_path, monkeypatch):
    project = project_with(tmp_path, "models/cnn.py::Net")
    monkeypatch.chdir(tmp_path)
    assert per_model_for(project, "models/cnn.py") == {"Net": Settings(batch_size=2)}
    assert per_model_for(project, "./models/cnn.py") == {"Net": Settings(batch_size=2)}
    (tmp_path / "models").mkdir(exist_ok=True)
    monkeypatch.chdir(tmp_path / "models")
    assert per_model_for(project, "cnn.py") == {"Net": Settings(batch_size=2)}
    assert per_model_for(project, "models/cnn.py") == {}  # now that is models/models/cnn.py


def test_per_model_for_subdirectories(tmp_path):
    project = project_with(tmp_path, "src/pkg/deep/net.py::Deep", "top.py::Top")
    assert per_model_for(project, str(tmp_path / "src" / "pkg" / "deep" / "net.py")) == {
        "Deep": Settings(batch_size=2)}
    assert per_model_for(project, str(tmp_path / "top.py")) == {"Top": Settings(batch_size=3)}


def test_per_model_for_several_models_of_one_file(tmp_path):
    project = project_with(tmp_path, "m.py::A", "m.py::B", "other.py::C")
    assert per_model_for(project, str(tmp_path / "m.py")) == {"A": Settings(batch_size=2),
                                                              "B": Settings(batch_size=3)}


def test_per_model_for_non_matching_files(tmp_path):
    project = project_with(tmp_path, "models/cnn.py::Net")
    assert per_model_for(project, str(tmp_path / "cnn.py")) == {}  # same name, other directory
    assert per_model_for(project, str(tmp_path / "models" / "cnn2.py")) == {}
    assert per_model_for(project, str(tmp_path / "other" / "models" / "cnn.py")) == {}
    assert per_model_for(project, "<stdin>") == {}
    assert per_model_for(NO_PROJECT, str(tmp_path / "models" / "cnn.py")) == {}


def test_per_model_for_is_relative_to_the_pyproject_not_the_working_directory(tmp_path, monkeypatch):
    project = project_with(tmp_path / "proj", "models/cnn.py::Net")
    monkeypatch.chdir(tmp_path)
    assert per_model_for(project, "proj/models/cnn.py") == {"Net": Settings(batch_size=2)}
    assert per_model_for(project, "models/cnn.py") == {}


def test_per_model_for_two_spellings_first_table_wins(tmp_path):
    project = load_project(pyproject(tmp_path, """
        [tool.gpumem.models."m.py::Net"]
        batch_size = 4
        [tool.gpumem.models."./m.py::Net"]
        batch_size = 9
        input_shape = [7]
        """))
    assert per_model_for(project, str(tmp_path / "m.py")) == {"Net": Settings(batch_size=4, input_shape=(7,))}


# ---------------------------------------------------------------- errors: one line naming file, key and value

def load_error(tmp_path: Path, text: str) -> str:
    path = pyproject(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_project(path)
    message = str(info.value)
    assert "\n" not in message, message
    assert str(path) in message, f"the error does not name the file: {message}"
    return message


@pytest.mark.parametrize("key, toml_value, shown", [
    ("budget", '"lots"', "'lots'"),
    ("budget", "-5", "-5"),
    ("budget", "true", "True"),
    ("reserve", '"much"', "'much'"),
    ("batch_size", "-4", "-4"),
    ("batch_size", "0", "0"),
    ("batch_size", "2.5", "2.5"),
    ("batch_size", '"eight"', "'eight'"),
    ("input_shape", "3", "3"),
    ("input_shape", "[3, 0, 5]", "[3, 0, 5]"),
    ("input_shape", "{labels = [0]}", "{'labels': [0]}"),  # [] is a per-sample scalar's shape
    ("input_shape", '["a", "b"]', "['a', 'b']"),
    ("dtype", '"float8"', "'float8'"),
    ("dtype", "16", "16"),
    ("input_dtype", '"complex"', "'complex'"),
    ("optimizer", '["adam"]', "['adam']"),
    ("optimizer", '"lion"', "'lion'"),
    ("warn_fraction", "1.5", "1.5"),
    ("warn_fraction", '"high"', "'high'"),
    ("device", '"tpu"', "'tpu'"),
    ("args", "3", "3"),
])
def test_bad_value_names_file_key_value(tmp_path, key, toml_value, shown):
    message = load_error(tmp_path, f"[tool.gpumem]\n{key} = {toml_value}\n")
    assert "[tool.gpumem]" in message and key in message and shown in message, message


def test_unknown_key_names_file_key_value(tmp_path):
    message = load_error(tmp_path, '[tool.gpumem]\nbugdet = "12GiB"\n')
    assert "bugdet" in message and "12GiB" in message and "unknown" in message, message


def test_bad_value_in_a_per_model_table_names_the_table(tmp_path):
    message = load_error(tmp_path, '[tool.gpumem.models."models/cnn.py::Net"]\nbatch_size = 0\n')
    assert "models/cnn.py::Net" in message and "batch_size = 0" in message, message


def test_unknown_key_in_a_per_model_table(tmp_path):
    message = load_error(tmp_path, '[tool.gpumem.models."m.py::Net"]\ninput_size = [3, 8, 8]\n')
    assert "m.py::Net" in message and "input_size" in message and "[3, 8, 8]" in message, message


def test_broken_toml_names_file_and_line(tmp_path):
    message = load_error(tmp_path, "[tool.gpumem]\nbatch_size = 8\nbudget = \n")
    assert "TOML" in message and "line 3" in message, message


def test_broken_toml_unclosed_table(tmp_path):
    message = load_error(tmp_path, "[project]\nname = 'x'\n\n[tool.gpumem\nbatch_size = 8\n")
    assert "line 4" in message, message


def test_non_utf8_toml(tmp_path):
    path = tmp_path / "pyproject.toml"
    path.write_bytes(b"[tool.gpumem]\n# caf\xe9\nbatch_size = 8\n")
    with pytest.raises(ConfigError) as info:
        load_project(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_models_must_be_a_table(tmp_path):
    message = load_error(tmp_path, "[tool.gpumem]\nmodels = 3\n")
    assert "models = 3" in message, message


def test_models_entries_must_be_tables(tmp_path):
    message = load_error(tmp_path, '[tool.gpumem.models]\n"m.py::Net" = 5\n')
    assert "m.py::Net" in message and "5" in message and "table" in message, message


def test_models_key_needs_path_and_class(tmp_path):
    message = load_error(tmp_path, "[tool.gpumem.models.Net]\nbatch_size = 4\n")
    assert "'Net'" in message and "::" in message and "batch_size" in message, message


def test_gpumem_must_be_a_table(tmp_path):
    message = load_error(tmp_path, "[tool]\ngpumem = 3\n")
    assert "gpumem" in message and "3" in message, message


# ---------------------------------------------------------------- end to end: `gpumem report` on a temp project

def run_gpumem(*args, cwd) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "flake8_gpumem.cli", "report", *map(str, args)]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def models_of(proc: subprocess.CompletedProcess) -> dict:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
    return {m["name"]: m for m in json.loads(proc.stdout)["models"]}


def one_line_error(proc: subprocess.CompletedProcess, tmp: Path) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("gpumem: "), lines[0]
    return lines[0].replace(str(tmp) + os.sep, "")


TWO_NETS = """
import torch.nn as nn

class Net(nn.Module):{net_comment}
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(20, 5)

    def forward(self, x):
        return self.fc(x)

class Conv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x)
"""


def make_project(tmp_path: Path, toml: str, net_comment: str = "") -> Path:
    pyproject(tmp_path, toml)
    return write(tmp_path / "models" / "nets.py", TWO_NETS.format(net_comment=net_comment))


def test_e2e_project_batch_size_sets_the_batch(tmp_path):
    model = make_project(tmp_path, "[tool.gpumem]\nbatch_size = 8\n", "  # gpumem: input_shape=(20,)")
    net = models_of(run_gpumem(model, "--model", "Net", "--format", "json", cwd=tmp_path))["Net"]
    assert net["input_shape"] == [8, 20]
    assert net["layers"][0]["output_shape"] == [8, 5]
    assert net["layers"][0]["activation_bytes"] == 8 * 5 * 4  # float32


def test_e2e_without_project_batch_is_one(tmp_path):
    model = make_project(tmp_path, "[project]\nname = 'x'\n", "  # gpumem: input_shape=(20,)")
    net = models_of(run_gpumem(model, "--model", "Net", "--format", "json", cwd=tmp_path))["Net"]
    assert net["input_shape"] == [1, 20]


PER_MODEL = """
[tool.gpumem]
batch_size = 8
input_shape = [3, 10, 10]
budget = "1GiB"

[tool.gpumem.models."models/nets.py::Net"]
batch_size = 32
input_shape = [20]
budget = "T4"
"""


def test_e2e_per_model_table_overrides_the_project(tmp_path):
    model = make_project(tmp_path, PER_MODEL)
    found = models_of(run_gpumem(model, "--format", "json", cwd=tmp_path))
    assert found["Net"]["input_shape"] == [32, 20]
    assert found["Net"]["budget"] == 16 * GIB
    assert found["Net"]["layers"][0]["output_shape"] == [32, 5]
    # Conv has no table: the project defaults
    assert found["Conv"]["input_shape"] == [8, 3, 10, 10]
    assert found["Conv"]["budget"] == GIB
    assert found["Conv"]["layers"][0]["output_shape"] == [8, 4, 8, 8]


def test_e2e_per_model_table_from_another_working_directory(tmp_path):
    model = make_project(tmp_path, PER_MODEL)
    elsewhere = tmp_path.parent
    net = models_of(run_gpumem(model, "--model", "Net", "--format", "json", cwd=elsewhere))["Net"]
    assert net["input_shape"] == [32, 20]
    net = models_of(run_gpumem("nets.py", "--model", "Net", "--format", "json", cwd=tmp_path / "models"))["Net"]
    assert net["input_shape"] == [32, 20]


def test_e2e_per_model_table_of_another_file_does_not_apply(tmp_path):
    model = make_project(tmp_path, PER_MODEL.replace("models/nets.py::Net", "models/other.py::Net"),
                         "  # gpumem: input_shape=(20,)")
    net = models_of(run_gpumem(model, "--model", "Net", "--format", "json", cwd=tmp_path))["Net"]
    assert net["input_shape"] == [8, 20]
    assert net["budget"] == GIB


def test_e2e_command_line_beats_project_and_per_model_table(tmp_path):
    model = make_project(tmp_path, PER_MODEL)
    found = models_of(run_gpumem(model, "--batch-size", "4", "--budget", "2GiB", "--format", "json", cwd=tmp_path))
    assert found["Net"]["input_shape"] == [4, 20]  # input_shape still from the table
    assert found["Net"]["budget"] == 2 * GIB
    assert found["Conv"]["input_shape"] == [4, 3, 10, 10]
    assert found["Conv"]["budget"] == 2 * GIB


def test_e2e_inline_comment_beats_per_model_table_but_not_command_line(tmp_path):
    model = make_project(tmp_path, PER_MODEL, "  # gpumem: batch_size=16")
    net = models_of(run_gpumem(model, "--model", "Net", "--format", "json", cwd=tmp_path))["Net"]
    assert net["input_shape"] == [16, 20], "the inline comment beats the per-model table's batch_size = 32"
    assert net["budget"] == 16 * GIB  # the comment says nothing about the budget: the table's
    net = models_of(run_gpumem(model, "--model", "Net", "--batch-size", "4", "--format", "json",
                               cwd=tmp_path))["Net"]
    assert net["input_shape"] == [4, 20], "the command line beats the inline comment"


def test_e2e_project_optimizer_and_dtype(tmp_path):
    model = make_project(tmp_path, '[tool.gpumem]\ninput_shape = [20]\noptimizer = "sgd"\ndtype = "bfloat16"\n')
    net = models_of(run_gpumem(model, "--model", "Net", "--format", "json", cwd=tmp_path))["Net"]
    params = 20 * 5 + 5
    assert net["params"] == params
    assert net["memory"]["optimizer"] == 0  # plain sgd keeps no state
    assert net["memory"]["weights"] == params * 2  # bfloat16


def test_e2e_nearest_pyproject_governs(tmp_path):
    make_project(tmp_path, "[tool.gpumem]\nbatch_size = 8\ninput_shape = [20]\n")
    inner = tmp_path / "models" / "inner"
    pyproject(inner, "[tool.gpumem]\nbatch_size = 3\ninput_shape = [20]\n")
    model = write(inner / "net.py", TWO_NETS.format(net_comment=""))
    net = models_of(run_gpumem(model, "--model", "Net", "--format", "json", cwd=tmp_path))["Net"]
    assert net["input_shape"] == [3, 20]


def test_e2e_bad_project_value_is_one_line(tmp_path):
    model = make_project(tmp_path, '[tool.gpumem]\nbudget = "lots"\n')
    line = one_line_error(run_gpumem(model, cwd=tmp_path), tmp_path)
    assert "pyproject.toml" in line and "budget" in line and "lots" in line, line


def test_e2e_broken_toml_is_one_line(tmp_path):
    model = make_project(tmp_path, "[tool.gpumem]\nbatch_size = = 8\n")
    line = one_line_error(run_gpumem(model, cwd=tmp_path), tmp_path)
    assert "pyproject.toml" in line and "line 2" in line, line


def test_e2e_bad_project_said_once_for_several_files(tmp_path):
    model = make_project(tmp_path, "[tool.gpumem]\nbatch_size = 0\n")
    other = write(tmp_path / "models" / "other.py", TWO_NETS.format(net_comment=""))
    line = one_line_error(run_gpumem(model, other, cwd=tmp_path), tmp_path)
    assert "batch_size = 0" in line, line


def test_e2e_bad_per_model_table_is_one_line(tmp_path):
    model = make_project(tmp_path, '[tool.gpumem.models."models/nets.py::Net"]\ndtype = "float8"\n')
    line = one_line_error(run_gpumem(model, cwd=tmp_path), tmp_path)
    assert "pyproject.toml" in line and "models/nets.py::Net" in line and "float8" in line, line


# ---------------------------------------------------------------- --device, and how source files are decoded

def test_e2e_device_flag(tmp_path):
    model = make_project(tmp_path, "[tool.gpumem]\ninput_shape = [20]\n")
    for device in ("cpu", "cuda", "CPU"):
        net = models_of(run_gpumem(model, "--model", "Net", "--device", device, "--format", "json",
                                   cwd=tmp_path))["Net"]
        assert net["params"] == 20 * 5 + 5
    line = one_line_error(run_gpumem(model, "--device", "tpu", cwd=tmp_path), tmp_path)
    assert "device" in line and "tpu" in line, line


def test_device_flag_is_documented():
    proc = run_gpumem("--help", cwd=REPO)
    assert "--device" in proc.stdout and "cuda" in proc.stdout and "cpu" in proc.stdout, proc.stdout


NET_SOURCE = (
    "import torch.nn as nn\n"
    "\n"
    "class Net(nn.Module):  # gpumem: input_shape=(20,)\n"
    "    def __init__(self):\n"
    "        super().__init__()\n"
    "        self.fc = nn.Linear(20, 5)  # {note}\n"
    "\n"
    "    def forward(self, x):\n"
    "        return self.fc(x)\n"
)


def test_e2e_utf8_bom(tmp_path):
    path = tmp_path / "bom.py"
    path.write_bytes(b"\xef\xbb\xbf" + NET_SOURCE.format(note="na\u00efve").encode("utf-8"))
    compile(path.read_bytes(), str(path), "exec")
    net = models_of(run_gpumem(path, "--format", "json", cwd=tmp_path))["Net"]
    assert net["params"] == 20 * 5 + 5
    assert net["line"] == 3


def test_e2e_cookie_on_second_line(tmp_path):
    path = tmp_path / "cp1252.py"
    source = "#!/usr/bin/env python\n# vim: set fileencoding=cp1252 :\n" + NET_SOURCE.format(note="\u20ac 5")
    path.write_bytes(source.encode("cp1252"))
    compile(path.read_bytes(), str(path), "exec")
    net = models_of(run_gpumem(path, "--format", "json", cwd=tmp_path))["Net"]
    assert net["params"] == 20 * 5 + 5
    assert net["line"] == 5


def test_e2e_unknown_coding_cookie_is_one_line(tmp_path):
    path = tmp_path / "odd.py"
    path.write_bytes(b"# -*- coding: klingon -*-\n" + NET_SOURCE.format(note="x").encode())
    line = one_line_error(run_gpumem(path, cwd=tmp_path), tmp_path)
    assert "odd.py" in line and "klingon" in line, line


def test_e2e_bytes_invalid_for_the_declared_encoding_is_one_line(tmp_path):
    path = tmp_path / "bad_ascii.py"
    path.write_bytes(b"# coding: ascii\n# caf\xc3\xa9\n" + NET_SOURCE.format(note="x").encode())
    line = one_line_error(run_gpumem(path, cwd=tmp_path), tmp_path)
    assert "bad_ascii.py" in line, line

