"""Shape inference: a small abstract interpreter over model source.

It evaluates `__init__` to build the module tree (with constants, defaults,
arithmetic, loops and helper calls resolved) and `forward` on tensors known by
shape only, recording one Event per layer call. Nothing is imported or run:
every name resolves to source (the file's, or a file it imports), to the
catalogue, or to a short list of safe builtins. Whatever cannot be known raises
Unresolved.

One file per concern: objects (what it computes with), scopes (names),
statements, expressions, calls, construction (nn.Module), tensors (catalogue ops);
core puts them together.
"""
from . import imports
from .core import Interpreter
from .objects import (WRAPPERS, Bound, Builtin, Class, Distributed, Event, File, Function, Instance, Module, Q,
                      Scope, param_keys, walk_modules)
from .returns import builds_no_module
from .bindings import binds, segment_scope
from .scopes import parse_expression

__all__ = ["WRAPPERS", "Bound", "Builtin", "Class", "Distributed", "Event", "File", "Function", "Instance",
           "Interpreter", "Module", "Q", "Scope", "binds", "builds_no_module", "imports", "param_keys",
           "parse_expression", "segment_scope", "walk_modules"]
