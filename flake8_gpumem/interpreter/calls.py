"""Calls: user functions and methods, bound methods of tensors and containers, names reached
through imports, and the builtins gpumem evaluates."""
from __future__ import annotations

import builtins
import collections
import collections.abc
import contextvars
import copy
import importlib.util
import inspect
import itertools
import json
import math
import operator
import re

import libcst as cst

from .. import catalogue, composites
from ..signature import REQUIRED, Param, bind
from ..values import AnalysisError, Tensor, Unresolved
from . import numbers, regex
from .imports import Namespace, followed
from .pretrained import PRETRAINED
from .objects import (AUTOGRAD_APPLY, BUILTINS, CONTAINERS, MAPPING_MIXINS, MAX_DEPTH, MAX_LOOP, MISSING, WRAPPERS,
                      Bound, Buffer, Builtin, Class, Distributed, Field, Function, Instance, Loaded, Module,
                      OrderedDict, Parameter, Partial, Pattern, Q, ReturnValue, Scope, canonical, clone, code,
                      dotted)

SAFE_MATH = ("sqrt", "floor", "ceil", "prod", "log", "log2", "log10", "log1p", "exp", "expm1", "pi", "e", "inf", "gcd",
             "isqrt", "erf", "erfc", "sin", "cos", "tan", "atan", "tanh", "fabs", "trunc", "radians", "degrees",
             "isclose", "isfinite", "pow", "hypot", "comb")
# Calls that change nothing a shape or the memory depends on: initialisation, seeding, logging.
NO_OPS = ("torch.nn.init.", "torch.manual_seed", "torch.random.manual_seed", "warnings.", "logging.",
          "torch._C._log_api_usage_once", "torch._assert", "torch.fx.wrap",
          "torch.utils._pytree.register_pytree_node", "torch._dynamo.mark_static_address")
# Library functions not run, by qualified name, and what they return in an eager training step on
# the machine modelled (PyTorch on a CUDA GPU), not on the machine gpumem runs on: weight
# initialisation writes values in place and sizes nothing (as torch.nn.init's functions, which it
# calls after patching nn.Module); the tracing guards are False, as GUARDS; transformers' probes
# of installed packages (importlib.util.find_spec, package metadata) say PyTorch is there.
# Functions that write a function's or class's docstring and return it: not run
DOCUMENTING = frozenset({"transformers.utils.auto_docstring.auto_docstring",
                         "transformers.models.auto.auto_factory.auto_class_update"})
# Class decorators that add checks of the values a dataclass is given and return the class: not
# run, as they size nothing (huggingface_hub's `@strict` on transformers' configs)
CHECKING = frozenset({"huggingface_hub.dataclasses.strict"})
HF = "transformers.utils.import_utils."
DIFFUSERS = "diffusers.utils.import_utils."
NOT_RUN = {"transformers.modeling_utils.PreTrainedModel.initialize_weights": None,
           # it logs a warning where the batch holds the padding token: a question of the data
           "transformers.modeling_utils.PreTrainedModel.warn_if_padding_and_no_attention_mask": None,
           HF + "is_tracing": False, HF + "is_torch_available": True, HF + "is_torch_flex_attn_available": True,
           HF + "get_torch_version": catalogue.TORCH_VERSION,  # the PyTorch modelled, as torch.__version__
           **{f"{HF}is_torch_{chip}_available": False
              for chip in ("npu", "xpu", "mlu", "hpu", "musa", "neuroncore", "mps")},
           # diffusers' probes; its PEFT backend only rescales LoRA layers, which change no size
           DIFFUSERS + "is_torch_available": True, DIFFUSERS + "is_peft_available": False,
           **{f"{DIFFUSERS}is_torch_{chip}_available": False for chip in ("npu", "xla", "mlu")}}
# Libraries' probes of the installed PyTorch's version, `probe(operation, version)`: answered for the
# PyTorch gpumem models
VERSION_PROBES = (DIFFUSERS + "is_torch_version",)
COMPARISONS = {">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne, "<=": operator.le,
               "<": operator.lt}
# Calls that read weights from a file or the network at run time: a Loaded, never read
LOADS = ("torch.load", "torch.hub.load_state_dict_from_url", "torch.utils.model_zoo.load_url")
# FSDP2's settings objects a training script builds, read as values (the set-up reads them)
DISTRIBUTED = ("MixedPrecisionPolicy", "CPUOffloadPolicy", "OffloadPolicy", "init_device_mesh")
# Guards that are False in an eager training step (on a CUDA GPU: no Apple GPU either).
GUARDS = ("torch.jit.is_scripting", "torch.jit.is_tracing", "torch.compiler.is_compiling",
          "torch._dynamo.is_compiling", "torch.fx._symbolic_trace.is_fx_tracing", "torch.onnx.is_in_onnx_export",
          "torch.cuda.is_current_stream_capturing", "torch.compiler.is_exporting",
          "torch.backends.mps.is_available")
# autograd's recording modes, by name: what each sets (None: its argument says)
GRAD_MODES = {"no_grad": "off", "inference_mode": "inference", "enable_grad": "on", "set_grad_enabled": None}
# a user's torch.autograd.Function subclass derives from one of these
AUTOGRAD_FUNCTIONS = ("torch.autograd.Function", "torch.autograd.function.Function")
# torch.utils.checkpoint's own keywords; the rest go to the function it runs
CHECKPOINT_OPTIONS = ("use_reentrant", "preserve_rng_state", "context_fn", "determinism_check", "debug", "early_stop")
# a parameter's kind (signature.Param) as inspect names it
PARAMETER_KINDS = {"plain": inspect.Parameter.POSITIONAL_OR_KEYWORD, "varargs": inspect.Parameter.VAR_POSITIONAL,
                   "kwonly": inspect.Parameter.KEYWORD_ONLY, "kwargs": inspect.Parameter.VAR_KEYWORD}
# collections.abc / typing names model code checks its arguments against
ABSTRACT = {"Sequence": (list, tuple, range, str), "MutableSequence": list, "List": list, "Tuple": tuple,
            "Mapping": dict, "MutableMapping": dict, "Dict": dict, "Iterable": (list, tuple, dict, set, range, str),
            "Callable": (Function, Class, Builtin, Partial, Bound), "FunctionType": Function, "MethodType": Bound,
            "partial": Partial, "Integral": int, "Real": (int, float), "Number": (int, float, complex)}
# values written in place into a weight (init code) or a tensor outside autograd (a drop-path mask
# `x.new_empty(shape).bernoulli_(keep)`, `(keep + torch.rand(shape)).floor_()`): its memory is unchanged
INIT_METHODS = ("normal_", "uniform_", "zero_", "fill_", "copy_", "trunc_normal_", "exponential_", "bernoulli_",
                "random_", "erfinv_", "log_normal_", "cauchy_", "geometric_", "clamp_", "mul_", "add_", "sub_", "div_",
                "floor_")
# nn.Module's methods that place it on a device: where, the code often decides at run time
PLACING = ("to", "cuda", "cpu")
# operator's functions of two values, as the operators they are
OPERATORS = {"add": cst.Add, "sub": cst.Subtract, "mul": cst.Multiply, "truediv": cst.Divide,
             "floordiv": cst.FloorDivide, "mod": cst.Modulo, "pow": cst.Power}
# x.add_(y) is x += y
INPLACE_BINOPS = {"add_": cst.Add, "sub_": cst.Subtract, "mul_": cst.Multiply, "div_": cst.Divide}
# what `x.unsqueeze_(0)` rebinds: a name, an attribute, an item (an expression's result is gone)
REBOUND = (cst.Name, cst.Attribute, cst.Subscript)


def _asdict(obj):
    """dataclasses.asdict: fields as a dict, nested dataclasses and containers of them too."""
    if isinstance(obj, Instance):
        return {k: _asdict(v) for k, v in obj.attrs.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_asdict(v) for v in obj)
    if isinstance(obj, dict):
        return {k: _asdict(v) for k, v in obj.items()}
    return obj


def _reachable(value, seen: set):
    """The tensors a value keeps alive: inside containers and the attributes of objects (a dataclass
    of intermediates, as x-transformers collects per layer), each object visited once."""
    if isinstance(value, Tensor):
        yield value
        return
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, Instance):
        value = value.attrs
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, (list, tuple)):
        return
    for v in value:
        if isinstance(v, (Tensor, Instance, list, tuple, dict)):
            yield from _reachable(v, seen)


def _nodes(node: cst.CSTNode):
    """Every node under `node`, itself included."""
    todo = [node]
    while todo:
        current = todo.pop()
        todo += current.children
        yield current


class Calls:
    """Dispatches a call on what the callee is."""

    def call(self, func, args: list, kwargs: dict, node):
        self._tick(node)
        if isinstance(func, Module):
            return self.call_module(func, args, kwargs, node)
        if isinstance(func, Function):
            return self.call_function(func, args, kwargs, node)
        if isinstance(func, Bound):
            return self.call_bound(func, args, kwargs, node)
        if isinstance(func, Class):
            return self.instantiate(func, args, kwargs, node)
        if isinstance(func, Q):
            return self.call_q(func.path, args, kwargs, node)
        if isinstance(func, Builtin):
            return self.call_builtin(func, args, kwargs, node)
        if isinstance(func, Partial):
            return self.call(func.func, func.args + list(args), {**func.kwargs, **kwargs}, node)
        if isinstance(func, Instance) and func.cls.method(self, "__call__") is not None:  # a builder object
            return self.call_function(func.cls.method(self, "__call__"), [func] + list(args), kwargs, node)
        what = code(node.func) if isinstance(node, cst.Call) else repr(func)
        raise Unresolved(f"{what} ({type(func).__name__}) is not callable here", node)

    def grad_mode(self, node, scope: Scope) -> str | None:
        """What a `with` item or a decorator does to autograd's recording: "off" (torch.no_grad(),
        set_grad_enabled(False)), "inference" (inference_mode()), "on" (enable_grad()); None for
        anything else."""
        name = dotted(node.func if isinstance(node, cst.Call) else node)
        if name.rpartition(".")[2] not in GRAD_MODES:
            return None
        func = self.eval(node.func if isinstance(node, cst.Call) else node, scope)
        path = canonical(func.path) if isinstance(func, Q) else ""
        short = path.rpartition(".")[2]
        if not path.startswith("torch.") or short not in GRAD_MODES:
            return None
        mode = GRAD_MODES[short]
        if isinstance(node, cst.Call) and short in ("set_grad_enabled", "inference_mode") and node.args:
            value = self.eval(node.args[0].value, scope)  # set_grad_enabled(mode), inference_mode(mode=True)
            if not isinstance(value, bool):
                raise Unresolved(f"{short}() of {value!r}: a bool is needed to know what autograd records", node)
            if short == "set_grad_enabled":
                return "on" if value else "off"
            return mode if value else None
        if mode is None:
            raise Unresolved(f"{short}() needs its mode", node)
        return mode

    def run_in_grad_mode(self, mode: str | None, run):
        """run() with autograd recording as `mode` says (None: as it is)."""
        saved = self.grad_enabled, self.inference
        if mode is not None:
            self.grad_enabled = mode == "on"
            self.inference = self.inference or mode == "inference"
        try:
            return run()
        finally:
            self.grad_enabled, self.inference = saved

    def call_function(self, func: Function, args: list, kwargs: dict, node, as_written: bool = False):
        """`as_written`: its own code, also where registries.py answers for it."""
        if qualified(func) in NOT_RUN:
            return NOT_RUN[qualified(func)]
        if qualified(func) in VERSION_PROBES and len(args) == 2 and args[0] in COMPARISONS:
            return COMPARISONS[args[0]](numbers.version(catalogue.TORCH_VERSION), numbers.version(args[1]))
        if qualified(func) in DOCUMENTING and args:
            return args[0]
        if qualified(func) in PRETRAINED:
            return self.from_pretrained(PRETRAINED[qualified(func)], args, kwargs, node)
        replaced = None if as_written else self.replaced(func)  # a lookup in tables an import fills
        if replaced is not None:
            return replaced(func, args, kwargs, node)
        decorators = getattr(func.node, "decorators", ())
        mode = next((m for m in (self.grad_mode(d.decorator, func.scope) for d in decorators) if m is not None), None)
        if mode is not None:  # @torch.no_grad() def _momentum_update(self): ...
            return self.run_in_grad_mode(mode, lambda: self._call_function(func, args, kwargs, node))
        return self._call_function(func, args, kwargs, node)

    def _call_function(self, func: Function, args: list, kwargs: dict, node):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.depth -= 1
            raise Unresolved(f"calls nest deeper than {MAX_DEPTH} (recursive model or helper?)", node)
        caller_in_foreign, self.in_foreign = self.in_foreign, func.scope.foreign()
        caller_segment, self.segment = self.segment, func.segment or self.segment
        try:
            local = Scope({"__class__": func.owner} if func.owner else {}, func.scope)
            params = self._function_params(func, local)
            local.vars.update(bind(params, args, kwargs, func.name, node))
            if isinstance(func.node, cst.Lambda):
                return self.eval(func.node.body, local)
            generator = func.is_generator
            if generator:
                self.yielded.append([])  # a generator runs to its end: its items, as a list
            try:
                body = func.node.body
                if isinstance(body, cst.IndentedBlock):
                    self.run_block(body.body, local)
                else:  # def f(): return x  on one line
                    for small in body.body:
                        self.run_small(small, local)
            except ReturnValue as ret:
                if not generator:
                    return ret.value
            finally:
                self._hold_locals(local)
                items = self.yielded.pop() if generator else None
            return items
        finally:
            self.depth -= 1
            self.in_foreign, self.segment = caller_in_foreign, caller_segment

    def decorate(self, func: Function | Class):
        """What a `def` or `class` binds: the function or class its decorators return, each read
        like any call, the innermost first (torchvision's `@handle_legacy_interface` turns
        `pretrained=True` into `weights=...`; transformers' `@use_experts_implementation` sets the
        class's `forward`). A decorator of code gpumem does not read (torch.jit.script,
        torch.no_grad(), functools.lru_cache, dataclasses.dataclass) gives it back, as one that
        compiles, caches or sets a mode does, functools.wraps excepted; and so does one whose
        reading stops (timm's `@register_model` looks its caller up in sys.modules): the function
        as written, as a decorator that only registers it returns it."""
        value = func
        for decorator in reversed(func.node.decorators):
            expr = decorator.decorator
            try:
                callee = self.eval(expr.func if type(expr) is cst.Call else expr, func.scope)
                if isinstance(callee, Q) and canonical(callee.path) != "functools.wraps" or qualified(
                        callee) in DOCUMENTING | CHECKING:
                    continue
                if type(expr) is cst.Call:
                    args, kwargs = self._arguments(expr, func.scope)
                    callee = self.call(callee, args, kwargs, expr)
                value = self.call(callee, [value], {}, decorator)
            except AnalysisError:
                return func
        return value

    def signature(self, func: Function) -> inspect.Signature:
        """inspect.signature: the parameters of the function at the end of its functools.wraps chain."""
        func = func.unwrapped
        params = self._function_params(func, Scope({}, func.scope))
        return inspect.Signature([inspect.Parameter(p.name, PARAMETER_KINDS[p.kind], default=(
            inspect.Parameter.empty if p.default is REQUIRED else p.default)) for p in params])

    def _hold_locals(self, local: Scope) -> None:
        """Tensors still bound to a function's variables live until it returns (Python frees them then)."""
        for value in local.vars.values():
            self._hold(value)

    def _hold(self, value) -> None:
        if self.events and isinstance(value, (list, tuple, dict, Tensor, Instance)):
            for t in _reachable(value, set()):
                self.held[t.storage.id] = len(self.events) - 1

    def _function_params(self, func: Function, scope: Scope) -> list:
        ps = func.node.params

        def default(p):
            return REQUIRED if p.default is None else self.eval(p.default, scope.parent)

        params = [Param(p.name.value, default(p)) for p in list(ps.posonly_params) + list(ps.params)]
        if isinstance(ps.star_arg, cst.Param):
            params.append(Param(ps.star_arg.name.value, kind="varargs"))
        params += [Param(p.name.value, default(p), "kwonly") for p in ps.kwonly_params]
        if ps.star_kwarg is not None:
            params.append(Param(ps.star_kwarg.name.value, kind="kwargs"))
        return params

    def call_bound(self, bound: Bound, args: list, kwargs: dict, node):
        obj, func = bound.obj, bound.func
        if isinstance(func, Function):
            return self.call_function(func, [obj] + list(args), kwargs, node)
        if isinstance(obj, Tensor):
            if func == "tolist" and obj.values is not None:
                return numbers.tolist(obj)
            if func == "item" and obj.values is not None and obj.numel == 1:
                return obj.values[0]
            if func in INPLACE_BINOPS and obj.requires_grad and not obj.is_param and len(args) == 1 and not kwargs:
                return self.binop(INPLACE_BINOPS[func], obj, args[0], node, inplace=True)
            if func == "requires_grad_":
                self.set_requires_grad(obj, args[0] if args else kwargs.get("requires_grad", True), node)
                return obj
            if func in INIT_METHODS and (obj.storage.is_param or not obj.requires_grad):
                return obj  # initialisation writes a weight's values, not its size
            op = catalogue.METHODS.get(func)
            if op is None:
                raise Unresolved(f"tensor method .{func}() is not in the catalogue", node)
            return self.apply(op, {}, op.signature, [obj] + list(args), kwargs, node, None, f"Tensor.{func}")
        if isinstance(obj, Module):
            return self._module_method(obj, func, args, kwargs, node)
        if isinstance(obj, (list, dict, set)):
            try:
                return getattr(obj, func)(*args, **kwargs)
            except (TypeError, ValueError, IndexError, KeyError) as exc:
                raise Unresolved(f".{func}() failed: {exc}", node) from None
        raise Unresolved(f"cannot call .{func}() on {type(obj).__name__}", node)

    def call_q(self, path: str, args: list, kwargs: dict, node):
        path = canonical(path)
        name = path.rsplit(".", 1)[-1]
        if path.startswith("torch.nn.") and path.count(".") == 2 and (
                name in catalogue.MODULES or name in CONTAINERS or name in catalogue.LAZY):
            return self.construct(name, catalogue.MODULES.get(name), args, kwargs, node)
        if path.startswith("torch.nn.") and path.count(".") == 2 and name in composites.LAYERS:
            self.anchor = self.where(node)
            return self.instantiate(self.lookup(name, self.torch_scope, node), args, kwargs, node)
        if path in composites.CHECKPOINT_WRAPPERS:  # checkpoint_wrapper(block, context_fn=...)
            self.anchor = self.where(node)
            wrapper = self.lookup(composites.CHECKPOINT_WRAPPERS[path], self.torch_scope, node)
            return self.instantiate(wrapper, args, kwargs, node)
        if path in catalogue.LIBRARY_MODULES:  # einops' Rearrange
            return self.construct(name, catalogue.LIBRARY_MODULES[path], args, kwargs, node)
        if path in catalogue.FUNCTIONS:
            return self.call_function_op(path, catalogue.FUNCTIONS[path], args, kwargs, node)
        if path in ("torch.nn.Parameter", "torch.nn.parameter.Parameter"):
            data = args[0] if args else kwargs.get("data")
            if not isinstance(data, Tensor):
                raise Unresolved("nn.Parameter of something that is not a tensor", node)
            trains = kwargs.get("requires_grad", args[1] if len(args) > 1 else True)
            return Parameter(Tensor(data.shape, self.model_dtype, bool(trains), is_param=True))
        if path == "torch.nn.init._calculate_fan_in_and_fan_out" and isinstance(args[0], Tensor) and args[0].ndim > 1:
            field = math.prod(args[0].shape[2:])  # numbers init code scales by (timm's lecun_normal_)
            return args[0].shape[1] * field, args[0].shape[0] * field
        if path.startswith("operator.") and name in OPERATORS and len(args) == 2 and not kwargs:
            return self.binop(OPERATORS[name], args[0], args[1], node)  # functools.reduce(operator.mul, ...)
        if path == "logging.getLogger":
            return Q("logging.Logger")  # its methods log: no-ops, as logging's functions are
        if path == "functools.reduce" and len(args) in (2, 3):
            items = self.iterate(args[1], node)
            value = args[2] if len(args) == 3 else items.pop(0)
            for item in items:
                value = self.call(args[0], [value, item], {}, node)
            return value
        if path in ("torch.nn.Buffer", "torch.nn.parameter.Buffer") and args and isinstance(args[0], Tensor):
            return Buffer(args[0])
        if path.startswith(NO_OPS) or path in NO_OPS:
            return None
        if path in GUARDS:
            return False
        if path in ("torch.get_default_device", "torch.device"):
            return Q("torch.device")  # where the step runs: placement sizes nothing
        if path == "torch.is_grad_enabled":
            return self.grad_enabled
        if path == "torch.is_autocast_enabled":  # AMP as the settings model it (any device type asked)
            return self.autocast is not None
        if path == "torch.unique" and args and isinstance(args[0], Tensor):
            return numbers.unique(*args, **kwargs)
        if path == "torch.get_default_dtype":
            return "float32"  # PyTorch's, unless code sets another (torch.set_default_dtype is not read)
        if path in LOADS:
            return Loaded(path)
        if path.startswith("torch.distributed.") and name in DISTRIBUTED:
            return Distributed(name, {"size": _mesh_size(args, kwargs)} if name == "init_device_mesh" else kwargs)
        if path == "torch.Generator" or path.startswith("torch.Generator."):
            return Q("torch.Generator")  # a random generator, seeded or not: it sizes nothing
        if path in ("typing.cast", "torch.jit.annotate"):  # (type, value): the value
            return args[1]
        if path in WRAPPERS and args:
            return args[0]  # torch.compile(model), DDP(model, ...): the model, its forward run eagerly
        if path == "torch.utils.checkpoint.checkpoint":
            rest = {k: v for k, v in kwargs.items() if k not in CHECKPOINT_OPTIONS}
            return self.checkpoint_call(lambda: self.call(args[0], list(args[1:]), rest, node), list(args[1:]),
                                        kwargs, node)
        if path == "torch.utils.checkpoint.create_selective_checkpoint_contexts":
            return self.selective_contexts(*args, node=node, **kwargs)
        if path == AUTOGRAD_APPLY:
            return self.custom_function(args[0], list(args[1:]), kwargs, node)
        if path == "torch.utils.checkpoint.checkpoint_sequential":
            return self._checkpoint_sequential(*args, node=node, **kwargs)
        if path == "functools.partial":  # a partial of a partial is flattened, as Python's is
            inner = args[0] if isinstance(args[0], Partial) else Partial(args[0], [], {})
            return Partial(inner.func, inner.args + list(args[1:]), {**inner.kwargs, **kwargs})
        if path == "functools.wraps":  # the wrapper under the wrapped function's name and signature
            return Builtin(lambda f: f.wrapping(args[0]) if isinstance(f, Function) else f, "wraps")
        if path == "inspect.signature" and args and isinstance(args[0], Function):
            return self.signature(args[0])
        if path == "inspect.signature" and args and isinstance(args[0], Bound) and isinstance(args[0].func, Function):
            full = self.signature(args[0].func)  # a bound method: without its first parameter, as Python shows it
            return full.replace(parameters=list(full.parameters.values())[1:])
        if path == "inspect.getsource" and args and isinstance(args[0], Namespace) and self.resolver.source(
                args[0].name):
            return self.resolver.source(args[0].name).read_text(encoding="utf-8")  # transformers looks for decorators
        if path == "dataclasses.field":
            given = [kwargs.get(k) for k in ("default", "default_factory")]  # dataclasses.MISSING: not given
            return Field(*(None if isinstance(v, Q) and v.path == "dataclasses.MISSING" else v for v in given))
        if path in ("packaging.version.parse", "packaging.version.Version") and len(args) == 1:
            return numbers.version(args[0])  # torch_version >= version.parse('2.3'): a code path chosen
        if path == "torch.is_tensor":
            return isinstance(args[0], Tensor)
        if path in ("torch.finfo", "torch.iinfo"):
            return numbers.type_info(name, *args, **kwargs)
        if path.startswith("numpy.") and name in numbers.NUMPY_ARRAYS and (
                name not in ("sin", "cos") or isinstance(args[0], Tensor)):  # an array's sin, not a number's
            args = list(args)
            if name == "cumsum" and isinstance(args[0], (list, tuple)):  # np.cumsum([3, 5]): of that array
                args[0] = self.call_q("torch.tensor", [args[0]], {}, node)
            return self.call_q(*numbers.as_torch(name, args, kwargs), node)
        if path == "torch.from_numpy" and isinstance(args[0], Tensor):
            return args[0]  # an array read as a tensor (as_torch): the same shape and dtype
        if path.startswith("numpy.") and name in numbers.NUMPY:
            return numbers.NUMPY[name](*args, **kwargs)
        if path in ("collections.OrderedDict", "typing.OrderedDict"):
            return OrderedDict(*args, **kwargs)
        if path == "importlib.import_module":
            return self.import_module(*args, node=node, **kwargs)
        if path == "copy.deepcopy":
            return clone(args[0])
        if path == "dataclasses.asdict" and isinstance(args[0], Instance):
            return _asdict(args[0])
        if path == "dataclasses.fields" and isinstance(args[0], (Instance, Class)):
            cls = args[0].cls if isinstance(args[0], Instance) else args[0]
            return [Instance(cls, {"name": name, "default": Q("dataclasses.MISSING") if default is None else
                                   self._field_value(self.eval(default, c.scope))})
                    for c in reversed(self.mro(cls)) for name, default in c.fields()]
        if path == "dataclasses.is_dataclass":
            return isinstance(args[0], (Instance, Class)) and self.dataclass_like(
                args[0].cls if isinstance(args[0], Instance) else args[0])
        if path == "dataclasses.replace" and isinstance(args[0], Instance):
            return Instance(args[0].cls, {**args[0].attrs, **kwargs})
        if path == "os.getenv":
            return args[1] if len(args) > 1 else kwargs.get("default")  # the code's default, not this machine's
        if path == "re.compile" and isinstance(args[0], str) and isinstance(kwargs.get("flags", 0), int):
            return Pattern(*args, **kwargs)
        if path.startswith("re.") and name in regex.FUNCTIONS and all(isinstance(a, (str, int)) for a in args):
            self.steps += regex.bound(name, args, kwargs, node) // regex.STEPS_PER_EVALUATION
            self._tick(node)
            return getattr(re, name)(*args, **kwargs)
        if path == "itertools.cycle":  # bounded: zip(targets, cycle(sources)) takes what it needs
            return itertools.islice(itertools.cycle(self.iterate(args[0], node)), MAX_LOOP + 1)
        if path.startswith("itertools.") and name in ("repeat", "chain", "product", "accumulate", "islice"):
            return self.iterate(getattr(itertools, name)(*args, **kwargs), node)  # bounded like any loop
        if path in ("collections.defaultdict",) and args and isinstance(args[0], Builtin) and isinstance(
                args[0].fn, type):
            return collections.defaultdict(args[0].fn, *args[1:])
        if path == "contextlib.nullcontext":
            return None
        if path == "copy.copy":
            return Instance(args[0].cls, dict(args[0].attrs)) if isinstance(args[0], Instance) else copy.copy(args[0])
        if path == "collections.namedtuple":  # a tuple type with named fields: no user code runs
            return Builtin(collections.namedtuple(*args, **kwargs), "namedtuple")
        if path.startswith("math.") and name in SAFE_MATH:
            value = getattr(math, name)
            return value(*args, **kwargs) if callable(value) else value
        if path == "random.random" and not args:
            return numbers.Draw(node)
        if path == "torch.Size":
            return tuple(args[0]) if args else ()
        if path == "contextvars.ContextVar":  # a value set around a call (transformers' output capture)
            return contextvars.ContextVar(*args, **kwargs)
        if path in ("json.dumps", "json.loads"):  # plain data only (transformers hashes a config's JSON)
            try:
                return getattr(json, name)(*args, **kwargs)
            except (TypeError, ValueError) as exc:
                raise Unresolved(f"{path}() of values gpumem holds no plain data for: {exc}", node) from None
        if followed(path):
            raise Unresolved(f"{path}() is not known to gpumem: no source for module {path.partition('.')[0]} "
                             "on the search path", node)
        raise Unresolved(f"{path}() is not known to gpumem", node)

    def import_module(self, name: str, package: str | None = None, node=None):
        """`importlib.import_module(name, package)`: the module an import statement of that name
        binds, read from its source (transformers' auto classes load their model classes so)."""
        path = importlib.util.resolve_name(name, package)  # the name only: nothing is imported
        if not followed(path):
            return Q(path)
        module = self.resolver.module(path)
        if module is None:
            raise Unresolved(f"importlib.import_module({path!r}): no source for it on the search path", node)
        return module

    def autograd_function(self, cls: Class) -> bool:
        """Whether a class derives from torch.autograd.Function (its `apply` runs its forward)."""
        return any(isinstance(b, Q) and canonical(b.path) in AUTOGRAD_FUNCTIONS for c in self.mro(cls)
                   for b in self.bases(c))

    def custom_function(self, cls: Class, args: list, kwargs: dict, node):
        """`Fn.apply(...)` of a user's torch.autograd.Function. What its forward saves and what its
        backward allocates are its own code's business, read only for gradient checkpointing as
        improved-diffusion writes it: forward runs a function under torch.no_grad() and keeps its
        inputs on ctx, backward runs it again under torch.enable_grad() and takes the gradients with
        torch.autograd.grad. PyTorch's peak is then torch.utils.checkpoint's with use_reentrant=True
        (measured equal), so it is read as that: forward's calls one checkpointed region."""
        forward, backward = cls.method(self, "forward"), cls.method(self, "backward")
        withs = [n for n in _nodes(forward.node) if isinstance(n, cst.With)] if forward else []
        off = [w for w in withs if any(self.grad_mode(i.item, forward.scope) == "off" for i in w.items)]
        if not off or backward is None or not self._recomputes(backward):
            raise Unresolved(f"{cls.name}.apply: a custom torch.autograd.Function; what its forward keeps and "
                             "its backward allocates are not read (only gradient checkpointing is: a function "
                             "run under no_grad in forward, again under enable_grad with torch.autograd.grad "
                             "in backward)", node)
        if self.autocast is not None:
            raise Unresolved(f"{cls.name}.apply under autocast: its backward runs the function again outside "
                             f"autocast, on {self.autocast} activations with float32 weights, which PyTorch "
                             "refuses; give --dtype float32, or use torch.utils.checkpoint, which restores "
                             "autocast", node)
        ctx = Instance(cls, {})
        saved, self.recomputed = self.recomputed, self.recomputed | {id(w) for w in off}
        try:
            return self.checkpointed(lambda: self.call_function(forward, [ctx, *args], kwargs, node), args, True)
        finally:
            self.recomputed = saved

    def _recomputes(self, backward: Function) -> bool:
        """A backward that runs code under torch.enable_grad() and calls torch.autograd.grad."""
        nodes = list(_nodes(backward.node))
        grads = [n for n in nodes if isinstance(n, cst.Call) and dotted(n.func).endswith("autograd.grad")]
        enabled = [i for n in nodes if isinstance(n, cst.With) for i in n.items]
        return any(self.grad_mode(i.item, backward.scope) == "on" for i in enabled) and any(
            isinstance(f, Q) and canonical(f.path) == "torch.autograd.grad"
            for f in (self.eval(g.func, backward.scope) for g in grads))

    def _checkpoint_sequential(self, functions, segments, input, node, use_reentrant=None, **options):
        """checkpoint_sequential: every segment but the last checkpointed, as torch splits them."""
        if isinstance(functions, Module):
            functions = list(functions.children.values())
        size = len(functions) // segments
        end = -1

        def run(start: int, stop: int, x):
            for f in functions[start:stop + 1]:
                x = self.call(f, [x], {}, node)
            return x

        for start in range(0, size * (segments - 1), size):
            end = start + size - 1
            input = self.checkpointed(lambda: run(start, end, input), [input], use_reentrant is True)
        return run(end + 1, len(functions) - 1, input)

    def call_builtin(self, func: Builtin, args: list, kwargs: dict, node):
        name = func.name
        if name == "super":
            raise Unresolved("super() is understood only as super().method(...)", node)
        if name == "print":
            return None
        if name == "setattr":
            self.setattr(args[0], args[1], args[2], node)
            return None
        if name in ("getattr", "hasattr"):
            try:
                value = self.getattr(args[0], args[1], node)
            except AnalysisError:
                if name == "hasattr":
                    return False
                if len(args) > 2:
                    return args[2]
                raise
            return True if name == "hasattr" else value
        if name in ("hash", "id") and len(args) == 1:  # an object's own __hash__ where its class has one
            method = args[0].cls.method(self, "__hash__") if name == "hash" and isinstance(args[0], Instance) else None
            return self.call_function(method, args, {}, node) if method else getattr(builtins, name)(args[0])
        if name == "type" and len(args) == 1 and isinstance(args[0], (Instance, Module)) and args[0].cls is not None:
            return args[0].cls  # an object of a class gpumem reads (a weights enum's member, a model)
        if name == "type" and len(args) == 1 and isinstance(args[0], Tensor):
            return Q("torch.Tensor")
        if name == "type" and len(args) == 1 and type(args[0]).__name__ in BUILTINS:
            return BUILTINS[type(args[0]).__name__]  # `type(obj) is str`
        if name == "type":
            raise Unresolved("type() of a value is not known statically", node)
        if name == "isinstance":
            return self._isinstance(args[0], args[1], node)
        if name == "dir" and args and isinstance(args[0], Q):  # 'silu' in dir(torch.nn.functional)
            prefix = canonical(args[0].path) + "."
            return sorted({p[len(prefix):] for p in catalogue.FUNCTIONS if p.startswith(prefix)} | (
                set(catalogue.MODULES) | set(CONTAINERS) if prefix == "torch.nn." else set()))
        if name == "issubclass":
            kinds = args[1] if isinstance(args[1], tuple) else (args[1],)
            return any(self._subclass(args[0], k) for k in kinds)
        if name == "callable":
            return isinstance(args[0], ABSTRACT["Callable"] + (Q, Module))
        if name == "len" and args and isinstance(args[0], Instance) and args[0].cls.method(self, "__len__"):
            return self.call_function(args[0].cls.method(self, "__len__"), [args[0]], {}, node)
        if name == "len" and args and isinstance(args[0], Module):
            return len(args[0].children)
        if name == "len" and args and isinstance(args[0], Tensor):
            return args[0].shape[0]
        if name in ("list", "tuple", "enumerate", "zip", "reversed", "sorted", "sum", "min", "max", "map",
                    "filter", "any", "all", "dict", "set", "iter") and args:
            first = 1 if name in ("map", "filter") else 0  # the iterables: modules and objects iterate as read
            args = args[:first] + [a.items if name == "dict" and isinstance(a, Instance) and self.dict_based(a.cls)
                                   else self.iterate(a, node) if isinstance(a, (Module, Instance)) else a
                                   for a in args[first:]]  # dict(a_dict_subclass): its items
        if name in ("map", "filter"):
            fn = args[0]
            items = [self.iterate(a, node) for a in args[1:]]
            if name == "map":
                return [self.call(fn, list(vals), {}, node) for vals in zip(*items)]
            return [v for v in items[0] if (self.truth(self.call(fn, [v], {}, node), node) if fn else v)]
        if name == "iter":  # an iterator over the items, consumed by next() as Python's is
            return iter(self.iterate(args[0], node))
        if name == "next":  # of an iterator, or of a generator expression (gpumem evaluates it to its list)
            items = args[0] if isinstance(args[0], collections.abc.Iterator) else iter(self.iterate(args[0], node))
            item = next(items, *args[1:2]) if len(args) > 1 else next(items, MISSING)
            if item is MISSING:
                raise Unresolved("next() of an empty iterator raises StopIteration", node)
            return item
        if name == "range":
            r = range(*args)
            if len(r) > MAX_LOOP:
                raise Unresolved(f"range of {len(r)} is more than the {MAX_LOOP} unrolled", node)
            return r
        if name == "pow":
            return self.binop(cst.Power, args[0], args[1], node)
        if name in ("int", "float", "bool") and args and isinstance(args[0], Tensor):
            if args[0].values is None or args[0].numel != 1:
                raise Unresolved(f"{name}() of a tensor whose value depends on the data", node)
            args = [args[0].values[0]]  # int(offsets[-1]): the one value of a small known tensor
        try:
            result = func.fn(*args, **kwargs)
        except (TypeError, ValueError, ZeroDivisionError, OverflowError) as exc:
            raise Unresolved(f"{name}() failed: {exc}", node) from None
        return list(result) if name in ("enumerate", "zip", "reversed") else result

    def _isinstance(self, obj, kinds, node) -> bool:
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        for k in kinds:
            if isinstance(k, Q) and isinstance(obj, Module):
                name = canonical(k.path).rsplit(".", 1)[-1]
                if name == obj.kind or name == "Module":
                    return True
            elif isinstance(k, Class) and isinstance(obj, (Module, Instance)) and obj.cls is not None and (
                    k in self.mro(obj.cls)):
                return True
            elif isinstance(k, Q) and k.path.rpartition(".")[2] in ABSTRACT and not isinstance(obj, (Module, Tensor)):
                if isinstance(obj, ABSTRACT[k.path.rpartition(".")[2]]):
                    return True
            elif isinstance(k, Builtin) and k.name == "type" and isinstance(obj, (Class, Q)):
                return True  # a class, ours or torch's
            elif isinstance(k, Builtin) and isinstance(k.fn, type) and not isinstance(obj, (Module, Tensor)):
                if isinstance(obj, k.fn):
                    return True
            elif isinstance(k, Q) and isinstance(obj, Tensor) and k.path == "torch.Tensor":
                return True
        return False

    def _subclass(self, cls, kind) -> bool:
        """issubclass for classes gpumem reads and torch's classes (named)."""
        if isinstance(cls, Q):
            return isinstance(kind, Q) and canonical(kind.path) == canonical(cls.path)
        if not isinstance(cls, Class):
            return False
        if isinstance(kind, Class):
            return kind in self.mro(cls)
        if isinstance(kind, Q) and canonical(kind.path) == "torch.nn.Module":
            return self.is_module_class(cls)
        return any(self._subclass(b, kind) for c in self.mro(cls) for b in self.bases(c) if isinstance(b, Q))

    def _eval_call(self, node: cst.Call, scope: Scope):
        func_node = node.func
        # super().__init__(...) and Base.__init__(self, ...): run the base class constructor.
        if isinstance(func_node, cst.Attribute) and isinstance(func_node.value, cst.Call) and dotted(
                func_node.value.func) == "super":
            return self._super_call(func_node.attr.value, node, scope)
        if isinstance(func_node, cst.Name) and func_node.value == "locals" and not node.args:
            return dict(scope.vars)  # a snapshot of the function's variables (timm's NesT checks its arguments)
        func = self.eval(func_node, scope)
        args, kwargs = self._arguments(node, scope, _placing_from(func))
        if not self.in_foreign:
            saved, self.anchor = self.anchor, (self.segment, node)
            try:
                result = self.call(func, args, kwargs, node)
            finally:
                self.anchor = saved
        else:
            result = self.call(func, args, kwargs, node)
        if isinstance(func, Bound) and isinstance(func.obj, Tensor) and (
                getattr(catalogue.METHODS.get(func.func), "rebinds", False)):
            self._rebind(func_node.value, result, scope)
        return result

    def _rebind(self, receiver, result: Tensor, scope: Scope) -> None:
        """x.unsqueeze_(0), x.relu_().t_(): x has the new shape from here on. A method ending in `_`
        returns the tensor it was called on, so the name is found below a chain of them."""
        while type(receiver) is cst.Call and type(receiver.func) is cst.Attribute and (
                receiver.func.attr.value.endswith("_")):
            receiver = receiver.func.value
        if type(receiver) in REBOUND:
            self.assign(receiver, result, scope)

    def _arguments(self, node: cst.Call, scope: Scope, placing: int | None = None) -> tuple[list, dict]:
        """A call's positional and keyword arguments, `*` and `**` unpacked. From positional argument
        `placing` on (keywords too), an argument that cannot be known is None: see _placing_from."""
        args, kwargs = [], {}
        for i, arg in enumerate(node.args):
            try:
                value = self.eval(arg.value, scope)
            except Unresolved:
                if placing is None or arg.star or (arg.keyword is None and i < placing):
                    raise
                value = None
            if arg.star == "*":
                args.extend(self.iterate(value, arg.value))
            elif arg.star == "**":
                if self.mapping(value) is None:
                    raise Unresolved("** of something that is not a dict", arg)
                kwargs.update(self.mapping(value))
            elif arg.keyword is not None:
                kwargs[arg.keyword.value] = value
            else:
                args.append(value)
        return args, kwargs

    def _super_call(self, method: str, node: cst.Call, scope: Scope):
        if "self" not in scope.vars and "cls" in scope.vars:  # a classmethod's: the class comes first
            return self._super_class_call(method, node, scope)
        self_obj = self.lookup("self", scope, node)
        if not isinstance(self_obj, (Module, Instance)) or self_obj.cls is None:
            return None
        args, kwargs = self._arguments(node, scope)
        owner = self._owner_class(scope)
        for base in self.bases(owner or self_obj.cls):
            if isinstance(base, Class):
                if method == "__init__" and self.dataclass_like(base) and base.method(self, "__init__") is None:
                    return self.init_fields(self_obj, base, args, kwargs, node)
                found = base.method(self, method)
                if found is not None:
                    return self.call_function(found, [self_obj] + args, kwargs, node)
        if method == "__init__" and isinstance(self_obj, Module):
            return self.init_torch_base(self_obj, args, kwargs, node)  # nn.Module.__init__, nn.Sequential's ...
        if method == "forward" and isinstance(self_obj, Module) and self_obj.op is not None:  # a layer's own forward
            op = self_obj.op
            return self.apply(op, dict(self_obj.args), op.forward, args, kwargs, node, self_obj, self_obj.kind)
        if method == "__setattr__" and isinstance(self_obj, Instance) and len(args) == 2:
            return self.setattr(self_obj, *args, node, hooks=False)  # object.__setattr__
        if method in MAPPING_MIXINS and isinstance(self_obj, Instance) and self.as_mapping(self_obj, node) is not None:
            return getattr(self.as_mapping(self_obj, node), method)(*args, **kwargs)  # Mapping.get of a registry
        if method in DICT_METHODS and isinstance(self_obj, Instance) and self.dict_based(self_obj.cls):
            return getattr(self_obj.items, method)(*args, **kwargs)
        if method == "__init__" and isinstance(self_obj, Instance) and self.dict_based(self_obj.cls):
            return self_obj.items.update(*args, **kwargs)  # dict.__init__ (diffusers' FrozenDict)
        if method == "__getattribute__" and isinstance(self_obj, Instance) and len(args) == 1:
            return self.getattr(self_obj, args[0], node, hooks=False)
        return None

    def _super_class_call(self, method: str, node: cst.Call, scope: Scope):
        """`super().from_pretrained(...)` in a classmethod (transformers' auto classes)."""
        cls = self.lookup("cls", scope, node)
        args, kwargs = self._arguments(node, scope)
        for base in self.bases(self._owner_class(scope) or cls) if isinstance(cls, Class) else ():
            found = base.method(self, method) if isinstance(base, Class) else None
            if found is not None:
                return self.call_function(found, [cls] + args, kwargs, node)
        return None

    def _owner_class(self, scope: Scope) -> Class | None:
        """The class whose method is running: the innermost function scope's defining class."""
        s = scope
        while s is not None:
            owner = s.vars.get("__class__")
            if owner is not None:
                return owner
            s = s.parent
        return None


DICT_METHODS = ("__setitem__", "__getitem__", "get", "__contains__", "keys", "items", "values", "pop")


def qualified(func) -> str | None:
    """`module.Class.method` of a function gpumem reads from an imported file, for the tables above."""
    file = func.scope.root().file if isinstance(func, Function) else None
    return f"{file.module}.{func.name}" if file is not None else None


def _placing_from(func) -> int | None:
    """Where a call's arguments stop sizing anything: `model.to(device)` and DDP's `device_ids=[rank]`
    place the model, on a device the code often picks at run time (`torch.cuda.is_available()`, an
    environment variable): no reason to stop. A dtype among them is read where it can be."""
    if isinstance(func, Bound) and isinstance(func.obj, Module) and func.func in PLACING:
        return 0
    if isinstance(func, Q) and canonical(func.path) in WRAPPERS:
        return 1
    return None


def _mesh_size(args: list, kwargs: dict) -> int | None:
    """The ranks of `init_device_mesh(device_type, mesh_shape)` where its shape is written in numbers."""
    shape = kwargs.get("mesh_shape", args[1] if len(args) > 1 else None)
    if isinstance(shape, (tuple, list)) and shape and all(isinstance(n, int) for n in shape):
        return math.prod(shape)
    return None
