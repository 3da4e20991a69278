"""The pipeline: source -> models -> shapes and layer records -> memory -> report data."""
from __future__ import annotations

import ast
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from . import collector, memory
from .batch import affine_at, largest_batch
from .config import DEFAULTS, ConfigError, Settings, forward_inputs, input_shapes, merge
from .diagnostics import budget_check, warns
from .parallel import Parallel
from .source import ModelDecl, SetUp, SourceFile, read_source, reshard_value, unread_reshard
from .values import DTYPE_BYTES, FLOAT_DTYPES, AnalysisError, Tensor, tensors_in

if TYPE_CHECKING:
    from .interpreter import Event, Interpreter, Module


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
    line: int | None  # None where lines were not asked for (the flake8 plugin shows no table)
    output_shape: tuple
    params: int
    activation_bytes: int
    saved_bytes: int
    trainable_params: int = 0  # of `params`, those that require a gradient


@dataclass
class Timeline:
    """The simulated step as memory.simulate recorded it (trace.py), and what names each of its
    events: what the pictures draw."""

    records: list
    labels: list[str]  # per event: the layer or op it runs, e.g. "features.0"
    lines: list[int | None]  # per event: its line in the model's file


@dataclass
class ModelReport:
    name: str
    file: str
    line: int
    col: int
    input_shape: tuple  # batch included; with several forward inputs, a tuple of their shapes
    params: int
    layers: list[LayerRecord]
    trainable_params: int  # that require a gradient, as `sum(p.numel() for p in model.parameters() if p.requires_grad)`
    memory: memory.Memory | None  # None where not asked for: the plugin with no budget to check
    settings: Settings
    budget: int | None = None
    fits: bool | None = None
    max_batch_size: int | None = None
    loss: str = ""  # what backward starts from: "forward" (the model's own loss) or the loss the step applied
    wrappers: tuple = ()  # what the file runs it in: "torch.compile", "DataParallel", "DDP"
    copies: tuple = ()  # (name, bytes) of the copies the file keeps beside it (`ema = copy.deepcopy(model)`)
    blocks: tuple = ()  # classes of its repeated blocks, most instances first: what to checkpoint or shard
    timeline: Timeline | None = None  # recorded only where a picture is asked for
    pictures: dict = field(default_factory=dict)  # what the CLI wrote for it: "timeline"/"snapshot" -> path

    @property
    def batch(self) -> int:
        return self.settings.batch_size


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
    inputs: list[Tensor]  # the batch's tensors, then the targets the step's loss compares with
    output: object
    kept: list[Tensor]  # what the training loop holds until the step ends
    loss: Tensor  # where backward starts
    loss_name: str  # "forward" when forward returned it, else the loss the step applied
    forward_events: int  # events[forward_events:] are the step's loss
    names: dict  # id(module) -> qualified name
    interp: Interpreter
    optimized: list | None = None  # the parameters the file's optimizer holds, by group; None: all that train
    notes: list = field(default_factory=list)  # (line, col, GPM900 message): what the figures assume
    sharded: tuple = ()  # the classes of the modules the file's fully_shard calls wrap (the root aside)
    reshard: dict = field(default_factory=dict)  # id(module) -> reshard_after_forward its fully_shard call gives
    copies: list = field(default_factory=list)  # (name, Module): copies of the model the file keeps (an EMA)


def analyse_source(source: str, filename: str = "<stdin>", overrides: Settings = Settings(),
                   project: Settings = Settings(), per_model: dict | None = None,
                   model: str | None = None, tree: ast.Module | None = None, report_unshaped: bool = True,
                   layers: bool = True, timeline: bool = False) -> Analysis:
    """Analyse every model of a file (or just `model`). Never executes the file.

    Settings precedence, strongest first: overrides (command line), the inline
    comment, per_model[name], project defaults, built-in defaults. `tree` is Python's
    parse of `source` when the caller has it (flake8 does). `report_unshaped`: GPM900 is shown;
    models without an input shape are reported, and a model gpumem cannot read is placed at
    the statement that stops it, not at the model. `layers=False` is the plugin's
    mode: layer records without lines (their positions are never resolved), and memory
    figures only where a budget needs them. `timeline`: record the step for pictures.
    """
    result = Analysis()
    try:
        src = read_source(source, filename, tree)
    except SyntaxError as exc:
        line, col = exc.lineno or 1, max((exc.offset or 1) - 1, 0)
        result.diagnostics.append(Diagnostic("GPM900", line, col, f"cannot parse {filename}: {exc.msg}"))
        result.error = f"line {line}:{col + 1}: syntax error, cannot parse: {exc.msg}"
        return result
    except (RecursionError, MemoryError, ValueError) as exc:  # Python's parser gives up on deep nesting
        what = "nests too deeply" if not isinstance(exc, ValueError) else f"cannot be read ({exc})"
        result.diagnostics.append(Diagnostic("GPM900", 1, 0, f"{filename} {what} for gpumem"))
        result.error = f"{what} for gpumem"
        return result
    decls = src.models
    if model is not None:
        decls = [d for d in decls if d.name == model] or [src.expression_model(model)]
    with _analysing(src):
        for decl in decls:
            chosen = (per_model or {}).get(decl.name, Settings())
            named = model is not None or decl.name in (per_model or {}) or decl.commented
            if decl.table and not named:
                continue  # a table of configurations, analysed only when named
            stated_shape = replace(decl.stated, batch_size=None)
            shaped = merge(overrides, decl.inline, chosen, stated_shape, project).input_shape is not None
            if not (shaped or report_unshaped or decl.inline_error is not None):
                continue  # nothing to say about it: not even worth parsing
            block = model is None and decl.name in src.components
            if block and merge(decl.inline, chosen, stated_shape).input_shape is None:
                continue  # a block another model builds: only analysed with an input shape of its own
            if not (report_unshaped or decl.inline_error is not None) and (
                    set(decl.required) - set(merge(overrides, decl.inline, chosen, project).args)):
                continue  # its constructor needs arguments nothing gives: a GPM900 nobody sees, not worth parsing
            src.probe.hf_config = merge(overrides, decl.inline, chosen, project).hf_config
            try:
                if not src.is_model(decl):
                    continue
            except AnalysisError as exc:
                result.diagnostics.append(Diagnostic("GPM900", decl.line, decl.col, f"{decl.name}: {exc.message}"))
                result.skipped.append((decl.name, exc.message))
                continue
            if decl.inline_error is not None:  # an unreadable `# gpumem:` comment is bad configuration
                result.diagnostics.append(Diagnostic("GPM001", decl.line, 0, decl.inline_error))
            if not shaped:
                if report_unshaped:
                    reason = ("no input shape: add `# gpumem: input_shape=(C, H, W)` to the class line, "
                              "or set input_shape in [tool.gpumem] or --input-shape")
                    result.diagnostics.append(Diagnostic("GPM900", decl.line, decl.col, f"{decl.name}: {reason}"))
                    result.skipped.append((decl.name, reason))
                continue
            # An example input the file builds gives the sample shape; its batch (often a smoke test's 1)
            # yields to a configured batch_size. A torch.optim call in the file beats the configured optimizer,
            # and so do the model's cast (`.half()`) and its DDP wrapper the configured dtype and strategy.
            # transformers' TrainingArguments given to a Trainer of the model state its batch, accumulation,
            # precision and optimizer as a torch.optim call and a cast do.
            setup = src.setups.get(decl.name, SetUp())
            trainer = setup.trainer
            stated = replace(stated_shape, optimizer=src.optimizer or trainer.optimizer,
                             dtype=setup.dtype or trainer.dtype, strategy=setup.strategy,
                             batch_size=trainer.batch_size, accumulate=trainer.accumulate,
                             world_size=setup.world_size, param_dtype=setup.param_dtype,
                             reduce_dtype=setup.reduce_dtype, offload=setup.offload)
            settings = merge(overrides, decl.inline, chosen, stated, project,
                             Settings(batch_size=decl.stated.batch_size), DEFAULTS)
            setup = replace(setup, notes=setup.said(merge(overrides, decl.inline, chosen, project).world_size
                                                    is not None))
            report = _analyse_model(src, decl, settings, result, layers, timeline, report_unshaped, setup)
            if report is not None:
                result.models.append(report)
    result.diagnostics.sort(key=lambda d: (d.line, d.col, d.code))
    return result


@contextmanager
def _analysing(src: SourceFile):
    """The collector slowed while a file's models are analysed (the trees it keeps alive are
    large); the file let go of before the caller's pace comes back."""
    with collector.slowed():
        try:
            yield
        finally:
            src.close()


def _analyse_model(src: SourceFile, decl: ModelDecl, settings: Settings, result: Analysis, layers: bool,
                   timeline: bool, show_failures: bool, setup: SetUp) -> ModelReport | None:
    try:
        run = _run(src, decl, settings, settings.batch_size)
        if run.sharded and not settings.shard_unit:  # fully_shard as the file calls it
            settings = replace(settings, shard_unit=run.sharded)
    except RecursionError:
        message = "the model's code nests too deeply for gpumem"
        result.diagnostics.append(Diagnostic("GPM900", decl.line, decl.col, f"{decl.name}: {message}"))
        result.skipped.append((decl.name, message))
        return None
    except AnalysisError as exc:
        # finding the statement that stopped it generates that statement's code: not for a GPM900 nobody sees
        where = getattr(exc, "where", None) if exc.code != "GPM900" or show_failures else None
        line, col = src.position(where, decl.segment) or (decl.line, decl.col)
        result.diagnostics.append(Diagnostic(exc.code, line, col, f"{decl.name}: {exc.message}"))
        result.skipped.append((decl.name, f"line {line}: {exc.message}"))
        return None
    param_shapes, _, trainable = _parameters(run)
    need_memory = layers or settings.budget is not None  # the plugin without a budget reports no figures
    trace = [] if timeline else None
    mem = _memory(run, settings, trace=trace) if need_memory else None
    # the plugin shows layer figures only in a GPM100/GPM101 message ("most at ..."), its notes always
    records, notes = _records(run, (lambda site: (src.position(site, decl.segment) or (decl.line, 0))[0])
                              if layers else None, figures=layers or warns(mem, settings))
    for site, message in notes:
        line, col = src.position(site, decl.segment) or (decl.line, decl.col)
        result.diagnostics.append(Diagnostic("GPM200", line, col, f"{decl.name}: {message}"))
    if show_failures:  # what the figures leave out of how the file sets the model up
        casts = [(*(src.position(site, decl.segment) or (decl.line, decl.col)), message)
                 for site, message in _cast_notes(run, settings, setup)]
        for line, col, message in setup.notes + casts + run.notes:
            result.diagnostics.append(Diagnostic("GPM900", line, col, f"{decl.name}: {message}"))
    shapes = [t.shape for t in run.inputs[:len(input_shapes(settings))]]
    report = ModelReport(decl.name, src.filename, decl.line, decl.col, shapes[0] if len(shapes) == 1 else tuple(shapes),
                         sum(math.prod(s) for s in param_shapes), records, trainable, mem, settings, loss=run.loss_name,
                         wrappers=tuple(setup.wrappers))
    pbytes = DTYPE_BYTES[memory.param_dtype(settings.dtype)]
    report.copies = tuple((name, sum(t.numel * (pbytes if t.dtype in FLOAT_DTYPES else DTYPE_BYTES[t.dtype])
                                     for t in tensors)) for name, tensors in _copy_weights(run))
    if trace is not None:
        label = _labeller(run)
        report.timeline = Timeline(trace, [label(ev) for ev in run.events],
                                   [(src.position(ev.where, decl.segment) or (None,))[0] for ev in run.events])
    report.blocks = _blocks(run.root)
    if settings.budget is not None:
        report.budget = settings.budget
        report.fits = mem.peak + mem.reserve <= settings.budget
        if layers or not report.fits:  # the plugin shows it only in a GPM100 message
            report.max_batch_size = _max_batch(src, decl, settings)
        found = budget_check(report, _memory_with(src, decl, settings, run))
        if found is not None:
            result.diagnostics.append(Diagnostic(found[0], decl.line, decl.col, found[1]))
    return report


def _run(src: SourceFile, decl: ModelDecl, settings: Settings, batch: int) -> _Run:
    from .interpreter import Module, Scope, walk_modules  # libcst and the interpreter, once a model is run

    node = decl.node
    policy = _policy_dtype(settings, node)
    _check_setup(settings, node)
    interp = src.interpreter(model_dtype=policy or memory.param_dtype(settings.dtype), device=settings.device,
                             autocast=memory.AUTOCAST.get(settings.dtype), checkpoint=settings.checkpoint,
                             hf_config=settings.hf_config, checkpoint_every=settings.checkpoint_every or 1)
    interp.segment = decl.segment
    optimized, notes, sharded, reshard, copies = None, [], (), {}, []
    try:
        if decl.expression:
            root = _evaluate_model(interp, src, decl, settings, node)
        elif not decl.constructor:
            root = interp.instantiate(src.find_class(decl.name), [], dict(settings.args), node)
        else:
            root = interp.lookup(decl.name, src.scope, node)
            if not isinstance(root, Module):
                raise AnalysisError(f"{decl.name} is not a module", node)
            scope = Scope({}, src.scope)  # what the changes bind: the copies kept beside the model
            for segment in decl.changes:  # the model as the file leaves it: frozen, a new head
                interp.segment = segment
                interp.run_block(segment.module.body, scope)
            interp.segment = decl.segment
            sharded, reshard, root_notes = _sharded(interp, src, decl, root)
            _trainer_checkpointing(interp, src.setups.get(decl.name, SetUp()), root, node)
            optimized, notes = _optimized(interp, src, decl, root)
            notes += root_notes
            copies = [(name, scope.vars[name]) for name in decl.copies if isinstance(scope.vars.get(name), Module)]
            for name, kept in copies:  # `copy.deepcopy(model).half()`: sized as the step's weights are
                cast = next((m.cast for _, m in walk_modules(kept) if m.cast and m.cast[0] != interp.model_dtype), None)
                if cast is not None:
                    notes.append((*(src.position(cast[1], decl.segment) or (decl.line, decl.col)),
                                  f"the copy `{name}` is cast to {cast[0]}: its weights are counted in the model's "
                                  f"dtype, {interp.model_dtype}"))
            _in_model_dtype(root, interp.model_dtype)
        try:
            given = forward_inputs(settings, memory.param_dtype(settings.dtype))
        except ConfigError as exc:
            raise AnalysisError(str(exc), node) from None
        xs = [Tensor(x.batched(batch), x.dtype) for x in given]
        _check_reshard(settings, reshard, node)
        names = named_modules(root)
        interp.events.clear()  # tensors made while constructing (nn.Parameter data) are weights
        passed = xs
        if policy:  # the root's fully_shard casts the float inputs (cast_forward_inputs)
            passed = [interp.cast(t, policy, node, "fully_shard input cast") if t.dtype in FLOAT_DTYPES else t
                      for t in xs]
        keywords = dict(settings.forward_args)
        keywords.update((x.name, t) for x, t in zip(given, passed) if x.name is not None)
        out = _returned(interp.call_module(root, [t for x, t in zip(given, passed) if x.name is None], keywords, node))
        if next(tensors_in(out), None) is None:
            raise AnalysisError(f"{decl.name}.forward returns no tensor", node)
        forward_events = len(interp.events)
        loss, name, targets, kept = _step_loss(interp, out, settings, node)
    except AnalysisError as exc:
        exc.where = interp.where(exc.node) if exc.node is not None else None
        raise
    return _Run(root, interp.events, xs + targets, out, kept, loss, name, forward_events, names, interp, optimized,
                notes, sharded, reshard, copies)


def _sharded(interp, src: SourceFile, decl: ModelDecl, root) -> tuple:
    """What the file's fully_shard calls wrap: the classes of the modules, the root aside (each module of
    what a loop goes over, `for block in model.layers`, or the one module named); id(module) -> the
    reshard_after_forward its call gives; and a note where the root's call gives one FSDP2 then follows."""
    from .interpreter import Module, Scope, parse_expression

    modules, reshard, notes = [], {}, []
    for call in src.setups.get(decl.name, SetUp()).sharded:
        found = interp.eval(parse_expression(call.module), Scope({}, src.scope))
        items = [_bound(call.loop, item, decl.node) for item in interp.iterate(found, decl.node)] if call.loop else [{}]
        unread = False
        for bound in items:
            m, value = bound.get(call.name, found), call.reshard
            if call.per_item:
                value = interp.eval(parse_expression(call.per_item), Scope(bound, src.scope))
                unread = unread or not reshard_value(value)
                value = value if reshard_value(value) else None
            modules.append(m)
            if value is not None:
                reshard[id(m)] = value
            if m is root and value not in (None, False):
                notes.append((*call.where, f"reshard_after_forward={value} on the root is not modelled: FSDP2 then "
                                           "frees the root's parameters after forward and gathers them again for "
                                           "backward; the figures keep them gathered, FSDP2's default for the root"))
        if unread:
            notes.append((*call.where, unread_reshard(call.per_item)))
    if not all(isinstance(m, Module) for m in modules):
        raise AnalysisError("fully_shard of something gpumem does not read as a module: give --shard-unit", decl.node)
    return (tuple(dict.fromkeys(m.cls.name if m.cls is not None else m.kind for m in modules if m is not root)),
            reshard, notes)


def _bound(loop: str, item, node) -> dict:
    """The loop's variables for one item: `for block in ...` or `for i, block in ...`."""
    target = ast.parse(loop, mode="eval").body
    if isinstance(target, ast.Name):
        return {target.id: item}
    if not (isinstance(item, (tuple, list)) and len(item) == len(target.elts)):
        raise AnalysisError(f"fully_shard in a loop `for {loop} in ...` over items gpumem cannot unpack: give "
                            "--shard-unit", node)
    return {n.id: v for n, v in zip(target.elts, item)}


def _check_reshard(settings: Settings, reshard: dict, node) -> None:
    """reshard_after_forward is fully_shard's; as a number of ranks it divides the world size, as FSDP2 asks."""
    given = settings.reshard_after_forward
    if given is not None and settings.strategy != "fsdp":
        raise AnalysisError("reshard_after_forward is FSDP2's fully_shard: it needs strategy = fsdp", node, "GPM001")
    if settings.strategy != "fsdp":
        return
    for value in [given] if given is not None else reshard.values():
        if value is not True and value is not False and settings.world_size % value:
            raise AnalysisError(f"reshard_after_forward={value}: FSDP2 reshards to a number of ranks that divides "
                                f"the world size, {settings.world_size}; give --world-size or another "
                                "--reshard-after-forward", node, "GPM001")


def _trainer_checkpointing(interp, setup: SetUp, root, node) -> None:
    """`TrainingArguments(gradient_checkpointing=True)`: the Trainer calls the model's own
    `activation_checkpointing_enable` with the keywords given (`every_n_layers` and `offload` apart),
    run here as it runs it."""
    if setup.checkpointing is None:
        return
    kwargs = dict(setup.checkpointing)
    options = {k: kwargs.pop(k) for k in ("every_n_layers", "offload") if k in kwargs}
    enable = interp.getattr(root, "activation_checkpointing_enable", node)
    interp.call(enable, [], {"activation_checkpointing_kwargs": kwargs or None, **options}, node)


def _check_setup(settings: Settings, node) -> None:
    """Settings that mean something only beside another: offload under FSDP, checkpoint_every with
    the classes it picks calls of."""
    if settings.offload not in (None, "off") and settings.strategy != "fsdp":
        raise AnalysisError(f"offload = {settings.offload} is FSDP2's CPUOffloadPolicy: it needs strategy = fsdp",
                            node, "GPM001")
    if (settings.checkpoint_every or 1) > 1 and not settings.checkpoint:
        raise AnalysisError(f"checkpoint_every = {settings.checkpoint_every} picks among the calls of the "
                            "checkpoint classes: give checkpoint = [CLASS] too", node, "GPM001")


def _policy_dtype(settings: Settings, node) -> str | None:
    """FSDP2's MixedPrecisionPolicy param_dtype: the dtype the model computes in, None without one."""
    if settings.param_dtype is None and settings.reduce_dtype is None:
        return None
    if settings.strategy != "fsdp":
        raise AnalysisError("param_dtype and reduce_dtype are FSDP2's MixedPrecisionPolicy: they need "
                            "strategy = fsdp (for one GPU, dtype says the precision)", node, "GPM001")
    if settings.dtype != "float32":
        raise AnalysisError(f"param_dtype with dtype = {settings.dtype}: FSDP2's mixed precision keeps float32 "
                            "sharded weights and casts them itself; give dtype = float32", node, "GPM001")
    return settings.param_dtype or "float32"


def _in_model_dtype(root, dtype: str) -> None:
    """A module-level model is built once per file, by whichever interpreter first looks it up (deciding
    whether the name is a model builds it at float32); its parameters are the model's dtype, as the
    setting says, whichever built them (PEFT's LoRA layers compare their input's dtype to theirs)."""
    from .interpreter import walk_modules

    for _, m in walk_modules(root):
        for t in m.weights.values():
            if t.is_param and t.dtype in FLOAT_DTYPES:
                t.dtype = dtype


def _optimized(interp: Interpreter, src: SourceFile, decl: ModelDecl, root: Module) -> tuple[list | None, list]:
    """The parameters the file's optimizer over this model holds (`SGD(model.fc.parameters())`, a list
    filtered on requires_grad, parameter groups), one set of keys (as the memory model keys them) per
    group, and notes. None: every parameter that trains, where no optimizer in the file takes this
    model's parameters, or where gpumem cannot read which (said in a note)."""
    from .interpreter import Scope, parse_expression, walk_modules

    for segment, params in decl.optimizers:
        try:
            value = interp.eval(parse_expression(params), Scope({}, src.scope))
            groups = [_tensors_of(g["params"]) for g in value] if _grouped(value) else [_tensors_of(value)]
        except AnalysisError as exc:
            return None, [(segment.first_line, 0, f"which parameters the optimizer holds is not known ({exc.message}): "
                                                  "counted as every parameter that trains")]
        mine = {id(t) for _, m in walk_modules(root) for t in m.weights.values()}
        if any(id(t) in mine for group in groups for t in group):
            return [{("t", t.id) for t in group if t.is_param} for group in groups], []
    return None, []


def _returned(out):
    """What forward returned, as plain values: an object of a dict subclass (transformers'
    ModelOutput: `loss` first where labels were given, else the logits) is the dict of its items;
    any other object (the key/value cache in it) is opaque, as the training loop treats it."""
    from .interpreter import Instance

    if isinstance(out, Instance) and out.items:
        return {k: _returned(v) for k, v in out.items.items()}
    if isinstance(out, tuple) and hasattr(out, "_fields"):  # a namedtuple (torchvision's GoogLeNetOutputs)
        return type(out)(*(_returned(v) for v in out))
    if isinstance(out, (list, tuple)):
        return type(out)(_returned(v) for v in out)
    return out


def _grouped(value) -> bool:
    """Parameter groups: `[{"params": ..., "lr": ...}, ...]`."""
    return isinstance(value, (list, tuple)) and bool(value) and all(
        isinstance(g, dict) and "params" in g for g in value)


def _tensors_of(value) -> list:
    """The tensors an iterable of parameters gives."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors_of(v)]
    raise AnalysisError(f"an optimizer given {type(value).__name__}")


def _step_loss(interp: Interpreter, out, settings: Settings, node) -> tuple:
    """Where backward starts, as the training step computes it: (loss, its name, targets, kept).

    A 0-d tensor forward returns is the loss (one with a gradient first), and the loop holds all forward returned
    (`logits, loss = model(x, y)`). Otherwise the step applies the configured loss to the first
    output, against targets allocated with the batch, and holds that output; cross entropy takes
    classes on the last dimension, as `F.cross_entropy(out.reshape(-1, C), targets.reshape(-1))`."""
    from . import catalogue
    from .interpreter import Bound

    tensors = list(tensors_in(out))
    numbers = [t for t in tensors if t.ndim == 0]
    own = next((t for t in numbers if t.requires_grad), numbers[0] if numbers else None)
    if own is not None:
        return own, "forward", [], tensors
    first, how = tensors[0], settings.loss
    if how == "sum" or first.numel == 0:  # an empty output has nothing to compare
        return first, "sum", [], [first]
    if how == "cross_entropy":
        target = Tensor((math.prod(first.shape[:-1]),), "int64")
        scores = interp.call_bound(Bound(first, "reshape"), [-1, first.shape[-1]], {}, node)
        args = [scores, target]
    else:
        target = Tensor(first.shape, memory.param_dtype(settings.dtype))
        args = [first, target]
    path = f"torch.nn.functional.{how}_loss" if how == "mse" else f"torch.nn.functional.{how}"
    op = catalogue.FUNCTIONS[path]
    loss = interp.apply(op, {}, op.signature, args, {}, node, None, f"F.{path.rsplit('.', 1)[1]}")
    return loss, how, [target], [first, loss]


def _evaluate_model(interp: Interpreter, src: SourceFile, decl: ModelDecl, settings: Settings, node) -> Module:
    """The module an expression stands for: a class or factory is called with the configured args."""
    from .interpreter import Class, Function, Module, Scope

    value = interp.eval(node, Scope({}, src.scope))
    if isinstance(value, (Class, Function)):
        value = interp.call(value, [], dict(settings.args), node)
    if not isinstance(value, Module):
        raise AnalysisError(f"{decl.expression} is not an nn.Module (it gives {type(value).__name__})", node)
    return value


def named_modules(root: Module) -> dict:
    """id(module) -> qualified name, as torch's named_modules() (first name wins)."""
    from .interpreter import walk_modules

    return {id(m): name for name, m in walk_modules(root)}


def _parameters(run: _Run) -> tuple[list, list, int]:
    """Shapes of the model's parameters (a tied weight once), its buffers, and how many of the
    parameters' elements require a gradient."""
    from .interpreter import walk_modules

    modules = [m for _, m in walk_modules(run.root)]
    shapes, trains = {}, {}
    for m in modules:
        for k, shape in enumerate(m.params):
            shapes[m.param_key(k)] = shape
            trains[m.param_key(k)] = m.trains(k)
    trainable = sum(math.prod(s) for key, s in shapes.items() if trains[key])
    return list(shapes.values()), [t for m in modules for t in m.buffers], trainable


def _cast_notes(run: _Run, settings: Settings, setup: SetUp) -> list:
    """(site, message) of each cast the model's own code gives a part of it (`self.backbone =
    resnet18().half()`), or the whole of it where gpumem does not read it as the model's dtype (in a
    factory), where the model's parameters then differ from the dtype analysed: a model has one dtype
    here. None where the file casts the whole model once built, which undoes any cast before it."""
    from .interpreter import walk_modules

    held = [m for _, m in walk_modules(run.root) if m.params]
    if setup.dtype is not None or all(m.cast is None for m in held):
        return []
    analysed = memory.param_dtype(settings.dtype)
    if {m.cast[0] if m.cast else "float32" for m in held} == {analysed}:  # as PyTorch builds it: float32
        return []
    notes = {}
    for dtype, site, cast in (m.cast for m in held if m.cast is not None):
        if cast is run.root:
            notes[site] = (f"the code that builds it casts it to {dtype}, which gpumem does not take for the "
                           f"model's dtype: analysed in {analysed}; give --dtype {dtype} to analyse it so")
        else:
            notes[site] = (f"{run.names.get(id(cast), cast.kind)} is cast to {dtype}, but gpumem gives a model one "
                           f"dtype, {analysed} here, for all its weights, gradients and optimizer state")
    return list(notes.items())


def _blocks(root: Module) -> tuple:
    """Classes of the model's own modules that appear more than once and hold layers (Block,
    Bottleneck): what checkpointing or FSDP would wrap, most instances first."""
    from collections import Counter

    from .interpreter import walk_modules

    counts = Counter(m.cls.name for _, m in walk_modules(root)
                     if m.cls is not None and m.children and m is not root)
    return tuple(name for name, n in counts.most_common() if n > 1)


def _parallel(run: _Run, settings: Settings) -> Parallel | None:
    """DDP, or FSDP2 with a unit per module of a `shard_unit` class (the root is one too)."""
    from .interpreter import param_keys, walk_modules

    if settings.strategy == "single":
        return None
    if settings.strategy == "ddp":
        return Parallel("ddp", settings.world_size)
    unit_of, units, named, reshard = {}, [{}], {}, [False]  # the root stays gathered
    for name, m in walk_modules(run.root):  # parents before children
        named[name] = m
        parent = unit_of[id(named[name.rpartition(".")[0]])] if name else 0
        if name and (m.kind in settings.shard_unit or (m.cls is not None and m.cls.name in settings.shard_unit)):
            units.append({})
            parent = len(units) - 1
            given = settings.reshard_after_forward
            reshard.append(run.reshard.get(id(m), True) if given is None else given)
        unit_of[id(m)] = parent
        units[parent].update(param_keys(m))
    seen: set = set()
    owned = []
    for unit in units:  # a tied weight belongs to the first unit that has it
        owned.append(tuple((k, s) for k, s in unit.items() if k not in seen))
        seen.update(unit)
    return Parallel("fsdp", settings.world_size, tuple(owned), unit_of, settings.param_dtype, settings.reduce_dtype,
                    offload=settings.offload if settings.offload != "off" else None, reshard=tuple(reshard))


def _labeller(run: _Run):
    """What names an event where the peak or a picture points at it: its module's qualified name."""

    def label(ev: Event) -> str:
        if ev.module is not None:
            return run.names.get(id(ev.module), ev.type)
        return f"{run.names.get(id(ev.owner)) or ev.owner.kind} ({ev.type})" if ev.owner is not None else ev.type

    return label


def _copy_weights(run: _Run) -> list:
    """(name, its tensors) of each copy of the model the file keeps beside it (`ema =
    copy.deepcopy(model)`): weights for the whole step, no gradient, no optimizer state; in the
    model's dtype, as the step's weights are counted."""
    from .interpreter import walk_modules

    out = []
    for name, root in run.copies:
        shapes = {m.param_key(k): shape for _, m in walk_modules(root) for k, shape in enumerate(m.params)}
        out.append((name, [Tensor(s, run.interp.model_dtype) for s in shapes.values()]
                    + [t for _, m in walk_modules(root) for t in m.buffers]))
    return out


def _memory(run: _Run, settings: Settings, points: list | None = None, trace: list | None = None) -> memory.Memory:
    shapes, buffers, _ = _parameters(run)
    buffers = buffers + [t for _, tensors in _copy_weights(run) for t in tensors]
    return memory.simulate(run.events, run.inputs, run.output, run.kept, run.loss, shapes, buffers, settings.dtype,
                           settings.optimizer, settings.reserve, _labeller(run), held=run.interp.held, points=points,
                           accumulate=settings.accumulate, parallel=_parallel(run, settings),
                           cpu=settings.device == "cpu", trace=trace, optimized=run.optimized)


def _records(run: _Run, line_of, figures: bool = True) -> tuple[list[LayerRecord], list]:
    """Layer records in call order; bytes kept for backward, each tensor counted once; and the
    GPM200 notes as (node, message). `line_of(node)` gives a record its line (None: no lines);
    without `figures`, the notes alone (the plugin shows records only in a budget message).

    Calls made inside a leaf custom module (MultiheadAttention's projections and
    softmax, a user module's matmul) are added to that module's row."""
    kept: set = {t.storage.id for t in run.inputs}
    seen_modules: set = set()
    used_names = set(run.names.values())
    counters: dict = {}
    pending: dict = {}  # id(owner) -> [activation bytes, saved bytes] of folded calls
    layers, notes = [], []
    for i, ev in enumerate(run.events):
        if not figures and (ev.folded or (ev.module is not None and not ev.notes)):
            continue  # a note needs its name only: a layer's own, a function's place in its count
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
            params, trainable = _subtree_params(ev.module, seen_modules) if figures else (0, 0)
            inner = pending.pop(id(ev.module), (0, 0))
            allocated, saved = allocated + inner[0], saved + inner[1]
        else:
            name = _function_name(ev.type, counters, used_names)
            if i >= run.forward_events:  # the loss the step applies: "loss", and what it needed first
                name = "loss" if i == len(run.events) - 1 else f"loss.{name}"
            params = trainable = 0
        if figures:
            layers.append(LayerRecord(name, ev.type, ev.module is not None, line_of(ev.where) if line_of else None,
                                      _first_shape_of(ev.output), params, allocated, saved, trainable))
        for code, message in ev.notes:
            notes.append((ev.where, f"{name} ({ev.type}) {message}"))
    return layers, notes


def _subtree_params(module: Module, counted: set) -> tuple[int, int]:
    """Parameters of a leaf call's module and everything under it not counted before, and how many
    of them require a gradient."""
    if id(module) in counted:
        return 0, 0
    counted.add(id(module))
    own = [(module.param_key(k), math.prod(s), module.trains(k)) for k, s in enumerate(module.params)
           if module.param_key(k) not in counted]
    counted.update(key for key, _, _ in own)
    below = [_subtree_params(c, counted) for c in module.children.values() if c is not None]
    return (sum(n for _, n, _ in own) + sum(p for p, _ in below),
            sum(n for _, n, trains in own if trains) + sum(t for _, t in below))


def _first_shape_of(value) -> tuple | None:
    first = next(tensors_in(value), None)
    return first.shape if first is not None else None


OPERATOR_NAMES = {"+": "add", "-": "sub", "*": "mul", "/": "div", "@": "matmul", "+=": "add_", "-=": "sub_",
                  "*=": "mul_", "/=": "div_", "@=": "matmul_", "**": "pow", "**=": "pow_", "==": "eq", "!=": "ne",
                  "<": "lt", "<=": "le", ">": "gt", ">=": "ge", "[]": "getitem"}


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
    run = _run(src, decl, settings, batch)
    mem = _memory(run, settings)
    return mem.peak + mem.reserve


def _memory_with(src: SourceFile, decl: ModelDecl, settings: Settings, run: _Run):
    """The memory of the set-ups GPM100 tries: one run per family of them (what the trace depends on:
    dtype, mixed-precision policy, checkpointing, batch), simulated again for each strategy, world
    size, shard unit, offload and micro-batch count."""
    def family(s: Settings) -> tuple:
        return s.dtype, s.param_dtype, s.checkpoint, s.batch_size

    runs = {family(settings): run}

    def footprint(s: Settings) -> memory.Memory:
        if family(s) not in runs:
            runs[family(s)] = _run(src, decl, s, s.batch_size)
        return _memory(runs[family(s)], s)

    return footprint


def _points(src: SourceFile, decl: ModelDecl, settings: Settings, batch: int) -> list | None:
    """The step's places where the peak can occur, (phase, total) each, at one batch size; None
    where the simulated peak is not among them."""
    run = _run(src, decl, settings, batch)
    points: list = []
    mem = _memory(run, settings, points=points)
    return points if points and max(total for _, total in points) == mem.peak else None


def _max_batch(src: SourceFile, decl: ModelDecl, settings: Settings) -> int:
    """The largest batch whose simulated peak fits the budget (0 if none does).

    In closed form (batch.py) from the steps at batches 2 and 3, checked at the first batch it
    says does not fit: three interpretations. A search where the step is not affine in the batch."""
    two, three = _points(src, decl, settings, 2), _points(src, decl, settings, 3)
    best = largest_batch(two, three, settings.budget - settings.reserve) if two and three else None
    if best == 1:  # batch 2 does not fit
        return 1 if peak_at(src, decl, settings, 1) <= settings.budget else 0
    if best == 2:  # batch 3 does not fit: seen, not solved for
        return 2
    if best is not None and affine_at(two, three, _points(src, decl, settings, best + 1) or [], best + 1):
        return best
    return _search(src, decl, settings)


def _search(src: SourceFile, decl: ModelDecl, settings: Settings) -> int:
    """The largest batch whose simulated peak fits, found by running the step: a linear fit from
    batches 1 and 2 gives the guess; a bracketed binary search makes it exact."""
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


__all__ = ["Analysis", "Diagnostic", "LayerRecord", "ModelReport", "Timeline", "analyse_source", "ConfigError"]
