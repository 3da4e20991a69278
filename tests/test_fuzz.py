"""Fuzzing the plugin and the analysis with generated PyTorch model sources.

A grammar (hypothesis strategies) writes model files the way people do and the
way they get them wrong: module-level constants and arithmetic, an nn.Module
subclass whose `__init__` builds layers (convolutions, Linear, norms, pools with
and without ceil_mode, dropout, activations, Flatten, Sequential, ModuleList and
a loop, Embedding, LSTM/GRU, MultiheadAttention, TransformerEncoderLayer) from
literal, negative, zero, huge (`10 ** 30`, `2 ** 62`), float, string and None
arguments, positional and keyword; a `forward` that wires them, correctly or
not (wrong shapes, undefined names, while loops, recursion, data-dependent ifs);
an inline `# gpumem:` comment, sometimes missing or malformed; and sometimes a
second model class, a module-level Sequential, or a mangled (unparsable) file.

Properties, for every generated file:
(a) the plugin, constructed as flake8 constructs it, never raises, and every
    item it yields is (int line >= 1, int col >= 0, "GPM..." message, Plugin);
(b) `analyse_source` never raises;
(c) each run finishes within PER_RUN_SECONDS.

The runs are derandomized: the same examples every time, so a failure reproduces.
"""
from __future__ import annotations

import argparse
import ast
import math
import re
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flake8_gpumem.analysis import analyse_source
from flake8_gpumem.plugin import OPTIONS, Plugin

PER_RUN_SECONDS = 30.0  # generous: a bound on runaway work (loops, recursion), not a speed target; CI machines are shared
CODE = re.compile(r"^GPM[0-9]{3} ")

# --------------------------------------------------------------------------- grammar

CONSTANTS = ["C0", "C1", "C2", "HIDDEN"]

NASTY = ["0", "-1", "-3", "10 ** 30", "2 ** 62", "2 ** 63", "10 ** 100", "2.5", "0.0", "1e309",
         "'same'", "'valid'", "'x'", "None", "True", "(3, 3)", "(0, 1)", "[2]", "()", "C9_UNDEFINED",
         "-C1", "C1 // 0", "C1 % 0", "2 ** -1", "1 << 70", "C1 * 10 ** 20", "len('abc')", "int('7')"]


def small_int(lo=1, hi=64):
    return st.integers(lo, hi).map(str)


def const_expr():
    return st.one_of(
        st.sampled_from(CONSTANTS),
        st.tuples(st.sampled_from(CONSTANTS), st.sampled_from(["*", "//", "+", "-", "%", "**"]),
                  small_int(1, 8)).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
    )


def arg(kind="int"):
    """A constructor argument: mostly sensible for its kind, sometimes anything."""
    sensible = {
        "int": small_int(1, 64),
        "kernel": small_int(1, 7),
        "stride": small_int(1, 3),
        "pad": small_int(0, 3),
        "float": st.sampled_from(["0.1", "0.5", "1e-5", "0.0", "1.0"]),
        "bool": st.sampled_from(["True", "False"]),
        "dim": st.sampled_from(["1", "-1", "0", "2"]),
        "shape": st.one_of(small_int(1, 64), st.lists(small_int(1, 16), min_size=1, max_size=3).map(
            lambda xs: "(" + ", ".join(xs) + ",)")),
    }[kind]
    return st.one_of(sensible, sensible, sensible, const_expr(), st.sampled_from(NASTY))


# name -> (positional parameters with their kinds, optional keyword parameters with their kinds)
LAYERS = {
    "nn.Conv1d": ([("in_channels", "int"), ("out_channels", "int"), ("kernel_size", "kernel")],
                  [("stride", "stride"), ("padding", "pad"), ("dilation", "stride"), ("groups", "stride"),
                   ("bias", "bool"), ("padding_mode", "int")]),
    "nn.Conv2d": ([("in_channels", "int"), ("out_channels", "int"), ("kernel_size", "kernel")],
                  [("stride", "stride"), ("padding", "pad"), ("dilation", "stride"), ("groups", "stride"),
                   ("bias", "bool")]),
    "nn.Conv3d": ([("in_channels", "int"), ("out_channels", "int"), ("kernel_size", "kernel")],
                  [("stride", "stride"), ("padding", "pad")]),
    "nn.ConvTranspose2d": ([("in_channels", "int"), ("out_channels", "int"), ("kernel_size", "kernel")],
                           [("stride", "stride"), ("padding", "pad"), ("output_padding", "pad")]),
    "nn.Linear": ([("in_features", "int"), ("out_features", "int")], [("bias", "bool")]),
    "nn.BatchNorm1d": ([("num_features", "int")], [("eps", "float"), ("momentum", "float"), ("affine", "bool")]),
    "nn.BatchNorm2d": ([("num_features", "int")], [("eps", "float"), ("track_running_stats", "bool")]),
    "nn.BatchNorm3d": ([("num_features", "int")], [("affine", "bool")]),
    "nn.LayerNorm": ([("normalized_shape", "shape")], [("eps", "float"), ("elementwise_affine", "bool")]),
    "nn.GroupNorm": ([("num_groups", "stride"), ("num_channels", "int")], []),
    "nn.MaxPool2d": ([("kernel_size", "kernel")], [("stride", "stride"), ("padding", "pad"), ("ceil_mode", "bool")]),
    "nn.AvgPool2d": ([("kernel_size", "kernel")], [("stride", "stride"), ("padding", "pad"), ("ceil_mode", "bool")]),
    "nn.MaxPool1d": ([("kernel_size", "kernel")], [("stride", "stride"), ("ceil_mode", "bool")]),
    "nn.AvgPool3d": ([("kernel_size", "kernel")], [("stride", "stride")]),
    "nn.AdaptiveAvgPool2d": ([("output_size", "shape")], []),
    "nn.Dropout": ([], [("p", "float"), ("inplace", "bool")]),
    "nn.Dropout2d": ([("p", "float")], []),
    "nn.ReLU": ([], [("inplace", "bool")]),
    "nn.LeakyReLU": ([], [("negative_slope", "float")]),
    "nn.GELU": ([], []),
    "nn.Tanh": ([], []),
    "nn.Sigmoid": ([], []),
    "nn.Softmax": ([], [("dim", "dim")]),
    "nn.Identity": ([], []),
    "nn.Flatten": ([], [("start_dim", "dim"), ("end_dim", "dim")]),
    "nn.Embedding": ([("num_embeddings", "int"), ("embedding_dim", "int")], [("padding_idx", "pad")]),
    "nn.LSTM": ([("input_size", "int"), ("hidden_size", "int")],
                [("num_layers", "stride"), ("batch_first", "bool"), ("bidirectional", "bool"),
                 ("dropout", "float")]),
    "nn.GRU": ([("input_size", "int"), ("hidden_size", "int")], [("num_layers", "stride"), ("batch_first", "bool")]),
    "nn.MultiheadAttention": ([("embed_dim", "int"), ("num_heads", "stride")],
                              [("batch_first", "bool"), ("dropout", "float")]),
    "nn.TransformerEncoderLayer": ([("d_model", "int"), ("nhead", "stride")],
                                   [("dim_feedforward", "int"), ("batch_first", "bool"), ("dropout", "float")]),
}
SEQUENCE_LAYERS = [k for k in LAYERS if k not in ("nn.LSTM", "nn.GRU", "nn.MultiheadAttention")]


@st.composite
def layer(draw, names=tuple(LAYERS)):
    """`nn.Conv2d(3, C1, kernel_size=3, ceil_mode=True)` and the like."""
    name = draw(st.sampled_from(names))
    positional, keywords = LAYERS[name]
    parts, as_keyword = [], False
    for pname, kind in positional:
        if draw(st.integers(0, 9)) == 0:
            continue  # a missing required argument
        as_keyword = as_keyword or draw(st.integers(0, 3)) == 0
        value = draw(arg(kind))
        parts.append(f"{pname}={value}" if as_keyword else value)
    for pname, kind in keywords:
        if draw(st.integers(0, 2)) == 0:
            parts.append(f"{pname}={draw(arg(kind))}")
    if draw(st.integers(0, 30)) == 0:
        parts.append("bogus_kw=1")
    if draw(st.integers(0, 30)) == 0:
        parts.append("*args")
    return f"{name}({', '.join(parts)})"


@st.composite
def layer_expr(draw):
    """A layer, a Sequential of layers, or a helper call; occasionally an unknown layer."""
    choice = draw(st.integers(0, 11))
    if choice <= 7:
        return draw(layer())
    if choice <= 9:
        inner = draw(st.lists(layer(SEQUENCE_LAYERS), min_size=0, max_size=5))
        return "nn.Sequential(" + ", ".join(inner) + ")"
    if choice == 10:
        return draw(st.sampled_from(["make_block(C1)", "make_block(-1)", "nn.Frobnicate(3)", "Helper()",
                                     "nn.Sequential(*[nn.ReLU() for _ in range(3)])", "torch.nn.Conv2d(3, 8, 3)",
                                     "nn.Sequential(OrderedDict([('a', nn.ReLU())]))"]))
    return draw(st.sampled_from(["None", "3", "self", "nn", "nn.Linear"]))


FORWARD_SIMPLE = [
    "x = F.relu(x)", "x = F.max_pool2d(x, 2)", "x = F.max_pool2d(x, kernel_size=3, stride=2, ceil_mode=True)",
    "x = F.avg_pool2d(x, 2)", "x = torch.cat([x, x], dim=1)", "x = torch.cat((x, x), 0)",
    "x = x.view(x.size(0), -1)", "x = x.view(-1, C1)", "x = x.flatten(1)", "x = torch.flatten(x, 1)",
    "x = x.reshape(x.shape[0], -1)", "x = x[:, 0]", "x = x[0]", "x = x[..., ::2]", "x = x.permute(0, 2, 1)",
    "x = x.transpose(1, 2)", "x = x.mean(dim=1)", "x = x * 2", "x = x + 1", "x = -x", "x = x @ x",
    "x = x.unsqueeze(1)", "x = x.squeeze()", "x = F.dropout(x, 0.5, self.training)",
    "x = F.softmax(x, dim=-1)", "x = torch.sigmoid(x)", "x = F.interpolate(x, scale_factor=2)",
    "x = x.contiguous()", "x = x.long()", "x = x.float()", "x, y = x, x", "x, _ = x.chunk(2, dim=1)",
    "n = x.size(1)", "x = x.view(x.size(0), n)", "x = x.view(2 ** 62, -1)", "x = x.view(0, -1)",
    "x = torch.zeros(10 ** 30)", "x = x.expand(10 ** 9, -1)", "x = x.repeat(1000, 1000, 1000)",
    "x = x[10 ** 30]", "pass", "x = F.pad(x, (1, 1))", "x = F.conv2d(x, torch.randn(8, 3, 3, 3))",
]
FORWARD_BROKEN = [
    "x = undefined_name(x)", "x = self.nonexistent(x)", "while x.size(0) > 0:\n    x = x[1:]",
    "while True:\n    pass", "if x.sum() > 0:\n    x = F.relu(x)", "x = self.forward(x)",
    "x = self(x)", "x = Other()(x)", "x = x.view(-1, 7, 7, 7, 7)", "x = x.numpy()", "x = x.item()",
    "x = [x for _ in range(10 ** 9)]", "x = [0] * 10 ** 9", "x = 'a' * 10 ** 9",
    "for i in range(10 ** 9):\n    x = F.relu(x)", "for i in range(x.size(0)):\n    x = F.relu(x)",
    "try:\n    x = F.relu(x)\nexcept Exception:\n    pass", "with torch.no_grad():\n    x = F.relu(x)",
    "global C1", "del x", "x = yield x", "x = lambda: x", "x = (await x)", "assert x.dim() == 4",
    "raise ValueError(x)", "x = x if self.training else -x", "import os", "x = os.system('true')",
    "x = eval('1')", "x = x.to('cuda')", "x = getattr(self, 'l0')(x)", "x = x.view(*x.shape)",
    "x, h = x", "(x, h), c = x, x", "x = x[1:2:0]", "x = x.view(-1, -1)", "x = super().forward(x)",
]


@st.composite
def forward_body(draw, attrs, loops):
    """Statements of forward(self, x), indented by 8."""
    stmts = []
    for _ in range(draw(st.integers(0, 10))):
        kind = draw(st.integers(0, 14))
        if kind <= 4 and attrs:
            a = draw(st.sampled_from(attrs))
            stmts.append(draw(st.sampled_from([
                f"x = self.{a}(x)", f"x = F.relu(self.{a}(x))", f"x = x + self.{a}(x)",
                f"x, h = self.{a}(x)", f"x = self.{a}(x)[0]", f"x = self.{a}(x, x, x)[0]",
                f"x, _ = self.{a}(x, x, x)", f"x = self.{a}(x.long())", f"x = self.{a}(x, x)",
                f"x = self.{a}(self.{a}(x))",
            ])))
        elif kind == 5 and loops:
            lst = draw(st.sampled_from(loops))
            stmts.append(draw(st.sampled_from([
                f"for m in self.{lst}:\n    x = m(x)", f"for i, m in enumerate(self.{lst}):\n    x = m(x) + x",
                f"for i in range(len(self.{lst})):\n    x = self.{lst}[i](x)", f"x = self.{lst}[-1](x)",
                f"x = self.{lst}(x)",
            ])))
        elif kind <= 11:
            stmts.append(draw(st.sampled_from(FORWARD_SIMPLE)))
        else:
            stmts.append(draw(st.sampled_from(FORWARD_BROKEN)))
    ret = draw(st.sampled_from(["return x", "return x", "return x", "return x, x", "return", "return None",
                                "return {'out': x}", "return h", ""]))
    if ret:
        stmts.append(ret)
    if not stmts:
        stmts = ["pass"]
    return "\n".join("        " + line for stmt in stmts for line in stmt.split("\n"))


def inline_comment():
    return st.one_of(
        st.just(""),
        st.lists(small_int(1, 64), min_size=1, max_size=4).flatmap(
            lambda dims: st.tuples(st.just(dims), st.one_of(st.just(""), small_int(1, 256))).map(
                lambda t: f"  # gpumem: input_shape=({', '.join(t[0])},)" + (f" batch_size={t[1]}" if t[1] else ""))),
        st.sampled_from([
            "  # gpumem: input_shape=(3, 32, 32) batch_size=64", "  # gpumem: input_shape=(3,",
            "  # gpumem: input_shape=abc", "  # gpumem: batch_size=-1", "  # gpumem: input_shape=(0, 0)",
            "  # gpumem: input_shape=(1000000000000000000000000000000,)", "  # gpumem: foo=1",
            "  # gpumem: batch_size=1e9", "  # gpumem:", "  # gpumem: input_shape=()",
            "  # gpumem: input_shape=(3, 50, 50) batch_size=99999999999999999999",
            "  # gpumem: input_shape=[3,50,50] budget=T4", "  # gpumem: input_shape=(3, 32, 32) budget=1",
            "  # gpumem: input_shape=(3, 32, 32) budget='12GiB' optimizer=sgd dtype=amp-fp16",
            "  # gpumem: input_shape=(3, 32, 32) dtype=float64", "  # gpumem: input_shape=(16,) input_dtype=int64",
            "  # gpumem: input_shape=(3, 32, 32) warn_fraction=2", "  # gpumem: input_shape=(8, 16) reserve=-1",
            "  # gpumem: input_shape=(3, 32, 32) budget='99999999999999999999999999999TiB'",
            "  # gpumem: input_shape=(3, 50, 50) batch_size=64 batch_size=32",
        ]),
    )


@st.composite
def model_source(draw):
    lines = ["import torch", "import torch.nn as nn", "import torch.nn.functional as F",
             "from collections import OrderedDict", ""]
    for i, name in enumerate(CONSTANTS):
        if draw(st.integers(0, 3)):
            value = draw(st.one_of(small_int(1, 128), st.sampled_from(NASTY[:12]),
                                   const_expr() if i else small_int(1, 128)))
            lines.append(f"{name} = {value}")
    if draw(st.booleans()):
        lines += ["", "", "def make_block(c):", f"    return {draw(layer_expr())}"]
    lines += ["", ""]
    header = draw(st.sampled_from(["class Net(nn.Module):", "class Net(nn.Module):", "class Net(torch.nn.Module):",
                                   "class Net(Base):", "class Net(nn.Module, metaclass=Meta):"]))
    lines.append(header + draw(inline_comment()))
    init_sig = draw(st.sampled_from(["def __init__(self):", "def __init__(self, n=C1):",
                                     "def __init__(self, n=10 ** 30):", "def __init__(self, *args, **kw):",
                                     "def __init__(self, n):"]))
    lines.append("    " + init_sig)
    if draw(st.integers(0, 8)):
        lines.append("        super().__init__()")
    attrs, loops = [], []
    for i in range(draw(st.integers(0, 7))):
        attr = f"l{i}"
        lines.append(f"        self.{attr} = {draw(layer_expr())}")
        attrs.append(attr)
    if draw(st.integers(0, 2)) == 0:
        count = draw(st.sampled_from(["3", "C0", "0", "-2", "10 ** 9", "n", "len('ab')"]))
        lines.append(f"        self.blocks = nn.ModuleList([{draw(layer(SEQUENCE_LAYERS))} for _ in range({count})])")
        loops.append("blocks")
    if draw(st.integers(0, 3)) == 0:
        lines.append("        self.more = nn.ModuleList()")
        lines.append(f"        for i in range({draw(st.sampled_from(['2', 'C0', '10 ** 6', '-1']))}):")
        lines.append(f"            self.more.append({draw(layer(SEQUENCE_LAYERS))})")
        loops.append("more")
    if draw(st.integers(0, 6)) == 0:
        lines.append(draw(st.sampled_from(["        self.w = nn.Parameter(torch.randn(10, 10))",
                                           "        self.register_buffer('b', torch.zeros(C1))",
                                           "        self.sub = Net()", "        self.sub = Other()",
                                           "        while True:\n            pass",
                                           "        self.l0 = self.l0"])))
    lines += ["", "    def forward(self, x):", draw(forward_body(attrs, loops))]
    extra = draw(st.integers(0, 6))
    if extra == 0:  # a second model: uses Net, or is used by it (mutual recursion when both)
        inner = draw(st.sampled_from(["Net()", "Net(3)", "nn.ReLU()"]))
        lines += ["", "", "class Other(nn.Module):" + draw(inline_comment()), "    def __init__(self):",
                  "        super().__init__()", f"        self.net = {inner}",
                  "", "    def forward(self, x):", "        return self.net(x)"]
    elif extra == 1:
        lines += ["", "", f"model = nn.Sequential({', '.join(draw(st.lists(layer(SEQUENCE_LAYERS), max_size=4)))})"]
    elif extra == 2:
        lines += ["", "", "if __name__ == '__main__':", "    net = Net()",
                  f"    net(torch.randn({draw(st.sampled_from(['2, 3, 32, 32', '1, 16', '0, 3', '10 ** 30', 'C1']))}))"]
    source = "\n".join(lines) + "\n"
    mangle = draw(st.integers(0, 12))
    if mangle == 0:  # cut anywhere: mostly a syntax error
        source = source[:draw(st.integers(0, len(source)))]
    elif mangle == 1:  # tabs and spaces mixed, or a stray character
        pos = draw(st.integers(0, len(source)))
        source = source[:pos] + draw(st.sampled_from(["\t", "(", ")", ":", "\x00", "\ufeff", "é", "\r"])) + source[pos:]
    return source


# A coherent model: layers chosen for the shape that reaches them, so the analysis gets through to
# shapes and memory; then, sometimes, one mutation (a nasty argument, an off-by-one size, a broken
# statement) makes it wrong in one place.


def _conv_out(n, k, s, p, d=1):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _pool_out(n, k, s, p, ceil):
    if ceil:
        out = -(-(n + 2 * p - k) // s) + 1
        if (out - 1) * s >= n + p:
            out -= 1
        return out
    return (n + 2 * p - k) // s + 1


@st.composite
def coherent_model(draw):
    """(init lines, forward lines, constants, comment): a model whose shapes fit."""
    kind = draw(st.sampled_from(["2d", "2d", "2d", "1d", "3d", "flat", "seq", "tokens"]))
    sizes = {"2d": 3, "1d": 2, "3d": 4, "flat": 1, "seq": 2, "tokens": 1}[kind]
    if kind == "2d":
        shape = [draw(st.sampled_from([1, 3, 4])), draw(st.integers(4, 64)), draw(st.integers(4, 64))]
    elif kind == "1d":
        shape = [draw(st.integers(1, 8)), draw(st.integers(4, 128))]
    elif kind == "3d":
        shape = [draw(st.integers(1, 3))] + [draw(st.integers(4, 12)) for _ in range(3)]
    elif kind == "flat":
        shape = [draw(st.integers(1, 512))]
    elif kind == "seq":
        shape = [draw(st.integers(1, 32)), draw(st.sampled_from([8, 16, 32, 64]))]
    else:
        shape = [draw(st.integers(1, 32))]
    assert len(shape) == sizes
    comment = f"  # gpumem: input_shape=({', '.join(map(str, shape))},)"
    if draw(st.booleans()):
        comment += f" batch_size={draw(st.sampled_from([1, 2, 8, 32, 64, 256]))}"
    if kind == "tokens":
        comment += " input_dtype=int64"
    if draw(st.integers(0, 4)) == 0:
        comment += " " + draw(st.sampled_from(["budget=T4", "budget=1", "budget='800MiB'", "optimizer=sgd",
                                               "dtype=amp-fp16", "dtype=bfloat16", "optimizer=adamw budget=A100-40GB",
                                               "device=cpu"]))
    constants = {}

    def num(n):
        """A size as the file writes it: a literal, or a constant (with arithmetic)."""
        how = draw(st.integers(0, 5))
        if how == 0 and n > 0:
            name = f"K{len(constants)}"
            constants[name] = n
            return name
        if how == 1 and n > 1 and n % 2 == 0:
            name = f"K{len(constants)}"
            constants[name] = n // 2
            return f"{name} * 2"
        return str(n)

    init, fwd, seq_group = [], [], []
    counter = [0]

    def attr(ctor):
        name = f"l{counter[0]}"
        counter[0] += 1
        init.append(f"self.{name} = {ctor}")
        return name

    def module(ctor, call="x = self.{a}(x)"):
        """A module layer: its own attribute, or a member of the current Sequential group."""
        if draw(st.integers(0, 2)) == 0 and call == "x = self.{a}(x)":
            seq_group.append(ctor)
        else:
            flush()
            fwd.append(call.format(a=attr(ctor)))

    def flush():
        if seq_group:
            a = attr("nn.Sequential(" + ", ".join(seq_group) + ")")
            fwd.append(f"x = self.{a}(x)")
            seq_group.clear()

    if kind == "tokens":
        vocab, emb = draw(st.integers(2, 1000)), draw(st.sampled_from([8, 16, 32]))
        module(f"nn.Embedding({num(vocab)}, {num(emb)})")
        shape, kind = [shape[0], emb], "seq"

    for _ in range(draw(st.integers(1, 8))):
        if kind in ("2d", "1d", "3d"):
            spatial = shape[1:]
            nd = len(spatial)
            dim = {1: "1d", 2: "2d", 3: "3d"}[nd]
            op = draw(st.sampled_from(["conv", "conv", "pool", "bn", "act", "residual", "fpool", "cat", "flatten",
                                       "adaptive", "convT", "modlist"]))
            c = shape[0]
            if op == "conv":
                out, k = draw(st.integers(1, 64)), draw(st.integers(1, min(7, min(spatial))))
                s, p = draw(st.integers(1, 2)), draw(st.integers(0, k // 2))
                args = [num(c), num(out), str(k)]
                kw = [f"stride={s}"] if s != 1 else []
                kw += [f"padding={p}"] if p else []
                if draw(st.booleans()):
                    args = [f"in_channels={args[0]}", f"out_channels={args[1]}", f"kernel_size={args[2]}"]
                module(f"nn.Conv{dim}({', '.join(args + kw)})")
                shape = [out] + [_conv_out(n, k, s, p) for n in spatial]
            elif op == "convT" and nd == 2:
                out, k, s = draw(st.integers(1, 32)), draw(st.integers(1, 4)), draw(st.integers(1, 2))
                module(f"nn.ConvTranspose2d({num(c)}, {num(out)}, {k}, stride={s})")
                shape = [out] + [(n - 1) * s + k for n in spatial]
            elif op == "pool":
                k = draw(st.integers(1, min(3, min(spatial))))
                s = draw(st.integers(1, k))
                ceil = draw(st.booleans())
                name = draw(st.sampled_from(["Max", "Avg"])) if nd < 3 else "Avg"
                module(f"nn.{name}Pool{dim}({k}, stride={s}" + (", ceil_mode=True)" if ceil else ")"))
                shape = [c] + [_pool_out(n, k, s, 0, ceil) for n in spatial]
            elif op == "fpool" and nd == 2 and min(spatial) >= 2:
                fwd_call = draw(st.sampled_from(["x = F.max_pool2d(x, 2)", "x = F.avg_pool2d(x, 2)",
                                                 "x = F.max_pool2d(F.relu(x), 2, 2)"]))
                flush()
                fwd.append(fwd_call)
                shape = [c] + [n // 2 for n in spatial]
            elif op == "bn":
                module(f"nn.BatchNorm{dim}({num(c)})")
            elif op == "act":
                module(draw(st.sampled_from(["nn.ReLU()", "nn.ReLU(inplace=True)", "nn.GELU()", "nn.Tanh()",
                                             "nn.Dropout(0.2)", "nn.LeakyReLU(0.1)", "nn.Identity()",
                                             "nn.Sigmoid()"])))
            elif op == "residual":
                flush()
                a = attr(f"nn.Conv{dim}({num(c)}, {num(c)}, 3, padding=1)")
                fwd.append(draw(st.sampled_from([f"x = x + self.{a}(x)", f"x = F.relu(self.{a}(x)) + x",
                                                 f"y = self.{a}(x)\nx = y + x", f"x += self.{a}(x)"])))
            elif op == "cat":
                flush()
                fwd.append(draw(st.sampled_from(["x = torch.cat([x, x], dim=1)", "x = torch.cat((x, x), 1)"])))
                shape = [2 * c] + spatial
            elif op == "modlist":
                flush()
                n = draw(st.integers(0, 4))
                init.append(f"self.blocks = nn.ModuleList([nn.Conv{dim}({num(c)}, {num(c)}, 3, padding=1) "
                            f"for _ in range({n})])")
                fwd.append(draw(st.sampled_from(["for m in self.blocks:\n    x = F.relu(m(x))",
                                                 "for i, m in enumerate(self.blocks):\n    x = m(x) + x",
                                                 "for i in range(len(self.blocks)):\n    x = self.blocks[i](x)"])))
            elif op == "adaptive" and nd == 2:
                o = draw(st.integers(1, 4))
                module(f"nn.AdaptiveAvgPool2d({o})")
                shape = [c, o, o]
            elif op == "flatten":
                flush()
                fwd.append(draw(st.sampled_from(["x = x.view(x.size(0), -1)", "x = x.flatten(1)",
                                                 "x = torch.flatten(x, 1)", "x = x.reshape(x.shape[0], -1)"])))
                shape, kind = [math.prod(shape)], "flat"
            if min(shape) <= 0:
                break  # the coherent part ends where a size collapses (GPM201 territory)
        elif kind == "flat":
            f = shape[0]
            op = draw(st.sampled_from(["linear", "linear", "linear", "act", "bn", "ln", "softmax"]))
            if op == "linear":
                out = draw(st.integers(1, 512))
                module(draw(st.sampled_from([f"nn.Linear({num(f)}, {num(out)})",
                                             f"nn.Linear(in_features={num(f)}, out_features={num(out)})",
                                             f"nn.Linear({num(f)}, {num(out)}, bias=False)"])))
                shape = [out]
            elif op == "act":
                module(draw(st.sampled_from(["nn.ReLU()", "nn.Dropout(0.5)", "nn.Tanh()", "nn.GELU()"])))
            elif op == "bn":
                module(f"nn.BatchNorm1d({num(f)})")
            elif op == "ln":
                module(f"nn.LayerNorm({num(f)})")
            else:
                module("nn.Softmax(dim=1)")
        else:  # seq: (L, E), batch first
            e = shape[1]
            op = draw(st.sampled_from(["lstm", "gru", "mha", "tfm", "ln", "linear", "pool"]))
            if op in ("lstm", "gru"):
                h, bi = draw(st.sampled_from([8, 16, 32])), draw(st.booleans())
                layers = draw(st.integers(1, 2))
                ctor = f"nn.{op.upper()}({num(e)}, {num(h)}, num_layers={layers}, batch_first=True" + (
                    ", bidirectional=True)" if bi else ")")
                flush()
                fwd.append(draw(st.sampled_from(["x, _ = self.{a}(x)", "x = self.{a}(x)[0]",
                                                 "out, h = self.{a}(x)\nx = out"])).format(a=attr(ctor)))
                shape = [shape[0], h * (2 if bi else 1)]
            elif op == "mha":
                heads = draw(st.sampled_from([h for h in (1, 2, 4, 8) if e % h == 0]))
                flush()
                fwd.append(draw(st.sampled_from(["x = self.{a}(x, x, x)[0]", "x, _ = self.{a}(x, x, x)",
                                                 "x = x + self.{a}(x, x, x, need_weights=False)[0]"])).format(
                    a=attr(f"nn.MultiheadAttention({num(e)}, {heads}, batch_first=True)")))
            elif op == "tfm":
                heads = draw(st.sampled_from([h for h in (1, 2, 4, 8) if e % h == 0]))
                module(f"nn.TransformerEncoderLayer({num(e)}, {heads}, dim_feedforward={num(2 * e)}, "
                       f"batch_first=True)")
            elif op == "ln":
                module(f"nn.LayerNorm({num(e)})")
            elif op == "linear":
                out = draw(st.sampled_from([8, 16, 32]))
                module(f"nn.Linear({num(e)}, {num(out)})")
                shape = [shape[0], out]
            else:
                flush()
                fwd.append(draw(st.sampled_from(["x = x.mean(dim=1)", "x = x[:, -1]", "x = x[:, 0, :]"])))
                shape, kind = [e], "flat"
    flush()
    if not fwd:
        fwd.append("x = x * 1")
    fwd.append("return x")
    return init, fwd, constants, comment


@st.composite
def coherent_source(draw, mutations=("off by one", "nasty", "statement", "delete")):
    init, fwd, constants, comment = draw(coherent_model())
    lines = ["import torch", "import torch.nn as nn", "import torch.nn.functional as F", ""]
    lines += [f"{k} = {v}" for k, v in constants.items()]
    lines += ["", "", "class Net(nn.Module):" + comment, "    def __init__(self):", "        super().__init__()"]
    lines += ["        " + line for stmt in init for line in stmt.split("\n")]
    lines += ["", "    def forward(self, x):"]
    lines += ["        " + line for stmt in fwd for line in stmt.split("\n")]
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2])) if mutations else 0):
        where = draw(st.integers(0, len(lines) - 1))
        how = draw(st.sampled_from(mutations))
        line = lines[where]
        numbers = list(re.finditer(r"(?<![\w.])\d+(?![\w.])", line))
        if how in ("off by one", "nasty") and numbers:
            m = draw(st.sampled_from(numbers))
            new = str(int(m.group()) + draw(st.sampled_from([-1, 1]))) if how == "off by one" else draw(
                st.sampled_from(NASTY))
            lines[where] = line[:m.start()] + new + line[m.end():]
        elif how == "statement" and line.startswith("        ") and not line.rstrip().endswith(":"):
            indent = line[:len(line) - len(line.lstrip())]
            stmt = draw(st.sampled_from(FORWARD_SIMPLE + FORWARD_BROKEN))
            lines.insert(where, "\n".join(indent + part for part in stmt.split("\n")))
        elif how == "delete" and line.startswith("        ") and not line.rstrip().endswith(":"):
            lines[where] = line[:len(line) - len(line.lstrip())] + "pass"
    return "\n".join(lines) + "\n"


def sources():
    """Coherent models (mutated now and then) and free-form ones, about half and half."""
    return st.one_of(coherent_source(), model_source())


# --------------------------------------------------------------------------- nasty inputs

NASTY_HEADER = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n\n"


def net(init: str, forward: str = "return x", comment: str = "  # gpumem: input_shape=(3, 32, 32) batch_size=8",
        before: str = "", after: str = "") -> str:
    body = "\n".join("        " + line for line in init.split("\n")) if init else "        pass"
    fwd = "\n".join("        " + line for line in forward.split("\n"))
    return (f"{NASTY_HEADER}{before}class Net(nn.Module):{comment}\n    def __init__(self):\n"
            f"        super().__init__()\n{body}\n\n    def forward(self, x):\n{fwd}\n{after}")


HUGE_LINEAR = net("self.fc = nn.Linear(10 ** 100, 2)", "return self.fc(x.flatten(1))")
HUGE_RANGE = net("self.blocks = nn.ModuleList([nn.ReLU() for _ in range(10 ** 9)])",
                 "for i in range(10 ** 9):\n    x = F.relu(x)\nreturn x")
SELF_RECURSIVE = net("self.inner = Net()", "return self.inner(x)")
SELF_RECURSIVE_FORWARD = net("self.fc = nn.Linear(32, 32)", "return self.forward(self.fc(x))")
HUGE_LIST = net("self.sizes = [0] * 10 ** 9", "x = x * len([0] * 10 ** 9)\nreturn x")
NESTED_PARENS = net("self.fc = nn.Linear(" + "(" * 200 + "32" + ")" * 200 + ", 2)", "return self.fc(x)")
NESTED_PARENS_90 = net("self.fc = nn.Linear(" + "(" * 90 + "32" + ")" * 90 + ", 2)", "return self.fc(x)")
MUTUAL_RECURSION = (NASTY_HEADER + "class A(nn.Module):  # gpumem: input_shape=(3, 32, 32)\n"
                    "    def __init__(self):\n        super().__init__()\n        self.b = B()\n\n"
                    "    def forward(self, x):\n        return self.b(x)\n\n\n"
                    "class B(nn.Module):  # gpumem: input_shape=(3, 32, 32)\n"
                    "    def __init__(self):\n        super().__init__()\n        self.a = A()\n\n"
                    "    def forward(self, x):\n        return self.a(x)\n")
KERNEL_ZERO = net("self.conv = nn.Conv2d(3, 8, kernel_size=0)\nself.pool = nn.MaxPool2d(0)",
                  "return self.pool(self.conv(x))")
STRIDE_NEGATIVE = net("self.conv = nn.Conv2d(3, 8, 3, stride=-1)\nself.pool = nn.MaxPool2d(2, stride=-1)",
                      "return self.pool(self.conv(x))")
WHILE_TRUE = net("self.fc = nn.Linear(32, 2)", "while True:\n    pass")
WHILE_TRUE_INIT = net("while True:\n    pass", "return x")
HUGE_POWER = net("self.fc = nn.Linear(2 ** 62, 2 ** 62)\nself.conv = nn.Conv2d(10 ** 30, 3, 3)",
                 "return self.fc(self.conv(x).flatten(1))")
POWER_TOWER = net("self.fc = nn.Linear(9 ** 9 ** 9, 2)", "return self.fc(x)")
HUGE_BATCH = net("self.conv = nn.Conv2d(3, 8, 3)", "return self.conv(x)",
                 comment="  # gpumem: input_shape=(3, 50, 50) batch_size=99999999999999999999999")
HUGE_BUDGET = net("self.conv = nn.Conv2d(3, 8, 3)", "return self.conv(x)",
                  comment="  # gpumem: input_shape=(3, 50, 50) budget='" + "9" * 400 + "'")
DEEP_SEQUENTIAL = net("self.seq = " + "nn.Sequential(" * 60 + "nn.ReLU()" + ")" * 60, "return self.seq(x)")
LONG_SEQUENTIAL = net("self.seq = nn.Sequential(" + ", ".join(["nn.Conv2d(3, 3, 3, padding=1)"] * 1000) + ")",
                      "return self.seq(x)")
# 500 terms: ast.parse copes; pyflakes gives up from about 350 (so under flake8 it fails first), but
# `gpumem report` and analyse_source see such a file on their own.
DEEP_ARITHMETIC = net("self.fc = nn.Linear(" + " + ".join(["1"] * 500) + ", 2)", "return self.fc(x)")
# 5,000 unrolled calls with a budget: the largest-batch search runs and simulates the step several
# times (quadratic freeing made 10,000 take 16 s; linear, 5,000 take about 2 s here).
FORWARD_LOOP_BUDGET = net("self.conv = nn.Conv2d(3, 3, 3, padding=1)",
                          "for i in range(5000):\n    x = self.conv(x)\nreturn x",
                          comment="  # gpumem: input_shape=(3, 32, 32) batch_size=8 budget=T4")
STRING_FORMAT = net("self.fc = nn.Linear(len('%099999999d' % 1), 2)", "return self.fc(x)")
FORMAT_METHOD = net("self.fc = nn.Linear(len('{:0999999999}'.format(1)), 2)", "return self.fc(x)")
NOT_PYTHON = "class Net(nn.Module):\n    def __init__(self:\n        nn.Sequential(\n"
NUL_BYTES = "import torch.nn as nn\nclass Net(nn.Module):\x00\n    pass\n"


def _plugin_items(src: str) -> list:
    """Run the plugin exactly as flake8 does: options parsed, then one Plugin per file."""
    try:
        tree = ast.parse(src)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        tree = None
    return list(Plugin(tree, src.splitlines(True), "m.py").run())


def _check_items(items: list) -> None:
    for item in items:
        assert isinstance(item, tuple) and len(item) == 4, item
        line, col, message, kind = item
        assert type(line) is int and line >= 1, item
        assert type(col) is int and col >= 0, item
        assert isinstance(message, str) and CODE.match(message), item
        assert kind is Plugin, item
        assert "gpumem failed on this file" not in message, item


def _timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    elapsed = time.perf_counter() - start
    assert elapsed < PER_RUN_SECONDS, f"{fn.__name__} took {elapsed:.1f} s (bound {PER_RUN_SECONDS} s)"
    return result


def _options(**values) -> argparse.Namespace:
    names = {f"gpumem_{name.replace('-', '_')}": None for name in OPTIONS}
    names.update(values)
    return argparse.Namespace(**names)


NASTY_EXAMPLES = [HUGE_LINEAR, HUGE_RANGE, SELF_RECURSIVE, SELF_RECURSIVE_FORWARD, HUGE_LIST, NESTED_PARENS,
                  NESTED_PARENS_90, MUTUAL_RECURSION, KERNEL_ZERO, STRIDE_NEGATIVE, WHILE_TRUE, WHILE_TRUE_INIT,
                  HUGE_POWER, POWER_TOWER, HUGE_BATCH, HUGE_BUDGET, DEEP_SEQUENTIAL, LONG_SEQUENTIAL,
                  DEEP_ARITHMETIC, FORWARD_LOOP_BUDGET, STRING_FORMAT, FORMAT_METHOD, NOT_PYTHON, NUL_BYTES]
NASTY_IDS = ["huge_linear", "huge_range", "self_recursive", "self_recursive_forward", "huge_list", "nested_parens_200",
             "nested_parens_90", "mutual_recursion", "kernel_zero", "stride_negative", "while_true", "while_true_init",
             "huge_power", "power_tower", "huge_batch", "huge_budget", "deep_sequential", "long_sequential",
             "deep_arithmetic", "forward_loop_budget", "string_format", "format_method", "not_python", "nul_bytes"]


def _with_examples(test):
    for src in reversed(NASTY_EXAMPLES):
        test = example(src=src)(test)
    return test


FUZZ = settings(derandomize=True, max_examples=120, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@_with_examples
@given(src=sources())
def test_plugin_never_raises(src):
    Plugin.parse_options(_options())
    _check_items(_timed(_plugin_items, src))


@FUZZ
@_with_examples
@given(src=sources())
def test_analyse_source_never_raises(src):
    analysis = _timed(analyse_source, src, "m.py")
    for d in analysis.diagnostics:
        assert d.code.startswith("GPM") and d.line >= 1 and d.col >= 0, d


@settings(derandomize=True, max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@_with_examples
@given(src=sources())
def test_plugin_with_a_budget_never_raises(src):
    """With a budget the plugin also searches the largest batch that fits: bounded too."""
    Plugin.parse_options(_options(gpumem_budget="T4", gpumem_batch_size="32", gpumem_input_shape="3,32,32"))
    try:
        _check_items(_timed(_plugin_items, src))
    finally:
        Plugin.parse_options(_options())


@pytest.mark.parametrize("src", NASTY_EXAMPLES, ids=NASTY_IDS)
def test_nasty_input(src):
    """The regression inputs one by one (the fuzz tests run them too, but stop at the first failure)."""
    Plugin.parse_options(_options())
    _check_items(_timed(_plugin_items, src))
    _timed(analyse_source, src, "m.py")


# A flat chain of 10,000 `and` operands: ast.parse and pyflakes take it, but libcst's native parser
# overflows the C stack on it (from about 8,000 operands with an 8 MiB stack): SIGSEGV, which kills a
# `flake8 -j 1` run outright and leaves `flake8 -j 2` waiting forever for the dead worker.
LONG_BOOL_CHAIN = net("self.fc = nn.Linear(32, 2)",
                      "if " + " and ".join(["x"] * 10000) + ":\n    pass\nreturn self.fc(x)")
IN_A_SUBPROCESS = """\
import ast, sys
from flake8_gpumem.analysis import analyse_source
from flake8_gpumem.plugin import Plugin, OPTIONS
import argparse
src = sys.stdin.read()
Plugin.parse_options(argparse.Namespace(**{"gpumem_" + k.replace("-", "_"): None for k in OPTIONS}))
items = list(Plugin(ast.parse(src), src.splitlines(True), "m.py").run())
assert all(i[2].startswith("GPM") and "gpumem failed" not in i[2] for i in items), items
analyse_source(src, "m.py")
"""


@pytest.mark.parametrize("src", [LONG_BOOL_CHAIN], ids=["and_chain_10000"])
def test_no_crash_of_the_process(src):
    """Inputs that crash the interpreter itself (not an exception): run in a child process so that a
    crash fails this test instead of killing pytest."""
    assert ast.parse(src)  # Python itself (and so flake8) accepts the file
    proc = subprocess.run([sys.executable, "-c", IN_A_SUBPROCESS], input=src, text=True, capture_output=True,
                          timeout=60)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])


def test_generated_sources_are_mostly_models():
    """The grammar is worth something only if much of what it writes parses and some of it is analysed
    through to a memory estimate (otherwise the fuzz would only exercise the early exits)."""
    seen = {"runs": 0, "parsed": 0, "analysed": 0}

    @settings(derandomize=True, max_examples=60, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(src=sources())
    def count(src):
        result = analyse_source(src, "m.py")
        seen["runs"] += 1
        seen["parsed"] += result.error is None
        seen["analysed"] += bool(result.models)

    count()
    assert seen["runs"] >= 50, seen
    assert seen["parsed"] >= seen["runs"] // 2, seen
    assert seen["analysed"] >= 3, seen


# --------------------------------------------------------------------------- against torch

def _torch_layers(src: str, input_shape: tuple, input_dtype: str | None, names: set):
    """Build the generated model with torch (only coherent sources, with at most off-by-one sizes:
    nothing unbounded) and run it on a batch of 2; per hooked module name, the output shapes
    without the batch. Returns (params, {name: [shape, ...]}) or None when torch rejects the model."""
    import torch

    namespace: dict = {}
    try:
        exec(compile(src, "m.py", "exec"), namespace)  # noqa: S102 - generated by the grammar above
        model = namespace["Net"]()
        modules = dict(model.named_modules())
        seen: dict = {}
        for name in names:
            if name in modules:
                modules[name].register_forward_hook(
                    lambda mod, args, out, name=name: seen.setdefault(name, []).append(
                        tuple((out[0] if isinstance(out, tuple) else out).shape[1:])))
        if input_dtype == "int64":
            x = torch.zeros((2,) + tuple(input_shape), dtype=torch.long)
        else:
            x = torch.randn((2,) + tuple(input_shape))
        model(x)
    except Exception:  # noqa: BLE001 - torch's verdict: this model does not run
        return None
    return sum(p.numel() for p in model.parameters()), seen


@settings(derandomize=True, max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(src=coherent_source(mutations=("off by one",)))
def test_coherent_models_agree_with_torch(src):
    """Beyond never raising: on models torch can run, the analysis finds the model, reports no shape
    error, and agrees with torch on the parameter count and every module's output shape; where the
    analysis reports a shape error (GPM300), torch rejects the model too."""
    analysis = _timed(analyse_source, src, "m.py")
    codes = {d.code for d in analysis.diagnostics}
    reported = analysis.models[0] if analysis.models else None
    comment = re.search(r"input_shape=\(([^)]*)\)", src)
    shape = tuple(int(v) for v in comment.group(1).split(",") if v.strip())
    layer_names = {layer.name for layer in reported.layers if layer.module} if reported else set()
    torch_says = _torch_layers(src, shape, "int64" if "input_dtype=int64" in src else None, layer_names)
    if torch_says is None:
        return  # torch rejects it; the analysis may or may not have seen why (GPM900 is allowed)
    assert "GPM300" not in codes and "GPM201" not in codes, (analysis.diagnostics, src)
    assert reported is not None, (analysis.diagnostics, src)
    params, seen = torch_says
    assert reported.params == params, (reported.params, params, src)
    ours: dict = {}
    for layer in reported.layers:
        if layer.module:
            ours.setdefault(layer.name, []).append(tuple(layer.output_shape[1:]))
    assert ours == seen, (ours, seen, src)
