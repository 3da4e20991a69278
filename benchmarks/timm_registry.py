"""gpumem on timm's registry: `timm.create_model(name)` of every registered factory, read from source.

For each factory of `timm.list_models()` (timm 1.0.31), gpumem reads a two-line file,

    import timm
    model = timm.create_model("<name>")

at batch 2 and the input size of the factory's pretrained config, and is compared with the model
timm builds (tests/timm_oracle.py: on PyTorch's meta device where it runs, else on the CPU):
parameters, trainable parameters, and every leaf module call's name, type and output shape in
order. A factory is read exactly when all three match. Prints one line per factory, the share
read exactly, and the reasons of the rest counted (the first words of gpumem's reason, or
what differs).

    python benchmarks/timm_registry.py [--sample N --seed S] [--models a,b,...] [--peak-models a,b,...]

With --peak-models, those factories (read exactly) also get one steady-state Adam training step
measured by PyTorch's MemTracker on the CPU (batch 2, float32), against gpumem's estimated peak.

    python benchmarks/timm_registry.py --configs

For every registered factory, without building any model: whether gpumem's scan finds the
pretrained configs timm registered for it, and picks the same default tag (the entries a file
makes in code are evaluated whole, and only counted here).

    python benchmarks/timm_registry.py --flake8

What flake8 costs on a two-line training script that builds its model with timm.create_model
(and, beside it, with torchvision's resnet18), with and without the plugin (`-j 1`, a 24 GiB
budget, the input shape inline), runs alternated as benchmarks/flake8_overhead.py runs them.
"""
from __future__ import annotations

import argparse
import collections
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

import timm_oracle  # noqa: E402
import torch_oracle  # noqa: E402
from flake8_gpumem.analysis import analyse_source  # noqa: E402
from flake8_gpumem.config import Settings  # noqa: E402
from flake8_gpumem.interpreter import registries  # noqa: E402


def reason(message: str) -> str:
    """The innermost cause of gpumem's message, with names and numbers blanked, for counting."""
    cause = message.rsplit("could not be resolved: ", 1)[-1]
    cause = re.sub(r"'[^']*'|\([^)]*\)|\d[\d,x]*", "…", cause)
    return cause[:90]


def compare(name: str) -> tuple[str, str, int | None]:
    """("exact" | "differs" | "not read" | "no truth", detail, gpumem's peak) for one factory."""
    truth = timm_oracle.profile(name)
    settings = Settings(optimizer="adam", dtype="float32", device="cpu", batch_size=timm_oracle.BATCH,
                        input_shape=truth.input_shape)
    source = f'import timm\nmodel = timm.create_model("{name}")\n'
    result = analyse_source(source, "timm_factory.py", settings, model="model")
    if len(result.models) != 1:
        why = result.error or "; ".join(r for _, r in result.skipped) or "no model"
        return "not read", why, None
    report = result.models[0]
    if report.params != truth.params:
        return "differs", f"parameters {report.params:,} against timm's {truth.params:,}", None
    if report.trainable_params != truth.trainable:
        return "differs", f"trainable {report.trainable_params:,} against timm's {truth.trainable:,}", None
    if truth.calls is None:
        return "no truth", f"timm's forward did not run: {truth.why}", None
    ours = [(r.name, r.type, tuple(r.output_shape)) for r in report.layers if r.module]
    theirs = [(c.name, c.type, c.output_shape) for c in truth.calls]
    if ours != theirs:
        first = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
        mine, timms = (calls[first] if first < len(calls) else "-" for calls in (ours, theirs))
        return "differs", f"leaf calls {len(ours)} against timm's {len(theirs)}, at {first}: {mine} / {timms}", None
    return "exact", "", report.memory.peak


SCRIPTS = {  # what a training script says, and the input shape it gives inline
    "timm resnet18, 37 classes": 'import timm\n\nmodel = timm.create_model("resnet18", num_classes=37)',
    "timm vit_base_patch16_siglip_gap_224":
        'import timm\n\nmodel = timm.create_model("vit_base_patch16_siglip_gap_224")',
    "torchvision resnet18, 37 classes": "from torchvision.models import resnet18\n\nmodel = resnet18(num_classes=37)",
}


def configs() -> None:
    from timm.models._registry import _model_default_cfgs

    folder = Path(timm_oracle.timm.models._registry.__file__).parent
    index = registries.timm_index(folder)
    same, computed, differ = 0, 0, []
    for name in timm_oracle.FACTORIES:
        entries, later = registries.cfg_table(folder / f"{index[name][0].rpartition('.')[2]}.py")
        if name not in entries and later:
            computed += 1
        elif (name in _model_default_cfgs) != (name in entries):
            differ.append(f"{name}: timm has configs: {name in _model_default_cfgs}")
        elif name in entries:
            cfgs = _model_default_cfgs[name]
            tags = [(tag, bool(cfgs.cfgs[tag.strip("*")].has_weights)) for _, tag, _ in entries[name]]
            ours = registries.default_tags(tags)[0]
            same += ours == cfgs.tags[0]
            differ += [f"{name}: default tag {ours!r}, timm's {cfgs.tags[0]!r}"] * (ours != cfgs.tags[0])
        else:
            same += 1  # no configs, as timm has none
    print(f"factories: {len(timm_oracle.FACTORIES)}   configs and default tag as timm's: {same}   "
          f"made in code (evaluated whole): {computed}   differ: {len(differ)}")
    print("\n".join(differ))


def flake8_cost(repeats: int = 5) -> None:
    import flake8_overhead  # beside this script: its launcher and alternating runs

    print(f"{'script':40} {'without':>8} {'with':>8} {'extra':>8}   ({flake8_overhead.load_note()})")
    with tempfile.TemporaryDirectory() as folder:
        for label, text in SCRIPTS.items():
            shape = "(3, 224, 224)" if "vit" in label else "(3, 64, 64)"
            path = Path(folder, "train.py")
            path.write_text(f"{text}  # gpumem: input_shape={shape}\n")
            args = ("-j", "1", "--gpumem-budget", "24GiB", path)
            without, with_, _ = flake8_overhead.alternate(flake8_overhead.flake8_cmd("without", *args),
                                                          flake8_overhead.flake8_cmd("with", *args), repeats)
            a, b = statistics.median(without), statistics.median(with_)
            print(f"{label:40} {a:>7.2f}s {b:>7.2f}s {b - a:>+7.2f}s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sample", type=int, default=0, metavar="N", help="a seeded sample of N factories (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models", default="", metavar="NAMES", help="comma-separated factories instead")
    p.add_argument("--peak-models", default="", metavar="NAMES",
                   help="comma-separated factories whose training-step peak is measured too")
    p.add_argument("--flake8", action="store_true", help="what flake8 costs on a script using timm.create_model")
    p.add_argument("--configs", action="store_true", help="timm's pretrained configs found, against timm's")
    args = p.parse_args()
    if args.configs:
        configs()
        return 0
    if args.flake8:
        flake8_cost()
        return 0
    peaks = [n for n in args.peak_models.split(",") if n]
    names = [n for n in args.models.split(",") if n]
    if not names and (args.sample or not peaks):
        names = timm_oracle.FACTORIES
        if args.sample:
            names = sorted(random.Random(args.seed).sample(names, args.sample))
    names = list(dict.fromkeys(names + peaks))
    counts, reasons, estimates = collections.Counter(), collections.Counter(), {}
    took_all = 0.0
    for name in names:
        start = time.perf_counter()
        try:
            verdict, detail, estimates[name] = compare(name)
        except Exception as exc:  # noqa: BLE001  (timm itself fails to build it: no truth)
            verdict, detail = "no truth", f"timm raises {type(exc).__name__}: {str(exc)[:80]}"
        took = time.perf_counter() - start
        took_all += took
        counts[verdict] += 1
        if verdict != "exact":
            reasons[f"{verdict}: {reason(detail) if verdict == 'not read' else detail.split(' ')[0]}"] += 1
        print(f"{name:48} {verdict:9} {took:6.1f}s  {detail[:160]}", flush=True)
    n = len(names)
    print(f"\nfactories: {n} (of {len(timm_oracle.FACTORIES)} registered)   read exactly: {counts['exact']} "
          f"({counts['exact'] / n:.0%})   differ: {counts['differs']}   not read: {counts['not read']}   "
          f"no truth: {counts['no truth']}   time: {took_all:.0f}s")
    for why, k in reasons.most_common(15):
        print(f"{k:5}  {why}")
    if peaks:
        print(f"\n{'factory':40} {'estimate MiB':>12} {'measured MiB':>12} {'error':>8}")
        for name in peaks:
            if estimates.get(name) is None:
                print(f"{name:40} not read exactly")
                continue
            truth = timm_oracle.profile(name)
            model = timm_oracle.build(name, "cpu")
            measured = torch_oracle.measure_step(model, (timm_oracle.BATCH, *truth.input_shape), "float32", "adam",
                                                 "float32").peak
            error = (estimates[name] - measured) / measured
            print(f"{name:40} {estimates[name] / 2**20:>12.1f} {measured / 2**20:>12.1f} {error:>+8.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
