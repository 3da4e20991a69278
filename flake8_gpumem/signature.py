"""Binding call arguments to a parameter list, the way Python does."""
from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import lru_cache

from .values import Raised

REQUIRED = object()


@dataclass(frozen=True)
class Param:
    name: str
    default: object = REQUIRED
    kind: str = "plain"  # plain | varargs (*args) | kwargs (**kwargs) | kwonly


@lru_cache(maxsize=None)
def parse(signature: str) -> tuple[Param, ...]:
    """Params from a signature written as Python, e.g. "in_features, bias=True"."""
    fn = ast.parse(f"def f({signature}): pass").body[0].args
    plain = fn.posonlyargs + fn.args
    defaults = [REQUIRED] * (len(plain) - len(fn.defaults)) + [ast.literal_eval(d) for d in fn.defaults]
    params = [Param(a.arg, d) for a, d in zip(plain, defaults)]
    if fn.vararg:
        params.append(Param(fn.vararg.arg, kind="varargs"))
    for a, d in zip(fn.kwonlyargs, fn.kw_defaults):
        params.append(Param(a.arg, REQUIRED if d is None else ast.literal_eval(d), "kwonly"))
    if fn.kwarg:
        params.append(Param(fn.kwarg.arg, kind="kwargs"))
    return tuple(params)


def bind(params, args: list, kwargs: dict, what: str, node=None) -> dict:
    """Map positional and keyword arguments onto params; defaults fill the rest."""
    bound: dict = {}
    positional = [p for p in params if p.kind == "plain"]
    varargs = next((p for p in params if p.kind == "varargs"), None)
    extra_kw = next((p for p in params if p.kind == "kwargs"), None)
    if len(args) > len(positional) and varargs is None:
        raise Raised(f"{what} takes {len(positional)} positional arguments, {len(args)} given", node, TypeError)
    for p, v in zip(positional, args):
        bound[p.name] = v
    if varargs is not None:
        bound[varargs.name] = tuple(args[len(positional):])
    names = {p.name for p in params if p.kind in ("plain", "kwonly")}
    extras = {}
    for k, v in kwargs.items():
        if k in bound:
            raise Raised(f"{what} got two values for argument '{k}'", node, TypeError)
        if k in names:
            bound[k] = v
        elif extra_kw is not None:
            extras[k] = v
        else:
            raise Raised(f"{what} got an unexpected argument '{k}'", node, TypeError)
    if extra_kw is not None:
        bound[extra_kw.name] = extras
    for p in params:
        if p.name not in bound and p.kind in ("plain", "kwonly"):
            if p.default is REQUIRED:
                raise Raised(f"{what} is missing the argument '{p.name}'", node, TypeError)
            bound[p.name] = p.default
    return bound
