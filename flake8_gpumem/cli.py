"""`gpumem report FILE`: the per-layer table and training-memory totals, without running the model."""
from __future__ import annotations

import argparse
import ast
import io
import pickle
import re
import sys
import tokenize
from pathlib import Path

from .analysis import Analysis, analyse_source
from .config import DTYPES, INPUT_DTYPES, LOSSES, OPTIMIZERS, ConfigError, per_model_for, project_for, settings_from
from .report import RENDERERS


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpumem", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("report", help="per-layer shapes and training memory of the models in FILE")
    r.add_argument("files", nargs="+", metavar="FILE")
    r.add_argument("--model", help="only this model (class or variable name)")
    r.add_argument("--input-shape", action="append",
                   help="per-sample input shape, e.g. 3,50,50; repeat it for each tensor argument of forward")
    r.add_argument("--batch-size", help="samples per step (default 1)")
    r.add_argument("--optimizer", help=f"one of {', '.join(OPTIMIZERS)} (default adam)")
    r.add_argument("--dtype", help=f"one of {', '.join(DTYPES)} (default float32)")
    r.add_argument("--input-dtype", action="append",
                   help=f"one of {', '.join(INPUT_DTYPES)}; int64 for token ids; once for all inputs or once per input")
    r.add_argument("--loss", help=f"one of {', '.join(LOSSES)} (default cross_entropy): applied to the first output "
                                  "unless forward returns the loss itself")
    r.add_argument("--budget", help='GPU memory: bytes, "12GiB", "16GB" or a GPU name like T4, A100-40GB')
    r.add_argument("--reserve", help="memory set aside for the CUDA context etc. (default 0)")
    r.add_argument("--device", help="whose kernels to model: cuda (default) or cpu")
    r.add_argument("--checkpoint", action="append", metavar="CLASS",
                   help="what if every call of this module class ran under torch.utils.checkpoint (repeatable)")
    r.add_argument("--accumulate", metavar="K", help="K micro-batches of --batch-size per optimizer step")
    r.add_argument("--strategy", help="single (default), ddp or fsdp (FSDP2 fully_shard): figures per GPU")
    r.add_argument("--world-size", metavar="N", help="GPUs under --strategy ddp/fsdp")
    r.add_argument("--shard-unit", action="append", metavar="CLASS",
                   help="fsdp: a module class wrapped with fully_shard (repeatable; the root always is)")
    r.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                   help="a constructor argument of the model, e.g. --arg num_classes=10 (repeatable)")
    r.add_argument("--format", choices=sorted(RENDERERS), default="table",
                   help="table (default), json, markdown (CI step summaries) or html (one self-contained page)")
    r.add_argument("--timeline", metavar="PATH.svg",
                   help="draw each model's memory during the step as an SVG (several models: one file each)")
    r.add_argument("--snapshot", metavar="PATH.pickle",
                   help="write the simulated step as a PyTorch memory snapshot, for pytorch.org/memory_viz")
    return p


SETTING_FLAGS = ("input_shape", "batch_size", "optimizer", "dtype", "input_dtype", "budget", "reserve", "device",
                 "loss", "checkpoint", "accumulate", "strategy", "world_size", "shard_unit")


def overrides_from(ns: argparse.Namespace):
    values = {k: getattr(ns, k) for k in SETTING_FLAGS if getattr(ns, k) is not None}
    args = {}
    for item in ns.arg:
        name, eq, raw = item.partition("=")
        if not eq or not name.isidentifier():
            raise ConfigError(f"command line: --arg {item!r}: expected NAME=VALUE")
        try:
            args[name] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            args[name] = raw
    if args:
        values["args"] = args
    return settings_from(values, "command line")


def decode_source(data: bytes) -> str:
    """Source text as Python reads it: a UTF-8 BOM or a PEP 263 coding cookie, else UTF-8.

    Raises SyntaxError (bad or unknown cookie), UnicodeDecodeError or LookupError."""
    encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    return data.decode(encoding)


def main(argv=None) -> int:
    ns = parser().parse_args(argv)
    try:
        overrides = overrides_from(ns)
    except ConfigError as exc:
        print(f"gpumem: {exc}", file=sys.stderr)
        return 2
    combined = Analysis()
    status = 0
    config_errors = set()
    for path in ns.files:
        try:
            with open(path, "rb") as f:
                source = decode_source(f.read())
        except (OSError, SyntaxError, UnicodeDecodeError, LookupError) as exc:
            why = " ".join(str(exc).split())
            print(f"gpumem: cannot read {path}: {why}", file=sys.stderr)
            status = 2
            continue
        try:
            project = project_for(path)
        except ConfigError as exc:
            if str(exc) not in config_errors:  # several files of one project: say it once
                config_errors.add(str(exc))
                print(f"gpumem: {exc}", file=sys.stderr)
            status = 2
            continue
        result = analyse_source(source, path, overrides, project=project.settings,
                                per_model=per_model_for(project, path), model=ns.model,
                                timeline=bool(ns.timeline or ns.snapshot or ns.format == "html"))
        combined.models += result.models
        combined.diagnostics += result.diagnostics
        for name, why in result.skipped:
            print(f"gpumem: {path}: {name} not analysed: {why}", file=sys.stderr)
        if result.error:
            print(f"gpumem: {path}: {result.error}", file=sys.stderr)
        if not result.models:
            status = 2
            if not result.skipped and not result.error:
                what = f"no model named {ns.model!r}" if ns.model else "no nn.Module model"
                print(f"gpumem: {path}: {what} found", file=sys.stderr)
    if not write_pictures(ns, combined.models):
        status = 2
    if combined.models or ns.format == "json":
        sys.stdout.write(RENDERERS[ns.format](combined))
    if status == 0 and any(m.fits is False for m in combined.models):
        status = 1  # a CI step fails when a model does not fit its budget
    return status


def write_pictures(ns: argparse.Namespace, models: list) -> bool:
    """The --timeline and --snapshot files, one per model (named after it when there are several),
    each said on stderr; False when one cannot be written."""
    ok = True
    for kind, base in (("timeline", ns.timeline), ("snapshot", ns.snapshot)):
        if base is None:
            continue
        for m in models:
            path = Path(base)
            if len(models) > 1:
                path = path.with_name(f"{path.stem}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', m.name).strip('_')}{path.suffix}")
            try:
                if kind == "timeline":
                    from .pictures.timeline import svg

                    path.write_text(svg(m), encoding="utf-8")
                else:
                    from .pictures.snapshot import snapshot

                    path.write_bytes(pickle.dumps(snapshot(m)))
            except OSError as exc:
                print(f"gpumem: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
                ok = False
                continue
            m.pictures[kind] = str(path)
            print(f"gpumem: {m.name}: {kind} written to {path}", file=sys.stderr)
    return ok


if __name__ == "__main__":
    sys.exit(main())
