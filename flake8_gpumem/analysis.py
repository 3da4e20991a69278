"""The pipeline: source -> models -> shapes and layer records -> memory -> report data."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

import libcst as cst

from . import memory
from .config import DEFAULTS, ConfigError, Settings, merge
from .diagnostics import budget_check
from .inference import Event, Interpreter, Module
from .source import ModelDecl, SourceFile, find_class, read_source
from .values import AnalysisError, Tensor, tensors_in


MAX_BOOLEAN_OPERANDS = 4000


@dataclass(frozen=True)
class Diagnostic:
    code: str
    line: int
    col: int  # 0-based
    message: str


@dataclass
class LayerRecord:
    """One layer call, as it runs (torchinfo's LayerInfo, for one training step)."""

    name: str
    type: str
    module: bool
    line: int
    output_shape: tuple
    params: int
    activation_bytes: int
    saved_bytes: int


@dataclass
class ModelReport:
    name: str
    file: str
    line: int
    col: int
    input_shape: tuple
    params: int
    layers: list[LayerRecord]
    memory: memory.Memory
    settings: Settings
    budget: int | None = None
    fits: bool | None = None
    max_batch_size: int | None = None


@dataclass
class Analysis:
    models: list[ModelReport] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (model, why it was not analysed)
    error: str | None = None  # why the file as a whole could not be read


@dataclass
class _Run:
    """One evaluated forward pass of a model at one batch size."""

    root: Module
    events: list[Event]
    input: Tensor
    output: object
    names: dict  # id(module) -> qualified name
    interp: Interpreter


def analyse_source(source: str, filename: str = "<stdin>", overrides: Settings = Settings(),
                   project: Settings = Settings(), per_model: dict | None = None,
                   model: str | None = None) -> Analysis:
    """Analyse every model of a file (or just `model`). Never executes the file.

    Settings precedence, strongest first: overrides (command line), the inline
    comment, per_model[name], project defaults, built-in defaults.
    """
    result = Analysis()
    if source.count(" and ") + source.count(" or ") > MAX_BOOLEAN_OPERANDS:
        # libcst's native parser overflows the C stack on chains of several thousand operands
        result.error = f"more than {MAX_BOOLEAN_OPERANDS} and/or operators: not read"
        result.diagnostics.append(Diagnostic("GPM900", 1, 0, f"{filename} has {result.error}"))
        return result
    try:
        src = read_source(source, filename)
    except RecursionError:
        result.diagnostics.append(Diagnostic("GPM900", 1, 0, f"{filename} nests too deeply for gpumem to read"))
        result.error = "nests too deeply for gpumem to read"
        return result
    except cst.ParserSyntaxError as exc:
        line, col = _syntax_error_position(source, exc)
        result.diagnostics.append(Diagnostic("GPM900", line, col, f"cannot parse {filename}: {exc.message}"))
        result.error = f"line {line}:{col + 1}: syntax error, cannot parse: {exc.message}"
        return result
    for line, col, message in src.errors:  # an unreadable `# gpumem:` comment is bad configuration
        result.diagnostics.append(Diagnostic("GPM001", line, col, message))
    decls = src.models
    if model is not None:
        decls = [d for d in decls if d.name == model]
    for decl in decls:
        # An example input the file builds gives the sample shape; its batch (often a smoke test's 1)
        # yields to a configured batch_size.
        # (a torch.optim call in the file likewise beats the configured optimizer)
        stated_batch = Settings(batch_size=decl.stated.batch_size)
        stated_shape = replace(decl.stated, batch_size=None)
        settings = merge(overrides, decl.inline, (per_model or {}).get(decl.name, Settings()), stated_shape,
                         project, stated_batch, DEFAULTS)
        if settings.input_shape is None:
            if not decl.component or model is not None:
                reason = ("no input shape: add `# gpumem: input_shape=(C, H, W)` to the class line, "
                          "or set input_shape in [tool.gpumem] or --input-shape")
                result.diagnostics.append(Diagnostic("GPM900", decl.line, decl.col, f"{decl.name}: {reason}"))
                result.skipped.append((decl.name, reason))
            continue
        report = _analyse_model(src, decl, settings, result)
        if report is not None:
            result.models.append(report)
    result.diagnostics.sort(key=lambda d: (d.line, d.col, d.code))
    return result


def _syntax_error_position(source: str, exc: cst.ParserSyntaxError) -> tuple[int, int]:
    """Python's own position for a syntax error (libcst's can point past it); compiled, never run."""
    try:
        compile(source, "<gpumem>", "exec", dont_inherit=True)
    except SyntaxError as err:
        return err.lineno or 1, max((err.offset or 1) - 1, 0)
    except (ValueError, RecursionError, MemoryError):
        pass
    return exc.raw_line, exc.raw_column


def _analyse_model(src: SourceFile, decl: ModelDecl, settings: Settings, result: Analysis) -> ModelReport | None:
    try:
        run = _run(src, decl, settings, settings.batch_size)
    except RecursionError:
        message = "the model's code nests too deeply for gpumem"
        result.diagnostics.append(Diagnostic("GPM900", decl.line, decl.col, f"{decl.name}: {message}"))
        result.skipped.append((decl.name, message))
        return None
    except AnalysisError as exc:
        line, col = exc.where if hasattr(exc, "where") else (decl.line, decl.col)
        result.diagnostics.append(Diagnostic(exc.code, line, col, f"{decl.name}: {exc.message}"))
        result.skipped.append((decl.name, f"line {line}: {exc.message}"))
        return None
    layers, notes = _records(run)
    for (line, col), message in notes:
        result.diagnostics.append(Diagnostic("GPM200", line, col, f"{decl.name}: {message}"))
    param_shapes, _ = _parameters(run)
    mem = _memory(run, settings)
    report = ModelReport(decl.name, src.filename, decl.line, decl.col, run.input.shape,
                         sum(math.prod(s) for s in param_shapes), layers, mem, settings)
    if settings.budget is not None:
        report.budget = settings.budget
        report.fits = mem.peak + mem.reserve <= settings.budget
        report.max_batch_size = _max_batch(src, decl, settings)
        found = budget_check(report, lambda s: peak_at(src, decl, s, s.batch_size))
        if found is not None:
            result.diagnostics.append(Diagnostic(found[0], decl.line, decl.col, found[1]))
    return report


def _run(src: SourceFile, decl: ModelDecl, settings: Settings, batch: int) -> _Run:
    interp = Interpreter(src.scope, src.positions, memory.param_dtype(settings.dtype), settings.device,
                         memory.AUTOCAST.get(settings.dtype))
    try:
        if decl.is_class:
            root = interp.instantiate(find_class(src, decl.name), [], dict(settings.args), decl.node)
        else:
            root = interp.lookup(decl.name, src.scope, decl.node)
            if not isinstance(root, Module):
                raise AnalysisError(f"{decl.name} is not a module", decl.node)
        input_dtype = settings.input_dtype or memory.param_dtype(settings.dtype)
        x = Tensor((batch,) + tuple(settings.input_shape), input_dtype)
        names = named_modules(root)
        interp.events.clear()  # tensors made while constructing (nn.Parameter data) are weights
        out = interp.call_module(root, [x], {}, decl.node)
    except AnalysisError as exc:
        exc.where = interp.where(exc.node) if exc.node is not None else (decl.line, decl.col)
        raise
    if next(tensors_in(out), None) is None:
        raise AnalysisError(f"{decl.name}.forward returns no tensor", decl.node)
    return _Run(root, interp.events, x, out, names, interp)


def named_modules(root: Module) -> dict:
    """id(module) -> qualified name, as torch's named_modules() (first name wins)."""
    names: dict = {}

    def walk(m: Module, prefix: str) -> None:
        if id(m) in names:
            return
        names[id(m)] = prefix
        for key, child in m.children.items():
            walk(child, f"{prefix}.{key}" if prefix else key)

    walk(root, "")
    return names


def _parameters(run: _Run) -> tuple[list, list]:
    modules = {}

    def walk(m: Module) -> None:
        if id(m) not in modules:
            modules[id(m)] = m
            for child in m.children.values():
                walk(child)

    walk(run.root)
    shapes = [s for m in modules.values() for s in m.params]
    buffers = [t for m in modules.values() for t in m.buffers]
    return shapes, buffers


def _memory(run: _Run, settings: Settings) -> memory.Memory:
    shapes, buffers = _parameters(run)

    def label(ev: Event) -> str:
        if ev.module is not None:
            return run.names.get(id(ev.module), ev.type)
        return f"{run.names[id(ev.owner)] or ev.owner.kind} ({ev.type})" if ev.owner is not None else ev.type

    return memory.simulate(run.events, run.input, run.output, shapes, buffers, settings.dtype,
                           settings.optimizer, settings.reserve, label, held=run.interp.held)


def _records(run: _Run) -> tuple[list[LayerRecord], list]:
    """Layer records in call order; bytes kept for backward, each tensor counted once.

    Calls made inside a leaf custom module (MultiheadAttention's projections and
    softmax, a user module's matmul) are added to that module's row."""
    kept: set = {run.input.storage.id}
    seen_modules: set = set()
    used_names = set(run.names.values())
    counters: dict = {}
    pending: dict = {}  # id(owner) -> [activation bytes, saved bytes] of folded calls
    layers, notes = [], []
    for ev in run.events:
        saved = 0
        for t in ev.saved:
            s = t.storage
            if not s.is_param and s.id not in kept:
                kept.add(s.id)
                saved += s.nbytes
        allocated = sum(t.nbytes for t in ev.allocated)
        if ev.folded:
            acc = pending.setdefault(id(ev.owner), [0, 0])
            acc[0] += allocated
            acc[1] += saved
            continue
        if ev.module is None and not ev.allocated and not ev.saved:
            continue  # views and in-place ops hold no memory of their own
        if ev.module is not None:
            name = run.names.get(id(ev.module), f"<unregistered {ev.module.kind}>")
            params = _subtree_params(ev.module, seen_modules)
            inner = pending.pop(id(ev.module), (0, 0))
            allocated, saved = allocated + inner[0], saved + inner[1]
        else:
            name = _function_name(ev.type, counters, used_names)
            params = 0
        layers.append(LayerRecord(name, ev.type, ev.module is not None, ev.where[0], _first_shape_of(ev.output),
                                  params, allocated, saved))
        for code, message in ev.notes:
            notes.append((ev.where, f"{name} ({ev.type}) {message}"))
    return layers, notes


def _subtree_params(module: Module, counted: set) -> int:
    """Parameters of a leaf call's module and everything under it not counted before."""
    if id(module) in counted:
        return 0
    counted.add(id(module))
    return sum(math.prod(s) for s in module.params) + sum(
        _subtree_params(c, counted) for c in module.children.values())


def _first_shape_of(value) -> tuple | None:
    first = next(tensors_in(value), None)
    return first.shape if first is not None else None


OPERATOR_NAMES = {"+": "add", "-": "sub", "*": "mul", "/": "div", "@": "matmul", "+=": "add_", "-=": "sub_",
                  "*=": "mul_", "/=": "div_", "@=": "matmul_"}


def _function_name(type_name: str, counters: dict, used: set) -> str:
    """fx-style unique names: relu, relu_1, add, add_1 ..."""
    base = OPERATOR_NAMES.get(type_name) or re.sub(r"\W", "_", type_name.rsplit(".", 1)[-1])
    while True:
        n = counters.get(base, 0)
        counters[base] = n + 1
        name = base if n == 0 else f"{base}_{n}"
        if name not in used:
            used.add(name)
            return name


def peak_at(src: SourceFile, decl: ModelDecl, settings: Settings, batch: int) -> int:
    mem = _memory(_run(src, decl, settings, batch), settings)
    return mem.peak + mem.reserve


def _max_batch(src: SourceFile, decl: ModelDecl, settings: Settings) -> int:
    """The largest batch whose simulated peak fits the budget (0 if none does).

    A linear fit from batches 1 and 2 gives the guess; a bracketed binary search
    on the simulated peak makes it exact."""
    budget = settings.budget
    one = peak_at(src, decl, settings, 1)
    if one > budget:
        return 0
    two = peak_at(src, decl, settings, 2)
    guess = max(1, (budget - one) // max(two - one, 1) + 1)
    low, high = 1, guess + 1
    while peak_at(src, decl, settings, high) <= budget:  # the fit can be low: widen
        low, high = high, high * 2
    if guess > low and peak_at(src, decl, settings, guess) <= budget:
        low = guess
    while high - low > 1:
        mid = (low + high) // 2
        if peak_at(src, decl, settings, mid) <= budget:
            low = mid
        else:
            high = mid
    return low


__all__ = ["Analysis", "Diagnostic", "LayerRecord", "ModelReport", "analyse_source", "ConfigError"]
