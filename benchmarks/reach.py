"""Reach: how much of torchvision's and timm's model code gpumem can analyse.

Reads every .py file under the installed `torchvision/models/` and `timm/models/` (found on
sys.path; neither library is imported) as a project with `[tool.gpumem] input_shape =
[3, 224, 224]` and `batch_size = 2` would, and prints per library:

- classes: every nn.Module subclass gpumem finds in a file (analysed + not analysed, GPM900),
  how many are analysed, the diagnostics by code, and every GPM300 (with a project-wide
  input shape, a shape mismatch on a block that is not a model is a false alarm);
- factories: the top-level functions decorated with `register_model`, each analysed on its
  own (as `gpumem report FILE --model NAME --input-shape ...`) at the size its name states
  (`_384` -> 384, inception -> 299, otherwise 224), and how many are analysed;
- the 25 most frequent reasons a class or factory is not analysed, normalised (line numbers,
  quoted names and numbers replaced), with one example each;
- the time, in all and per library, and the 5 slowest files.

    python benchmarks/reach.py [--library torchvision|timm|all] [--limit N] [--classes]
"""
from __future__ import annotations

import argparse
import ast
import re
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flake8_gpumem.analysis import analyse_source  # noqa: E402
from flake8_gpumem.config import Settings  # noqa: E402

PROJECT = Settings(input_shape=(3, 224, 224), batch_size=2)
LIBRARIES = ("torchvision", "timm")


def model_files(library: str) -> list[tuple[str, Path]]:
    """The library's model sources, found on sys.path: importing them (or find_spec) would run them."""
    for entry in sys.path:
        site = Path(entry or ".")
        if (site / library / "models").is_dir():
            return [(str(f.relative_to(site)), f) for f in sorted((site / library / "models").rglob("*.py"))]
    sys.exit(f"{library} is not installed in {sys.executable}'s environment")


def factories(tree: ast.Module) -> list[str]:
    """Top-level functions decorated with register_model (timm's bare, torchvision's called)."""
    def named(dec):
        dec = dec.func if isinstance(dec, ast.Call) else dec
        return getattr(dec, "id", getattr(dec, "attr", None)) == "register_model"
    return [f.name for f in tree.body if isinstance(f, ast.FunctionDef) and any(map(named, f.decorator_list))]


def factory_size(name: str) -> int:
    """The input size a factory's name states; levit/regnet numbers are widths, not sizes."""
    if "inception" in name:
        return 299
    sizes = [int(n) for n in re.findall(r"_(\d{3,4})(?=_|$)", name) if 240 <= int(n) <= 1024]
    return sizes[-1] if sizes and not name.startswith(("levit", "regnet")) else 224


def category(reason: str) -> str:
    """A reason with its specifics replaced, so that the same cause in many models counts once."""
    reason = re.sub(r"^line \d+: ", "", reason)
    reason = re.sub(r"\b\w+\.(__init__|forward)\b", r"X.\1", reason)
    reason = re.sub(r"(['\"`]).*?\1", "'X'", reason)
    reason = re.sub(r"\b((?:\w+\.){2,})\w+\(\)", r"\1X()", reason)  # timm.layers.to_2tuple() -> timm.layers.X()
    return re.sub(r"\d+", "N", reason)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--library", choices=(*LIBRARIES, "all"), default="all")
    p.add_argument("--limit", type=int, help="only the first N files of each library")
    p.add_argument("--classes", action="store_true", help="the classes pass only (a minute; factories take many)")
    args = p.parse_args()
    reasons: Counter = Counter()
    examples: dict[str, str] = {}
    file_times: list[tuple[float, float, str]] = []
    gpm300: list[str] = []
    totals = []
    start = time.perf_counter()

    def not_analysed(where: str, reason: str):
        cat = category(reason)
        reasons[cat] += 1
        examples.setdefault(cat, f"{where}: {reason}")

    for library in LIBRARIES if args.library == "all" else (args.library,):
        lib_start = time.perf_counter()
        files = model_files(library)[:args.limit]
        classes = analysed = facts = facts_analysed = 0
        codes: Counter = Counter()
        for rel, path in files:
            text = path.read_text()
            t0 = time.perf_counter()
            result = analyse_source(text, str(path), project=PROJECT)
            t1 = time.perf_counter()
            classes += len(result.models) + len(result.skipped)
            analysed += len(result.models)
            codes.update(d.code for d in result.diagnostics)
            gpm300 += [f"{rel}:{d.line}: {d.message}" for d in result.diagnostics if d.code == "GPM300"]
            for name, why in result.skipped:
                not_analysed(f"{rel} {name}", why)
            if result.error:
                not_analysed(rel, result.error)
            for name in factories(ast.parse(text)) if not args.classes else ():
                facts += 1
                size = factory_size(name)
                one = analyse_source(text, str(path), Settings(input_shape=(3, size, size), batch_size=2), model=name)
                if any(m.name == name for m in one.models):
                    facts_analysed += 1
                else:
                    why = (one.error or next((w for n, w in one.skipped if n == name), None)
                           or "gpumem finds no model of the factory's name")
                    not_analysed(f"{rel} {name}()", why)
            file_times.append((time.perf_counter() - t0, t1 - t0, rel))
        totals.append((library, len(files), time.perf_counter() - lib_start))
        print(f"{library}: {len(files)} files")
        print(f"  classes (nn.Module subclasses gpumem finds): {classes}   analysed: {analysed}   "
              f"not analysed (GPM900): {classes - analysed}")
        print(f"  factories (register_model): {facts}   analysed: {facts_analysed}   "
              f"not analysed: {facts - facts_analysed}")
        print("  diagnostics of the classes pass: " + ", ".join(f"{c} {n}" for c, n in sorted(codes.items())))
    print(f"\nreasons not analysed (classes and factories), {len(reasons)} categories, the 25 most frequent:")
    for cat, n in reasons.most_common(25):
        print(f"{n:6}  {cat}\n        e.g. {examples[cat]}")
    print(f"\nGPM300 (shape mismatch), {len(gpm300)}:")
    print("\n".join(f"  {line}" for line in gpm300))
    print(f"\ntime: {time.perf_counter() - start:.1f} s in all; "
          + "; ".join(f"{lib} {t:.1f} s ({n} files)" for lib, n, t in totals))
    print("slowest files (all passes, classes pass):")
    for total, cls, rel in sorted(file_times, reverse=True)[:5]:
        print(f"  {total:7.2f} s  {cls:6.2f} s  {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
