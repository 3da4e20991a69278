"""The layer catalogue: one entry per layer type, functional op or tensor method.

An entry holds the call signature, the shape rule, the parameter and buffer
counts and what autograd keeps for backward. Adding a layer type means adding
one entry to a table in tables.py (composite layers built from others live in
composites.py).

One file per op family: conv, pooling, normalisation, linear (and matrix
products), elementwise (activations, dropout, unary/binary ops, reductions,
casts), shape (views, reshaping, cat/stack, padding, upsampling), creation,
recurrent, attention and einops (composites of the others); core holds what they share (Op, Args, the save rules,
the shape helpers) and tables puts their entries under the names code calls.
"""
from .core import SAC_OPS, TORCH_VERSION, Args, Op, Ledger, broadcast, fmt, promote
from .creation import MAX_VALUES, valued
from .elementwise import CAST, binary, unary
from .recurrent import RNN_LAYER, elman_step, gru_step, lstm_step, replay
from .shape import TAKE
from .tables import AUTOCAST, FUNCTIONS, LAZY, LIBRARY_MODULES, METHODS, MODULES

__all__ = ["AUTOCAST", "Args", "CAST", "FUNCTIONS", "LAZY", "LIBRARY_MODULES", "MAX_VALUES", "METHODS", "MODULES",
           "Op", "RNN_LAYER", "SAC_OPS", "TAKE", "TORCH_VERSION", "Ledger", "elman_step", "gru_step", "lstm_step",
           "replay", "binary", "broadcast", "fmt", "promote", "unary", "valued"]
