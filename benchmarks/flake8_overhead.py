"""What the plugin costs: flake8 with and without it, `gpumem report` against its floor, and torchinfo.

    python benchmarks/flake8_overhead.py [--quick] [--library]

Prints four tables (figures only, no assertions; the targets are printed beside them).
Each time is shown as the median and the best of its runs: the machine may be shared, and
noise only ever adds time.

1. flake8 over the installed `torch/nn` sources, `-j 1`, with and without the plugin,
   runs alternated, 5 each; the ratio (target <= 1.15).
2. flake8 with and without the plugin on one large generated file (several hundred KB,
   hundreds of model classes in the styles people write, each with an inline input
   shape, so every one is analysed), 3 each; the ratio (target <= 1.5), and the plugin's
   extra time against libcst's parse of the file: the floor of reading every class.
3. `gpumem report FILE` for every fixture (9 subprocess runs each) against the floor
   `python -c "import libcst"` (runs spread over the table); the difference (target
   within 60 ms).
4. If torchinfo is importable: torchinfo's `summary` of the seed model
   (fixtures/seed_cnn.py::SeedCNN, input 64x3x50x50) in a subprocess, wall time and peak
   RSS, against `gpumem report fixtures/seed_cnn.py`. Otherwise it says it was skipped.

With `--library`, only this instead:
5. flake8 with and without the plugin on a training script that builds its model from an installed
   library, read from its source: transformers (LLaMA, gradient checkpointing, TrainingArguments
   given to a Trainer) and timm (`create_model`), each with a budget and its input shape inline,
   5 runs alternated; wall time and the flake8 process's CPU time (user + system), which a shared
   machine's load disturbs less.

How "without the plugin" is measured. flake8 finds plugins through the entry points of
the installed distributions, so neither `--select` (the plugin still runs, its results are
just not shown) nor `PYTHONPATH` (the metadata is still installed) turns it off, and
flake8 7 has no option that disables an installed plugin (`--enable-extensions` only
turns on off-by-default ones, `--require-plugins` only checks presence). So both sides
run flake8 through the same tiny launcher (LAUNCHER below): in the "without" runs it
filters the flake8-gpumem distribution out of `flake8.plugins.finder`'s plugin discovery
before calling flake8's own `main`; in the "with" runs it changes nothing. Same
interpreter, same flake8, same arguments (flake8's default selection), same launcher
overhead; the only difference is whether the plugin is loaded. The script checks this by
asking each side for `flake8 --version`, which lists the loaded plugins.

Subprocesses run with Python's bytecode cache on (PYTHONDONTWRITEBYTECODE removed from their
environment): an installed package has its compiled .pyc files, while an editable checkout
under that variable recompiles every module of the package on every run (about 60 ms here).

Peak RSS of a subprocess comes from `os.wait4`, which returns the rusage of that one
child (`resource.getrusage(RUSAGE_CHILDREN)` would give the largest of all children so far).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

LAUNCHER = """\
import sys
from flake8.plugins import finder
if sys.argv[1] == "without":
    _find = finder._find_importlib_plugins
    finder._find_importlib_plugins = lambda: (p for p in _find() if p.package != "flake8-gpumem")
from flake8.main.cli import main
sys.exit(main(sys.argv[2:]))
"""


# ----------------------------------------------------------------------------- helpers

def run(cmd: list, cwd=None, cpu: bool = False) -> tuple:
    """Wall seconds, exit status and peak RSS (KiB) of one subprocess; output discarded. With `cpu`,
    its CPU seconds (user + system) too."""
    with tempfile.TemporaryFile() as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=sink, stderr=sink, cwd=cwd, env=ENV)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    if cpu:
        return wall, proc.returncode, usage.ru_maxrss, usage.ru_utime + usage.ru_stime
    return wall, proc.returncode, usage.ru_maxrss


def flake8_cmd(side: str, *args) -> list:
    return [PY, "-c", LAUNCHER, side, *map(str, args)]


def flake8_version(side: str) -> str:
    out = subprocess.run(flake8_cmd(side, "--version"), capture_output=True, text=True, check=True, env=ENV).stdout
    return " ".join(out.split())


def alternate(cmd_without: list, cmd_with: list, repeats: int, cwd=None) -> tuple[list, list, tuple]:
    """Alternating runs (without, with, without, ...) so drift in machine load hits both sides."""
    without, with_ = [], []
    codes = set()
    run(cmd_without, cwd)  # warm the file cache and the .pyc files once, uncounted
    run(cmd_with, cwd)
    for _ in range(repeats):
        t, rc0, _ = run(cmd_without, cwd)
        without.append(t)
        t, rc1, _ = run(cmd_with, cwd)
        with_.append(t)
        codes.add((rc0, rc1))
    return without, with_, codes


def spread(xs: list) -> str:
    return f"{min(xs):.2f}-{max(xs):.2f}"


def load_note() -> str:
    try:
        one, five, _ = os.getloadavg()
        return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"
    except OSError:
        return f"{os.cpu_count()} CPUs"


# ----------------------------------------------------------------------------- the large file

STYLES = []


def style(fn):
    STYLES.append(fn)
    return fn


@style
def sequential_cnn(i, r):
    c1, c2, side = r.choice([16, 32, 64]), r.choice([32, 64, 128]), r.choice([28, 32, 50, 64])
    final = side // 4
    return f'''
class SeqCNN{i}(nn.Module):  # gpumem: input_shape=(3, {side}, {side}) batch_size={r.choice([16, 32, 64])}
    """A plain VGG-style stack."""

    def __init__(self, num_classes={r.choice([10, 100])}):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, {c1}, 3, padding=1),
            nn.BatchNorm2d({c1}),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d({c1}, {c2}, 3, padding=1),
            nn.BatchNorm2d({c2}),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.5),
            nn.Linear({c2} * {final} * {final}, 256),
            nn.ReLU(),
            nn.Linear(256, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))
'''


@style
def functional_lenet(i, r):
    side = r.choice([28, 32])
    after = ((side - 4) // 2 - 4) // 2
    return f'''
HIDDEN_{i} = {r.choice([120, 256, 500])}


class LeNet{i}(nn.Module):  # gpumem: input_shape=(1, {side}, {side}) batch_size=64
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * {after} * {after}, HIDDEN_{i})
        self.fc2 = nn.Linear(HIDDEN_{i}, HIDDEN_{i} // 2)
        self.fc3 = nn.Linear(HIDDEN_{i} // 2, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(x.size(0), -1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)
'''


@style
def residual(i, r):
    c = r.choice([16, 32, 64])
    n = r.choice([2, 3, 4])
    return f'''
class Block{i}(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + x)


class ResNet{i}(nn.Module):  # gpumem: input_shape=(3, 32, 32) batch_size=128
    def __init__(self, width={c}, depth={n}):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.blocks = nn.ModuleList([Block{i}(width) for _ in range(depth)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        x = F.relu(self.stem(x))
        for block in self.blocks:
            x = block(x)
        x = torch.flatten(self.pool(x), 1)
        return self.head(x)
'''


@style
def lstm(i, r):
    h = r.choice([64, 128, 256])
    return f'''
class LSTMClassifier{i}(nn.Module):  # gpumem: input_shape=(40,) input_dtype=int64 batch_size=32
    def __init__(self, vocab={r.choice([1000, 5000, 20000])}, embed=64, hidden={h}):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=2, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(hidden * 2, 5)

    def forward(self, x):
        x = self.embedding(x)
        out, _ = self.lstm(x)
        return self.fc(out[:, -1])
'''


@style
def transformer(i, r):
    d = r.choice([64, 128])
    return f'''
class Encoder{i}(nn.Module):  # gpumem: input_shape=(16, {d}) batch_size=8
    def __init__(self):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer({d}, 4, dim_feedforward={d * 4}, batch_first=True)
        self.attn = nn.MultiheadAttention({d}, 4, batch_first=True)
        self.norm = nn.LayerNorm({d})
        self.out = nn.Linear({d}, 2)

    def forward(self, x):
        x = self.layer(x)
        y, _ = self.attn(x, x, x)
        x = self.norm(x + y)
        return self.out(x.mean(dim=1))
'''


@style
def unet_ish(i, r):
    c = r.choice([8, 16])
    return f'''
def double_conv_{i}(cin, cout):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True),
    )


class TinyUNet{i}(nn.Module):  # gpumem: input_shape=(1, 64, 64) batch_size=4
    def __init__(self):
        super().__init__()
        self.down1 = double_conv_{i}(1, {c})
        self.down2 = double_conv_{i}({c}, {2 * c})
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ConvTranspose2d({2 * c}, {c}, 2, stride=2)
        self.merge = double_conv_{i}({2 * c}, {c})
        self.out = nn.Conv2d({c}, 1, 1)

    def forward(self, x):
        a = self.down1(x)
        b = self.down2(self.pool(a))
        x = torch.cat([self.up(b), a], dim=1)
        return self.out(self.merge(x))
'''


@style
def not_a_model(i, r):
    return f'''
def helper_{i}(values, scale={r.randint(1, 9)}):
    """Ordinary code between the models: the plugin should cost nothing here."""
    total = 0
    for v in values:
        if v % 2:
            total += v * scale
        else:
            total -= v
    return {{"total": total, "count": len(values), "mean": total / max(len(values), 1)}}
'''


def large_file(target_bytes: int = 400_000, seed: int = 0) -> tuple[str, int]:
    r = random.Random(seed)
    parts = ['"""Generated: many models, in the styles people write them."""\n',
             "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"]
    size, i, models = sum(map(len, parts)), 0, 0
    while size < target_bytes:
        fn = STYLES[i % len(STYLES)]
        text = fn(i, r)
        parts.append(text)
        size += len(text)
        models += text.count("(nn.Module)")
        i += 1
    return "\n".join(parts), models


# ----------------------------------------------------------------------------- the benchmarks

def bench_torch_nn(repeats: int) -> None:
    spec = importlib.util.find_spec("torch")  # located, not imported
    if spec is None or not spec.origin:
        print("\n1. skipped: torch is not installed")
        return
    nn_dir = Path(spec.origin).resolve().parent / "nn"
    files = sorted(nn_dir.rglob("*.py"))
    kib = sum(f.stat().st_size for f in files) // 1024
    args = ("-j", "1", "--exit-zero", nn_dir)
    print(f"\n1. flake8 over {nn_dir} ({len(files)} files, {kib} KiB), -j 1, default selection, "
          f"median of {repeats}, runs alternated")
    with tempfile.TemporaryDirectory() as cwd:
        without, with_, codes = alternate(flake8_cmd("without", *args), flake8_cmd("with", *args), repeats, cwd)
    report_pair(without, with_, 1.15, codes)


def bench_large_file(repeats: int) -> None:
    source, models = large_file()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "many_models.py"
        path.write_text(source)
        lines = source.count("\n")
        print(f"\n2. flake8 on one generated file ({len(source) // 1024} KiB, {lines} lines, {models} model classes), "
              f"-j 1, median of {repeats}")
        args = ("-j", "1", "--exit-zero", path)
        without, with_, codes = alternate(flake8_cmd("without", *args), flake8_cmd("with", *args), repeats, tmp)
        report_pair(without, with_, 1.5, codes)
        parse = libcst_parse(source, repeats)
        extra = statistics.median(with_) - statistics.median(without)
        print(f"   the plugin's extra time {extra:.2f} s, against libcst's parse of the whole file in one "
              f"call (best of {repeats}): {parse:.2f} s, {extra / parse:.1f}x: the floor of any libcst-based "
              "reading of every class")
        out = subprocess.run(flake8_cmd("with", "--select", "GPM", "--extend-select", "GPM9", path),
                             capture_output=True, text=True, cwd=tmp, env=ENV).stdout
        counts: dict = {}
        for line in out.splitlines():
            code = line.split(": ", 1)[1].split()[0] if ": " in line else "?"
            counts[code] = counts.get(code, 0) + 1
        print(f"   GPM diagnostics on it (GPM9 shown): {dict(sorted(counts.items())) or 'none'}")


def libcst_parse(source: str, repeats: int) -> float:
    """Seconds libcst takes to parse `source`, best of `repeats`, in a subprocess (libcst's import not counted)."""
    code = ("import sys, time, libcst; s = sys.stdin.read(); best = 1e9\n"
            f"for _ in range({repeats}):\n"
            "    t = time.perf_counter(); libcst.parse_module(s); best = min(best, time.perf_counter() - t)\n"
            "print(best)")
    out = subprocess.run([PY, "-c", code], input=source, capture_output=True, text=True, check=True, env=ENV)
    return float(out.stdout)


def report_pair(without: list, with_: list, target: float, codes: set) -> None:
    a, b = statistics.median(without), statistics.median(with_)
    print(f"   {'':28s} {'median s':>9s} {'best s':>7s} {'range s':>12s}")
    print(f"   {'flake8 without the plugin':28s} {a:9.2f} {min(without):7.2f} {spread(without):>12s}")
    print(f"   {'flake8 with the plugin':28s} {b:9.2f} {min(with_):7.2f} {spread(with_):>12s}")
    print(f"   ratio with/without: median {b / a:.3f}, best {min(with_) / min(without):.3f}   "
          f"(target <= {target})   exit codes {sorted(codes)}")


def bench_report(repeats: int) -> None:
    gpumem = Path(PY).parent / "gpumem"
    cmd = [str(gpumem)] if gpumem.exists() else [PY, "-m", "flake8_gpumem.cli"]
    fixtures = sorted((ROOT / "fixtures").glob("*.py"))
    floor_cmd = [PY, "-c", "import libcst"]
    run(floor_cmd)  # warm
    # The floor is sampled between the fixtures too, so that a change in machine load shows in both.
    floor_runs = [run(floor_cmd)[0] for _ in range(repeats)]
    rows = []
    run(cmd + ["report", str(fixtures[0])], ROOT)  # warm: the package's .pyc files are written once
    for i, f in enumerate(fixtures):
        runs = [run(cmd + ["report", str(f)], ROOT) for _ in range(repeats)]
        rows.append((f.name, statistics.median(r[0] for r in runs), min(r[0] for r in runs), runs[0][1]))
        if i % 4 == 3:
            floor_runs.append(run(floor_cmd)[0])
    floor, floor_best = statistics.median(floor_runs), min(floor_runs)
    print(f"\n3. `gpumem report FILE` per fixture, {repeats} subprocess runs each, against the floor "
          f"`python -c \"import libcst\"`: median {floor * 1000:.0f} ms, best {floor_best * 1000:.0f} ms "
          f"({len(floor_runs)} runs spread over the table, range {spread([t * 1000 for t in floor_runs])} ms); "
          f"target: within 60 ms of the floor. Median against median and best against best: on a shared "
          f"machine noise only ever adds time, so the best runs show the cost itself")
    print(f"   {'fixture':24s} {'median ms':>10s} {'- floor':>8s} {'best ms':>8s} {'- floor':>8s} {'exit':>5s}")
    diffs, best_diffs = [], []
    for name, t, best, rc in rows:
        diffs.append(t - floor)
        best_diffs.append(best - floor_best)
        print(f"   {name:24s} {t * 1000:10.0f} {(t - floor) * 1000:+8.0f} {best * 1000:8.0f} "
              f"{(best - floor_best) * 1000:+8.0f} {rc:5d}")
    for label, ds in (("median", diffs), ("best", best_diffs)):
        print(f"   {label}: difference median {statistics.median(ds) * 1000:+.0f} ms, worst {max(ds) * 1000:+.0f} ms, "
              f"{sum(d <= 0.060 for d in ds)}/{len(ds)} fixtures within 60 ms")


TORCHINFO = """\
import importlib.util, sys
spec = importlib.util.spec_from_file_location("seed_cnn", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
from torchinfo import summary
summary(module.SeedCNN(), input_size=(64, 3, 50, 50), verbose=0)
"""


def bench_torchinfo(repeats: int) -> None:
    seed = ROOT / "fixtures" / "seed_cnn.py"
    print(f"\n4. torchinfo vs gpumem on the seed model ({seed.name}::SeedCNN, input 64x3x50x50), "
          f"{repeats} subprocess runs each")
    probe = subprocess.run([PY, "-c", "import torchinfo"], capture_output=True)
    if probe.returncode != 0:
        print("   skipped: torchinfo is not importable here (pip install torchinfo to compare)")
        return
    gpumem = Path(PY).parent / "gpumem"
    cmd = [str(gpumem)] if gpumem.exists() else [PY, "-m", "flake8_gpumem.cli"]
    rows = {"torchinfo summary (imports torch, runs the model)": [PY, "-c", TORCHINFO, str(seed)],
            "gpumem report (static)": cmd + ["report", str(seed)]}
    results = {}
    print(f"   {'':50s} {'median ms':>9s} {'best ms':>8s} {'peak RSS MiB':>13s}")
    for name, c in rows.items():
        run(c, ROOT)  # warm
        runs = [run(c, ROOT) for _ in range(repeats)]
        wall, best = statistics.median(r[0] for r in runs), min(r[0] for r in runs)
        rss = statistics.median(r[2] for r in runs) / 1024
        results[name] = (wall, best, rss)
        print(f"   {name:50s} {wall * 1000:9.0f} {best * 1000:8.0f} {rss:13.1f}")
    (ti, ti_best, ti_rss), (gm, gm_best, gm_rss) = results.values()
    print(f"   gpumem is {ti / gm:.1f}x faster (best runs: {ti_best / gm_best:.1f}x) and uses {ti_rss / gm_rss:.1f}x "
          "less memory   (target 8x faster)")


LIBRARY_SCRIPTS = {  # a training script per library, its input shape inline
    "transformers: LLaMA, checkpointing, Trainer": """\
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

config = LlamaConfig(num_hidden_layers=4, hidden_size=256, intermediate_size=688, num_attention_heads=4,
                     vocab_size=32000)
model = LlamaForCausalLM(config)  # gpumem: input_shape=(512,) input_dtype=int64
model.gradient_checkpointing_enable()
model.config.use_cache = False
args = TrainingArguments(output_dir="out", per_device_train_batch_size=8, gradient_accumulation_steps=4,
                         bf16=True, gradient_checkpointing=True, optim="adamw_torch")
trainer = Trainer(model=model, args=args, train_dataset=dataset)
""",
    "timm: create_model('resnet50')": """\
import timm

model = timm.create_model("resnet50", num_classes=37)  # gpumem: input_shape=(3, 224, 224) batch_size=32
""",
}


def bench_library(repeats: int) -> None:
    print(f"\n5. flake8 on a training script whose model comes from an installed library, read from its source, "
          f"`--gpumem-budget 24GiB`, -j 1, median of {repeats}, runs alternated")
    print(f"   {'script':44s} {'without s':>9s} {'with s':>7s} {'extra s':>8s} {'CPU without':>12s} {'CPU with':>9s} "
          f"{'extra':>7s}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, text in LIBRARY_SCRIPTS.items():
            path = Path(tmp) / "train.py"
            path.write_text(text)
            args = ("-j", "1", "--exit-zero", "--gpumem-budget", "24GiB", path)
            shown = subprocess.run(flake8_cmd("with", "--select", "GPM", "--extend-select", "GPM9",
                                              "--gpumem-budget", "1GiB", path), capture_output=True, text=True,
                                   cwd=tmp, env=ENV).stdout.split("\n")[0]
            print(f"   {label}: at a 1 GiB budget, GPM9 shown: {shown[len(str(path)) + 1:] or 'nothing'}")
            sides = {side: flake8_cmd(side, *args) for side in ("without", "with")}
            for cmd in sides.values():
                run(cmd, tmp)  # warm, uncounted
            runs = {side: [] for side in sides}
            for _ in range(repeats):
                for side, cmd in sides.items():
                    runs[side].append(run(cmd, tmp, cpu=True))
            (wa, ca), (wb, cb) = ((statistics.median(r[0] for r in rs), statistics.median(r[3] for r in rs))
                                  for rs in runs.values())
            print(f"   {label:44s} {wa:9.2f} {wb:7.2f} {wb - wa:+8.2f} {ca:12.2f} {cb:9.2f} {cb - ca:+7.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run of the script)")
    ap.add_argument("--library", action="store_true", help="only flake8 on training scripts of installed libraries")
    ns = ap.parse_args()
    five, three, nine = (2, 1, 2) if ns.quick else (5, 3, 9)
    print(f"Python {sys.version.split()[0]} at {PY}; {load_note()}")
    print(f"without: {flake8_version('without')}")
    print(f"with:    {flake8_version('with')}")
    start = time.perf_counter()
    if ns.library:
        bench_library(five)
        print(f"\ntotal {time.perf_counter() - start:.0f} s; {load_note()}")
        return
    bench_torch_nn(five)
    bench_large_file(three)
    bench_report(nine)  # short runs: more of them, so that the best is a run the machine left alone
    bench_torchinfo(nine)
    print(f"\ntotal {time.perf_counter() - start:.0f} s; {load_note()}")


if __name__ == "__main__":
    main()
