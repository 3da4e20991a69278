"""Reading model source: parse with libcst and find the models and what the file says about them."""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field, replace

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from .config import ConfigError, Settings, settings_from
from .inference import Class, Interpreter, Scope, dotted, module_scope
from .values import AnalysisError

INLINE = re.compile(r"#\s*gpumem:(.*)$")
INLINE_PAIR = re.compile(r"(\w+)\s*=\s*(\([^)]*\)|\[[^\]]*\]|\"[^\"]*\"|'[^']*'|[^\s,]+)")
CONTAINER_CALLS = ("Sequential",)


@dataclass
class ModelDecl:
    """A model the file defines: an nn.Module subclass or a module-level nn.Sequential."""

    name: str
    node: cst.CSTNode
    line: int
    col: int
    inline: Settings = field(default_factory=Settings)
    stated: Settings = field(default_factory=Settings)  # an example input the file itself builds
    is_class: bool = True
    component: bool = False  # instantiated by another model in the file


@dataclass
class SourceFile:
    filename: str
    module: cst.Module
    scope: Scope
    models: list[ModelDecl]
    positions: object  # node -> (line, col) or None
    errors: list  # (line, col, message) for unreadable inline settings


def read_source(source: str, filename: str) -> SourceFile:
    """Parse `source` (raises libcst.ParserSyntaxError on invalid Python)."""
    module = cst.parse_module(source)
    try:
        table = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    except (RecursionError, KeyError) as exc:  # libcst's code generation recurses once per nesting level
        raise RecursionError("source nests too deeply") from exc

    def positions(node):
        try:
            pos = table.get(node)
        except (KeyError, RecursionError):
            return None
        return (pos.start.line, pos.start.column) if pos is not None else None

    scope = module_scope(module)
    lines = source.splitlines()
    probe = Interpreter(scope, positions)
    models, errors = [], []
    for stmt in module.body:
        decl = None
        if isinstance(stmt, cst.ClassDef) and probe.is_module_class(scope.vars[stmt.name.value]):
            decl = ModelDecl(stmt.name.value, stmt, *positions(stmt))
        elif isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 and _is_sequential(
                stmt.body[0], scope):
            target = stmt.body[0].targets[0].target
            decl = ModelDecl(target.value, stmt, *positions(stmt), is_class=False)
        if decl is not None:
            try:
                decl.inline = inline_settings(lines[decl.line - 1], f"{filename}:{decl.line}")
            except ConfigError as exc:
                errors.append((decl.line, 0, str(exc)))
            models.append(decl)
    used = _instantiated_names(module, {m.name for m in models if m.is_class})
    stated = stated_inputs(module, probe, {m.name for m in models})
    optimizer = file_optimizer(module, probe)
    for m in models:
        m.component = m.name in used
        m.stated = replace(stated.get(m.name, Settings()), optimizer=optimizer)
    return SourceFile(filename, module, scope, models, positions, errors)


EXAMPLE_TENSORS = ("randn", "rand", "zeros", "ones", "empty", "randint")
OPTIMIZER_CLASSES = {"SGD": "sgd", "Adam": "adam", "AdamW": "adamw", "RMSprop": "rmsprop", "Adagrad": "adagrad"}


def file_optimizer(module: cst.Module, interp: Interpreter) -> str | None:
    """The optimizer a `torch.optim.X(...)` call in the file builds (Lightning's
    configure_optimizers included): the first one found; SGD with a momentum is sgd-momentum."""
    found = []

    class Calls(cst.CSTVisitor):
        def visit_Call(self, node):
            if found or not dotted(node.func).rsplit(".", 1)[-1] in OPTIMIZER_CLASSES:
                return
            try:
                func = interp.eval(node.func, interp.scope)
            except AnalysisError:
                return
            path = getattr(func, "path", "")
            name = path.rsplit(".", 1)[-1]
            if path.startswith("torch.optim") and name in OPTIMIZER_CLASSES:
                momentum = next((a.value for a in node.args if a.keyword and a.keyword.value == "momentum"), None)
                moving = momentum is not None and not (isinstance(momentum, (cst.Integer, cst.Float))
                                                       and float(momentum.value) == 0)
                found.append("sgd-momentum" if name == "SGD" and moving else OPTIMIZER_CLASSES[name])

    module.visit(Calls())
    return found[0] if found else None


def stated_inputs(module: cst.Module, interp: Interpreter, models: set) -> dict:
    """Input shapes the file states itself: a LightningModule's `self.example_input_array =
    torch.randn(...)`, `model(torch.randn(...))` where `model = Net()`, and torchinfo's
    `summary(model, input_size=...)` (batch included) or torchsummary's (batch excluded)."""
    found: dict = {}
    instances: dict = {}  # variable -> model it holds
    examples: dict = {}  # variable -> shape of the example tensor it holds

    scopes = [interp.scope]  # a method's parameter defaults (in_dim=64) are known values

    def shape_of(node):
        """The full shape of a `torch.randn(2, 3, 32, 32)`-style call, evaluated statically."""
        if not isinstance(node, cst.Call) or dotted(node.func).rsplit(".", 1)[-1] not in EXAMPLE_TENSORS:
            return None
        args = [a.value for a in node.args if a.keyword is None]
        if dotted(node.func).endswith("randint"):
            size = next((a.value for a in node.args if a.keyword and a.keyword.value == "size"),
                        args[2] if len(args) > 2 else None)
            args = [size] if size is not None else []
        try:
            values = [interp.eval(a, scopes[-1]) for a in args]
        except AnalysisError:
            return None
        if len(values) == 1 and isinstance(values[0], (tuple, list)):
            values = list(values[0])
        return tuple(values) if values and all(isinstance(v, int) and v > 0 for v in values) else None

    def model_of(node):
        if isinstance(node, cst.Name):
            return instances.get(node.value) or (node.value if node.value in models else None)
        if isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.func.value in models:
            return node.func.value
        return None

    def record(model, shape, dtype=None, batch_included=True):
        if model and shape and model not in found:
            body = shape[1:] if batch_included else shape
            batch = shape[0] if batch_included else None
            found[model] = Settings(input_shape=body, batch_size=batch, input_dtype=dtype)

    class Finder(cst.CSTVisitor):
        """Variables are per function: `model` in one test is not `model` in the next."""

        def __init__(self, owner=None):
            self.owner = owner
            self.saved = []

        def visit_FunctionDef(self, node):
            self.saved.append((dict(instances), dict(examples)))
            defaults = {}
            for p in node.params.params:
                if p.default is not None:
                    try:
                        defaults[p.name.value] = interp.eval(p.default, interp.scope)
                    except AnalysisError:
                        pass
            scopes.append(Scope(defaults, interp.scope))

        def leave_FunctionDef(self, node):
            scopes.pop()
            old_instances, old_examples = self.saved.pop()
            instances.clear()
            instances.update(old_instances)
            examples.clear()
            examples.update(old_examples)

        def visit_Assign(self, node):
            target = node.targets[0].target
            if isinstance(target, cst.Name):
                if model_of(node.value):
                    instances[target.value] = model_of(node.value)
                elif shape_of(node.value):
                    examples[target.value] = (shape_of(node.value), node.value)
            elif (isinstance(target, cst.Attribute) and target.attr.value == "example_input_array"
                  and self.owner in models):
                record(self.owner, shape_of(node.value), _dtype_of(node.value))

        def visit_Call(self, node):
            args = [a.value for a in node.args]
            if dotted(node.func).rsplit(".", 1)[-1] == "summary" and args:
                size = next((a.value for a in node.args if a.keyword and a.keyword.value == "input_size"),
                            args[1] if len(args) > 1 else None)
                try:
                    value = interp.eval(size, interp.scope) if size is not None else None
                except AnalysisError:
                    value = None
                torchinfo = "torchinfo" in _imported_from(node.func, interp)
                dtypes = next((a.value for a in node.args if a.keyword and a.keyword.value == "dtypes"), None)
                dtype = None
                if isinstance(dtypes, (cst.List, cst.Tuple)) and dtypes.elements:
                    dtype = {"long": "int64", "int64": "int64"}.get(dotted(dtypes.elements[0].value).rsplit(".")[-1])
                if isinstance(value, (tuple, list)) and all(isinstance(v, int) for v in value):
                    record(model_of(args[0]), tuple(value), dtype, batch_included=torchinfo)
            elif len(args) == 1 and model_of(node.func):
                if isinstance(args[0], cst.Name) and args[0].value in examples:
                    shape, call = examples[args[0].value]
                    record(model_of(node.func), shape, _dtype_of(call))
                else:
                    record(model_of(node.func), shape_of(args[0]), _dtype_of(args[0]))

    for stmt in module.body:
        owner = stmt.name.value if isinstance(stmt, cst.ClassDef) else None
        stmt.visit(Finder(owner))
    return found


def _dtype_of(call) -> str | None:
    """int64 for torch.randint/`dtype=torch.long` examples (token ids), else the model's dtype."""
    if not isinstance(call, cst.Call):
        return None
    if dotted(call.func).endswith("randint"):
        return "int64"
    dtype = next((dotted(a.value) for a in call.args if a.keyword and a.keyword.value == "dtype"), "")
    return {"long": "int64", "int64": "int64", "int": "int32", "int32": "int32"}.get(dtype.rsplit(".", 1)[-1])


def _imported_from(func, interp: Interpreter) -> str:
    try:
        value = interp.eval(func, interp.scope)
    except AnalysisError:
        return ""
    return getattr(value, "path", "")


def _is_sequential(small, scope: Scope) -> bool:
    if not (isinstance(small, cst.Assign) and len(small.targets) == 1
            and isinstance(small.targets[0].target, cst.Name) and isinstance(small.value, cst.Call)):
        return False
    name = dotted(small.value.func)
    head, _, last = name.rpartition(".")
    if last not in CONTAINER_CALLS:
        return False
    root = scope.vars.get(head.split(".")[0] if head else last)
    return getattr(root, "path", "").startswith("torch")


def _instantiated_names(module: cst.Module, classes: set) -> set:
    """Model classes another model class calls, e.g. Block(64) inside Net.__init__."""
    used = set()

    class Calls(cst.CSTVisitor):
        def __init__(self, owner):
            self.owner = owner

        def visit_Call(self, node):
            if isinstance(node.func, cst.Name) and node.func.value in classes and node.func.value != self.owner:
                used.add(node.func.value)

    for stmt in module.body:
        if isinstance(stmt, cst.ClassDef) and stmt.name.value in classes:
            stmt.visit(Calls(stmt.name.value))
        elif isinstance(stmt, cst.FunctionDef):
            stmt.visit(Calls(None))
    return used


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


def find_class(source: SourceFile, name: str) -> Class | None:
    value = source.scope.vars.get(name)
    return value if isinstance(value, Class) else None
