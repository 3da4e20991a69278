"""The public yardstick: popular public model files gpumem was not written against, pinned by commit.

    python benchmarks/yardstick.py --fetch                  # download the pinned files, then measure
    python benchmarks/yardstick.py --dir FOLDER             # files already laid out as below
    python benchmarks/yardstick.py --dir FOLDER --only nanoGPT,TabNet --no-peak

benchmarks/yardstick.toml names each entry: a GitHub repository, a full commit, the files it needs,
the model expression, the inputs, the loss and the batch. `--fetch` downloads each file over HTTPS at
its commit into `--cache` (default: gpumem-yardstick under the user's cache folder); `--dir` reads a
folder laid out as OWNER/NAME/COMMIT/PATH. Each entry runs in its own process, at most `--timeout`
seconds: gpumem reads the model file (never importing it) with the entry's root on the search path;
then PyTorch, the oracle, imports the same file from there, builds the model and runs one
training-mode forward (parameters, and every leaf module call's name, type and output shape through
forward hooks) and one steady-state training step under MemTracker (tests/torch_oracle.py, Adam,
float32). An entry is read exactly when the parameter count and every leaf call equal PyTorch's;
the reasons of the others are counted.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = Path(__file__).resolve().with_name("yardstick.toml")
RAW = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"


def entries() -> list[dict]:
    return tomllib.loads(MANIFEST.read_text())["entry"]


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    return Path(base) / "gpumem-yardstick"


def checkout(folder: Path, entry: dict) -> Path:
    """The entry's files at its commit: FOLDER/OWNER/NAME/COMMIT."""
    return folder / entry["repo"] / entry["commit"]


def fetch(folder: Path, entry: dict) -> None:
    """Download the entry's files at its pinned commit, those not already there."""
    for path in entry["files"]:
        dest = checkout(folder, entry) / path
        if dest.is_file():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(RAW.format(repo=entry["repo"], commit=entry["commit"], path=path),
                                    timeout=60) as response:
            dest.write_bytes(response.read())


def batched(spec: dict, batch: int) -> tuple:
    shape, dim = tuple(spec["shape"]), spec.get("batch_dim", 0)
    return shape[:dim] + (batch,) + shape[dim:]


def analyse(entry: dict, path: Path):
    """gpumem's report of the entry (nothing imported), or the reason it gives for not reading it."""
    from flake8_gpumem.analysis import analyse_source
    from flake8_gpumem.config import Named, Settings

    specs = entry["inputs"]
    shapes = tuple(Named(s["name"], tuple(s["shape"])) if "name" in s else tuple(s["shape"]) for s in specs)
    settings = Settings(input_shape=shapes if len(specs) > 1 else shapes[0],
                        input_dtype=tuple(s.get("dtype", "float32") for s in specs),
                        batch_dim=tuple(s.get("batch_dim", 0) for s in specs),
                        batch_size=entry["batch"], loss=entry.get("loss", "cross_entropy"), optimizer="adam",
                        dtype="float32", device="cpu")
    result = analyse_source(path.read_text(), str(path), settings, model=entry["model"])
    if not result.models:
        return None, result.skipped[0][1] if result.skipped else (result.error or "no model found")
    return result.models[0], ""


def oracle(entry: dict, root: Path, path: Path, peak: bool):
    """PyTorch's parameters, leaf calls and (with `peak`) measured step of the entry's model."""
    import importlib

    sys.path.insert(0, str(ROOT / "tests"))
    import torchvision_oracle  # noqa: F401  (stubs torchvision's registrations that fail beside the CPU torch)
    import torch_oracle

    sys.path.insert(0, str(root))
    module = importlib.import_module(".".join(path.relative_to(root).with_suffix("").parts))
    torch_oracle.torch.manual_seed(0)
    model = eval(entry["model"], vars(module))  # noqa: S307 - the manifest's expression, in the file's scope
    specs, batch = entry["inputs"], entry["batch"]
    tensors = [torch_oracle.make_input(batched(s, batch), s.get("dtype", "float32")) for s in specs]
    positional = [t for s, t in zip(specs, tensors) if "name" not in s]
    keywords = {s["name"]: t for s, t in zip(specs, tensors) if "name" in s}
    truth = torch_oracle.profile(model, positional, {**keywords, **entry.get("forward_args", {})})
    measured = None
    if peak:
        try:
            measured = torch_oracle.measure_step(
                model, [batched(s, batch) for s in specs], [s.get("dtype", "float32") for s in specs], "adam",
                loss=entry.get("loss", "cross_entropy"), names=[s.get("name") for s in specs],
                forward_args=entry.get("forward_args", {})).peak
        except Exception as exc:  # noqa: BLE001 - MemTracker's step fails: the shapes still compare
            print(f"MemTracker's step failed: {type(exc).__name__}: {exc}"[:200], file=sys.stderr)
    return truth, measured


def one(entry: dict, folder: Path, peak: bool) -> dict:
    """The outcome of one entry: read / differs / not read, the detail, and the peaks."""
    base = checkout(folder, entry)
    root = base / entry.get("root", "")
    path = base / entry["files"][0]
    sys.path.insert(0, str(root))  # the search path the oracle imports from, the same for gpumem
    os.chdir(root)
    report, why = analyse(entry, path)
    out = {"estimate": report.memory.peak if report else None}
    try:
        truth, measured = oracle(entry, root, path, peak and report is not None)
    except Exception as exc:  # noqa: BLE001 - the oracle itself refuses: say what PyTorch said
        return {**out, "outcome": "PyTorch refuses", "detail": f"{type(exc).__name__}: {str(exc)[:100]}"}
    out["measured"] = measured
    if report is None:
        return {**out, "outcome": "not read", "detail": why}
    mine = [(r.name, r.type, r.output_shape) for r in report.layers if r.module and not r.name.startswith("<")]
    theirs = [(c.name, c.type, c.output_shape) for c in truth.calls]
    if report.params != truth.params or mine != theirs:
        first = next((f"{a} vs {b}" for a, b in zip(mine, theirs) if a != b), f"{len(mine)} vs {len(theirs)} calls")
        return {**out, "outcome": "differs", "detail": f"params {report.params:,} vs {truth.params:,}; {first}"}
    return {**out, "outcome": "read exactly", "detail": ""}


def reason(detail: str) -> str:
    """A GPM900 reason without its line and the model's name, so that alike reasons count together."""
    detail = re.sub(r"^line \d+(:\d+)?: ", "", detail)
    detail = re.sub(r"^'[^']*' could not be resolved: ", "", detail)
    return detail[:100]


def run(entry: dict, folder: Path, peak: bool, timeout: int) -> dict:
    command = [sys.executable, __file__, "--dir", str(folder), "--one", entry["name"]] + ([] if peak else ["--no-peak"])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"outcome": "over time", "detail": f"over {timeout} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"outcome": "crashed", "detail": (done.stderr.strip().splitlines() or ["no output"])[-1][:120]}
    return json.loads(lines[-1])


def mib(n) -> str:
    return "" if n is None else f"{n / 2**20:,.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--fetch", action="store_true", help="download the pinned files into --cache first")
    where.add_argument("--dir", type=Path, help="a folder already laid out as OWNER/NAME/COMMIT/PATH")
    p.add_argument("--cache", type=Path, default=default_cache(), help="where --fetch puts the files")
    p.add_argument("--only", help="comma-separated parts of entry names")
    p.add_argument("--no-peak", dest="peak", action="store_false", help="skip the measured training steps")
    p.add_argument("--timeout", type=int, default=300, help="seconds per entry (default 300)")
    p.add_argument("--one", help=argparse.SUPPRESS)  # the child process: one entry, printed as JSON
    ns = p.parse_args()
    folder = ns.dir or ns.cache
    chosen = [e for e in entries() if not ns.only or any(part in e["name"] for part in ns.only.split(","))]
    if ns.one:
        print(json.dumps(one(next(e for e in chosen if e["name"] == ns.one), folder, ns.peak)), flush=True)
        return
    if ns.fetch:
        for entry in chosen:
            fetch(folder, entry)
    print("| entry | kind | repository | result | gpumem peak (MiB) | MemTracker peak (MiB) | error |")
    print("|---|---|---|---|---:|---:|---:|")
    outcomes, reasons = collections.Counter(), collections.Counter()
    for entry in chosen:
        out = run(entry, folder, ns.peak, ns.timeout)
        outcomes[out["outcome"]] += 1
        if out["outcome"] != "read exactly":
            reasons[f"{out['outcome']}: {reason(out['detail'])}"] += 1
        est, truth = out.get("estimate"), out.get("measured")
        error = f"{(est - truth) / truth:+.2%}" if est and truth else ""
        result = out["outcome"] + (f" ({reason(out['detail'])})" if out["detail"] else "")
        print(f"| {entry['name']} | {entry['kind']} | {entry['repo']}@{entry['commit'][:7]} | {result} | {mib(est)} | "
              f"{mib(truth)} | {error} |", flush=True)
    total, exact = sum(outcomes.values()), outcomes["read exactly"]
    rest = ", ".join(f"{n} {k}" for k, n in outcomes.items() if k != "read exactly")
    print(f"\n{total} entries: {exact} read exactly ({exact / max(total, 1):.0%}){', ' + rest if rest else ''}")
    for why, n in reasons.most_common():
        print(f"{n:4d}  {why}")


if __name__ == "__main__":
    main()
