"""What a configured project costs: flake8 on a file of 300 small models with a budget set.

    python benchmarks/configured_cost.py [--repeats N]

The file (about 390 KB) holds 300 models, each an `nn.Sequential` of 60 Linear layers, in a
temporary project whose pyproject.toml sets `budget = "8GiB"`, `input_shape = [8]`,
`batch_size = 4`: every model is analysed and every one fits by far, the case that once made
the plugin search for the largest batch on each. Three timings, each the median and the best
of its runs (noise only ever adds time):

- plain flake8 (the plugin not loaded, as benchmarks/flake8_overhead.py's launcher does it);
- `flake8 --select GPM` with the budget (the project's pyproject.toml);
- `flake8 --select GPM` without it (the same file, a pyproject.toml with no budget).

Beside wall time, the CPU time (user + system) of each run: on a shared machine the wall time
of a run grows with other jobs' load, its CPU time much less. The target: the configured run
within 3x of plain flake8.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flake8_overhead import ENV, flake8_cmd, load_note  # noqa: E402

MODELS, LAYERS = 300, 60
PYPROJECT = '[tool.gpumem]\n{budget}input_shape = [8]\nbatch_size = 4\n'


def many_sequentials(models: int = MODELS, layers: int = LAYERS) -> str:
    """`modelN = nn.Sequential(nn.Linear(8, 8), ...)`: small models that fit any real budget."""
    parts = ['"""Generated: many small models."""\n', "import torch.nn as nn\n"]
    for i in range(models):
        body = "    nn.Linear(8, 8),\n" * layers
        parts.append(f"\nmodel{i} = nn.Sequential(\n{body})\n")
    return "".join(parts)


def run(cmd: list, cwd: str) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one subprocess; output discarded."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd, env=ENV)
    _, _, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def timed(cmd: list, cwd: str, repeats: int) -> list:
    run(cmd, cwd)  # warm the file cache and the .pyc files, uncounted
    return [run(cmd, cwd) for _ in range(repeats)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ns = ap.parse_args()
    source = many_sequentials()
    print(f"Python {sys.version.split()[0]}; {load_note()}")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, budget in (("budget", 'budget = "8GiB"\n'), ("no budget", "")):
            project = Path(tmp) / name.replace(" ", "_")
            project.mkdir()
            (project / "pyproject.toml").write_text(PYPROJECT.format(budget=budget))
            (project / "many_models.py").write_text(source)
        path = "many_models.py"
        print(f"{MODELS} models of {LAYERS} Linear layers, {len(source) // 1024} KiB, -j 1, {ns.repeats} runs each")
        rows["plain flake8 (no plugin)"] = timed(flake8_cmd("without", "-j", "1", "--exit-zero", path),
                                                 str(Path(tmp) / "budget"), ns.repeats)
        rows["flake8 --select GPM, budget 8GiB"] = timed(
            flake8_cmd("with", "-j", "1", "--exit-zero", "--select", "GPM", path), str(Path(tmp) / "budget"),
            ns.repeats)
        rows["flake8 --select GPM, no budget"] = timed(
            flake8_cmd("with", "-j", "1", "--exit-zero", "--select", "GPM", path), str(Path(tmp) / "no_budget"),
            ns.repeats)
    plain = [statistics.median(t[k] for t in rows["plain flake8 (no plugin)"]) for k in (0, 1)]
    print(f"   {'':36s} {'wall: median s':>14s} {'best s':>7s} {'/ plain':>8s}   "
          f"{'CPU: median s':>13s} {'/ plain':>8s}")
    for name, times in rows.items():
        wall, cpu = (statistics.median(t[k] for t in times) for k in (0, 1))
        print(f"   {name:36s} {wall:14.2f} {min(t[0] for t in times):7.2f} {wall / plain[0]:8.2f}   "
              f"{cpu:13.2f} {cpu / plain[1]:8.2f}")
    print(f"   target: the budgeted run within 3x of plain flake8; {load_note()}")


if __name__ == "__main__":
    main()
