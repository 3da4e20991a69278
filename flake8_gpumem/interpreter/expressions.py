"""Expressions: literals, operators, attributes, subscripts, comprehensions, f-strings."""
from __future__ import annotations

import ast
import contextvars
import inspect
import math
import operator
import re
import sys
import types

import libcst as cst

from .. import catalogue
from ..values import (COMPLEX_DTYPES, DTYPE_BYTES, FLOAT_DTYPES, TORCH_DTYPES, AnalysisError, Raised, Tensor,
                      Unresolved)
from . import numbers, regex
from .imports import Namespace
from .objects import (AUTOGRAD_APPLY, MAPPING_MIXINS, MAX_INT_BITS, MAX_LOOP, MAX_STEPS, MISSING, Bound, Builtin,
                      Class, Function, Instance, Module, OrderedDict, Partial, Pattern, Q, Scope, BreakLoop,
                      ContinueLoop, ReturnValue, code)

WIDE_FORMAT = re.compile(r"[%:.][-+ #0<>^=,_]*\d{5,}")  # '%0999999999d': a width of 10,000+ characters
# methods of numbers, strings and tuples that compute a value from it (no string longer than its parts)
VALUE_METHODS = ("real", "upper", "lower", "format", "join", "startswith", "endswith", "split", "rsplit", "index",
                 "count", "replace", "strip", "lstrip", "rstrip", "partition", "rpartition", "isdigit", "is_integer",
                 "removeprefix", "removesuffix", "title", "capitalize", "find", "zfill")
LIST_METHODS = ("tolist", "append", "extend", "insert", "pop", "index", "count", "copy", "reverse",
                "items", "keys", "values", "get", "update", "setdefault")
SET_METHODS = ("add", "update", "discard", "remove", "union", "intersection", "difference", "copy", "issubset")

# what code reads of an inspect.Parameter (kwonly_to_pos_or_kw: `param.kind == param.KEYWORD_ONLY`)
INSPECTED = ("name", "kind", "default", "annotation", "empty", "POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD",
             "VAR_POSITIONAL", "KEYWORD_ONLY", "VAR_KEYWORD")

BINOPS = {
    cst.Add: operator.add, cst.Subtract: operator.sub, cst.Multiply: operator.mul, cst.Divide: operator.truediv,
    cst.FloorDivide: operator.floordiv, cst.Modulo: operator.mod, cst.Power: operator.pow,
    cst.MatrixMultiply: operator.matmul, cst.BitOr: operator.or_, cst.BitAnd: operator.and_,
    cst.BitXor: operator.xor, cst.LeftShift: operator.lshift, cst.RightShift: operator.rshift,
}


TENSOR_BINOPS = {cst.Add: ("add", "+", "torch.add"), cst.Subtract: ("sub", "-", "torch.sub"),
                 cst.Multiply: ("mul", "*", "torch.mul"), cst.Divide: ("div", "/", "torch.div"),
                 cst.MatrixMultiply: ("matmul", "@", "torch.matmul"), cst.Power: ("pow", "**", "torch.pow"),
                 cst.BitAnd: ("bitwise_and", "&", "torch.bitwise_and"),
                 cst.BitOr: ("bitwise_or", "|", "torch.bitwise_or"),
                 cst.FloorDivide: ("floor_divide", "//", "torch.floor_divide"),
                 cst.Modulo: ("remainder", "%", "torch.remainder"),
                 cst.LeftShift: ("bitwise_left_shift", "<<", "torch.bitwise_left_shift"),
                 cst.RightShift: ("bitwise_right_shift", ">>", "torch.bitwise_right_shift")}
# x > 0: the catalogue entry of a tensor comparison
TENSOR_COMPARE = {cst.Equal: "torch.eq", cst.NotEqual: "torch.ne", cst.LessThan: "torch.lt",
                  cst.LessThanEqual: "torch.le", cst.GreaterThan: "torch.gt", cst.GreaterThanEqual: "torch.ge"}


COMPARE = {
    cst.Equal: operator.eq, cst.NotEqual: operator.ne, cst.LessThan: operator.lt, cst.LessThanEqual: operator.le,
    cst.GreaterThan: operator.gt, cst.GreaterThanEqual: operator.ge, cst.Is: operator.is_,
    cst.IsNot: operator.is_not, cst.In: lambda a, b: a in b, cst.NotIn: lambda a, b: a not in b,
}


class Expressions:
    """Evaluates an expression node in a scope, dispatched on the node's exact type."""

    def eval(self, node, scope: Scope):
        """The value of an expression node; the interpreter's hottest path (a million calls on a
        model zoo), so the step count and the dispatch are inline."""
        self.steps += 1
        if self.steps > MAX_STEPS:
            self._tick(node)
        handler = _EVAL.get(type(node))  # by exact type: isinstance on libcst's ABC-based nodes is slow
        if handler is None:
            raise Unresolved(f"unsupported expression {code(node)[:60]}", node)
        try:
            return handler(self, node, scope)
        except (AnalysisError, ReturnValue, BreakLoop, ContinueLoop):
            raise
        except RecursionError:
            raise Unresolved("an expression nests too deeply for gpumem", None) from None
        except Exception as exc:  # any Python-level failure of an evaluated value
            raise Unresolved(f"cannot evaluate {code(node)[:80]}: {exc or type(exc).__name__}", node) from None

    def _boolean(self, node: cst.BooleanOperation, scope: Scope):
        left = self.eval(node.left, scope)
        if isinstance(node.operator, cst.And):
            return self.eval(node.right, scope) if self.truth(left, node) else left
        return left if self.truth(left, node) else self.eval(node.right, scope)

    def _ifexp(self, node: cst.IfExp, scope: Scope):
        test = self.truth(self.eval(node.test, scope), node.test)
        return self.eval(node.body if test else node.orelse, scope)

    def _sequence(self, node, scope: Scope):
        items = []
        for e in node.elements:
            value = self.eval(e.value, scope)
            items.extend(self.iterate(value, e) if isinstance(e, cst.StarredElement) else [value])
        return tuple(items) if isinstance(node, cst.Tuple) else (list(items) if isinstance(node, cst.List)
                                                                 else set(items))

    def _dict(self, node: cst.Dict, scope: Scope):
        out = {}
        for e in node.elements:
            if isinstance(e, cst.StarredDictElement):
                value = self.eval(e.value, scope)
                out.update(value if self.mapping(value) is None else self.mapping(value))
            else:
                out[self.eval(e.key, scope)] = self.eval(e.value, scope)
        return out

    def _listcomp(self, node, scope: Scope):
        items = []
        self._comprehend(node.for_in, Scope({}, scope), lambda s: items.append(self.eval(node.elt, s)))
        return set(items) if isinstance(node, cst.SetComp) else items

    def _dictcomp(self, node: cst.DictComp, scope: Scope):
        out = {}
        self._comprehend(node.for_in, Scope({}, scope),
                         lambda s: out.__setitem__(self.eval(node.key, s), self.eval(node.value, s)))
        return out

    def _fstring(self, node: cst.FormattedString, scope: Scope) -> str:
        out = []
        for part in node.parts:
            if isinstance(part, cst.FormattedStringText):
                out.append(part.value)
            else:
                value = self.eval(part.expression, scope)
                if isinstance(value, Instance) and "_name_" in value.attrs and not any(
                        value.cls.method(self, m) for m in ("__str__", "__format__")):
                    value = f"{value.cls.name}.{value.attrs['_name_']}"  # an Enum member, as Enum.__str__
                if not _constant(value):
                    raise Unresolved("an f-string of a non-constant value", node)
                out.append(str(value))
        return "".join(out)

    def _comprehend(self, comp: cst.CompFor, scope: Scope, emit) -> None:
        for item in self.iterate(self.eval(comp.iter, scope), comp.iter):
            self._tick(comp)
            self.assign(comp.target, item, scope)
            if all(self.truth(self.eval(c.test, scope), c.test) for c in comp.ifs):
                if comp.inner_for_in is not None:
                    self._comprehend(comp.inner_for_in, scope, emit)
                else:
                    emit(scope)

    def _yield(self, node: cst.Yield, scope: Scope):
        if not self.yielded:
            raise Unresolved("yield outside a generator gpumem runs", node)
        if isinstance(node.value, cst.From):
            self.yielded[-1].extend(self.iterate(self.eval(node.value.item, scope), node))
        else:
            self.yielded[-1].append(None if node.value is None else self.eval(node.value, scope))

    def _unary(self, node: cst.UnaryOperation, scope: Scope):
        value = self.eval(node.expression, scope)
        if isinstance(node.operator, cst.Not):
            return not self.truth(value, node)
        if isinstance(value, Tensor):
            if isinstance(node.operator, cst.Minus):
                return self.apply(catalogue.FUNCTIONS["torch.neg"], {}, "input", [value], {}, node, None, "neg")
            if isinstance(node.operator, cst.BitInvert):
                return self.apply(catalogue.FUNCTIONS["torch.bitwise_not"], {}, "input", [value], {}, node, None, "~")
            raise Unresolved(f"unsupported operator on a tensor: {code(node)}", node)
        if isinstance(node.operator, cst.Minus):
            return -value
        if isinstance(node.operator, cst.Plus):
            return +value
        return ~value

    def _compare(self, node: cst.Comparison, scope: Scope):
        left = self.eval(node.left, scope)
        for target in node.comparisons:
            right = self.eval(target.comparator, scope)
            if isinstance(left, Tensor) or isinstance(right, Tensor):
                if not isinstance(target.operator, (cst.Is, cst.IsNot, cst.In, cst.NotIn)):
                    if len(node.comparisons) > 1:
                        raise Unresolved("chained comparisons of tensors are not supported", node)
                    op = catalogue.FUNCTIONS[TENSOR_COMPARE[type(target.operator)]]
                    symbol = code(target.operator).strip()
                    return self.apply(op, {}, op.signature, [left, right], {}, node, None, symbol)
                result = COMPARE[type(target.operator)](left, right)
            else:
                contains = (right.cls.method(self, "__contains__") if isinstance(right, Instance) and
                            isinstance(target.operator, (cst.In, cst.NotIn)) else None)
                if contains is not None:  # its own `__contains__` (transformers' lazy auto mappings)
                    found = bool(self.call_function(contains, [right, left], {}, node))
                    result = found if isinstance(target.operator, cst.In) else not found
                else:
                    if isinstance(right, Instance) and isinstance(target.operator, (cst.In, cst.NotIn)):
                        mapping = self.as_mapping(right, node)
                        if mapping is None and self.dict_based(right.cls):
                            mapping = right.items  # a dict subclass's keys (transformers' ACT2FN)
                        right = right if mapping is None else mapping
                    if isinstance(right, Module) and right.container == "ModuleDict":
                        right = right.children  # `key in layer`: its names (rtdl's blocks)
                    result = COMPARE[type(target.operator)](left, right)
            if not result:
                return False
            left = right
        return True

    def binop(self, op, left, right, node, inplace: bool = False):
        if isinstance(left, Tensor) or isinstance(right, Tensor):
            if op not in TENSOR_BINOPS:
                raise Unresolved(f"unsupported tensor operator in {code(node)[:60]}", node)
            name, symbol, path = TENSOR_BINOPS[op]
            spec = catalogue.FUNCTIONS[path]
            if isinstance(left, (int, float)) and op in (cst.Add, cst.Multiply):
                left, right = right, left
            elif not isinstance(left, Tensor) and op is not cst.Power:  # torch.pow takes a number first
                left = Tensor((), "float32")  # 1 - x, 2 / x: a scalar on the left
            return self.apply(spec, {}, spec.signature, [left, right], {}, node, None,
                              symbol + "=" if inplace else symbol, inplace=left if inplace else None)
        if op is cst.Power and isinstance(left, int) and isinstance(right, int) and (
                right > MAX_INT_BITS or abs(left) > 2 ** MAX_INT_BITS):
            raise Unresolved(f"{code(node)[:60]} is too large to be a size", node)
        if op is cst.LeftShift and isinstance(right, int) and right > MAX_INT_BITS:
            raise Unresolved(f"{code(node)[:60]} is too large to be a size", node)
        if op is cst.Multiply and any(isinstance(v, (list, tuple, str)) for v in (left, right)):
            seq, times = (left, right) if isinstance(left, (list, tuple, str)) else (right, left)
            if isinstance(times, int) and len(seq) * times > MAX_LOOP * 100:
                raise Unresolved(f"{code(node)[:60]} builds {len(seq) * times} items, more than gpumem "
                                 "evaluates", node)
        if op is cst.Modulo and isinstance(left, str):
            _check_format(left, node)
        result = BINOPS[op](left, right)
        if isinstance(result, int) and not isinstance(result, bool) and result.bit_length() > MAX_INT_BITS:
            raise Unresolved(f"{code(node)[:60]} = {result} is too large to be a size", node)
        return result

    def _subscript(self, node: cst.Subscript, scope: Scope):
        value = self.eval(node.value, scope)
        if isinstance(value, Tensor):
            return self._index_tensor(value, node, scope)
        if len(node.slice) != 1:
            raise Unresolved(f"unsupported subscript {code(node)}", node)
        element = node.slice[0].slice
        if isinstance(element, cst.Slice):
            key = slice(*(None if p is None else self.eval(p, scope)
                          for p in (element.lower, element.upper, element.step)))
        else:
            key = self.eval(element.value, scope)
        if isinstance(value, Module):
            items = list(value.children.values())
            if value.container == "ModuleDict":
                return value.children[key]
            if isinstance(key, slice):
                sub = Module(value.kind, value.node, container=value.container, segment=value.segment)
                sub.children = dict(list(value.children.items())[key])
                return sub
            return items[key]
        if isinstance(value, Q):
            return value  # type annotations like Optional[nn.Module]
        if isinstance(value, Instance):  # its class's __getitem__, or a dict subclass's items
            method = value.cls.method(self, "__getitem__")
            if method is not None:
                return self.call_function(method, [value, key], {}, node)
            if self.dict_based(value.cls):
                return value.items[key]
        if isinstance(value, Class) and isinstance(key, str) and self.enum_member(value, key) is not MISSING:
            return self.enum_member(value, key)  # ResNet50_Weights["DEFAULT"]
        return value[key]

    def class_attr(self, cls: Class, name: str, obj, node):
        """A name looked up on a class or its instance `obj`, along the bases gpumem reads: methods
        bound as Python binds them (classmethod to the class, staticmethod to nothing, a property
        called), class-level values evaluated in the class body's scope; MISSING if none."""
        if name == "__name__":
            return cls.name
        method = cls.method(self, name)
        if method is not None:
            if method.decorated("staticmethod"):
                return method
            if method.decorated("classmethod"):
                return Bound(cls, method)
            if method.decorated("classproperty"):  # a property of the class (transformers' configs)
                return self.call_function(method, [cls], {}, node)
            if obj is cls:
                return method
            if method.decorated("property"):
                return self.call_function(method, [obj], {}, node)
            return Bound(obj, method)
        for c in self.mro(cls):
            if name in c.attrs:
                return c.attrs[name]
            value = c.body_value(name)
            if value is not None:
                member = self.enum_member(c, name)
                return self.eval(value, c.scope) if member is MISSING else member
            nested = c.body_class(name)
            if nested is not None:
                return nested
        return MISSING

    def as_mapping(self, obj: Instance, node) -> dict | None:
        """A `collections.abc.Mapping` subclass's items, through its own `__iter__` and `__getitem__`
        (transformers' attention-function registry); None for any other instance."""
        if not any(isinstance(b, Q) and b.path.endswith("Mapping") for c in self.mro(obj.cls) for b in self.bases(c)):
            return None
        keys, item = obj.cls.method(self, "__iter__"), obj.cls.method(self, "__getitem__")
        if keys is None or item is None:
            return None
        return {k: self.call_function(item, [obj, k], {}, node)
                for k in self.iterate(self.call_function(keys, [obj], {}, node), node)}

    def _walrus(self, node: cst.NamedExpr, scope: Scope):
        """`(x := value)`: bound where the expression runs, and its value."""
        value = self.eval(node.value, scope)
        self.assign(node.target, value, scope)
        return value

    def getattr(self, obj, name: str, node, hooks: bool = True):
        """`obj.name`; `hooks`: through a plain class's own `__getattribute__` (transformers' configs
        map names through `attribute_map` there); False: object.__getattribute__."""
        if hooks and isinstance(obj, Instance) and name != "__class__":
            hook = obj.cls.method(self, "__getattribute__")
            if hook is not None:
                return self.call_function(hook, [obj, name], {}, node)
        if isinstance(obj, Namespace):
            return self.member(obj, name, node)
        if isinstance(obj, Q):
            if obj.path == "torch" and name in TORCH_DTYPES:
                return TORCH_DTYPES[name]  # torch.float16, torch.half: the dtype "float16"
            if obj.path in ("math", "numpy", "torch") and name in ("pi", "e", "inf", "nan", "tau"):
                return getattr(math, name)  # math.pi, np.pi, torch.inf: numbers
            if name == "__name__":
                return obj.path.rpartition(".")[2]  # nn.BatchNorm2d.__name__
            if obj.path == "torch" and name == "__version__":
                return catalogue.TORCH_VERSION  # the PyTorch gpumem models
            if obj.path == "os" and name == "environ":
                return {}  # the code's defaults, not this machine's environment
            if obj.path == "sys" and name == "modules":  # the modules read so far, as imports loaded them
                return {n: ns for n, ns in self.resolver.modules.items() if ns is not None}
            return Q(f"{obj.path}.{name}")
        if isinstance(obj, Module):
            return self._module_attr(obj, name, node)
        if isinstance(obj, Tensor):
            if name == "shape":
                return obj.shape
            if name == "ndim":
                return obj.ndim
            if name == "dtype":
                return obj.dtype
            if name == "device":
                return Q("torch.device")
            if name == "T":  # a transposed view; a parameter's is the parameter, whose gradient it gets
                out = obj.permuted(range(obj.ndim - 1, -1, -1))
                out.is_param = obj.is_param
                return out
            if name == "requires_grad":
                return obj.requires_grad
            if name == "data":  # the same memory, outside autograd
                return obj if obj.is_param else Tensor(obj.shape, obj.dtype, False, base=obj, layout=obj.layout)
            return Bound(obj, name)
        if isinstance(obj, OrderedDict) and name in vars(obj):
            return vars(obj)[name]
        if isinstance(obj, (list, dict)) and name in LIST_METHODS or isinstance(obj, set) and name in SET_METHODS:
            return Bound(obj, name)
        if isinstance(obj, Function) and name == "__code__":  # its parameters, as co_varnames begins
            params = self._function_params(obj, Scope({}, obj.scope))
            order = {"plain": 0, "kwonly": 1, "varargs": 2, "kwargs": 3}
            return types.SimpleNamespace(co_varnames=tuple(p.name for p in sorted(params, key=lambda p: order[p.kind])))
        if isinstance(obj, types.SimpleNamespace) and hasattr(obj, name):
            return getattr(obj, name)
        if isinstance(obj, contextvars.ContextVar) and name in ("get", "set", "reset"):
            return Builtin(getattr(obj, name), name)
        if isinstance(obj, Function) and name == "__class__":
            return Q("types.FunctionType")
        if isinstance(obj, Class) and name == "__bases__":
            return tuple(self.bases(obj))
        if isinstance(obj, Class) and name == "__module__":
            file = obj.scope.root().file
            return (file.module if file is not None else None) or "__main__"
        if isinstance(obj, Function) and name in ("__name__", "__qualname__", "__module__"):
            file = obj.scope.root().file
            return obj.name if name != "__module__" else (file.module if file is not None else None) or "__main__"
        if isinstance(obj, inspect.Signature) and name == "parameters":
            return dict(obj.parameters)  # a read-only mapping in Python: the dict it shows
        if isinstance(obj, inspect.Parameter) and name in INSPECTED:
            return getattr(obj, name)
        if isinstance(obj, Pattern) and name in regex.FUNCTIONS:
            return obj.method(name)
        if isinstance(obj, Partial) and name in ("func", "args", "keywords"):
            return {"func": obj.func, "args": tuple(obj.args), "keywords": obj.kwargs}[name]
        if isinstance(obj, Instance) and name in obj.attrs:
            return obj.attrs[name]
        if isinstance(obj, Instance) and name in ("__dict__", "__class__"):
            return obj.attrs if name == "__dict__" else obj.cls
        if isinstance(obj, Instance) and name in MAPPING_MIXINS and (
                self.class_attr(obj.cls, name, obj, node) is MISSING):
            mapping = self.as_mapping(obj, node)
            if mapping is None and self.dict_based(obj.cls):
                mapping = obj.items  # a dict subclass's own keys() (transformers' ModelOutput.to_tuple)
            if mapping is not None:
                return Builtin(getattr(mapping, name), name)
        if isinstance(obj, (Class, Instance)):
            found = self.class_attr(obj.cls if isinstance(obj, Instance) else obj, name, obj, node)
            if found is not MISSING:
                return found
        if isinstance(obj, numbers.Version) and name == "base_version":
            return obj.base_version
        if isinstance(obj, tuple) and name in getattr(obj, "_fields", ()):
            return getattr(obj, name)  # a namedtuple's field (torch.finfo(dtype).max)
        if isinstance(obj, str) and obj in DTYPE_BYTES and name in ("is_floating_point", "is_complex", "itemsize"):
            return {"is_floating_point": obj in FLOAT_DTYPES, "is_complex": obj in COMPLEX_DTYPES.values(),
                    "itemsize": DTYPE_BYTES[obj]}[name]  # a dtype's own attributes (torch.float32.itemsize)
        if isinstance(obj, (int, float, str, tuple)) and name in VALUE_METHODS:
            if name == "format":
                _check_format(obj, node)
            return Builtin(getattr(obj, name), name)
        if isinstance(obj, Class) and name == "apply" and self.autograd_function(obj):
            return Partial(Q(AUTOGRAD_APPLY), [obj], {})
        if isinstance(obj, Builtin) and obj.fn is dict and name == "fromkeys":  # dict.fromkeys(layer_ids, value)
            return Builtin(dict.fromkeys, name)
        if isinstance(obj, Instance) and self.read_whole(obj.cls):  # `except AttributeError:` catches it
            raise Raised(f"'{obj.cls.name}' object has no attribute '{name}'", node, AttributeError)
        raise Unresolved(f"attribute '{name}' of {type(obj).__name__} is not known", node)

    def read_whole(self, cls: Class) -> bool:
        """Whether gpumem reads every class an object of `cls` takes attributes from: its bases all
        classes it reads (or `object`), none with a `__getattr__`. Then a name none binds is
        missing, as Python says with an AttributeError."""
        return cls.method(self, "__getattr__") is None and all(
            isinstance(b, Class) or isinstance(b, Builtin) and b.name == "object"
            for c in self.mro(cls) for b in self.bases(c))


NAME_CHARS = re.compile(r"[A-Za-z0-9_]*")  # the string constants Python's compiler interns


def _string(literal: str) -> str:
    """A string literal's value; Python's compiler (ast.literal_eval) only where a prefix or an
    escape needs it: docstrings and dict keys are evaluated on every call. Interned where Python's
    compiler interns it (made of name characters only), so that `fmt is Format.NHWC` holds as it
    does in Python."""
    quote = literal[:3] if literal[:3] in ('"""', "'''") else literal[:1]
    if quote in ('"', "'", '"""', "'''") and "\\" not in literal:
        value = literal[len(quote):-len(quote)]
    else:
        value = ast.literal_eval(literal)
    return sys.intern(value) if isinstance(value, str) and NAME_CHARS.fullmatch(value) else value


_EVAL = {
    cst.Name: lambda self, node, scope: self.lookup(node.value, scope, node),
    cst.Integer: lambda self, node, scope: int(node.value, 0),
    cst.Float: lambda self, node, scope: float(node.value),
    cst.SimpleString: lambda self, node, scope: _string(node.value),
    cst.ConcatenatedString: lambda self, node, scope: self.eval(node.left, scope) + self.eval(node.right, scope),
    cst.FormattedString: Expressions._fstring,
    cst.Attribute: lambda self, node, scope: self.getattr(self.eval(node.value, scope), node.attr.value, node),
    cst.Call: lambda self, node, scope: self._eval_call(node, scope),
    cst.BinaryOperation: lambda self, node, scope: self.binop(
        type(node.operator), self.eval(node.left, scope), self.eval(node.right, scope), node),
    cst.UnaryOperation: Expressions._unary,
    cst.BooleanOperation: Expressions._boolean,
    cst.Comparison: Expressions._compare,
    cst.IfExp: Expressions._ifexp,
    cst.Tuple: Expressions._sequence,
    cst.List: Expressions._sequence,
    cst.Set: Expressions._sequence,
    cst.Dict: Expressions._dict,
    cst.ListComp: Expressions._listcomp,
    cst.GeneratorExp: Expressions._listcomp,
    cst.SetComp: Expressions._listcomp,
    cst.DictComp: Expressions._dictcomp,
    cst.Subscript: Expressions._subscript,
    cst.Lambda: lambda self, node, scope: Function(node, scope, "lambda", segment=self.segment),
    cst.Ellipsis: lambda self, node, scope: Ellipsis,
    cst.Yield: Expressions._yield,
    cst.NamedExpr: Expressions._walrus,
}


def _constant(value) -> bool:
    """A value whose text is known: numbers, strings, None, and tuples or lists of them (a shape)."""
    if isinstance(value, (tuple, list)):
        return all(_constant(v) for v in value)
    return value is None or isinstance(value, (int, float, str, bool))


def _check_format(text: str, node) -> None:
    """Refuse a format string that would build a string of 10,000+ characters ('%0999999999d' % 1)."""
    if WIDE_FORMAT.search(text):
        raise Unresolved(f"the format {text[:40]!r} asks for a width of 10,000 characters or more", node)
