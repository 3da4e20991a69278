"""Reading model source: which models a file defines and what it says about them.

Python's own parser (flake8 hands its tree over, already built) finds the top-level
statements, the model candidates, their inline settings, the example inputs and the
optimizer the file builds. libcst parses a top-level statement (a Segment) only when the
interpreter first needs a name it binds, so a file pays for the code its models use, not
for all of it, and files whose models cannot be analysed pay no libcst at all.
"""
from __future__ import annotations

import ast
import copy
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

from .config import ConfigError, Settings, settings_from
from .segments import LINES, Segment, split
from .values import FLOAT_DTYPES, MODULE_CASTS, TORCH_DTYPES, AnalysisError

INLINE = re.compile(r"#\s*gpumem:(.*)$")
WORD = re.compile(r"\w+")  # identifiers (and numbers): what a statement may name
# key=value; a value is a word, a string, or brackets nested once: (3, 50, 50), ((64,), (64,)), [[64], [64]],
# {"labels": ()}
INLINE_PAIR = re.compile(r"(\w+)\s*=\s*(\((?:[^()]|\([^()]*\))*\)|\[(?:[^\[\]]|\[[^\[\]]*\])*\]|\"[^\"]*\"|'[^']*'"
                         r"|\{(?:[^{}]|\{[^{}]*\})*\}|[^\s,]+)")
CONTAINER_CALLS = ("Sequential",)
EXAMPLE_TENSORS = ("randn", "rand", "zeros", "ones", "empty", "randint")
TABLE = 64  # items in a display a module-level call passes, above which it builds a table, not a model
# nn.Module's methods that change what a model holds or what of it trains (not its dtype or device:
# those are settings read apart, nor what it computes)
CHANGING_METHODS = ("requires_grad_", "add_module", "register_module", "register_parameter", "register_buffer",
                    "apply", "append", "extend", "insert", "update", "enable_input_require_grads",
                    "gradient_checkpointing_enable", "activation_checkpointing_enable")
OPTIMIZER_CLASSES = {"SGD": "sgd", "Adam": "adam", "AdamW": "adamw", "RMSprop": "rmsprop", "Adagrad": "adagrad"}
# nn.Module's methods that return the module: a model is built, cast and placed in one statement
MODULE_CHAIN = MODULE_CASTS + ("to", "cuda", "cpu", "train", "eval")
# what a copy of the model may be put through in the statement that makes it: run with it, casts included
COPY_CHAIN = MODULE_CHAIN + ("requires_grad_",)
WRAPPER_NAMES = ("compile", "DataParallel", "DistributedDataParallel", "DDP")  # torch's wrappers, as files call them
SETUP_WORDS = tuple(f".{m}(" for m in MODULE_CASTS + ("to", "from_pretrained")) + (
    "compile(", "DataParallel", "Trainer(", "fully_shard(")
# transformers' Trainer and its arguments: the flags a script passes are read from the call, never run
TRAINERS = ("Trainer", "Seq2SeqTrainer")
TRAINING_ARGUMENTS = ("TrainingArguments", "Seq2SeqTrainingArguments")
# TrainingArguments' `optim` -> the torch.optim optimizer the Trainer builds, as gpumem names it
TRAINER_OPTIMIZERS = {"adamw_torch": "adamw", "adamw_torch_fused": "adamw", "sgd": "sgd", "adagrad": "adagrad",
                      "rmsprop": "rmsprop"}
# the flags read, with the setting each gives (checkpointing: run as the Trainer runs it)
TRAINER_FLAGS = ("per_device_train_batch_size", "gradient_accumulation_steps", "bf16", "fp16", "optim", "optim_args",
                 "gradient_checkpointing", "activation_checkpointing", "gradient_checkpointing_kwargs",
                 "activation_checkpointing_kwargs")


@dataclass
class ModelDecl:
    """A model candidate: a top-level class with bases, or a module-level `x = nn.Sequential(...)`.

    Whether a class really is an nn.Module is decided by SourceFile.is_model, which parses it."""

    name: str
    line: int
    col: int
    segment: Segment
    inline: Settings = field(default_factory=Settings)
    inline_error: str | None = None  # an unreadable `# gpumem:` comment on its line
    stated: Settings = field(default_factory=Settings)  # an example input the file itself builds
    constructor: str = ""  # a module-level call's callee as written, e.g. nn.Sequential or resnet18
    has_args: bool = False  # that call passes arguments
    table: bool = False  # one of them is a display of more than TABLE items: timm's default_cfgs, not a model
    required: tuple = ()  # a class's own __init__ parameters without a default (before any is parsed)
    expression: str = ""  # a model named by an expression (--model 'resnet50(num_classes=10)')
    changes: tuple = ()  # later top-level statements that change a module-level model: `model.fc = ...`
    optimizers: tuple = ()  # (Segment, its params as written) of later top-level torch.optim calls
    copies: tuple = ()  # names bound later to `copy.deepcopy(model)` (an EMA copy): kept beside it, weights only

    @property
    def commented(self) -> bool:
        return self.inline != Settings() or self.inline_error is not None

    @cached_property
    def node(self):
        """Its libcst statement (parsed on first use); for an expression, the expression, parsed once
        for every run of the model."""
        if self.expression:
            return _interpreter().parse_expression(self.expression)
        return next(s for s in self.segment.module.body if _interpreter().binds(s, self.name))


class ShardCall(NamedTuple):
    """One `fully_shard(MODULE, ...)` of the file: of one module (`module` its expression), or of each
    item of a loop `for LOOP in MODULE:` (`name` the loop's variable it wraps)."""

    module: str
    loop: str  # the loop's target ("block", "layer_id, block"); "" for one module
    name: str
    reshard: bool | int | None  # its reshard_after_forward: None where not given (or not read: noted)
    per_item: str  # else, an expression of the loop's variables that gives it for each item ("" for none)
    where: tuple  # (line, col)


@dataclass
class SetUp:
    """How the file prepares a model for training, as its statements say: what `--dtype` and
    `--strategy` would, and what gpumem reports of it without a setting."""

    dtype: str | None = None  # the dtype its last cast gives the whole model
    wrappers: list = field(default_factory=list)  # what it runs in: "torch.compile", "DataParallel", "DDP"
    notes: list = field(default_factory=list)  # (line, col, message): what the figures leave out (GPM900)
    # FSDP2: its fully_shard calls (ShardCall); the mesh's size and the MixedPrecisionPolicy, where the
    # file writes them
    sharded: list = field(default_factory=list)
    world_size: int | None = None
    unread_mesh: tuple | None = None  # (line, col) of a fully_shard over a mesh whose size is not read
    param_dtype: str | None = None
    reduce_dtype: str | None = None
    offload: str | None = None  # CPUOffloadPolicy: "pinned" or "pageable"; OffloadPolicy(): "off"
    trainer: Settings = field(default_factory=Settings)  # what a transformers Trainer's arguments set
    checkpointing: dict | None = None  # the Trainer's activation_checkpointing_enable keywords, where it checkpoints

    @property
    def strategy(self) -> str | None:
        return "fsdp" if self.sharded else "ddp" if "DDP" in self.wrappers else None

    def said(self, world_size_given: bool) -> list:
        """Its notes; that the mesh's size is not read only where no setting gives the world size."""
        if self.unread_mesh is None or world_size_given:
            return self.notes
        return [*self.notes, (*self.unread_mesh, "fully_shard over a device mesh whose size gpumem cannot read "
                                                 "(all the ranks torchrun starts, without one): give --world-size")]


@dataclass
class SourceFile:
    filename: str
    tree: ast.Module
    segments: list[Segment]
    models: list[ModelDecl]
    statements: list[list[ast.stmt]] = field(default_factory=list)  # each segment's statements (Python's ast)

    @cached_property
    def optimizer(self) -> str | None:
        """What a torch.optim call in the file builds: looked up only for a model that is analysed,
        since naming it may take the interpreter (a quarter of a second to import)."""
        named = any(f"{name}(" in segment.text for segment in self.segments for name in OPTIMIZER_CLASSES)
        return file_optimizer(self) if named else None

    @cached_property
    def scope(self):
        """The file's globals for the interpreter, each statement parsed when first needed."""
        interpreter = _interpreter()
        package, _ = interpreter.imports.package_of(self.filename)
        file = interpreter.File(interpreter.imports.module_name(self.filename), package)
        return interpreter.segment_scope(self.segments, file)

    @cached_property
    def setups(self) -> dict:
        """Model name -> SetUp: read only for a model that is analysed, since reading a `.to(dtype)`
        may take the interpreter."""
        if not any(word in segment.text for segment in self.segments for word in SETUP_WORDS):
            return {}
        reader = _StatedSetup(self, {m.name for m in self.models})
        for stmts in self.statements:
            for stmt in stmts:
                reader.visit(stmt)
        return reader.found

    def close(self) -> None:
        """Let go of the file's globals: the functions and classes bound in them refer back to them,
        a cycle that otherwise keeps every parsed statement until a full collection walks it (in
        flake8, a quarter of the plugin's time on timm's and torchvision's model files)."""
        scope = self.__dict__.pop("scope", None)
        if scope is not None:
            scope.vars.clear()
            scope.thunks.clear()
        self.__dict__.pop("probe", None)

    @cached_property
    def resolver(self):
        """Where the modules this file imports are found: its project, then the installed libraries."""
        imports = _interpreter().imports
        return imports.resolver(imports.roots_for(self.filename))

    def interpreter(self, **settings):
        """An interpreter over this file's globals (settings: model_dtype, device, autocast)."""
        return _interpreter().Interpreter(self.scope, resolver=self.resolver, **settings)

    @cached_property
    def probe(self):
        """An interpreter for looking names up (no model is run on it, in no dtype yet)."""
        probe = self.interpreter()
        probe.dtype_known = False
        return probe

    def expression_model(self, expression: str) -> ModelDecl:
        """A model named by an expression evaluated in the file's scope: a factory function's name,
        `resnet50(num_classes=10)`, `GPT(GPTConfig(n_layer=6))`. It is reported at the statement
        that binds its first name (line 1 if the file binds none)."""
        head = re.match(r"\s*([A-Za-z_]\w*)", expression)
        segment = next((s for s in reversed(self.segments) if head and head.group(1) in s.names), None)
        if segment is None:
            return ModelDecl(expression, 1, 0, Segment(1, "", ()), expression=expression)
        return ModelDecl(expression, segment.first_line, 0, segment, expression=expression)

    def is_model(self, decl: ModelDecl) -> bool:
        """An nn.Module (or LightningModule) subclass, a container PyTorch builds, or a module-level
        call that builds a module; a model named by expression is one when evaluated.

        Raises Unresolved when libcst cannot read the candidate's own statement: a model
        gpumem cannot read is reported, not dropped."""
        if decl.expression:
            return True
        # the callee before the statement: torch.randn(...) or dict(...) is no model, whatever it holds
        try:
            head = self._head(decl.constructor) if decl.constructor else None
        except RecursionError:
            return False
        if isinstance(head, _interpreter().Builtin):
            return False
        path = _path(head, decl.constructor)
        if path.partition(".")[0] == "torch":  # torch's own, not torchvision's
            return path.rpartition(".")[2] in CONTAINER_CALLS  # nn.Sequential(...), not torch.randn(...)
        if isinstance(head, _interpreter().Function) and "." not in decl.constructor and (
                _interpreter().builds_no_module(self.probe, head)):
            return False  # default_cfgs = generate_default_cfgs({...}): a function that returns a dict it fills
        if not decl.segment.module.body:  # parsed first, outside the try: its failure is not "not a model"
            return False
        try:
            if not decl.constructor:
                cls = self.find_class(decl.name)
                return cls is not None and self.probe.is_module_class(cls)
        except (AnalysisError, RecursionError):
            return False
        return self._builds_module(decl)

    def _builds_module(self, decl: ModelDecl) -> bool:
        """`model = resnet18(num_classes=10)`: a model when the call builds an nn.Module. A call of
        code gpumem reads (a factory, a class, a library it looks for) that it cannot follow raises;
        any other call (the standard library's, torch's) is not one."""
        interpreter = _interpreter()
        try:
            return isinstance(self.probe.lookup(decl.name, self.scope, None), interpreter.Module)
        except RecursionError:
            return False
        except AnalysisError:
            self.probe.steps = 0  # the callee alone, with a budget of its own (the call may have spent it all)
            try:
                callee = self.probe.eval(interpreter.parse_expression(decl.constructor),
                                         interpreter.Scope({}, self.scope))
            except (AnalysisError, RecursionError):
                return False
            if isinstance(callee, interpreter.Bound) and isinstance(callee.func, interpreter.Function):
                callee = callee.func  # a method of a class read from source: `Model.from_pretrained(...)`
            if isinstance(callee, interpreter.Function) or (
                    isinstance(callee, interpreter.Q) and interpreter.imports.followed(callee.path)) or (
                    isinstance(callee, interpreter.Class) and self.probe.is_module_class(callee)):
                raise
            return False

    @cached_property
    def components(self) -> set:
        """Classes another model class (or a top-level function) names: `Block(64)` inside Net,
        `_resnet(BasicBlock, ...)` in a factory, `partial(Bottleneck, ...)`, `block=Block`. A class
        a function is declared to return (`def resnet50(**kwargs) -> ResNet`) is the model that
        factory builds, unless another class builds it too."""
        classes = {m.name for m in self.models if not m.constructor}
        if not classes:
            return set()
        # a statement is walked only for the names its text spells and that are not known yet
        in_classes, in_functions, built = set(), set(), set()
        for segment, stmts in zip(self.segments, self.statements):
            words = classes.intersection(WORD.findall(segment.text))
            for stmt in stmts if words else ():
                # any class: GPT too, when `model = GPT(cfg)` stands for it
                if isinstance(stmt, ast.ClassDef):
                    in_classes |= _names(stmt, words - in_classes - {stmt.name})
                elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    in_functions |= _names(stmt, words - in_functions)
                    built |= _names(stmt.returns, words) if stmt.returns else set()
        return in_classes | (in_functions - built)

    def position(self, site: tuple | None, hint: Segment | None = None) -> tuple[int, int] | None:
        """(line, col) of a (Segment, node) site. A statement's positions are resolved when first
        asked for; a node whose statement is not known is looked for in `hint`, then everywhere."""
        if site is None:
            return None
        segment, node = site
        for seg in (segment, hint):
            pos = seg.position(node) if seg is not None else None
            if pos is not None:
                return pos
        # rarely reached: resolved statements first, then the other parsed ones (methods included)
        every = (m for s in self.segments for m in (s, *s.members.values()))
        parsed = sorted((s for s in every if s.parsed), key=lambda s: s._positions is None)
        return next((pos for seg in parsed if (pos := seg.position(node)) is not None), None)

    def path_of(self, name: str) -> str:
        """The import path of a dotted name as the file spells it (`optim.Adam` -> torch.optim.Adam), or ""."""
        return _path(self._head(name), name)

    def _head(self, name: str):
        """What the first part of a dotted name is bound to in the file (None where nothing known)."""
        head = name.partition(".")[0]
        try:
            return self.probe.lookup(head, self.scope, None) if head else None
        except AnalysisError:
            return None

    def evaluate(self, node: ast.expr, defaults: dict):
        """A small expression of the file (a size, a shape), evaluated statically, or None.

        `defaults` are the enclosing function's parameter defaults (ast nodes), known values there."""
        try:
            return ast.literal_eval(node)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            pass
        interpreter = _interpreter()
        try:
            thunks = {n.id: interpreter.parse_expression(ast.unparse(defaults[n.id]))
                      for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in defaults}
            expr = interpreter.parse_expression(ast.unparse(node))
            return self.interpreter().eval(expr, interpreter.Scope({}, self.scope, thunks))
        except (AnalysisError, RecursionError, ValueError):
            return None

    def find_class(self, name: str):
        try:
            value = self.probe.lookup(name, self.scope, None)
        except AnalysisError:
            return None
        return value if isinstance(value, _interpreter().Class) else None


def _interpreter():
    """The interpreter's module, imported on first use: with libcst it costs a quarter of a
    second, which files with nothing to analyse never pay."""
    from . import interpreter
    return interpreter


def read_source(source: str, filename: str, tree: ast.Module | None = None) -> SourceFile:
    """Find the models of `source`. `tree` is Python's parse of it (flake8's); without it, the
    source is parsed here (raises SyntaxError, ValueError, RecursionError or MemoryError)."""
    source = source.removeprefix("\ufeff")
    if tree is None:
        tree = ast.parse(source)
    lines = LINES.findall(source)
    segments, statements = split(lines, tree)
    models = []
    for segment, stmts in zip(segments, statements):
        for stmt in stmts:
            decl = _candidate(stmt, segment, lines[stmt.lineno - 1])
            if decl is None:
                continue
            try:
                decl.inline = inline_settings(lines[decl.line - 1], f"{filename}:{decl.line}")
            except ConfigError as exc:
                decl.inline_error = str(exc)
            models.append(decl)
    if any(m.constructor for m in models):
        copies = _find_changes(models, segments, statements)
        models = [m for m in models if m.name not in copies]
    models = _once(models)
    src = SourceFile(filename, tree, segments, models, statements)
    names = {m.name for m in models}
    if models and _may_state_inputs(source, names):
        stated = _StatedInputs(src, names)
        for segment, stmts in zip(segments, statements):
            # a function or class that cannot state an input is not walked (a file's inputs are in a few)
            if all(isinstance(s, (ast.Assign, ast.Expr)) for s in stmts) or _may_state_inputs(
                    segment.text, names | stated.instances.keys(), stated.examples.keys()):
                for stmt in stmts:
                    stated.visit(stmt)
        for m in models:
            m.stated = stated.found.get(m.name, Settings())
    return src


def _once(models: list) -> list:
    """Each model once: `model = Net()` is the class Net; `model = GPT(config)` with arguments, or
    with a `# gpumem:` comment of its own, or changed by later statements, is the model the file means,
    and the class is left out."""
    classes = {m.name for m in models if not m.constructor}
    instances = [m for m in models if m.constructor in classes and (m.has_args or m.commented or m.changes)]
    shown = {m.constructor for m in instances}
    return [m for m in models if m in instances or (m.constructor not in classes and m.name not in shown)]


def _find_changes(models: list, segments: list, statements: list) -> set:
    """The top-level statements that change a module-level model after the statement that builds
    it (fine-tuning code: freezing, a new head), for each such model; and the copies kept beside it
    (`ema = copy.deepcopy(model)`), run among them in order. Returns the copies' names: not models."""
    functions = {s.name: s for stmts in statements for s in stmts if isinstance(s, ast.FunctionDef)}
    changes, optimizers = {}, []  # name -> indices of the statements that change it; (index, params)
    copies = {}  # model name -> [(index, name of its copy)]
    built = {m.name for m in models if m.constructor}
    for i, stmts in enumerate(statements):
        for stmt in stmts:
            for name in _changed_names(stmt, functions):
                changes.setdefault(name, []).append(i)
            original = _copied(stmt)
            if original in built:
                changes.setdefault(original, []).append(i)
                copies.setdefault(original, []).append((i, stmt.targets[0].id))
            params = _optimizer_params(stmt.value) if isinstance(stmt, (ast.Assign, ast.Expr)) else None
            if params is not None:
                optimizers.append((i, params))
    index = {id(segment): i for i, segment in enumerate(segments)}
    for m in models:
        if m.constructor:
            start = index[id(m.segment)]
            m.changes = tuple(segments[i] for i in dict.fromkeys(changes.get(m.name, ())) if i > start)
            m.optimizers = tuple((segments[i], params) for i, params in optimizers if i > start)
            m.copies = tuple(name for i, name in copies.get(m.name, ()) if i > start)
    return {name for found in copies.values() for _, name in found}


def _copied(stmt: ast.stmt) -> str | None:
    """The model name `ema = copy.deepcopy(model)` copies (also `deepcopy(model).requires_grad_(False)`,
    `.eval()`, `.to(device)` after it), else None."""
    if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)):
        return None
    node = stmt.value
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in COPY_CHAIN:
        node = node.func.value
    if isinstance(node, ast.Call) and _dotted(node.func) in ("copy.deepcopy", "deepcopy") and len(node.args) == 1:
        return node.args[0].id if isinstance(node.args[0], ast.Name) else None
    return None


def _optimizer_params(node) -> str | None:
    """The parameters `optim.SGD(params, ...)` is given, as written (a torch.optim class by its
    name); None for any other expression."""
    if not (isinstance(node, ast.Call) and _dotted(node.func).rpartition(".")[2] in OPTIMIZER_CLASSES):
        return None
    params = node.args[0] if node.args else _keyword(node, "params")
    return ast.unparse(params) if params is not None else None


def _changed_names(stmt: ast.stmt, functions: dict) -> set:
    """The module-level names whose object a statement may change: `model.fc = ...`, `del model.fc`,
    `model.requires_grad_(False)` (CHANGING_METHODS), `for p in model.parameters(): ...`,
    `setattr(model, ...)`, a call of a function of the file that changes its arguments
    (`set_parameter_requires_grad(model, True)`), such statements under an `if` (not the `__main__`
    guard). Not `model(x)`, `print(model)`, `model.half()`, `fully_shard(model)` (set-ups, read apart)."""
    if isinstance(stmt, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
        targets = stmt.targets if isinstance(stmt, (ast.Assign, ast.Delete)) else [stmt.target]
        return {_root(t) for t in targets if isinstance(t, (ast.Attribute, ast.Subscript))}
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        call = stmt.value
        if isinstance(call.func, ast.Attribute):  # model.requires_grad_(False), model.layers.append(block)
            return {_root(call.func.value)} if call.func.attr in CHANGING_METHODS else set()
        if isinstance(call.func, ast.Name) and (call.func.id in ("setattr", "delattr") or (
                call.func.id in functions and _changes_arguments(functions[call.func.id]))):
            return {_root(a) for a in [*call.args, *(k.value for k in call.keywords)]}
        return set()
    if isinstance(stmt, ast.For) and not _sharding_loop(stmt):  # fully_shard: a set-up, read apart
        return {n.id for n in ast.walk(stmt.iter) if isinstance(n, ast.Name)}
    if isinstance(stmt, ast.If) and "__name__" not in {n.id for n in ast.walk(stmt.test) if isinstance(n, ast.Name)}:
        return set().union(*(_changed_names(s, functions) for s in stmt.body + stmt.orelse))
    return set()


def _shards(stmt: ast.stmt) -> bool:
    """Whether a statement is a `fully_shard(...)` call."""
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
            and _dotted(stmt.value.func).rpartition(".")[2] == "fully_shard")


def _sharding_loop(loop: ast.For) -> bool:
    """Whether a loop only calls fully_shard, with names it computes for the calls (torchtitan's
    `reshard_after_forward = int(layer_id) < len(model.layers) - 1`)."""
    body = loop.body
    return any(_shards(s) for s in body) and all(_shards(s) or isinstance(s, ast.Assign) and all(
        isinstance(t, ast.Name) for t in s.targets) for s in body)


class _Substituted(ast.NodeTransformer):
    """An expression with the names a loop computed replaced by what they were computed from."""

    def __init__(self, bound: dict):
        self.bound = bound

    def visit_Name(self, node):
        return copy.deepcopy(self.bound[node.id]) if node.id in self.bound else node


def reshard_value(value) -> bool:
    """Whether `value` is one fully_shard's reshard_after_forward takes: True, False or a number of ranks."""
    return isinstance(value, int) and (isinstance(value, bool) or value >= 1)


def unread_reshard(text: str) -> str:
    return (f"reshard_after_forward given as `{text}`, which gpumem cannot read: the figures reshard after "
            "forward (FSDP2's default); give --reshard-after-forward")


def _root(node) -> str:
    """The name an expression such as `model.layer4[0].conv1` starts from ('' for none)."""
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else ""


def _changes_arguments(fn: ast.FunctionDef) -> bool:
    """Whether a function sets what trains or replaces layers: `requires_grad`, `setattr`,
    an assignment to an attribute or item of one of its parameters."""
    params = {a.arg for a in [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]}
    for node in ast.walk(fn):
        if isinstance(node, ast.Attribute) and node.attr in ("requires_grad", "requires_grad_"):
            return True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr"):
            return True
        if isinstance(node, (ast.Assign, ast.Delete)) and any(
                isinstance(t, (ast.Attribute, ast.Subscript)) and _root(t) in params for t in node.targets):
            return True
    return False


def _may_state_inputs(source: str, names: set, examples=()) -> bool:
    """A cheap textual check before walking the tree for example inputs: torchinfo's summary, a
    Lightning example_input_array, or a model (or a variable holding one) called by its bare name
    beside an example tensor or a variable holding one (docstrings full of `nn.Conv2d(...)` and
    `torch.randn(...)` do not count)."""
    if "summary" in source or "example_input_array" in source:
        return True
    if not any(f"{f}(" in source for f in EXAMPLE_TENSORS) and not any(v in source for v in examples):
        return False
    return any(_called_bare(source, name) for name in names)


def _called_bare(source: str, name: str) -> bool:
    """`Net(` somewhere, not as `nn.Net(` nor `class Net(` (a plain find: a regex look-behind is slow)."""
    i = source.find(f"{name}(")
    while i != -1:
        before = source[max(i - 6, 0):i]
        if not (before[-1:].isalnum() or before[-1:] in "._" or before == "class "):
            return True
        i = source.find(f"{name}(", i + 1)
    return False


def _candidate(stmt: ast.stmt, segment: Segment, line: str) -> ModelDecl | None:
    col = len(line.encode("utf-8")[:stmt.col_offset].decode("utf-8", "replace"))  # ast counts bytes
    if isinstance(stmt, ast.ClassDef) and stmt.bases:
        return ModelDecl(stmt.name, stmt.lineno, col, segment, required=_required(stmt))
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        call, _ = _chain(stmt.value)  # `model = torch.compile(Net().half())` builds Net(); `model = model.half()`: none
        if isinstance(call, ast.Call) and _dotted(call.func):
            return ModelDecl(stmt.targets[0].id, stmt.lineno, col, segment, constructor=_dotted(call.func),
                             has_args=bool(call.args or call.keywords), table=_table(call))
    return None


def _chain(node: ast.expr) -> tuple:
    """(what is built, the calls then applied to it in order) of a model set up in one expression:
    `torch.compile(Net().half())` is (`Net()`, [`.half()`, `torch.compile(...)`])."""
    calls = []
    while isinstance(node, ast.Call):
        if _module_method(node):
            inner = node.func.value  # model.half(), model.compile()
        elif _dotted(node.func).rpartition(".")[2] in WRAPPER_NAMES and node.args:
            inner = node.args[0]  # torch.compile(model), DDP(model, device_ids=[rank])
        else:
            break
        calls.append(node)
        node = inner
    return node, calls[::-1]


def _module_method(call: ast.Call) -> str | None:
    """The nn.Module method that returns the module (or compiles it) a call may be: `model.half()`,
    `model.compile()`; None for `torch.compile(model)`, a function given the model."""
    func = call.func
    if isinstance(func, ast.Attribute) and (func.attr in MODULE_CHAIN or func.attr == "compile" and not call.args):
        return func.attr
    return None


def _required(cls: ast.ClassDef) -> tuple:
    """The parameters of the class's own `__init__` that have no default (self aside)."""
    init = next((f for f in reversed(cls.body) if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None)
    if init is None:
        return ()
    a = init.args
    positional = (a.posonlyargs + a.args)[1:]
    needed = positional[:max(len(positional) - len(a.defaults), 0)]
    return tuple(p.arg for p in needed) + tuple(p.arg for p, d in zip(a.kwonlyargs, a.kw_defaults) if d is None)


def _path(head, name: str) -> str:
    """The import path of dotted `name` whose first part is bound to `head` (a Q), or ""."""
    if not isinstance(head, _interpreter().Q):
        return ""
    rest = name.partition(".")[2]
    return f"{head.path}.{rest}" if rest else head.path


def _table(call: ast.Call) -> bool:
    """A call given a dict, list, tuple or set display of more than TABLE items: a table of
    configurations (`default_cfgs = generate_default_cfgs({...})`), a statement of thousands of
    lines whose evaluation would cost more than all the models of its file."""
    displays = (len(v.keys) if isinstance(v, ast.Dict) else len(v.elts)
                for v in [*call.args, *(k.value for k in call.keywords)]
                if isinstance(v, (ast.Dict, ast.List, ast.Tuple, ast.Set)))
    return any(items > TABLE for items in displays)


def _names(node: ast.AST, among: set) -> set:
    """Which of `among` the code under `node` names, in source order; it stops once all are found."""
    found, stack = set(), [node]
    while stack and len(found) < len(among):
        n = stack.pop()
        if type(n) is ast.Name:
            if n.id in among:
                found.add(n.id)
        else:
            stack.extend(reversed(list(ast.iter_child_nodes(n))))
    return found


def _dotted(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else ""
    return ""


def _keyword(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def _offload_mode(policy) -> str | None:
    """The offload setting an evaluated `offload_policy=` stands for; None where it cannot be read."""
    kind, options = getattr(policy, "kind", None), getattr(policy, "options", {})
    if kind == "OffloadPolicy" and not options:  # the default: none
        return "off"
    if kind == "CPUOffloadPolicy" and set(options) <= {"pin_memory"}:
        pin = options.get("pin_memory", True)
        return "pinned" if pin is True else "pageable" if pin is False else None
    return None


def file_optimizer(src: SourceFile) -> str | None:
    """The optimizer a `torch.optim.X(...)` call in the file builds (Lightning's
    configure_optimizers included): the first one found; SGD with a momentum is sgd-momentum."""
    for node in ast.walk(src.tree):
        if not (isinstance(node, ast.Call) and _dotted(node.func).rpartition(".")[2] in OPTIMIZER_CLASSES):
            continue
        path = src.path_of(_dotted(node.func))
        name = path.rpartition(".")[2]
        if path.startswith("torch.optim") and name in OPTIMIZER_CLASSES:
            momentum = _keyword(node, "momentum")
            still = momentum is None or (isinstance(momentum, ast.Constant) and momentum.value == 0)
            return "sgd-momentum" if name == "SGD" and not still else OPTIMIZER_CLASSES[name]
    return None


class _Variables(ast.NodeVisitor):
    """A walk of the file that knows which variable holds which model. Variables are per function:
    `model` in one test is not `model` in the next."""

    def __init__(self, src: SourceFile, models: set):
        self.src = src
        self.models = models
        self.found: dict = {}  # model -> what the file says of it
        self.instances: dict = {}  # variable -> model it holds

    def model_of(self, node) -> str | None:
        if isinstance(node, ast.Name):
            return self.instances.get(node.id) or (node.id if node.id in self.models else None)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in self.models:
            return node.func.id
        return None


class _StatedInputs(_Variables):
    """Input shapes the file states itself: a LightningModule's `self.example_input_array =
    torch.randn(...)`, `model(torch.randn(...))` where `model = Net()`, and torchinfo's
    `summary(model, input_size=...)` (batch included) or torchsummary's (batch excluded)."""

    def __init__(self, src: SourceFile, models: set):
        super().__init__(src, models)
        self.examples: dict = {}  # variable -> the example tensor call it holds
        self.defaults: dict = {}  # the innermost function's parameter defaults: known values there
        self.owner: str | None = None  # the top-level class being read

    def visit_ClassDef(self, node):
        outer, self.owner = self.owner, self.owner or node.name
        self.generic_visit(node)
        self.owner = outer

    def visit_FunctionDef(self, node):
        saved = dict(self.instances), dict(self.examples), self.defaults
        a = node.args
        positional = a.posonlyargs + a.args
        self.defaults = {p.arg: d for p, d in zip(positional[len(positional) - len(a.defaults):], a.defaults)}
        self.defaults.update({p.arg: d for p, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None})
        self.generic_visit(node)
        self.instances, self.examples, self.defaults = saved

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Assign(self, node):
        target = node.targets[0]
        if isinstance(target, ast.Name):
            if self.model_of(node.value):
                self.instances[target.id] = self.model_of(node.value)
            elif _example_call(node.value):  # its shape is worked out only if a model is called on it
                self.examples[target.id] = node.value
        elif isinstance(target, ast.Attribute) and target.attr == "example_input_array" and self.owner in self.models:
            self.record(self.owner, node.value)
        self.generic_visit(node)

    def visit_Call(self, node):
        args = node.args
        if _dotted(node.func).rpartition(".")[2] == "summary" and args:
            self._summary(node)
        elif len(args) + len(node.keywords) == 1 and args and self.model_of(node.func):
            example = args[0]
            if isinstance(example, ast.Name) and example.id in self.examples:
                example = self.examples[example.id]
            self.record(self.model_of(node.func), example)
        self.generic_visit(node)

    def _summary(self, node: ast.Call) -> None:
        size = _keyword(node, "input_size") or (node.args[1] if len(node.args) > 1 else None)
        value = self.src.evaluate(size, self.defaults) if size is not None else None
        if not (isinstance(value, (tuple, list)) and value and all(isinstance(v, int) and v > 0 for v in value)):
            return
        torchinfo = "torchinfo" in self.src.path_of(_dotted(node.func))
        dtypes = _keyword(node, "dtypes")
        dtype = None
        if isinstance(dtypes, (ast.List, ast.Tuple)) and dtypes.elts:
            dtype = {"long": "int64", "int64": "int64"}.get(_dotted(dtypes.elts[0]).rpartition(".")[2])
        self.store(self.model_of(node.args[0]), tuple(value), dtype, batch_included=torchinfo)

    def shape_of(self, node) -> tuple | None:
        """The full shape of a `torch.randn(2, 3, 32, 32)`-style call, evaluated statically."""
        if not _example_call(node):
            return None
        args = list(node.args)
        if _dotted(node.func).endswith("randint"):
            size = _keyword(node, "size") or (args[2] if len(args) > 2 else None)
            args = [size] if size is not None else []
        values = [self.src.evaluate(a, self.defaults) for a in args]
        if len(values) == 1 and isinstance(values[0], (tuple, list)):
            values = list(values[0])
        return tuple(values) if values and all(isinstance(v, int) and v > 0 for v in values) else None

    def record(self, model: str | None, call) -> None:
        if model and model not in self.found:
            self.store(model, self.shape_of(call), _dtype_of(call))

    def store(self, model: str | None, shape: tuple | None, dtype: str | None, batch_included: bool = True) -> None:
        if model and shape and model not in self.found:
            body = shape[1:] if batch_included else shape
            batch = shape[0] if batch_included else None
            self.found[model] = Settings(input_shape=body, batch_size=batch, input_dtype=dtype)


class _StatedSetup(_Variables):
    """How the file sets its models up, statement by statement: the dtype it casts one to
    (`model = Net().half()`, `model.to(torch.bfloat16)`; the last cast wins) and the wrappers it runs
    one in (torch.compile, nn.DataParallel, DistributedDataParallel). What an `if` decides is not
    guessed: noted. Expressions are not walked: a model is set up by a statement of its own."""

    def __init__(self, src: SourceFile, models: set):
        super().__init__(src, models)
        self.loops: dict = {}  # a loop's variable -> (the model, the modules of it the loop goes over)
        self.top = True  # at module level, where `model = resnet18().half()` sets up the model `model`
        self.guard: ast.If | None = None  # the `if` the statements visited now depend on
        self.arguments: dict = {}  # variable -> the TrainingArguments(...) call it holds
        self.bound: dict = {}  # in a fully_shard loop: a name it computes -> the expression it is
        self.options: dict = {}  # a dict of keywords the file builds (`fsdp_config = {"mesh": mesh}`) -> {key: node}
        self.transformers = _transformers_names(src.tree) if any("Trainer(" in s.text for s in src.segments) else set()

    def generic_visit(self, node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.stmt, ast.excepthandler, ast.match_case)):
                self.visit(child)

    def visit_FunctionDef(self, node):
        saved = dict(self.instances), self.top
        self.top = False
        self.generic_visit(node)
        self.instances, self.top = saved

    visit_AsyncFunctionDef = visit_ClassDef = visit_FunctionDef

    def visit_If(self, node):
        if isinstance(node.test, ast.Compare) and _dotted(node.test.left) == "__name__":  # the script's main: it runs
            self.generic_visit(node)
            return
        outer, self.guard = self.guard, self.guard or node
        self.generic_visit(node)
        self.guard = outer

    def visit_Assign(self, node):
        target = node.targets[0]
        if len(node.targets) == 1 and isinstance(target, ast.Name) and self.top:
            self._keywords(target.id, node.value)
        elif isinstance(target, ast.Subscript) and getattr(target.value, "id", None) in self.options:
            name = target.value.id  # fsdp_config["offload_policy"] = ...; under an `if`, unread
            if self.guard is None and isinstance(target.slice, ast.Constant) and len(node.targets) == 1:
                self.options[name][target.slice.value] = node.value
            else:
                del self.options[name]
        if len(node.targets) != 1 or not isinstance(target, ast.Name):
            return
        if self._trainer(node.value):
            return
        if self._transformers_call(node.value, TRAINING_ARGUMENTS):
            self.arguments[target.id] = node.value
            return
        base, calls = _chain(node.value)
        named = self.top and target.id in self.models and isinstance(base, ast.Call)
        model = target.id if named else self.model_of(base)
        if model is None:
            self.instances.pop(target.id, None)
            return
        self.instances[target.id] = model
        self.record(model, [base, *calls] if _pretrained(base) else calls)

    def visit_For(self, node):
        """`for block in model.layers: fully_shard(block, ...)` (`for i, block in enumerate(...)`,
        `for layer_id, block in model.layers.items()`): the loop's variables stand for the model's
        modules there."""
        iterable = node.iter.args[0] if (isinstance(node.iter, ast.Call) and _dotted(node.iter.func) == "enumerate"
                                         and node.iter.args) else node.iter
        model = self.model_of(ast.Name(_root(iterable)))
        names = [node.target] if isinstance(node.target, ast.Name) else getattr(node.target, "elts", [])
        if model is None or not names or not all(isinstance(n, ast.Name) for n in names):
            self.generic_visit(node)
            return
        outer, bound = dict(self.loops), dict(self.bound)
        self.loops.update((n.id, (model, ast.unparse(node.iter), ast.unparse(node.target))) for n in names)
        if _sharding_loop(node):
            for stmt in node.body:
                if isinstance(stmt, ast.Assign):
                    value = _Substituted(self.bound).visit(copy.deepcopy(stmt.value))
                    self.bound.update((t.id, value) for t in stmt.targets)
        self.generic_visit(node)
        self.loops, self.bound = outer, bound

    def visit_Expr(self, node):
        call = node.value
        if isinstance(call, ast.Call) and getattr(getattr(call.func, "value", None), "id", None) in self.options:
            del self.options[call.func.value.id]  # fsdp_config.update(...): its keywords are not read
        if _shards(node) and call.args:
            self.shard(call)
            return
        if self._trainer(call):
            return
        base, calls = _chain(node.value)
        model = self.model_of(base)
        if model is not None:
            self.record(model, calls)

    def shard(self, call: ast.Call) -> None:
        """`fully_shard(module, mesh=..., mp_policy=..., ...)` on the model or a module of it: the set-up
        is FSDP, over the mesh's ranks, with the policy's dtypes; what gpumem cannot read is noted."""
        target = call.args[0]
        if isinstance(target, ast.Name) and target.id in self.loops:
            model, module, loop = self.loops[target.id]
            name, loop_names = target.id, {n for n, (*_, t) in self.loops.items() if t == loop}
        else:
            model, module, loop, name, loop_names = self.model_of(ast.Name(_root(target))), ast.unparse(target), "", "", ()
        if model is None:
            return
        setup, where = self.found.setdefault(model, SetUp()), (call.lineno, call.col_offset)
        if self.guard is not None:
            setup.notes.append((*where, f"sharded with fully_shard only when the `if` at line {self.guard.lineno} "
                                        "holds: gpumem does not guess which way it goes; give --strategy fsdp "
                                        "--shard-unit CLASS to analyse that case"))
            return
        notes = [f"fully_shard(..., **{ast.unparse(k.value)}) with keywords gpumem cannot read: give --world-size, "
                 "--param-dtype, --reduce-dtype, --offload and --reshard-after-forward as they are"
                 for k in call.keywords if k.arg is None and getattr(k.value, "id", None) not in self.options]
        setup.sharded.append(ShardCall(module, loop, name, *self._reshard(call, loop_names, notes), where))
        policy = self._given(call, "mp_policy")
        if policy is not None:
            value = self.src.evaluate(policy, {})
            if getattr(value, "kind", None) == "MixedPrecisionPolicy":
                setup.param_dtype, setup.reduce_dtype = (value.options.get(k) for k in ("param_dtype", "reduce_dtype"))
            else:
                notes.append("an mp_policy gpumem cannot read: give --param-dtype and --reduce-dtype to analyse it")
        policy = self._given(call, "offload_policy")
        offload = _offload_mode(self.src.evaluate(policy, {})) if policy is not None else setup.offload
        if offload is None and policy is not None:
            notes.append("an offload_policy gpumem cannot read: give --offload (pinned, pageable or off)")
        elif setup.offload not in (None, offload):
            notes.append("fully_shard calls with different offload policies: gpumem gives every unit the "
                         "first; give --offload to say which")
        setup.offload = setup.offload or offload
        mesh = self._given(call, "mesh")
        size = getattr(self.src.evaluate(mesh, {}), "options", {}).get("size") if mesh is not None else None
        if size is None and setup.unread_mesh is None:
            setup.unread_mesh = where
        setup.world_size = size or setup.world_size
        setup.notes += [(*where, m) for m in notes if m not in {n for *_, n in setup.notes}]

    def _keywords(self, name: str, value) -> None:
        """`name = {"mesh": mesh, ...}` or `dict(mesh=mesh, ...)`: keywords a fully_shard call may take
        as `**name`."""
        self.options.pop(name, None)
        if isinstance(value, ast.Dict) and all(isinstance(k, ast.Constant) for k in value.keys):
            self.options[name] = {k.value: v for k, v in zip(value.keys, value.values)}
        elif isinstance(value, ast.Call) and _dotted(value.func) == "dict" and not value.args and all(
                k.arg for k in value.keywords):
            self.options[name] = {k.arg: k.value for k in value.keywords}

    def _given(self, call: ast.Call, name: str):
        """A fully_shard keyword as the call gives it: written out, or in a `**dict` of the file, with
        the names its loop computes substituted."""
        node = _keyword(call, name)
        for spread in (k.value for k in call.keywords if k.arg is None and node is None):
            node = self.options.get(getattr(spread, "id", None), {}).get(name)
        return _Substituted(self.bound).visit(copy.deepcopy(node)) if node is not None else None

    def _reshard(self, call: ast.Call, loop_names, notes: list) -> tuple:
        """The call's reshard_after_forward as (value, per_item): True, False, a number of ranks, None where
        not given (FSDP2's default) or not read (noted); or an expression of the loop's variables."""
        node = self._given(call, "reshard_after_forward")
        if node is None or isinstance(node, ast.Constant) and node.value is None:
            return None, ""
        if any(isinstance(n, ast.Name) and n.id in loop_names for n in ast.walk(node)):
            return None, ast.unparse(node)
        value = self.src.evaluate(node, {})
        if not reshard_value(value):
            notes.append(unread_reshard(ast.unparse(node)))
            return None, ""
        return value, ""

    def _transformers_call(self, node, names: tuple) -> bool:
        """Whether `node` calls one of transformers' `names` as the file imports it."""
        if not (isinstance(node, ast.Call) and self.transformers):
            return False
        dotted = _dotted(node.func)
        head, _, last = dotted.rpartition(".")
        return last in names and (head or dotted) in self.transformers

    def _trainer(self, node) -> bool:
        """`Trainer(model=model, args=args, ...)`: the TrainingArguments it is given set up the model."""
        if not self._transformers_call(node, TRAINERS):
            return False
        model = self.model_of(_keyword(node, "model") or (node.args[0] if node.args else None))
        args = _keyword(node, "args") or (node.args[1] if len(node.args) > 1 else None)
        if model is None:
            return True
        setup = self.found.setdefault(model, SetUp())
        where = (node.lineno, node.col_offset)
        if isinstance(args, ast.Name):
            args = self.arguments.get(args.id, args)
        if args is None:
            setup.notes.append((*where, "a Trainer without `args` trains with TrainingArguments' defaults, which "
                                        "gpumem does not read: give --batch-size, --dtype and --optimizer"))
        elif not self._transformers_call(args, TRAINING_ARGUMENTS):
            setup.notes.append((*where, f"the Trainer's args ({ast.unparse(args)}) are no TrainingArguments(...) "
                                        "call of this file: its batch size, precision, optimizer and checkpointing "
                                        "are not read"))
        else:
            _TrainerFlags(self.src, setup).read(args)
        return True

    def record(self, model: str, calls: list) -> None:
        setup = self.found.setdefault(model, SetUp())
        for call in calls:
            what, value = self._step(call)
            where = (call.lineno, call.col_offset)
            if what is None or self.guard is not None and value in (None, "torch.compile", "DataParallel"):
                continue  # nothing, or what changes no figure when an `if` decides it
            if self.guard is not None:
                done, given = (f"cast to {value}", f"--dtype {value}") if what == "dtype" else (
                    "wrapped in DDP", "--strategy ddp")
                setup.notes.append((*where, f"{done} only when the `if` at line {self.guard.lineno} holds: gpumem "
                                            f"does not guess which way it goes; give {given} to analyse that case"))
            elif what == "dtype":
                setup.dtype = value
                if value is None:
                    setup.notes.append((*where, "cast to a dtype gpumem cannot read: give --dtype to analyse it so"))
            elif value not in setup.wrappers:
                setup.wrappers.append(value)
                gpus = _device_count(call) if value == "DataParallel" else 1
                if gpus != 1:
                    over = f"over {gpus} GPUs" if gpus else "over the GPUs it sees, which the code does not count"
                    setup.notes.append((*where, (
                        f"runs in nn.DataParallel {over}: gpumem reports GPU 0 as if alone with the whole batch, "
                        "while each GPU computes its share of the batch, and GPU 0 also gathers the outputs and "
                        "sums the replicas' gradients")))

    def _step(self, call: ast.Call) -> tuple:
        """("dtype", the dtype it casts to, None where it cannot be read), ("wrapper", what wraps the
        model), or (None, None) for a call that only places the model or is no torch wrapper."""
        if _pretrained(call):
            return self._loaded_in(call)
        method = _module_method(call)
        if method in MODULE_CASTS:
            return "dtype", TORCH_DTYPES[method]
        if method == "compile":
            return "wrapper", "torch.compile"
        if method == "to":
            return self._to(call)
        wrapper = None if method else _interpreter().WRAPPERS.get(self.src.path_of(_dotted(call.func)))
        return ("wrapper", wrapper) if wrapper else (None, None)

    def _loaded_in(self, call: ast.Call) -> tuple:
        """transformers' `X.from_pretrained(name, dtype=torch.bfloat16)` (`torch_dtype=`, its older
        name) loads the weights in that dtype; without one, or "auto", in the config's (the
        interpreter reads it)."""
        given = _keyword(call, "dtype") or _keyword(call, "torch_dtype")
        value = self.src.evaluate(given, {}) if given is not None else "auto"
        if value == "auto":
            return None, None
        return "dtype", value if isinstance(value, str) and value in FLOAT_DTYPES else None

    def _to(self, call: ast.Call) -> tuple:
        """`model.to(...)`'s dtype: to(torch.bfloat16), to("cuda", torch.float16), to(dtype=...). A first
        argument gpumem cannot evaluate is taken for the device it usually is."""
        dtype = _keyword(call, "dtype")
        slots = [(a, i > 0) for i, a in enumerate(call.args[:2])] + ([(dtype, True)] if dtype is not None else [])
        for node, dtype_slot in slots:
            value = self.src.evaluate(node, {})
            if isinstance(value, str) and value in FLOAT_DTYPES:
                return "dtype", value
            if value is None and dtype_slot:
                return "dtype", None
        return None, None


class _TrainerFlags:
    """The flags of a `TrainingArguments(...)` call, as the Trainer uses them: the batch per device, the
    accumulation, `bf16`/`fp16` (autocast, as accelerate runs it), `optim`, checkpointing. A flag whose
    value gpumem cannot read, or that names what it does not model, is said (GPM900), never guessed."""

    def __init__(self, src: SourceFile, setup: SetUp):
        self.src = src
        self.setup = setup

    def read(self, call: ast.Call) -> None:
        given, values = {k.arg: k.value for k in call.keywords if k.arg in TRAINER_FLAGS}, {}
        unread = bool(call.args) or any(k.arg is None for k in call.keywords)
        if unread:
            self.note(call, "TrainingArguments given positional or ** arguments: only its literal keywords are "
                            "read (" + ", ".join(TRAINER_FLAGS) + "); the others take the settings' values")
        for flag, node in given.items():
            value = None if isinstance(node, ast.Constant) and node.value is None else self.src.evaluate(node, {})
            if value is None and not (isinstance(node, ast.Constant) and node.value is None):
                self.note(node, f"TrainingArguments' {flag} is given as `{ast.unparse(node)}`, which gpumem cannot "
                                "read: the figures use the settings' value; give it on the command line")
                continue
            values[flag] = value
        for flag in ("per_device_train_batch_size", "gradient_accumulation_steps"):
            if flag not in given and not unread:  # the Trainer's own default, read from its source
                values[flag] = self.default(call, flag)
        counts = {}
        for flag in ("per_device_train_batch_size", "gradient_accumulation_steps"):
            value = values.get(flag)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
                counts[flag] = value
            elif value is not None:
                self.note(given.get(flag, call), f"TrainingArguments' {flag}={value!r} is no count of 1 or more: "
                                                 "the figures use the settings' value")
        dtype = "amp-fp16" if values.get("fp16") is True else "amp-bf16" if values.get("bf16") is True else None
        self.setup.trainer = Settings(batch_size=counts.get("per_device_train_batch_size"),
                                      accumulate=counts.get("gradient_accumulation_steps"), dtype=dtype,
                                      optimizer=self.optimizer(call, values, "optim" in given or unread))
        if values.get("activation_checkpointing", values.get("gradient_checkpointing")):
            kwargs = values.get("activation_checkpointing_kwargs", values.get("gradient_checkpointing_kwargs"))
            if kwargs is None or isinstance(kwargs, dict):
                self.setup.checkpointing = dict(kwargs or {})
            else:
                self.note(call, f"TrainingArguments' checkpointing keywords {kwargs!r} are no dict gpumem reads: "
                                "the figures are without the Trainer's checkpointing")

    def default(self, call: ast.Call, flag: str):
        """A TrainingArguments field's default (`per_device_train_batch_size: int = field(default=8, ...)`),
        read from the installed transformers; None (said) where it is not found."""
        path = self.src.resolver.source("transformers.training_args")
        try:
            tree = ast.parse(path.read_text(encoding="utf-8")) if path is not None else ast.Module([], [])
        except (OSError, SyntaxError, ValueError):
            tree = ast.Module([], [])
        for cls in tree.body:
            for stmt in cls.body if isinstance(cls, ast.ClassDef) and cls.name == "TrainingArguments" else ():
                named = isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id == flag
                default = _keyword(stmt.value, "default") if named and isinstance(stmt.value, ast.Call) else None
                if isinstance(default, ast.Constant):
                    return default.value
        self.note(call, f"TrainingArguments' default {flag} is not found in the installed transformers: "
                        "the figures use the settings' value")
        return None

    def optimizer(self, call: ast.Call, values: dict, given: bool) -> str | None:
        """The optimizer `optim` makes the Trainer build (AdamW when not given: `adamw_torch`, fused on
        PyTorch 2.8 and later); None where gpumem does not model it or cannot read it (said)."""
        optim = values.get("optim") if given else "adamw_torch_fused"
        if optim is None:
            return None
        name = TRAINER_OPTIMIZERS.get(optim)
        if name is None:
            self.note(call, f"TrainingArguments(optim={optim!r}): gpumem does not model that optimizer's state; "
                            "the figures count the optimizer the settings give (adam unless --optimizer says)")
            return None
        options = dict(pair.split("=", 1) for pair in str(values.get("optim_args") or "").replace(" ", "").split(",")
                       if "=" in pair)
        if name == "sgd" and options.get("momentum", "0") not in ("0", "0.0"):
            return "sgd-momentum"  # the Trainer passes it on as float(momentum)
        if name != "sgd" and options:
            self.note(call, f"TrainingArguments' optim_args ({values['optim_args']!r}) for {optim} are not read: "
                            f"the figures count {name}'s state without them")
        return name

    def note(self, node, message: str) -> None:
        self.setup.notes.append((node.lineno, node.col_offset, message))


def _transformers_names(tree: ast.Module) -> set:
    """The names a file binds to transformers' modules or to names imported from them
    (`from transformers import Trainer`, `import transformers`), read from its imports."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").partition(".")[0] == "transformers":
            names.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.asname or a.name for a in node.names if a.name.partition(".")[0] == "transformers")
    return names


def _pretrained(node) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "from_pretrained"


def _device_count(call: ast.Call) -> int | None:
    """How many GPUs `nn.DataParallel(model, device_ids=[0, 1])` runs on; None without a literal list:
    all the GPUs the process sees."""
    ids = _keyword(call, "device_ids") or (call.args[1] if len(call.args) > 1 else None)
    return len(ids.elts) if isinstance(ids, (ast.List, ast.Tuple)) else None


def _example_call(node) -> bool:
    return isinstance(node, ast.Call) and _dotted(node.func).rpartition(".")[2] in EXAMPLE_TENSORS


def _dtype_of(call) -> str | None:
    """int64 for torch.randint/`dtype=torch.long` examples (token ids), else the model's dtype."""
    if not isinstance(call, ast.Call):
        return None
    if _dotted(call.func).endswith("randint"):
        return "int64"
    dtype = _dotted(_keyword(call, "dtype"))
    return {"long": "int64", "int64": "int64", "int": "int32", "int32": "int32"}.get(dtype.rpartition(".")[2])


def inline_settings(line: str, where: str) -> Settings:
    """Settings from a `# gpumem: input_shape=(3, 50, 50) batch_size=64` comment."""
    m = INLINE.search(line)
    if not m:
        return Settings()
    values = {}
    for key, raw in INLINE_PAIR.findall(m.group(1)):
        try:
            values[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            values[key] = raw
    return settings_from(values, where)
