"""Real flake8, with the plugin, over every .py file of the installed torch package.

torch's sources are thousands of real files written by many hands: models, layers,
code generators, tests with odd syntax. Whatever the plugin meets there, flake8 must
finish normally (exit 0 or 1), with no traceback, no plugin reported as failed, and
no GPM900 "gpumem failed on this file" (the plugin's own internal-failure message).
GPM9 is selected so that the internal-failure message is shown if it ever happens.

A default input shape and budget are given on the command line: without them every
model class in torch stops at "no input shape" (GPM900) before the analysis starts, and
the sweep would exercise only the parser and model discovery. With them, each of the
~250 nn.Module classes torch defines is run through the interpreter, the memory model
and the largest-batch search.

It takes 3 to 4 minutes on two cores; it runs by default (CI included).
"""
from __future__ import annotations

import collections
import re
import subprocess
import sys
from pathlib import Path

import torch

TIMEOUT = 1800  # seconds; the sweep takes 3 to 4 minutes on 2 cores


def test_flake8_with_gpumem_over_the_torch_sources(tmp_path):
    root = Path(torch.__file__).resolve().parent
    files = sum(1 for _ in root.rglob("*.py"))
    assert files > 1000, f"{root} holds only {files} .py files: not a full torch install?"
    proc = subprocess.run(
        [sys.executable, "-m", "flake8", "--select", "GPM", "--extend-select", "GPM9", "-j", "2",
         "--gpumem-input-shape", "3,32,32", "--gpumem-budget", "T4", str(root)],
        # cwd is not torch's directory: there `-m` would import torch/*.py (random.py, ...) as top-level modules
        capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path,
    )
    output = proc.stdout + proc.stderr
    counts = collections.Counter(re.findall(r":\d+:\d+: (GPM\d+) ", proc.stdout))
    print(f"flake8 over {files} files of {root}: exit {proc.returncode}")
    for code, n in sorted(counts.items()):
        print(f"  {code}: {n}")
    assert proc.returncode in (0, 1), output[-5000:]
    assert "Traceback" not in output, output[-5000:]
    assert "failed during execution" not in output, output[-5000:]
    assert "raised an unexpected exception" not in output, output[-5000:]
    failures = [line for line in output.splitlines() if "gpumem failed on this file" in line]
    assert not failures, "\n".join(failures[:20])
