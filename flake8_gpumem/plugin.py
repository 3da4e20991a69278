"""The flake8 plugin: GPM diagnostics for the models in each linted file.

flake8 hands over `tree, lines, filename`; the source comes from `lines`, so
unsaved editor buffers piped through stdin work. Nothing raised inside ever
reaches flake8: a failure becomes a GPM900 diagnostic (off by default).
"""
from __future__ import annotations

from pathlib import Path

from flake8.style_guide import Decision, DecisionEngine

from . import __version__, collector
from .analysis import analyse_source
from .config import OPTIONS, ConfigError, Settings, per_model_for, project_for, settings_from

# Files that define no model cost a few substring searches.
# One of them is in every file that defines a model: `(nn.Module)`, `(Module, Mixin)`, `nn.Sequential(`;
# a script that builds one from a models package (`from torchvision.models import resnet18`) says
# "models import", one that builds one through timm's registry "create_model(", one from Hugging Face
# "transformers import" (or "diffusers import"); any other file is read when its model table in pyproject.toml
# names a model of it.
MODEL_WORDS = ("Module)", "Module,", "Module\n", "LightningModule", "Sequential(", "models import", "create_model(",
               "transformers import", "diffusers import")


class Plugin:
    name = "flake8-gpumem"
    version = __version__
    overrides = Settings()
    option_error: str | None = None
    report_unshaped = True  # GPM900 is selected: say which models lack an input shape

    def __init__(self, tree, lines, filename):
        self.tree = tree
        self.lines = lines
        self.filename = filename

    @classmethod
    def add_options(cls, manager) -> None:
        for o in OPTIONS.values():  # several values share one option, as in a flake8 config file
            manager.add_option(f"--gpumem-{o.name}", parse_from_config=True, metavar=o.metavar,
                               help=f"gpumem: {o.describe(repeated=False)}")
        manager.extend_default_ignore(["GPM9"])

    @classmethod
    def parse_options(cls, options) -> None:
        values = {key: getattr(options, f"gpumem_{key}", None) for key in OPTIONS}
        try:
            cls.overrides = settings_from({k: v for k, v in values.items() if v is not None},
                                          "flake8 --gpumem-* options")
            cls.option_error = None
        except ConfigError as exc:
            cls.overrides, cls.option_error = Settings(), str(exc)
        try:  # off by default: then models without an input shape need not even be parsed
            cls.report_unshaped = DecisionEngine(options).decision_for("GPM900") is Decision.Selected
        except Exception:  # an options object without flake8's selection: report them
            cls.report_unshaped = True

    def run(self):
        try:
            yield from self._diagnostics()
        except Exception as exc:  # the boundary: flake8 must never see an exception from us
            try:
                what = f"{type(exc).__name__}: {exc}"[:200]
            except Exception:  # even str() of the exception can fail
                what = type(exc).__name__
            yield 1, 0, f"GPM900 gpumem failed on this file ({what}); please report it", type(self)

    def _diagnostics(self):
        if self.option_error:
            yield 1, 0, f"GPM001 {self.option_error}", type(self)
            return
        source = "".join(self.lines)
        stdin = self.filename in ("-", "stdin", "<stdin>") or not Path(self.filename).exists()
        try:
            project = project_for(Path.cwd() if stdin else Path(self.filename))
            per_model = per_model_for(project, self.filename)
        except ConfigError as exc:
            yield 1, 0, f"GPM001 {exc}", type(self)
            return
        if not per_model and not any(word in source for word in MODEL_WORDS):
            return
        with collector.freezing():
            result = analyse_source(source, self.filename, self.overrides, project=project.settings,
                                    per_model=per_model, tree=self.tree, report_unshaped=self.report_unshaped,
                                    layers=False)
        for d in result.diagnostics:
            if d.message.startswith("cannot parse"):
                continue  # flake8 reports syntax errors itself (E999)
            yield d.line, d.col, f"{d.code} {d.message}", type(self)

