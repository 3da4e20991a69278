"""The `gpumem` pre-commit hook, run by real pre-commit.

`pre-commit try-repo <this repository> gpumem` clones the repository (its committed
state plus uncommitted changes to tracked files), builds the hook's environment
(a virtualenv into which pip installs the repository, so libcst and flake8 come from
the package index) under a temporary PRE_COMMIT_HOME, and runs the hook inside a
temporary git repository that has its own pyproject.toml.

The tests are skipped only when that environment cannot be built here: no git, this
checkout is not a git repository, or pip cannot fetch the hook's build and run
dependencies from a package index. Any other failure is a failure.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sources import CNN

REPO = Path(__file__).resolve().parents[1]
INSTALL_TIMEOUT = 300  # the first run builds the hook's environment with pip


# The fc1 weights alone are 64*8*8*256*4 bytes = 4 MiB; Adam training needs about 20 MiB.
SMALL = """\
import torch.nn as nn


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 16 * 16, 10)

    def forward(self, x):
        x = self.pool(self.conv(x))
        return self.fc(x.flatten(1))
"""

PYPROJECT = """\
[tool.gpumem]
input_shape = [3, 32, 32]
batch_size = 16
budget = "10MiB"
"""


def _clean_env(pre_commit_home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}  # not the outer repo's hook state
    env["PRE_COMMIT_HOME"] = str(pre_commit_home)
    env["PRE_COMMIT_COLOR"] = "never"
    env.pop("PRE_COMMIT", None)
    env.pop("SKIP", None)
    return env


def _why_no_environment(tmp: Path) -> str | None:
    """Why the hook's environment cannot be built here, or None when it can."""
    if shutil.which("git") is None:
        return "git is not installed"
    inside = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=REPO, capture_output=True, text=True)
    if inside.returncode != 0 or Path(inside.stdout.strip()).resolve() != REPO:
        return f"{REPO} is not the root of a git repository, so pre-commit try-repo has nothing to clone"
    # pre-commit's python environment is a virtualenv into which pip installs this repository:
    # build backend (setuptools>=77) and runtime dependencies (libcst, flake8) come from the index.
    try:
        probe = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--dest", str(tmp),
                                "setuptools>=77", "libcst>=1.8", "flake8>=7.0"],
                               capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        return "pip could not fetch setuptools/libcst/flake8 within 180 s (no reachable package index)"
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["(no output)"])[-1]
        return f"pip cannot fetch the hook's dependencies (setuptools>=77, libcst, flake8): {last}"
    return None


@pytest.fixture(scope="module")
def pre_commit_home(tmp_path_factory):
    why = _why_no_environment(tmp_path_factory.mktemp("pip-probe"))
    if why:
        pytest.skip(f"the gpumem hook's environment cannot be built here: {why}")
    return tmp_path_factory.mktemp("pre-commit-home")


def git_repo(root: Path, files: dict, stage: list) -> Path:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    subprocess.run(["git", "init", "-q", str(root)], check=True, env=env)
    for key, value in (("user.email", "dev@example.com"), ("user.name", "Dev"), ("commit.gpgsign", "false")):
        subprocess.run(["git", "config", key, value], cwd=root, check=True, env=env)
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    if stage:
        subprocess.run(["git", "add", "--", *stage], cwd=root, check=True, env=env)
    return root


def try_repo(cwd: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "pre_commit", "try-repo", str(REPO), "gpumem", *args],
                          cwd=cwd, env=_clean_env(home), capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    output = proc.stdout + proc.stderr
    assert "An unexpected error has occurred" not in output, output + _log(home)
    assert "Traceback" not in output, output
    return proc


def _log(home: Path) -> str:
    log = home / "pre-commit.log"
    return "\n--- pre-commit.log ---\n" + log.read_text(errors="replace") if log.exists() else ""


def test_hook_is_declared_as_the_design_says():
    text = (REPO / ".pre-commit-hooks.yaml").read_text()
    assert "id: gpumem" in text
    assert "types: [python]" in text
    assert "require_serial: true" in text


def test_hook_fails_on_an_over_budget_model(tmp_path, pre_commit_home):
    repo = git_repo(tmp_path, {"pyproject.toml": PYPROJECT, "models/cnn.py": CNN},
                    ["pyproject.toml", "models/cnn.py"])
    proc = try_repo(repo, pre_commit_home, "--files", "models/cnn.py")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "Failed" in output
    class_line = CNN.splitlines().index("class CNN(nn.Module):") + 1
    assert f"models/cnn.py:{class_line}:1: GPM100 CNN needs" in output
    assert "10.0 MiB budget" in output and "batch 16" in output


def test_hook_passes_on_a_model_that_fits(tmp_path, pre_commit_home):
    repo = git_repo(tmp_path, {"pyproject.toml": PYPROJECT, "models/small.py": SMALL},
                    ["pyproject.toml", "models/small.py"])
    proc = try_repo(repo, pre_commit_home, "--files", "models/small.py")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "Passed" in output
    assert "GPM" not in output.replace("gpumem", "")


def test_hook_passes_on_a_model_it_cannot_size(tmp_path, pre_commit_home):
    """No input shape anywhere: nothing can be estimated, and that is not a failure (GPM900 is off)."""
    repo = git_repo(tmp_path, {"pyproject.toml": '[tool.gpumem]\nbudget = "10MiB"\n', "models/small.py": SMALL},
                    ["pyproject.toml", "models/small.py"])
    proc = try_repo(repo, pre_commit_home, "--files", "models/small.py")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "Passed" in output and "GPM900" not in output


def test_commit_staging_no_python_file_passes(tmp_path, pre_commit_home):
    # the over-budget model is in the work tree but not staged: only README.md is committed
    repo = git_repo(tmp_path, {"pyproject.toml": PYPROJECT, "models/cnn.py": CNN, "README.md": "# notes\n"},
                    ["README.md"])
    proc = try_repo(repo, pre_commit_home)  # no --files: the staged files, as on `git commit`
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "(no files to check)" in output and "Skipped" in output
    assert "GPM100" not in output
