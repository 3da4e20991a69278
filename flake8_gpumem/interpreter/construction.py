"""nn.Module construction: catalogue layers, containers, user classes, registration of
children and parameters, and calling a module."""
from __future__ import annotations

import copy

from .. import catalogue
from ..signature import bind
from ..values import AnalysisError, ShapeError, Tensor, Unresolved, tensors_in
from .objects import CONTAINERS, LAZY_PENDING, MODULE_BASES, Bound, Class, Event, Module, Parameter, Q, canonical
from .tensors import _bad_sizes, _params
from ..catalogue import Args, Op


class Construction:
    """Builds the module tree in __init__ and dispatches module calls in forward."""

    def setattr(self, obj, name: str, value, node) -> None:
        if not isinstance(obj, Module):
            raise Unresolved(f"cannot set attribute '{name}' on {type(obj).__name__}", node)
        self.register(obj, name, value, node)

    def register(self, obj: Module, name: str, value, node) -> None:
        """Attribute assignment with nn.Module's rules: modules and parameters are registered."""
        obj.children.pop(name, None) if not isinstance(value, Module) else None
        if isinstance(value, Module):
            obj.attrs.pop(name, None)
            obj.children[name] = value
        elif isinstance(value, Parameter):
            obj.params.append(value.tensor.shape)
            obj.attrs[name] = value.tensor
        else:
            obj.attrs[name] = value

    def construct(self, kind: str, op: Op | None, args: list, kwargs: dict, node) -> Module:
        """A catalogue layer or container from its constructor call."""
        if kind in CONTAINERS:
            return self._container(kind, args, kwargs, node)
        lazy = catalogue.LAZY.get(kind)
        if lazy is not None:  # LazyLinear(10): Linear(<from the first input>, 10)
            kind, op = lazy[0], catalogue.MODULES[lazy[0]]
            args = [LAZY_PENDING] + list(args)
        bound = Args(bind(_params(op.signature), args, kwargs, f"nn.{kind}", node))
        module = Module(kind, node, op=op, args=bound, lazy=lazy, segment=self.segment)
        if lazy is None:
            self._materialize(module, node)
        return module

    def _materialize(self, module: Module, node) -> None:
        """Parameters and buffers from the constructor arguments (a lazy layer's once its input is known)."""
        try:
            module.params = [tuple(s) for s in module.op.params(module.args)]
            module.buffers = list(module.op.buffers(module.args))
        except AnalysisError as exc:
            exc.node = exc.node or node
            raise
        except (TypeError, ValueError, ZeroDivisionError) as exc:
            raise Unresolved(f"nn.{module.kind} arguments cannot be used: {exc}", node) from None
        for shape in module.params + [t.shape for t in module.buffers]:
            bad = _bad_sizes(shape)
            if bad:  # PyTorch refuses to build such a layer
                named = ", ".join(f"{k}={v!r}" for k, v in module.args.items() if any(v is b for b in bad))
                what = f"nn.{module.kind}({named})" if named else (
                    f"nn.{module.kind} would hold a parameter of shape {catalogue.fmt(shape)}")
                raise ShapeError(f"{what}: a size must be a whole number, 0 or more", node)

    def _container(self, kind: str, args: list, kwargs: dict, node) -> Module:
        module = Module(kind, node, container=kind, segment=self.segment)
        if kind == "Sequential":
            if len(args) == 1 and isinstance(args[0], dict):
                for key, child in args[0].items():
                    self._add_child(module, str(key), child, node)
            else:
                for i, child in enumerate(args):
                    self._add_child(module, str(i), child, node)
        else:
            items = args[0] if args else kwargs.get("modules", kwargs.get("dict"))
            if items is None:
                return module
            if kind == "ModuleDict":
                pairs = items.items() if isinstance(items, dict) else items
                for key, child in pairs:
                    self._add_child(module, str(key), child, node)
            else:
                for child in self.iterate(items, node):
                    self._add_child(module, str(len(module.children)), child, node)
        return module

    def _add_child(self, module: Module, name: str, child, node) -> None:
        if not isinstance(child, Module):
            raise Unresolved(f"nn.{module.kind} holds {type(child).__name__}, not a module", node)
        module.children[name] = child

    def instantiate(self, cls: Class, args: list, kwargs: dict, node) -> Module:
        if not self.is_module_class(cls):
            raise Unresolved(f"'{cls.name}' is not an nn.Module", node)
        module = Module(cls.name, node, cls=cls, segment=self.segment)
        init = cls.method(self, "__init__")
        if init is not None:
            self.call_function(init, [module] + list(args), kwargs, node)
        return module

    def bases(self, cls: Class) -> list:
        out = []
        for arg in cls.node.bases:
            try:
                out.append(self.eval(arg.value, cls.scope))
            except AnalysisError:
                out.append(None)
        return out

    def is_module_class(self, cls: Class, seen=None) -> bool:
        seen = seen or set()
        if id(cls) in seen:
            return False
        seen.add(id(cls))
        for base in self.bases(cls):
            if isinstance(base, Q) and canonical(base.path) in MODULE_BASES:
                return True
            if isinstance(base, Class) and self.is_module_class(base, seen):
                return True
        return False

    def call_module(self, module: Module, args: list, kwargs: dict, node):
        if self.stack:
            self.stack[-1][1] = True
        self.stack.append([module, False])
        try:
            if module.container == "Sequential":
                if len(args) != 1 or kwargs:
                    raise Unresolved("nn.Sequential takes exactly one input", node)
                x = args[0]
                for child in module.children.values():
                    x = self.call(child, [x], {}, node)
                return x
            if module.container:
                raise Unresolved(f"nn.{module.container} is not callable", node)
            if module.op is not None:
                if module.lazy is not None and module.args[module.lazy[1]] is LAZY_PENDING:
                    x = next(tensors_in(args), None)
                    if x is None or x.ndim <= abs(module.lazy[2]) - (module.lazy[2] < 0):
                        raise Unresolved(f"Lazy{module.kind} cannot infer {module.lazy[1]} from its input", node)
                    module.args[module.lazy[1]] = x.shape[module.lazy[2]]
                    self._materialize(module, module.node)
                return self.apply(module.op, dict(module.args), module.op.forward, args, kwargs, node, module,
                                  module.kind)
            forward = module.cls.method(self, "forward")
            if forward is None:
                raise Unresolved(f"{module.kind} has no forward method", module.cls.node)
            first = len(self.events)
            out = self.call_function(forward, [module] + list(args), kwargs, node)
            if not self.stack[-1][1]:  # a custom module that calls no other module is a leaf too
                for ev in self.events[first:]:
                    ev.folded = True
                self.events.append(Event(module, module.kind, node, list(tensors_in(args)), out, [], [], [],
                                         leaf=False, where=self.where(module.node, module)))
            return out
        finally:
            self.stack.pop()

    def _module_method(self, obj: Module, name: str, args: list, kwargs: dict, node):
        if name in ("append", "add_module", "register_module", "extend", "insert", "register_buffer",
                    "register_parameter", "update"):
            if name == "append":
                self._add_child(obj, str(len(obj.children)), args[0], node)
                return obj
            if name == "extend":
                for child in self.iterate(args[0], node):
                    self._add_child(obj, str(len(obj.children)), child, node)
                return obj
            if name == "update":
                for key, child in (args[0].items() if isinstance(args[0], dict) else args[0]):
                    self._add_child(obj, str(key), child, node)
                return None
            if name == "insert":
                items = list(obj.children.values())
                items.insert(args[0], args[1])
                obj.children = {str(i): m for i, m in enumerate(items)}
                return None
            if name == "register_buffer":
                if isinstance(args[1], Tensor):
                    obj.buffers.append(args[1])
                obj.attrs[args[0]] = args[1]
                return None
            self.register(obj, str(args[0]), args[1], node)
            return None
        if name in ("items", "keys", "values") and obj.container == "ModuleDict":
            return list(getattr(obj.children, name)())
        if name in ("modules", "children", "named_modules", "parameters", "named_parameters", "apply",
                    "to", "cuda", "cpu", "train", "eval", "float", "half", "double", "requires_grad_",
                    "zero_grad", "reset_parameters", "_reset_parameters", "init_weights"):
            return None if name not in ("to", "cuda", "cpu", "train", "eval", "float", "half", "double") else obj
        raise Unresolved(f"cannot call {obj.kind}.{name}() statically", node)

    def _module_attr(self, obj: Module, name: str, node):
        if name in obj.children:
            return obj.children[name]
        if name in obj.attrs:
            value = obj.attrs[name]
            if isinstance(value, Unresolved):
                raise Unresolved(value.message, node)
            return value
        if name == "training":
            return True
        if obj.cls is not None:
            method = obj.cls.method(self, name)
            if method is not None:
                return Bound(obj, method)
            for cls in [obj.cls] + [b for b in self.bases(obj.cls) if isinstance(b, Class)]:
                try:
                    return self.getattr(cls, name, node)
                except AnalysisError:
                    continue
        if obj.op is not None and name in ("weight", "bias"):
            idx = 0 if name == "weight" else 1
            if idx >= len(obj.params):
                return None  # bias=False
            key = (id(obj), name)
            if key not in self.param_tensors:  # one tensor per weight, so its gradient is counted once
                self.param_tensors[key] = Tensor(obj.params[idx], self.model_dtype, True, is_param=True)
            return self.param_tensors[key]
        if obj.args is not None and name in obj.args:  # e.g. conv.out_channels
            return obj.args[name]
        return Bound(obj, name)


def _clone(module):
    """copy.deepcopy of a module: fresh Module objects, shared structure copied."""
    if not isinstance(module, Module):
        return copy.copy(module)
    memo = {}

    def clone(m: Module) -> Module:
        if id(m) in memo:
            return memo[id(m)]
        new = copy.copy(m)
        memo[id(m)] = new
        new.children = {k: clone(c) for k, c in m.children.items()}
        new.attrs = {k: (clone(v) if isinstance(v, Module) else
                         Tensor(v.shape, v.dtype, True, is_param=True) if isinstance(v, Tensor) and v.is_param
                         else v) for k, v in m.attrs.items()}
        new.params, new.buffers = list(m.params), list(m.buffers)
        return new

    return clone(module)
