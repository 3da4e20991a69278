"""What a configured project costs: flake8 with a budget set, on many small models and on a model zoo.

    python benchmarks/configured_cost.py [--repeats N] [--part many|zoo|all]

1. many: a file (about 390 KB) of 300 models, each an `nn.Sequential` of 60 Linear layers, in a
   temporary project whose pyproject.toml sets `budget = "8GiB"`, `input_shape = [8]`,
   `batch_size = 4`: every model is analysed and every one fits by far, the case that once made
   the plugin search for the largest batch on each. Three timings: plain flake8 (the plugin not
   loaded, as benchmarks/flake8_overhead.py's launcher does it); `flake8 --select GPM` with the
   budget; the same without it. Target: the budgeted run within 3x of plain flake8.
2. zoo: the model files of the installed torchvision and timm (`torchvision/models/**`,
   `timm/models/**`), copied with the rest of timm's package into a temporary project whose
   pyproject.toml sets `input_shape = [3, 224, 224]`, `batch_size = 32`, `budget = "24GiB"`;
   plain flake8 against flake8 with the plugin (default selection), `-j 1`, on those files.
   Also printed: how many models the plugin analyses there (counted in this process, untimed).
   Target: within 1.5x. Skipped, saying so, where either library is not installed.

Runs alternate between the sides compared. Each timing is the median and the best of its runs
(noise only ever adds time), with the CPU
time (user + system) beside the wall time: on a shared machine the wall time of a run grows with
other jobs' load, its CPU time much less.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
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
ZOO_PYPROJECT = '[tool.gpumem]\ninput_shape = [3, 224, 224]\nbatch_size = 32\nbudget = "24GiB"\n'


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


def timed(runs: dict, repeats: int) -> dict:
    """name -> [(wall, CPU)] of each (command, folder) in `runs`, alternated run by run so that
    drift in the machine's speed hits every side alike; one warm-up run each, uncounted."""
    for cmd, cwd in runs.values():
        run(cmd, cwd)  # the file cache and the .pyc files
    times: dict = {name: [] for name in runs}
    for _ in range(repeats):
        for name, (cmd, cwd) in runs.items():
            times[name].append(run(cmd, cwd))
    return times


def show(rows: dict, target: str) -> None:
    plain = [statistics.median(t[k] for t in next(iter(rows.values()))) for k in (0, 1)]
    print(f"   {'':36s} {'wall: median s':>14s} {'best s':>7s} {'/ plain':>8s}   "
          f"{'CPU: median s':>13s} {'/ plain':>8s}")
    for name, times in rows.items():
        wall, cpu = (statistics.median(t[k] for t in times) for k in (0, 1))
        print(f"   {name:36s} {wall:14.2f} {min(t[0] for t in times):7.2f} {wall / plain[0]:8.2f}   "
              f"{cpu:13.2f} {cpu / plain[1]:8.2f}")
    print(f"   target: {target}; {load_note()}")


def many(repeats: int) -> None:
    source = many_sequentials()
    with tempfile.TemporaryDirectory() as tmp:
        for name, budget in (("budget", 'budget = "8GiB"\n'), ("no budget", "")):
            project = Path(tmp) / name.replace(" ", "_")
            project.mkdir()
            (project / "pyproject.toml").write_text(PYPROJECT.format(budget=budget))
            (project / "many_models.py").write_text(source)
        path = "many_models.py"
        print(f"\n1. {MODELS} models of {LAYERS} Linear layers, {len(source) // 1024} KiB, -j 1, {repeats} runs each")
        gpm = flake8_cmd("with", "-j", "1", "--exit-zero", "--select", "GPM", path)
        rows = timed({"plain flake8 (no plugin)": (flake8_cmd("without", "-j", "1", "--exit-zero", path),
                                                   str(Path(tmp) / "budget")),
                      "flake8 --select GPM, budget 8GiB": (gpm, str(Path(tmp) / "budget")),
                      "flake8 --select GPM, no budget": (gpm, str(Path(tmp) / "no_budget"))}, repeats)
    show(rows, "the budgeted run within 3x of plain flake8")


def package_dir(name: str) -> Path | None:
    """An installed package's folder, found without importing it (importing runs it)."""
    spec = importlib.util.find_spec(name) if name not in sys.modules else sys.modules[name].__spec__
    return Path(spec.origin).parent if spec and spec.origin else None


def zoo(repeats: int) -> None:
    tv, timm = package_dir("torchvision"), package_dir("timm")
    if tv is None or timm is None:
        print("\n2. zoo: skipped, torchvision and timm are not both installed")
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(timm, root / "timm", ignore=ignore)
        shutil.copytree(tv / "models", root / "torchvision" / "models", ignore=ignore)
        shutil.copy(tv / "__init__.py", root / "torchvision" / "__init__.py")
        (root / "pyproject.toml").write_text(ZOO_PYPROJECT)
        files = sorted(str(p.relative_to(root)) for d in ("torchvision/models", "timm/models")
                       for p in (root / d).rglob("*.py"))
        print(f"\n2. zoo: {len(files)} model files of torchvision and timm "
              f"({sum((root / f).stat().st_size for f in files) // 1024} KiB), project config "
              f"{ZOO_PYPROJECT.splitlines()[1:]}, -j 1, {repeats} runs each")
        print(f"   models the plugin analyses there: {analysed(root, files)}")
        rows = timed({"plain flake8 (no plugin)": (flake8_cmd("without", "-j", "1", "--exit-zero", *files), tmp),
                      "flake8 with the plugin": (flake8_cmd("with", "-j", "1", "--exit-zero", *files), tmp)}, repeats)
    show(rows, "within 1.5x of plain flake8")


def analysed(root: Path, files: list) -> str:
    """How many models the plugin's analysis reads in those files, and how many it tries."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from flake8_gpumem.analysis import analyse_source
    from flake8_gpumem.config import per_model_for, project_for

    cwd = os.getcwd()
    os.chdir(root)
    try:
        read, stopped = [], 0
        for f in files:
            project = project_for(root / f)
            result = analyse_source((root / f).read_text(), f, project=project.settings,
                                    per_model=per_model_for(project, f), report_unshaped=False, layers=False)
            read += [m.name for m in result.models]
            stopped += sum(d.code == "GPM900" for d in result.diagnostics)
    finally:
        os.chdir(cwd)
    return f"{len(read)} read ({', '.join(read)}); {stopped} stopped (GPM900, not shown by default)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--part", choices=("many", "zoo", "all"), default="all")
    ns = ap.parse_args()
    print(f"Python {sys.version.split()[0]}; {load_note()}")
    if ns.part in ("many", "all"):
        many(ns.repeats)
    if ns.part in ("zoo", "all"):
        zoo(ns.repeats)


if __name__ == "__main__":
    main()
