"""`gpumem report FILE`: the per-layer table and training-memory totals, without running the model."""
from __future__ import annotations

import argparse
import ast
import io
import pickle
import re
import sys
import textwrap
import tokenize
from pathlib import Path

from .analysis import Analysis, analyse_source
from .config import GROUPS, OPTIONS, ConfigError, per_model_for, project_for, settings_from
from .report import RENDERERS


SOURCES_AND_STATUS = """\
where settings come from, strongest first:
  1. the command line
  2. an inline comment on the model's line:
       # gpumem: input_shape=(3, 50, 50) batch_size=64
  3. the model's table in pyproject.toml:
       [tool.gpumem.models."models/cnn.py::Net"]
  4. what the file states: its example input (model(torch.randn(...)),
     example_input_array, summary(...)) and its torch.optim call;
     the example's batch size comes after 5
  5. [tool.gpumem] in the nearest pyproject.toml above FILE
  6. the built-in defaults said above

exit status:
  0  every FILE had a model analysed, and each model fits its budget (if any)
  1  a model does not fit its budget
  2  a FILE cannot be read or has no model to analyse, a flag or
     pyproject.toml setting is bad, or a picture cannot be written
     (2 wins over 1)
"""


def parser() -> argparse.ArgumentParser:
    """`gpumem` and `gpumem report`; the settings' flags come from config.OPTIONS, as flake8's do."""
    p = argparse.ArgumentParser(prog="gpumem", description=__doc__,
                                epilog="`gpumem report --help` says each flag, its default and the exit statuses.")
    sub = p.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    r = sub.add_parser("report", help="per-layer shapes and training memory of the models in FILE",
                       description="Per-layer shapes and training memory of the models in each FILE,\n"
                                   "read from the source without running it.",
                       epilog=SOURCES_AND_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter)
    groups = {title: r.add_argument_group(title) for title in GROUPS}
    inputs, output = groups["model and inputs"], groups["output"]
    inputs.add_argument("files", nargs="+", metavar="FILE", help="Python source files with PyTorch models")
    inputs.add_argument("--model", metavar="NAME",
                        help="only this model: a class, variable or factory, or a call like "
                             "'resnet50(num_classes=10)' (default: every model in FILE)")
    inputs.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                        help="a constructor argument of the model, e.g. --arg num_classes=10 (repeatable)")
    inputs.add_argument("--forward-arg", action="append", default=[], metavar="NAME=VALUE",
                        help="a non-tensor argument of forward, e.g. --forward-arg teacher_forcing_ratio=0.0 "
                             "(repeatable; default: forward's own default)")
    for o in OPTIONS.values():
        group = groups[o.group]
        if o.flag:
            bare = {"nargs": "?", "const": o.bare} if o.bare else {}
            group.add_argument(f"--{o.name}", action="append" if o.several else "store", metavar=o.metavar,
                               help=o.describe(repeated=True), **bare)
        else:
            group.description = textwrap.fill(f"{o.key}, a [tool.gpumem] key and flake8's --gpumem-{o.name} "
                                              f"(no flag here): {o.describe(repeated=False)}", 76)
    output.add_argument("--format", choices=sorted(RENDERERS), default="table",
                        help="table, json, markdown (CI step summaries) or html (one self-contained page) "
                             "(default: %(default)s)")
    output.add_argument("--timeline", metavar="PATH.svg",
                        help="draw each model's memory during the step as an SVG (several models: one file each)")
    output.add_argument("--snapshot", metavar="PATH.pickle",
                        help="write the simulated step as a PyTorch memory snapshot, for pytorch.org/memory_viz")
    return p


def overrides_from(ns: argparse.Namespace):
    values = {k: getattr(ns, k) for k, o in OPTIONS.items() if o.flag and getattr(ns, k) is not None}
    for key, flag in (("args", "arg"), ("forward_args", "forward_arg")):
        given = literal_arguments(getattr(ns, flag), flag)
        if given:
            values[key] = given
    return settings_from(values, "command line")


def literal_arguments(items: list, flag: str) -> dict:
    """{name: value} from NAME=VALUE flags; a value is a Python literal, else the string as written."""
    found = {}
    for item in items:
        name, eq, raw = item.partition("=")
        if not eq or not name.isidentifier():
            raise ConfigError(f"command line: --{flag.replace('_', '-')} {item!r}: expected NAME=VALUE")
        try:
            found[name] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            found[name] = raw
    return found


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
