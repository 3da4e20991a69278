"""Every layer of the catalogue, and the shape arithmetic, checked against PyTorch.

Each case is one layer (or one functional expression) wrapped in a tiny model
source.  The analyser reads that source statically; PyTorch executes it
(tests/torch_oracle.py).  Both must agree exactly on the total parameter count
and on the list of leaf-module calls: (qualified name, class name, output shape
with the batch, parameters of that module).

Functional cases end their forward with ``return self.out(<expr>)`` where
``self.out = nn.Identity()``, so the oracle sees the shape of ``<expr>`` as the
output of the ``out`` module call.

Further down: edge cases with the arithmetic worked by hand (checked against
both PyTorch and the analyser), and the diagnostics GPM200 / GPM201 / GPM300
with the numbers their messages must name and the line they must point at.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
import torch

try:  # works whether or not tests/ is a package
    from tests import torch_oracle
except ImportError:  # pragma: no cover
    import torch_oracle

BATCH = 2


# --------------------------------------------------------------------------
# Building model sources
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    shape: tuple[int, ...]  # per sample; the batch (BATCH) is prepended
    init: tuple[str, ...]  # lines of __init__ after super().__init__()
    forward: tuple[str, ...]  # lines of forward(self, x)
    dtype: str = "float32"

    @property
    def source(self) -> str:
        return model_source(self.shape, self.init, self.forward, dtype=self.dtype)


def model_source(shape, init, forward, batch=BATCH, dtype="float32") -> str:
    settings = f"input_shape={tuple(shape)!r} batch_size={batch}"
    if dtype != "float32":  # token ids: the analyser must be told, as the user would
        settings += f" input_dtype={dtype}"
    lines = [
        "import torch",
        "import torch.nn as nn",
        "import torch.nn.functional as F",
        "",
        "",
        f"class M(nn.Module):  # gpumem: {settings}",
        "    def __init__(self):",
        "        super().__init__()",
        *(f"        {line}" for line in init),
        "",
        "    def forward(self, x):",
        *(f"        {line}" for line in forward),
        "",
    ]
    return "\n".join(lines)


def _compact(text: str) -> str:
    return text.replace("nn.", "").replace(" ", "")


def _shape_id(shape) -> str:
    return "x".join(map(str, shape))


def layer(expr, shape, dtype="float32", forward=("return self.layer(x)",), init=()):
    """One layer, ``self.layer = <expr>``, applied to the input."""
    if isinstance(forward, str):
        forward = (forward,)
    suffix = "" if forward == ("return self.layer(x)",) else "+custom"
    return Case(
        id=f"{_compact(expr)}@{_shape_id(shape)}{suffix}",
        shape=tuple(shape),
        init=(f"self.layer = {expr}", *init),
        forward=tuple(forward),
        dtype=dtype,
    )


def functional(expr, shape, setup=(), init=()):
    """``return self.out(<expr>)``: the Identity call exposes the shape of <expr>."""
    return Case(
        id=f"{expr.replace(' ', '')}@{_shape_id(shape)}",
        shape=tuple(shape),
        init=(*init, "self.out = nn.Identity()"),
        forward=(*setup, f"return self.out({expr})"),
    )


def pipeline(id, shape, init, forward, dtype="float32"):
    return Case(id=id, shape=tuple(shape), init=tuple(init), forward=tuple(forward), dtype=dtype)


# --------------------------------------------------------------------------
# The catalogue, layer by layer
# --------------------------------------------------------------------------

MHA_FORWARD = ("out, _ = self.layer(x, x, x)", "return out")

LAYER_CASES = [
    # ---- Conv1d --------------------------------------------------------
    layer("nn.Conv1d(4, 8, 3)", (4, 20)),
    layer("nn.Conv1d(4, 8, kernel_size=5, stride=2, padding=2)", (4, 20)),
    layer("nn.Conv1d(4, 8, 3, stride=2)", (4, 20)),  # 17/2: last column unused
    layer("nn.Conv1d(4, 8, 3, dilation=2)", (4, 20)),
    layer("nn.Conv1d(4, 8, 3, padding='same', dilation=3)", (4, 20)),
    layer("nn.Conv1d(4, 8, 4, padding='same')", (4, 20)),  # even kernel: 1 left, 2 right
    layer("nn.Conv1d(4, 8, 3, padding='valid')", (4, 20)),
    layer("nn.Conv1d(4, 8, 3, groups=2, bias=False)", (4, 20)),
    layer("nn.Conv1d(4, 4, 3, groups=4)", (4, 20)),  # depthwise
    layer("nn.Conv1d(4, 8, 3, padding=1, padding_mode='reflect')", (4, 20)),
    layer("nn.Conv1d(in_channels=4, out_channels=6, kernel_size=(3,), stride=(3,))", (4, 20)),
    layer("nn.Conv1d(4, 8, 3, 1, 1, 1, 1, False)", (4, 20)),  # all positional, bias=False
    # ---- Conv2d --------------------------------------------------------
    layer("nn.Conv2d(3, 8, 3)", (3, 16, 16)),
    layer("nn.Conv2d(3, 8, 3, 1, 1)", (3, 16, 16)),
    layer("nn.Conv2d(3, 8, kernel_size=(3, 5), stride=(2, 1), padding=(1, 2))", (3, 16, 16)),
    layer("nn.Conv2d(3, 8, 3, dilation=2)", (3, 16, 16)),
    layer("nn.Conv2d(3, 8, (3, 5), dilation=(2, 1), padding='same')", (3, 16, 16)),
    layer("nn.Conv2d(3, 8, 4, padding='same')", (3, 15, 16)),
    layer("nn.Conv2d(3, 8, 5, padding='valid')", (3, 16, 16)),
    layer("nn.Conv2d(4, 8, 3, groups=2)", (4, 16, 16)),
    layer("nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False)", (4, 16, 16)),  # depthwise
    layer("nn.Conv2d(4, 12, 3, padding=1, groups=4)", (4, 16, 16)),  # depthwise multiplier 3
    layer("nn.Conv2d(4, 8, 1)", (4, 16, 16)),  # pointwise
    layer("nn.Conv2d(3, 8, 3, padding=1, padding_mode='reflect')", (3, 16, 16)),
    layer("nn.Conv2d(3, 8, 3, padding=2, padding_mode='replicate')", (3, 16, 16)),
    layer("nn.Conv2d(3, 8, 3, padding=1, padding_mode='circular')", (3, 16, 16)),
    layer("nn.Conv2d(3, 8, 7, stride=2, padding=3, bias=False)", (3, 32, 32)),  # ResNet stem
    layer("nn.Conv2d(3, 8, 4, stride=3)", (3, 16, 17)),
    layer("nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1)", (3, 25, 25)),
    layer("nn.Conv2d(in_channels=3, out_channels=8, kernel_size=(1, 7), padding=(0, 3))", (3, 9, 9)),
    # ---- Conv3d --------------------------------------------------------
    layer("nn.Conv3d(2, 4, 3)", (2, 6, 8, 8)),
    layer("nn.Conv3d(2, 4, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))", (2, 6, 8, 8)),
    layer("nn.Conv3d(2, 4, 3, padding='same', dilation=(1, 2, 1))", (2, 6, 8, 8)),
    layer("nn.Conv3d(2, 4, 3, groups=2, bias=False)", (2, 6, 8, 8)),
    layer("nn.Conv3d(2, 4, 3, stride=2, padding=1, padding_mode='reflect')", (2, 6, 8, 9)),
    # ---- ConvTranspose1d -----------------------------------------------
    layer("nn.ConvTranspose1d(4, 8, 3)", (4, 10)),
    layer("nn.ConvTranspose1d(4, 8, 4, stride=2, padding=1)", (4, 10)),
    layer("nn.ConvTranspose1d(4, 8, 3, stride=2, padding=1, output_padding=1)", (4, 10)),
    layer("nn.ConvTranspose1d(4, 8, 3, dilation=2, groups=2, bias=False)", (4, 10)),
    # ---- ConvTranspose2d -----------------------------------------------
    layer("nn.ConvTranspose2d(4, 8, 2, stride=2)", (4, 7, 7)),
    layer("nn.ConvTranspose2d(4, 8, 4, 2, 1)", (4, 7, 7)),
    layer(
        "nn.ConvTranspose2d(4, 8, kernel_size=(3, 5), stride=(2, 3), padding=(1, 2), output_padding=(1, 2))",
        (4, 7, 6),
    ),
    layer("nn.ConvTranspose2d(4, 8, 3, dilation=2, groups=4)", (4, 7, 7)),
    layer("nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1, bias=False)", (4, 7, 7)),
    layer("nn.ConvTranspose2d(in_channels=4, out_channels=6, kernel_size=4, stride=2, padding=1, groups=2)", (4, 5, 5)),
    # ---- ConvTranspose3d -----------------------------------------------
    layer("nn.ConvTranspose3d(4, 2, 2, stride=2)", (4, 3, 5, 5)),
    layer("nn.ConvTranspose3d(4, 2, (1, 4, 4), stride=(1, 2, 2), padding=(0, 1, 1), groups=2)", (4, 3, 5, 5)),
    # output_padding only has to be smaller than the stride OR the dilation
    layer("nn.ConvTranspose3d(4, 2, 3, dilation=2, output_padding=1, bias=False)", (4, 3, 5, 5)),
    # ---- Linear ----------------------------------------------------------
    layer("nn.Linear(10, 5)", (10,)),
    layer("nn.Linear(10, 5, bias=False)", (10,)),
    layer("nn.Linear(in_features=10, out_features=3)", (7, 10)),  # 3D input
    layer("nn.Linear(10, 4)", (3, 5, 10)),  # 4D input
    layer("nn.Linear(1, 1)", (1,)),
    # ---- Bilinear --------------------------------------------------------
    layer("nn.Bilinear(6, 6, 4)", (6,), forward="return self.layer(x, x)"),
    layer("nn.Bilinear(6, 6, 4, bias=False)", (6,), forward="return self.layer(x, x)"),
    layer("nn.Bilinear(in1_features=6, in2_features=6, out_features=3)", (5, 6), forward="return self.layer(x, x)"),
    # ---- Embedding (int64 input) -----------------------------------------
    layer("nn.Embedding(10, 4)", (7,), dtype="int64"),
    layer("nn.Embedding(10, 4, padding_idx=0)", (3, 5), dtype="int64"),
    layer("nn.Embedding(num_embeddings=100, embedding_dim=8, padding_idx=-1)", (6,), dtype="int64"),
    layer("nn.Embedding(100, 8, max_norm=1.0)", (6,), dtype="int64"),
    # ---- BatchNorm -------------------------------------------------------
    layer("nn.BatchNorm1d(8)", (8,)),  # 2D input (N, C)
    layer("nn.BatchNorm1d(8)", (8, 5)),  # 3D input (N, C, L)
    layer("nn.BatchNorm1d(8, affine=False)", (8, 5)),
    layer("nn.BatchNorm1d(num_features=8, eps=1e-3, momentum=None, track_running_stats=False)", (8,)),
    layer("nn.BatchNorm2d(3)", (3, 6, 6)),
    layer("nn.BatchNorm2d(3, affine=False)", (3, 6, 6)),
    layer("nn.BatchNorm2d(3, 1e-3, 0.01, True, False)", (3, 6, 6)),  # positional track_running_stats=False
    layer("nn.BatchNorm3d(2)", (2, 3, 4, 4)),
    layer("nn.BatchNorm3d(2, affine=False, track_running_stats=False)", (2, 3, 4, 4)),
    # ---- LayerNorm -------------------------------------------------------
    layer("nn.LayerNorm(8)", (5, 8)),
    layer("nn.LayerNorm((5, 8))", (5, 8)),
    layer("nn.LayerNorm([4, 4])", (3, 4, 4)),
    layer("nn.LayerNorm(8, elementwise_affine=False)", (5, 8)),
    layer("nn.LayerNorm(8, bias=False)", (5, 8)),
    layer("nn.LayerNorm(normalized_shape=(3, 4, 4), eps=1e-6)", (3, 4, 4)),
    # ---- GroupNorm -------------------------------------------------------
    layer("nn.GroupNorm(2, 8)", (8, 4, 4)),
    layer("nn.GroupNorm(1, 8, affine=False)", (8, 4, 4)),
    layer("nn.GroupNorm(num_groups=4, num_channels=8)", (8, 10)),
    layer("nn.GroupNorm(8, 8, eps=1e-6)", (8, 2, 3, 3)),
    # ---- InstanceNorm ----------------------------------------------------
    layer("nn.InstanceNorm1d(4)", (4, 10)),  # affine defaults to False: no parameters
    layer("nn.InstanceNorm1d(4, affine=True)", (4, 10)),
    layer("nn.InstanceNorm2d(3)", (3, 6, 6)),
    layer("nn.InstanceNorm2d(3, affine=True, track_running_stats=True)", (3, 6, 6)),
    layer("nn.InstanceNorm3d(2)", (2, 3, 4, 4)),
    layer("nn.InstanceNorm3d(num_features=2, affine=True)", (2, 3, 4, 4)),
    # ---- MaxPool ---------------------------------------------------------
    layer("nn.MaxPool1d(2)", (4, 11)),
    layer("nn.MaxPool1d(3, stride=2, padding=1)", (4, 11)),
    layer("nn.MaxPool1d(3, 2, ceil_mode=True)", (4, 10)),
    layer("nn.AvgPool1d(3, stride=2, ceil_mode=True)", (4, 2)),  # the window overhangs: one output, no error
    layer("nn.MaxPool2d(3, stride=2, ceil_mode=True)", (4, 2, 2)),
    layer("nn.MaxPool1d(2, dilation=2)", (4, 11)),
    layer("nn.MaxPool1d(2, stride=2, padding=1, ceil_mode=True)", (4, 5)),  # last window dropped
    layer("nn.MaxPool1d(kernel_size=1, stride=3, ceil_mode=True)", (4, 5)),  # last window dropped
    layer("nn.MaxPool2d(2)", (4, 10, 10)),
    layer("nn.MaxPool2d(2)", (4, 25, 25)),
    layer("nn.MaxPool2d(2, 2)", (4, 25, 24)),
    layer("nn.MaxPool2d(2, ceil_mode=True)", (4, 25, 25)),
    layer("nn.MaxPool2d(3, stride=2, ceil_mode=True)", (4, 10, 10)),
    layer("nn.MaxPool2d(3, 2, 1)", (4, 10, 10)),
    layer("nn.MaxPool2d(kernel_size=(2, 3), stride=(2, 1), padding=(1, 0))", (4, 10, 10)),
    layer("nn.MaxPool2d(2, 2, 1, ceil_mode=True)", (4, 5, 7)),
    layer("nn.MaxPool2d(3, stride=1, padding=1, dilation=(1, 2))", (4, 10, 10)),
    layer("nn.MaxPool2d(3, stride=2, padding=1, dilation=2, ceil_mode=True)", (4, 11, 12)),
    layer("nn.MaxPool2d(2, return_indices=True)", (4, 9, 9), forward=("out, idx = self.layer(x)", "return out")),
    layer("nn.MaxPool3d(2)", (2, 5, 6, 6)),
    layer("nn.MaxPool3d((1, 2, 2))", (2, 5, 6, 6)),
    layer("nn.MaxPool3d(3, stride=2, padding=1, ceil_mode=True)", (2, 5, 6, 7)),
    # ---- AvgPool ---------------------------------------------------------
    layer("nn.AvgPool1d(2)", (4, 11)),
    layer("nn.AvgPool1d(3, stride=2, padding=1, count_include_pad=False)", (4, 11)),
    layer("nn.AvgPool1d(3, 2, 0, True)", (4, 10)),  # positional ceil_mode=True
    layer("nn.AvgPool2d(2)", (4, 25, 25)),
    layer("nn.AvgPool2d(3, 2, 1, ceil_mode=True)", (4, 10, 10)),
    layer("nn.AvgPool2d(2, 2, 1, ceil_mode=True)", (4, 9, 8)),  # last window dropped in H
    layer("nn.AvgPool2d((2, 4), stride=(2, 2), divisor_override=3)", (4, 10, 10)),
    layer("nn.AvgPool2d(kernel_size=3, stride=1, padding=1, count_include_pad=False)", (4, 10, 10)),
    layer("nn.AvgPool3d(2)", (2, 5, 6, 6)),
    layer("nn.AvgPool3d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)", (2, 5, 6, 7)),
    # ---- Adaptive pools --------------------------------------------------
    layer("nn.AdaptiveAvgPool1d(5)", (4, 12)),
    layer("nn.AdaptiveAvgPool1d(7)", (4, 10)),  # non-divisible
    layer("nn.AdaptiveAvgPool2d((1, 1))", (4, 10, 10)),
    layer("nn.AdaptiveAvgPool2d(1)", (4, 10, 10)),
    layer("nn.AdaptiveAvgPool2d((None, 3))", (4, 10, 10)),
    layer("nn.AdaptiveAvgPool2d(7)", (4, 5, 5)),  # output larger than input
    layer("nn.AdaptiveAvgPool2d(output_size=(3, 4))", (4, 10, 7)),
    layer("nn.AdaptiveAvgPool3d((2, None, 3))", (2, 5, 6, 7)),
    layer("nn.AdaptiveAvgPool3d(1)", (2, 5, 6, 7)),
    layer("nn.AdaptiveMaxPool1d(3)", (4, 10)),
    layer("nn.AdaptiveMaxPool2d((3, 4))", (4, 10, 10)),
    layer("nn.AdaptiveMaxPool2d((None, 1))", (4, 10, 9)),
    layer("nn.AdaptiveMaxPool2d(5)", (4, 7, 13)),
    layer("nn.AdaptiveMaxPool3d(2)", (2, 5, 6, 7)),
    layer("nn.AdaptiveMaxPool3d((None, 2, None))", (2, 5, 6, 7)),
    # ---- Dropout ---------------------------------------------------------
    layer("nn.Dropout()", (10,)),
    layer("nn.Dropout(p=0.3)", (4, 6, 6)),
    layer("nn.Dropout(0.5, inplace=True)", (10,)),
    layer("nn.Dropout1d(0.2)", (4, 10)),
    layer("nn.Dropout2d()", (4, 6, 6)),
    layer("nn.Dropout3d(0.1)", (2, 3, 4, 4)),
    layer("nn.AlphaDropout(0.2)", (10,)),
    layer("nn.FeatureAlphaDropout(0.2)", (4, 6, 6)),
    # ---- Activations -----------------------------------------------------
    layer("nn.ReLU()", (4, 6, 6)),
    layer("nn.ReLU(inplace=True)", (10,)),
    layer("nn.ReLU(True)", (10,)),
    layer("nn.ReLU6()", (4, 6, 6)),
    layer("nn.LeakyReLU()", (4, 6, 6)),
    layer("nn.LeakyReLU(0.2, inplace=True)", (4, 6, 6)),
    layer("nn.LeakyReLU(negative_slope=0.1)", (10,)),
    layer("nn.PReLU()", (4, 6, 6)),
    layer("nn.PReLU(num_parameters=4)", (4, 6, 6)),
    layer("nn.PReLU(4, init=0.1)", (4, 6, 6)),
    layer("nn.PReLU(10)", (10,)),
    layer("nn.ELU()", (4, 6, 6)),
    layer("nn.ELU(alpha=0.5)", (10,)),
    layer("nn.SELU()", (10,)),
    layer("nn.CELU()", (10,)),
    layer("nn.CELU(alpha=2.0)", (4, 6, 6)),
    layer("nn.GELU()", (4, 6, 6)),
    layer("nn.GELU(approximate='tanh')", (10,)),
    layer("nn.SiLU()", (4, 6, 6)),
    layer("nn.Mish()", (10,)),
    layer("nn.Tanh()", (10,)),
    layer("nn.Sigmoid()", (4, 6, 6)),
    layer("nn.Hardswish()", (4, 6, 6)),
    layer("nn.Hardsigmoid()", (10,)),
    layer("nn.Hardtanh()", (10,)),
    layer("nn.Hardtanh(-2.0, 2.0)", (4, 6, 6)),
    layer("nn.Softplus()", (10,)),
    layer("nn.Softplus(beta=2, threshold=10)", (4, 6, 6)),
    layer("nn.Softmax(dim=1)", (10,)),
    layer("nn.Softmax(dim=1)", (4, 6, 6)),
    layer("nn.Softmax(-1)", (4, 6, 6)),
    layer("nn.LogSoftmax(dim=1)", (10,)),
    layer("nn.LogSoftmax(1)", (4, 6, 6)),
    layer("nn.Softmax2d()", (4, 6, 6)),
    layer("nn.Softsign()", (10,)),
    layer("nn.LogSigmoid()", (4, 6, 6)),
    layer("nn.Tanhshrink()", (10,)),
    layer("nn.Threshold(0.1, 20.0)", (4, 6, 6)),
    layer("nn.Threshold(threshold=0.0, value=-1.0, inplace=True)", (10,)),
    # ---- Flatten / Unflatten / Identity ----------------------------------
    layer("nn.Flatten()", (4, 3, 3)),
    layer("nn.Flatten(0)", (4, 3, 3)),  # flattens the batch too
    layer("nn.Flatten(start_dim=2)", (4, 3, 3)),
    layer("nn.Flatten(1, 2)", (4, 3, 3, 2)),
    layer("nn.Flatten(-2, -1)", (4, 3, 3)),
    layer("nn.Flatten(start_dim=1, end_dim=-2)", (4, 3, 3)),
    layer("nn.Unflatten(1, (2, 5))", (10,)),
    layer("nn.Unflatten(-1, (3, 4))", (5, 12)),
    layer("nn.Unflatten(dim=1, unflattened_size=(4, 2, 2))", (16, 3)),
    layer("nn.Unflatten(1, (-1, 5))", (10,)),
    layer("nn.Identity()", (3, 4)),
    layer("nn.Identity(54, unused_argument1=0.1)", (3, 4)),
    # ---- Upsample --------------------------------------------------------
    layer("nn.Upsample(scale_factor=2)", (3, 5, 5)),
    layer("nn.Upsample(scale_factor=2, mode='nearest')", (3, 5, 6)),
    layer("nn.Upsample(size=(7, 9))", (3, 5, 5)),
    layer("nn.Upsample(size=8, mode='bilinear', align_corners=True)", (3, 5, 5)),
    layer("nn.Upsample(scale_factor=(2, 3), mode='bilinear', align_corners=False)", (3, 5, 5)),
    layer("nn.Upsample(scale_factor=1.5, mode='bilinear')", (3, 5, 5)),  # floor(7.5) = 7
    layer("nn.Upsample(scale_factor=0.5)", (3, 5, 5)),  # floor(2.5) = 2
    layer("nn.Upsample(scale_factor=2, mode='linear')", (3, 5)),
    layer("nn.Upsample(scale_factor=2, mode='trilinear')", (2, 3, 4, 4)),
    layer("nn.Upsample(None, 3, 'nearest')", (3, 4, 4)),  # positional scale_factor
    layer("nn.UpsamplingNearest2d(scale_factor=2)", (3, 5, 5)),
    layer("nn.UpsamplingBilinear2d(size=(8, 6))", (3, 5, 5)),
    # ---- PixelShuffle / PixelUnshuffle -----------------------------------
    layer("nn.PixelShuffle(2)", (8, 3, 3)),
    layer("nn.PixelShuffle(upscale_factor=3)", (9, 2, 2)),
    layer("nn.PixelUnshuffle(2)", (2, 6, 6)),
    layer("nn.PixelUnshuffle(downscale_factor=3)", (1, 6, 9)),
    # ---- Padding ---------------------------------------------------------
    layer("nn.ZeroPad2d(1)", (3, 4, 4)),
    layer("nn.ZeroPad2d((1, 2, 3, 4))", (3, 4, 4)),  # (left, right, top, bottom)
    layer("nn.ZeroPad2d((0, 1, 0, 1))", (3, 4, 4)),
    layer("nn.ZeroPad2d((-1, -1, 0, 0))", (3, 4, 4)),  # negative padding crops
    layer("nn.ConstantPad1d(2, 3.5)", (3, 5)),
    layer("nn.ConstantPad1d((1, 3), 0.0)", (3, 5)),
    layer("nn.ConstantPad2d((1, 0, 2, 0), 1.0)", (3, 4, 4)),
    layer("nn.ConstantPad2d(padding=2, value=-1.0)", (3, 4, 4)),
    layer("nn.ReflectionPad2d(2)", (3, 5, 5)),
    layer("nn.ReflectionPad2d((1, 1, 2, 0))", (3, 5, 5)),
    layer("nn.ReplicationPad2d(3)", (3, 5, 5)),
    layer("nn.ReplicationPad2d((0, 2, 1, 1))", (3, 5, 5)),
    layer("nn.ZeroPad1d(2)", (3, 5)),
    layer("nn.ZeroPad3d((1, 1, 0, 0, 2, 0))", (2, 3, 4, 4)),  # (W left, W right, H top, H bottom, D front, D back)
    layer("nn.ConstantPad3d(1, 0.0)", (2, 3, 4, 4)),
    layer("nn.ReflectionPad1d((2, 1))", (3, 5)),
    layer("nn.ReflectionPad3d(1)", (2, 3, 4, 4)),
    layer("nn.ReplicationPad1d(2)", (3, 5)),
    layer("nn.ReplicationPad3d((1, 0, 1, 0, 1, 0))", (2, 3, 4, 4)),
    layer("nn.CircularPad1d(1)", (3, 5)),
    layer("nn.CircularPad2d((1, 2, 0, 1))", (3, 5, 5)),
    layer("nn.CircularPad3d(1)", (2, 3, 4, 4)),
    # ---- Recurrent (the module output is the first element of the tuple) --
    layer("nn.LSTM(8, 16)", (5, 8)),
    layer("nn.LSTM(8, 16, num_layers=2)", (5, 8)),
    layer("nn.LSTM(8, 16, batch_first=True, bidirectional=True)", (5, 8)),
    layer("nn.LSTM(input_size=8, hidden_size=12, num_layers=3, bidirectional=True, batch_first=True)", (5, 8)),
    layer("nn.LSTM(8, 16, proj_size=4, batch_first=True)", (5, 8)),
    layer("nn.LSTM(8, 16, num_layers=2, proj_size=4, bidirectional=True)", (5, 8)),
    layer("nn.LSTM(8, 16, bias=False, batch_first=True)", (5, 8)),
    layer("nn.LSTM(8, 16, 2, True, True)", (5, 8)),  # positional num_layers, bias, batch_first
    layer("nn.LSTM(8, 16, num_layers=2, dropout=0.1, batch_first=True)", (5, 8)),
    layer("nn.GRU(8, 16)", (5, 8)),
    layer("nn.GRU(8, 12, num_layers=2, batch_first=True, bidirectional=True)", (5, 8)),
    layer("nn.GRU(8, 16, bias=False, batch_first=True)", (5, 8)),
    layer("nn.RNN(8, 16)", (5, 8)),
    layer("nn.RNN(8, 16, nonlinearity='relu', num_layers=2, batch_first=True)", (5, 8)),
    layer("nn.RNN(8, 16, bidirectional=True, bias=False)", (5, 8)),
    layer(
        "nn.LSTM(8, 16, batch_first=True)",
        (5, 8),
        forward=("out, (h, c) = self.layer(x)", "return out"),
    ),
    # ---- MultiheadAttention ----------------------------------------------
    layer("nn.MultiheadAttention(16, 4)", (5, 16), forward=MHA_FORWARD),
    layer("nn.MultiheadAttention(16, 4, batch_first=True)", (5, 16), forward=MHA_FORWARD),
    layer(
        "nn.MultiheadAttention(embed_dim=16, num_heads=2, bias=False, batch_first=True)", (5, 16), forward=MHA_FORWARD
    ),
    layer("nn.MultiheadAttention(16, 4, add_bias_kv=True, batch_first=True)", (5, 16), forward=MHA_FORWARD),
    layer("nn.MultiheadAttention(16, 1, dropout=0.1, batch_first=True)", (5, 16), forward=MHA_FORWARD),
    layer(
        "nn.MultiheadAttention(16, 4, kdim=8, vdim=12, batch_first=True)",
        (5, 16),
        init=("self.k = nn.Linear(16, 8)", "self.v = nn.Linear(16, 12)"),
        forward=("out, _ = self.layer(x, self.k(x), self.v(x))", "return out"),
    ),
    layer(
        "nn.MultiheadAttention(16, 4, kdim=8, vdim=8)",
        (5, 16),
        init=("self.kv = nn.Linear(16, 8)",),
        forward=("kv = self.kv(x)", "out, _ = self.layer(x, kv, kv)", "return out"),
    ),
    # ---- Transformer layers ----------------------------------------------
    layer("nn.TransformerEncoderLayer(16, 4, dim_feedforward=32)", (5, 16)),
    layer(
        "nn.TransformerEncoderLayer(d_model=16, nhead=4, dim_feedforward=32, batch_first=True, norm_first=True, "
        "activation='gelu')",
        (5, 16),
    ),
    layer("nn.TransformerEncoderLayer(16, 2, 32, 0.0, batch_first=True)", (5, 16)),
    layer("nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, bias=False, batch_first=True)", (5, 16)),
    layer("nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, activation=nn.GELU(), batch_first=True)", (5, 16)),
    layer("nn.TransformerDecoderLayer(16, 4, dim_feedforward=32)", (5, 16), forward="return self.layer(x, x)"),
    layer(
        "nn.TransformerDecoderLayer(16, 4, 32, batch_first=True, norm_first=True, activation='gelu')",
        (5, 16),
        forward="return self.layer(x, x)",
    ),
    layer(
        "nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, batch_first=True), num_layers=2)",
        (5, 16),
    ),
    layer(
        "nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 4, 32, batch_first=True), 2, norm=nn.LayerNorm(16))",
        (5, 16),
    ),
    # ---- Containers --------------------------------------------------------
    layer("nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2))", (3, 9, 9)),
    layer("nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, 2))", (3, 2, 2)),
]


# --------------------------------------------------------------------------
# Functional ops and tensor methods (shape exposed through self.out)
# --------------------------------------------------------------------------

FUNCTIONAL_CASES = [
    # pooling
    functional("F.max_pool2d(x, 3, 2, 1, ceil_mode=True)", (4, 10, 10)),
    functional("F.max_pool2d(x, 2)", (4, 25, 25)),
    functional("F.max_pool2d(x, (2, 2))", (4, 10, 9)),
    functional("F.max_pool2d(x, kernel_size=3, stride=2)", (4, 10, 10)),
    functional("F.max_pool1d(x, 3)", (4, 10)),
    functional("F.avg_pool2d(x, 2)", (4, 9, 9)),
    functional("F.avg_pool2d(x, 3, stride=1, padding=1)", (4, 9, 9)),
    functional("F.avg_pool2d(x, kernel_size=2, stride=2, ceil_mode=True)", (4, 9, 9)),
    functional("F.avg_pool1d(x, 2)", (4, 9)),
    functional("F.adaptive_avg_pool2d(x, (1, 1))", (4, 10, 10)),
    functional("F.adaptive_avg_pool2d(x, 1)", (4, 10, 10)),
    functional("F.adaptive_max_pool2d(x, (2, 3))", (4, 10, 10)),
    functional("F.adaptive_avg_pool1d(x, 4)", (4, 10)),
    # resampling and padding
    functional("F.interpolate(x, scale_factor=2, mode='nearest')", (4, 5, 6)),
    functional("F.interpolate(x, size=(7, 9), mode='bilinear', align_corners=False)", (4, 5, 5)),
    functional("F.interpolate(x, scale_factor=0.5)", (4, 7, 7)),
    functional("F.interpolate(x, size=12)", (4, 5)),
    functional("F.pad(x, (1, 2, 3, 4))", (4, 6, 6)),
    functional("F.pad(x, (1, 1))", (4, 6, 6)),
    functional("F.pad(x, (1, 1, 1, 1), mode='reflect')", (4, 6, 6)),
    functional("F.pad(x, (0, 0, 0, 0, 1, 1))", (4, 6, 6)),  # pads the channel dim
    functional("F.pad(x, [2, 0], value=1.0)", (4, 6)),
    # flatten / view / reshape
    functional("torch.flatten(x, 1)", (4, 6, 6)),
    functional("torch.flatten(x)", (4, 3, 3)),
    functional("torch.flatten(x, start_dim=2)", (4, 6, 6)),
    functional("x.flatten(1)", (4, 6, 6)),
    functional("x.view(x.size(0), -1)", (4, 6, 6)),
    functional("x.view(-1, 4 * 6 * 6)", (4, 6, 6)),
    functional("x.view(-1, 6 * 6)", (4, 6, 6)),  # the batch folds into dim 0: 2*4 rows
    functional("x.view(2, 4, 36)", (4, 6, 6)),
    functional("x.view(x.shape[0], x.shape[1], -1)", (4, 6, 6)),
    functional("x.reshape(2, -1, 5)", (10, 3)),
    functional("x.reshape(x.shape[0], -1)", (4, 6, 6)),
    functional("x.contiguous().view(x.size(0), -1)", (4, 6, 6)),
    # dimension shuffles
    functional("x.permute(0, 2, 3, 1)", (4, 6, 5)),
    functional("x.transpose(1, 2)", (5, 8)),
    functional("x.transpose(-1, -2)", (4, 6, 5)),
    functional("x.t()", (5,)),
    functional("x.unsqueeze(0)", (4, 6)),
    functional("x.unsqueeze(1)", (4, 6)),
    functional("x.unsqueeze(-1)", (4, 6)),
    functional("x.squeeze(1)", (1, 6, 6)),
    functional("x.squeeze()", (1, 6, 1)),  # the batch of 2 stays
    functional("x.squeeze(2)", (4, 6, 6)),  # size 6 != 1: a no-op
    functional("x.repeat(1, 2, 1, 1)", (4, 6, 6)),
    # reductions
    functional("x.mean(dim=(2, 3))", (4, 6, 6)),
    functional("x.mean(-1, keepdim=True)", (4, 6, 6)),
    functional("x.mean()", (4, 6)),  # a 0-d tensor
    functional("torch.mean(x, dim=1)", (4, 6, 6)),
    functional("x.sum(1)", (4, 6, 6)),
    functional("x.sum(dim=1, keepdim=True)", (4, 6, 6)),
    functional("x.max(dim=1)[0]", (4, 6, 6)),
    functional("x.amax(dim=(-2, -1))", (4, 6, 6)),
    # joining and splitting
    functional("torch.cat([x, x], dim=1)", (4, 6, 6)),
    functional("torch.cat((x, x), 0)", (4, 6)),
    functional("torch.cat([x, x, x], dim=-1)", (4, 6)),
    functional("torch.stack([x, x], dim=1)", (4, 6)),
    functional("x.chunk(2, dim=1)[0]", (4, 6, 6)),
    functional("x.chunk(3, dim=-1)[-1]", (4, 7)),  # chunks of ceil(7/3)=3: sizes 3, 3, 1
    functional("x.split(2, dim=1)[1]", (5, 6)),
    functional("torch.split(x, [1, 3], dim=1)[1]", (4, 6, 6)),
    functional("a", (4, 6, 6), setup=("a, b = x.chunk(2, dim=1)",)),
    # indexing
    functional("x[:, 0]", (4, 6, 6)),
    functional("x[:, :2]", (4, 6, 6)),
    functional("x[..., 1:]", (4, 6, 6)),
    functional("x[:, -1]", (5, 8)),
    functional("x[:, :, ::2]", (4, 7, 6)),
    functional("x[:, None]", (4, 6)),
    # elementwise and broadcasting
    functional("x + x", (4, 6, 6)),
    functional("x * 2", (4, 6, 6)),
    functional("x + 1", (10,)),
    functional("x - x.mean(dim=1, keepdim=True)", (4, 6, 6)),
    functional("x * x.sigmoid()", (4, 6, 6)),
    functional("torch.add(x, x)", (4, 6)),
    functional("x / x.sum(-1, keepdim=True)", (4, 6)),
    # matrix products
    functional("x @ x.transpose(-1, -2)", (5, 8)),
    functional("torch.matmul(x, x.transpose(1, 2))", (5, 8)),
    functional("torch.bmm(x, x.transpose(1, 2))", (5, 8)),
    functional("x.matmul(x.transpose(-2, -1))", (3, 5, 8)),
    # activations
    functional("F.softmax(x, dim=-1)", (4, 6)),
    functional("F.log_softmax(x, dim=1)", (10,)),
    functional("F.relu(x, inplace=True)", (4, 6, 6)),
    functional("F.relu(x)", (4, 6, 6)),
    functional("torch.relu(x)", (4, 6, 6)),
    functional("x.relu()", (4, 6, 6)),
    functional("torch.sigmoid(x)", (10,)),
    functional("torch.tanh(x)", (10,)),
    functional("F.gelu(x)", (4, 6)),
    functional("F.leaky_relu(x, 0.2)", (4, 6)),
    functional("F.dropout(x, p=0.5, training=self.training)", (4, 6)),
    functional("F.dropout(x, 0.2)", (4, 6)),
    functional("F.normalize(x, dim=1)", (4, 6)),
    functional("F.relu6(x)", (4, 6)),
    functional("F.elu(x, alpha=0.5)", (4, 6)),
    functional("F.selu(x)", (4, 6)),
    functional("F.celu(x)", (4, 6)),
    functional("F.silu(x)", (4, 6)),
    functional("F.mish(x)", (4, 6)),
    functional("F.hardswish(x)", (4, 6)),
    functional("F.hardsigmoid(x)", (4, 6)),
    functional("F.hardtanh(x, -2.0, 2.0)", (4, 6)),
    functional("F.softplus(x, beta=2)", (4, 6)),
    functional("F.logsigmoid(x)", (4, 6)),
    functional("F.softsign(x)", (4, 6)),
    functional("F.tanh(x)", (4, 6)),
    functional("F.sigmoid(x)", (4, 6)),
    functional("torch.softmax(x, dim=1)", (4, 6)),
    functional("torch.log_softmax(x, 1)", (4, 6)),
    functional("torch.exp(x)", (4, 6)),
    functional("torch.log(x.abs() + 1)", (4, 6)),
    functional("torch.sqrt(torch.abs(x))", (4, 6)),
    functional("torch.clamp(x, min=0)", (4, 6)),
    functional("x.clamp(-1, 1)", (4, 6)),
    functional("x.pow(2)", (4, 6)),
    functional("torch.square(x) + x.square()", (4, 6)),
    functional("torch.flip(x, (1,)) + x.flip(0)", (4, 6)),
    functional("x.tile((2,))", (4, 6)),
    functional("torch.addcmul(self.b, self.w, x)", (4, 6),
               init=("self.w = nn.Parameter(torch.ones(6))", "self.b = nn.Parameter(torch.zeros(6))")),
    functional("F.group_norm(x, 2, self.w, None)", (4, 5, 5), init=("self.w = nn.Parameter(torch.ones(4))",)),
    functional("x + torch.stack(torch.meshgrid(torch.arange(4), torch.arange(6), indexing='ij')).sum(0)", (4, 6)),
    functional("F.conv2d(x, self.w, self.b, stride=2, padding=1)", (3, 9, 9),
               init=("self.w = nn.Parameter(torch.randn(8, 3, 3, 3))", "self.b = nn.Parameter(torch.zeros(8))")),
    functional("F.conv1d(x, self.w, groups=2, padding='same')", (4, 10),
               init=("self.w = nn.Parameter(torch.randn(6, 2, 3))",)),
    functional("x.softmax(-1)", (4, 6)),
    functional("x.log_softmax(dim=1)", (4, 6)),
    functional("F.dropout2d(x, 0.1)", (4, 6, 6)),
    functional("F.alpha_dropout(x, 0.1, self.training)", (4, 6)),
    functional("F.pixel_shuffle(x, 2)", (8, 3, 3)),
    functional("F.pixel_unshuffle(x, 2)", (2, 6, 6)),
    functional("F.max_pool3d(x, 2)", (2, 5, 6, 6)),
    functional("F.avg_pool3d(x, (1, 2, 2))", (2, 5, 6, 6)),
    functional("F.adaptive_max_pool1d(x, 3)", (4, 10)),
    functional("F.adaptive_avg_pool3d(x, (1, None, 2))", (2, 5, 6, 6)),
    functional("torch.max_pool2d(x, 2)", (4, 9, 9)),
    functional("F.linear(x, self.w)", (4, 6), init=("self.w = nn.Parameter(torch.randn(5, 6))",)),
    functional("F.linear(x, self.w, self.b)", (6,), init=(
        "self.w = nn.Parameter(torch.randn(3, 6))", "self.b = nn.Parameter(torch.zeros(3))")),
    functional("torch.concat([x, x], dim=2)", (4, 6)),
    functional("torch.sub(x, 1)", (4, 6)),
    functional("torch.mul(x, x)", (4, 6)),
    functional("torch.div(x, 2)", (4, 6)),
    functional("torch.max(x, dim=1)[0]", (4, 6)),
    functional("torch.min(x, 2, keepdim=True)[0]", (4, 6)),
    functional("torch.sum(x, dim=(1, 2))", (4, 6, 6)),
    functional("torch.transpose(x, 1, 2)", (4, 6)),
    functional("torch.permute(x, (0, 2, 1))", (4, 6)),
    functional("torch.reshape(x, (2, -1))", (4, 6)),
    functional("torch.squeeze(x, 1)", (1, 6)),
    functional("torch.unsqueeze(x, 1)", (4, 6)),
    functional("torch.chunk(x, 2, 1)[1]", (4, 6)),
    functional("torch.unbind(x, dim=1)[0]", (4, 6)),
    functional("x.unbind(2)[-1]", (4, 6)),
    functional("x.view_as(x)", (4, 6)),
    functional("x.reshape_as(x)", (4, 6)),
    functional("x.expand(2, 3, 4, 6)", (1, 4, 6)),
    functional("x.expand(-1, 5, -1)", (1, 6)),
    functional("x.detach()", (4, 6)),
    functional("x.clone()", (4, 6)),
    functional("x.to(torch.float32)", (4, 6)),
    functional("x.float()", (4, 6)),
    functional("x.relu_()", (4, 6)),
    functional("x.argmax(dim=1)", (4, 6)),
    functional("x.add(x)", (4, 6)),
    functional("x.sub(1)", (4, 6)),
    functional("x.mul(2)", (4, 6)),
    functional("x.div(x.sum())", (4, 6)),
    functional("x.masked_fill(x > 0, 0.0)", (4, 6)),
    functional("x.view(-1, x.size(-1))", (4, 6)),
    functional("x.view(x.shape[0], x.shape[-1], -1)", (4, 6)),
    functional("x.flatten(1).size(1) * x[:, 0, 0]", (4, 6)),  # size() used as a number
    functional("torch.randn_like(x) + x", (4, 6)),
    functional("x + torch.zeros(2, 4, 6)", (4, 6)),
    functional("x + torch.ones(6)", (4, 6)),  # broadcasting a 1-D tensor
    functional("x * torch.ones(4, 1)", (4, 6)),
]


# --------------------------------------------------------------------------
# Modules and functional ops wired together: the shape must flow through
# --------------------------------------------------------------------------

PIPELINE_CASES = [
    pipeline(
        "lenet-functional",
        (3, 32, 32),
        init=(
            "self.conv1 = nn.Conv2d(3, 6, 5)",
            "self.conv2 = nn.Conv2d(6, 16, 5)",
            "self.fc1 = nn.Linear(16 * 5 * 5, 120)",
            "self.fc2 = nn.Linear(120, 84)",
            "self.fc3 = nn.Linear(84, 10)",
        ),
        forward=(
            "x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))",
            "x = F.max_pool2d(F.relu(self.conv2(x)), 2)",
            "x = torch.flatten(x, 1)",
            "x = F.relu(self.fc1(x))",
            "x = F.relu(self.fc2(x))",
            "return self.fc3(x)",
        ),
    ),
    pipeline(
        "seed-question-cnn",
        (3, 50, 50),
        init=(
            "self.features = nn.Sequential(",
            "    nn.Conv2d(3, 32, 3, padding=1),",
            "    nn.ReLU(),",
            "    nn.MaxPool2d(2, 2),",
            "    nn.Conv2d(32, 64, 3, padding=1),",
            "    nn.ReLU(),",
            "    nn.MaxPool2d(2, 2),",
            ")",
            "self.fc = nn.Linear(64 * 12 * 12, 500)",
            "self.out = nn.Linear(500, 10)",
        ),
        forward=(
            "x = self.features(x)",
            "x = x.view(x.size(0), -1)",
            "x = F.relu(self.fc(x))",
            "return F.softmax(self.out(x), dim=1)",
        ),
    ),
    pipeline(
        "shared-pool-called-twice",  # one module, two calls: two records with the same name
        (1, 28, 28),
        init=(
            "self.conv1 = nn.Conv2d(1, 6, 5, padding=2)",
            "self.pool = nn.MaxPool2d(kernel_size=2, stride=2)",
            "self.conv2 = nn.Conv2d(6, 16, kernel_size=5)",
        ),
        forward=(
            "x = self.pool(torch.relu(self.conv1(x)))",
            "return self.pool(torch.relu(self.conv2(x)))",
        ),
    ),
    pipeline(
        "residual-block",
        (8, 9, 9),
        init=(
            "self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)",
            "self.bn1 = nn.BatchNorm2d(8)",
            "self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)",
            "self.bn2 = nn.BatchNorm2d(8)",
            "self.pool = nn.AdaptiveAvgPool2d(1)",
            "self.head = nn.Linear(8, 3)",
        ),
        forward=(
            "y = F.relu(self.bn1(self.conv1(x)))",
            "y = self.bn2(self.conv2(y))",
            "y = F.relu(y + x)",
            "y = self.pool(y)",
            "return self.head(torch.flatten(y, 1))",
        ),
    ),
    pipeline(
        "dense-concat",
        (4, 8, 8),
        init=(
            "self.a = nn.Conv2d(4, 6, 3, padding=1)",
            "self.b = nn.Conv2d(10, 2, 1)",
        ),
        forward=(
            "y = torch.cat([x, self.a(x)], dim=1)",
            "return self.b(y)",
        ),
    ),
    pipeline(
        "lstm-last-step-head",
        (7, 8),
        init=(
            "self.rnn = nn.LSTM(8, 16, batch_first=True, bidirectional=True)",
            "self.fc = nn.Linear(32, 4)",
        ),
        forward=(
            "out, _ = self.rnn(x)",
            "return self.fc(out[:, -1])",
        ),
    ),
    pipeline(
        "embedding-transformer-pool",
        (6,),
        init=(
            "self.emb = nn.Embedding(50, 16)",
            "self.enc = nn.TransformerEncoderLayer(16, 4, 32, batch_first=True)",
            "self.fc = nn.Linear(16, 2)",
        ),
        forward=(
            "h = self.enc(self.emb(x))",
            "return self.fc(h.mean(dim=1))",
        ),
        dtype="int64",
    ),
    pipeline(
        "upsample-decoder",
        (8, 4, 4),
        init=(
            "self.up = nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1)",
            "self.conv = nn.Conv2d(4, 2, 3, padding=1)",
            "self.shuffle = nn.PixelShuffle(2)",
        ),
        forward=(
            "x = F.interpolate(self.up(x), scale_factor=2)",
            "x = self.conv(x)",
            "x = x.repeat(1, 2, 1, 1)",
            "return self.shuffle(x)",
        ),
    ),
]

ALL_CASES = LAYER_CASES + FUNCTIONAL_CASES + PIPELINE_CASES
assert len({c.id for c in ALL_CASES}) == len(ALL_CASES), "duplicate case ids"


# --------------------------------------------------------------------------
# The two sides
# --------------------------------------------------------------------------


def torch_side(case: Case):
    """(total params, [(name, type, output_shape, params of that module)])."""
    namespace = torch_oracle.load(case.source)
    model = torch_oracle.instantiate(namespace, "M")
    torch.manual_seed(0)
    x = torch_oracle.make_input((BATCH, *case.shape), case.dtype)
    prof = torch_oracle.profile(model, x)
    modules = dict(model.named_modules())
    calls = [
        (c.name, c.type, tuple(c.output_shape), sum(p.numel() for p in modules[c.name].parameters()))
        for c in prof.calls
    ]
    return prof.params, calls


def analyse(source: str):
    from flake8_gpumem.analysis import analyse_source

    return analyse_source(source, filename="case.py")


def analyser_side(result):
    assert len(result.models) == 1, f"expected one model, found {[m.name for m in result.models]}"
    report = result.models[0]
    calls = [
        (r.name, r.type, tuple(r.output_shape), r.params) for r in report.layers if r.module
    ]
    return report, calls


def _format_calls(calls):
    return "\n".join(
        f"    {name:<28} {type_:<26} {shape!s:<22} params={params}" for name, type_, shape, params in calls
    )


def _check_against_torch(case: Case):
    source = case.source
    want_params, want_calls = torch_side(case)
    result = analyse(source)
    report, got_calls = analyser_side(result)
    context = f"\n--- source ---\n{source}"

    assert report.name == "M"
    assert tuple(report.input_shape) == (BATCH, *case.shape), (
        f"input_shape: analyser {tuple(report.input_shape)} != expected {(BATCH, *case.shape)}{context}"
    )
    assert report.params == want_params, (
        f"params: analyser {report.params} != torch {want_params}{context}"
    )
    assert got_calls == want_calls, (
        "leaf module calls differ\n"
        f"  analyser:\n{_format_calls(got_calls)}\n"
        f"  torch:\n{_format_calls(want_calls)}{context}"
    )
    # a model that runs in torch has no mismatch, no collapsed size, nothing unanalysed
    bad = [d for d in result.diagnostics if d.code in ("GPM300", "GPM201", "GPM900")]
    assert not bad, f"unexpected diagnostics {bad}{context}"
    return report


@pytest.mark.parametrize("case", LAYER_CASES, ids=lambda c: c.id)
def test_layer_matches_torch(case):
    _check_against_torch(case)


@pytest.mark.parametrize("case", FUNCTIONAL_CASES, ids=lambda c: c.id)
def test_functional_matches_torch(case):
    report = _check_against_torch(case)
    # the Identity is the last thing forward runs: it is the last record before the step's loss
    forward = [r for r in report.layers if r.name != "loss" and not r.name.startswith("loss.")]
    assert forward and forward[-1].name == "out"


@pytest.mark.parametrize("case", PIPELINE_CASES, ids=lambda c: c.id)
def test_pipeline_matches_torch(case):
    _check_against_torch(case)


# --------------------------------------------------------------------------
# Edge cases with the arithmetic worked by hand
# --------------------------------------------------------------------------

HAND = [
    # (id, layer expr, per-sample input, expected output incl. batch, expected params)
    pytest.param(
        "nn.MaxPool2d(2)", (1, 25, 25),
        (2, 1, 12, 12),  # floor((25 - 2) / 2) + 1 = 11 + 1 = 12: row 24 and col 24 dropped
        0, id="maxpool2-floor-25->12",
    ),
    pytest.param(
        "nn.MaxPool2d(2, ceil_mode=True)", (1, 25, 25),
        (2, 1, 13, 13),  # ceil((25 - 2) / 2) + 1 = 12 + 1 = 13; window 13 starts at 24 < 25: kept
        0, id="maxpool2-ceil-25->13",
    ),
    pytest.param(
        "nn.MaxPool1d(2, stride=2, padding=1, ceil_mode=True)", (1, 5),
        (2, 1, 3),  # ceil((5 + 2 - 2) / 2) + 1 = 4, but window 4 would start at 3*2 = 6 >= 5 + 1
        0, id="ceil-last-window-starts-in-right-padding->dropped",
    ),
    pytest.param(
        "nn.MaxPool1d(1, stride=3, ceil_mode=True)", (1, 5),
        (2, 1, 2),  # ceil((5 - 1) / 3) + 1 = 3, but window 3 would start at 2*3 = 6 >= 5: dropped
        0, id="ceil-kernel-smaller-than-stride->dropped",
    ),
    pytest.param(
        "nn.AvgPool2d(2, 2, 1, ceil_mode=True)", (1, 9, 8),
        # H: ceil((9+2-2)/2)+1 = 6, window 6 starts at 10 >= 9+1: dropped -> 5
        # W: ceil((8+2-2)/2)+1 = 5, window 5 starts at 8 <  8+1: kept    -> 5
        (2, 1, 5, 5),
        0, id="avgpool-ceil-rule-per-axis",
    ),
    pytest.param(
        "nn.ConvTranspose2d(1, 1, kernel_size=4, stride=2, padding=1)", (1, 7, 7),
        # (in-1)*stride - 2*padding + dilation*(kernel-1) + output_padding + 1
        (2, 1, 14, 14),  # (7-1)*2 - 2*1 + 1*(4-1) + 0 + 1 = 12 - 2 + 3 + 0 + 1 = 14
        1 * 1 * 4 * 4 + 1, id="convtranspose-k4s2p1-7->14",
    ),
    pytest.param(
        "nn.ConvTranspose2d(1, 1, kernel_size=4, stride=2, padding=1, output_padding=1)", (1, 7, 7),
        (2, 1, 15, 15),  # (7-1)*2 - 2*1 + 1*(4-1) + 1 + 1 = 12 - 2 + 3 + 1 + 1 = 15
        1 * 1 * 4 * 4 + 1, id="convtranspose-output-padding-7->15",
    ),
    pytest.param(
        "nn.ConvTranspose1d(1, 1, 3, dilation=2, output_padding=1)", (1, 5),
        (2, 1, 10),  # (5-1)*1 - 0 + 2*(3-1) + 1 + 1 = 4 + 4 + 2 = 10 (output_padding < dilation)
        1 * 1 * 3 + 1, id="convtranspose-output-padding-via-dilation",
    ),
    pytest.param(
        "nn.Conv2d(1, 1, 3, dilation=2)", (1, 9, 9),
        (2, 1, 5, 5),  # effective kernel 2*(3-1)+1 = 5; 9 - 5 + 1 = 5
        9 + 1, id="dilation2-k3-effective5",
    ),
    pytest.param(
        "nn.Conv2d(1, 1, 3, padding='same')", (1, 9, 8),
        (2, 1, 9, 8),  # 'same' keeps the size
        9 + 1, id="padding-same-keeps-size",
    ),
    pytest.param(
        "nn.Conv2d(1, 1, 4, padding='same', dilation=2)", (1, 9, 8),
        (2, 1, 9, 8),  # total padding 2*(4-1) = 6 still keeps the size
        16 + 1, id="padding-same-even-kernel-dilated",
    ),
    pytest.param(
        "nn.Conv2d(1, 1, 3, stride=2, padding=1)", (1, 25, 25),
        (2, 1, 13, 13),  # floor((25 + 2 - 3) / 2) + 1 = 12 + 1 = 13
        9 + 1, id="conv-stride2-pad1-25->13",
    ),
    pytest.param(
        "nn.Conv1d(1, 1, 3, stride=2)", (1, 10),
        (2, 1, 4),  # floor((10 - 3) / 2) + 1 = 3 + 1 = 4: input position 9 never read
        3 + 1, id="conv1d-stride2-10->4",
    ),
    pytest.param(
        "nn.Conv2d(4, 8, 3, groups=2)", (4, 6, 6),
        (2, 8, 4, 4),  # weight (8, 4/2, 3, 3) = 144, bias 8
        8 * (4 // 2) * 3 * 3 + 8, id="conv-groups-params",
    ),
    pytest.param(
        "nn.ConvTranspose2d(4, 8, 3, groups=2)", (4, 6, 6),
        (2, 8, 8, 8),  # weight (in=4, out/groups=4, 3, 3) = 144, bias 8; 6-1+3 = 8
        4 * (8 // 2) * 3 * 3 + 8, id="convtranspose-groups-params",
    ),
    pytest.param(
        "nn.Upsample(scale_factor=1.5)", (1, 5, 5),
        (2, 1, 7, 7),  # floor(5 * 1.5) = floor(7.5) = 7
        0, id="upsample-fractional-floors",
    ),
    pytest.param(
        "nn.AdaptiveAvgPool2d((None, 3))", (4, 10, 10),
        (2, 4, 10, 3),  # None keeps the input size
        0, id="adaptive-none-keeps-size",
    ),
    pytest.param(
        "nn.LSTM(8, 16, proj_size=4, bidirectional=True, batch_first=True)", (5, 8),
        # output (N, L, 2 * proj_size); per direction: W_ih 4*16*8 = 512, W_hh 4*16*4 = 256,
        # b_ih 64, b_hh 64, W_hr 4*16 = 64 -> 960; two directions -> 1920
        (2, 5, 8),
        2 * (4 * 16 * 8 + 4 * 16 * 4 + 4 * 16 + 4 * 16 + 4 * 16), id="lstm-proj-bidirectional",
    ),
    pytest.param(
        "nn.LSTM(8, 16, num_layers=2, proj_size=4)", (5, 8),
        # layer 0: 4*16*8 + 4*16*4 + 64 + 64 + 16*4 = 960; layer 1 input is proj_size 4:
        # 4*16*4 + 4*16*4 + 64 + 64 + 16*4 = 704
        (2, 5, 4),
        960 + 704, id="lstm-proj-2-layers",
    ),
    pytest.param(
        "nn.GRU(8, 12, num_layers=2, bidirectional=True)", (5, 8),
        # layer 0 per dir: 3*12*8 + 3*12*12 + 36 + 36 = 792; layer 1 input 24:
        # 3*12*24 + 3*12*12 + 36 + 36 = 1368; two directions
        (2, 5, 24),
        2 * (792 + 1368), id="gru-2-layers-bidirectional",
    ),
    pytest.param(
        "nn.Bilinear(6, 6, 4)", (6,),
        (2, 4),  # weight (4, 6, 6) = 144, bias 4
        4 * 6 * 6 + 4, id="bilinear-params",
    ),
    pytest.param(
        "nn.PReLU(num_parameters=4)", (4, 3, 3),
        (2, 4, 3, 3),
        4, id="prelu-per-channel",
    ),
    pytest.param(
        "nn.LayerNorm((5, 8), bias=False)", (5, 8),
        (2, 5, 8),  # weight only: 5*8
        40, id="layernorm-no-bias",
    ),
    pytest.param(
        "nn.InstanceNorm2d(3, track_running_stats=True)", (3, 4, 4),
        (2, 3, 4, 4),  # affine defaults to False; running stats are buffers, not parameters
        0, id="instancenorm-stats-are-buffers",
    ),
]


@pytest.mark.parametrize("expr, shape, expected_shape, expected_params", HAND)
def test_hand_calculation(expr, shape, expected_shape, expected_params):
    forward = ("return self.layer(x, x)",) if "Bilinear" in expr else ("return self.layer(x)",)
    case = layer(expr, shape, forward=forward)
    want_params, want_calls = torch_side(case)
    # the hand calculation is right...
    assert want_calls[-1][2] == expected_shape, f"torch gives {want_calls[-1][2]}, hand {expected_shape}"
    assert want_params == expected_params, f"torch gives {want_params} params, hand {expected_params}"
    # ...and the analyser agrees with it
    report, got_calls = analyser_side(analyse(case.source))
    assert got_calls[-1][2] == expected_shape, (
        f"{expr} on {shape}: analyser {got_calls[-1][2]}, hand/torch {expected_shape}"
    )
    assert report.params == expected_params, (
        f"{expr}: analyser {report.params} params, hand/torch {expected_params}"
    )


# --------------------------------------------------------------------------
# Diagnostics: code, numbers in the message, line of the cause
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    id: str
    code: str
    shape: tuple[int, ...]
    init: tuple[str, ...]
    forward: tuple[str, ...]
    numbers: tuple[int, ...]  # each must appear in the message as a whole number
    culprit: str  # text on the line the diagnostic must point at
    torch_raises: bool

    @property
    def source(self):
        return model_source(self.shape, self.init, self.forward)


BAD_CASES = [
    Bad(
        "linear-100-gets-99", "GPM300", (99,),
        init=("self.layer = nn.Linear(100, 10)",),
        forward=("return self.layer(x)",),
        numbers=(100, 99), culprit="nn.Linear(100, 10)", torch_raises=True,
    ),
    Bad(
        "conv-4-gets-3-channels", "GPM300", (3, 8, 8),
        init=("self.layer = nn.Conv2d(4, 8, 3)",),
        forward=("return self.layer(x)",),
        numbers=(4, 3), culprit="nn.Conv2d(4, 8, 3)", torch_raises=True,
    ),
    Bad(
        "conv1d-in-channels", "GPM300", (5, 20),
        init=("self.layer = nn.Conv1d(6, 8, 3)",),
        forward=("return self.layer(x)",),
        numbers=(6, 5), culprit="nn.Conv1d(6, 8, 3)", torch_raises=True,
    ),
    Bad(
        "batchnorm-features", "GPM300", (3, 8, 8),
        init=("self.layer = nn.BatchNorm2d(4)",),
        forward=("return self.layer(x)",),
        numbers=(4, 3), culprit="nn.BatchNorm2d(4)", torch_raises=True,
    ),
    Bad(
        # conv 32 -> 28, pool -> 14: the Linear gets 16*14*14 = 3136, not 16*5*5 = 400
        "sequential-flatten-into-wrong-linear", "GPM300", (3, 32, 32),
        init=(
            "self.net = nn.Sequential(",
            "    nn.Conv2d(3, 16, 5),",
            "    nn.ReLU(),",
            "    nn.MaxPool2d(2),",
            "    nn.Flatten(),",
            "    nn.Linear(16 * 5 * 5, 10),",
            ")",
        ),
        forward=("return self.net(x)",),
        numbers=(400, 3136), culprit="nn.Linear(16 * 5 * 5, 10)", torch_raises=True,
    ),
    Bad(
        "maxpool5-on-3x3-collapses", "GPM201", (4, 3, 3),
        init=("self.layer = nn.MaxPool2d(5)",),
        forward=("return self.layer(x)",),
        numbers=(5, 3), culprit="nn.MaxPool2d(5)", torch_raises=True,
    ),
    Bad(
        "conv5-on-3x3-collapses", "GPM201", (4, 3, 3),
        init=("self.layer = nn.Conv2d(4, 8, 5)",),
        forward=("return self.layer(x)",),
        numbers=(5, 3), culprit="nn.Conv2d(4, 8, 5)", torch_raises=True,
    ),
    Bad(
        "maxpool2-on-25x25-drops", "GPM200", (4, 25, 25),
        init=("self.layer = nn.MaxPool2d(2)",),
        forward=("return self.layer(x)",),
        numbers=(25, 12), culprit="nn.MaxPool2d(2)", torch_raises=False,
    ),
    Bad(
        "f-max-pool2d-on-25x25-drops", "GPM200", (4, 25, 25),
        init=("self.out = nn.Identity()",),
        forward=("y = F.max_pool2d(x, 2)", "return self.out(y)"),
        numbers=(25, 12), culprit="F.max_pool2d(x, 2)", torch_raises=False,
    ),
    Bad(  # padded 64 -> 66: the stride-4 windows end at padded row 63, so data row 63 (padded 64) is never read
        "reflection-pad-then-stride-4-conv-drops-data", "GPM200", (4, 64, 64),
        init=("self.pad = nn.ReflectionPad2d(1)", "self.conv = nn.Conv2d(4, 4, 4, stride=4)"),
        forward=("return self.conv(self.pad(x))",),
        numbers=(66, 16), culprit="nn.Conv2d(4, 4, 4, stride=4)", torch_raises=False,
    ),
]


def _position_of(source: str, text: str) -> tuple[int, int]:
    """1-based line and 0-based column (flake8 adds the 1 itself) of `text`."""
    found = [(i, line.index(text)) for i, line in enumerate(source.splitlines(), 1) if text in line]
    assert len(found) == 1, f"{text!r} is found at {found}"
    return found[0]


@pytest.mark.parametrize("bad", BAD_CASES, ids=lambda b: b.id)
def test_diagnostic(bad):
    source = bad.source
    context = f"\n--- source ---\n{source}"
    if bad.torch_raises:
        with pytest.raises(RuntimeError):
            model = torch_oracle.instantiate(torch_oracle.load(source), "M")
            model(torch_oracle.make_input((BATCH, *bad.shape)))
    result = analyse(source)
    found = [d for d in result.diagnostics if d.code == bad.code]
    assert found, f"no {bad.code}; diagnostics were {result.diagnostics}{context}"
    diag = found[0]
    for number in bad.numbers:
        assert re.search(rf"(?<![\d.]){number}(?![\d.])", diag.message), (
            f"{bad.code} message does not name {number}: {diag.message!r}"
        )
    line, col = _position_of(source, bad.culprit)
    assert (diag.line, diag.col) == (line, col), (
        f"{bad.code} at {diag.line}:{diag.col}, the culprit {bad.culprit!r} is at {line}:{col}{context}"
    )
    if bad.code != "GPM200":  # a model that cannot run gets no 'drops rows' warning for it
        assert not any(d.code == "GPM200" and d.line == line for d in result.diagnostics)


@pytest.mark.parametrize(
    "expr, shape",
    [
        ("nn.MaxPool2d(2)", (4, 24, 24)),  # 24 tiles exactly
        ("nn.MaxPool2d(2, ceil_mode=True)", (4, 24, 24)),
        ("nn.AvgPool2d(3, stride=3)", (4, 9, 9)),
        ("nn.Conv2d(4, 4, 3, padding=1)", (4, 25, 25)),  # stride 1 drops nothing
        ("nn.AdaptiveAvgPool2d(7)", (4, 25, 25)),
        # padded 64 -> 66, stride 2: the last window ends one row short, on the appended padding row
        ("nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(4, 4, 3, stride=2))", (4, 64, 64)),
        ("nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.MaxPool2d(2))", (4, 63, 63)),
    ],
    ids=lambda v: _compact(v) if isinstance(v, str) else _shape_id(v),
)
def test_no_gpm200_when_the_window_tiles(expr, shape):
    """The counterpart of GPM200: a window that tiles its input is not flagged."""
    case = layer(expr, shape)
    result = analyse(case.source)
    assert [d for d in result.diagnostics if d.code in ("GPM200", "GPM201", "GPM300")] == []


STORED = ["nn.Conv2d(3, 8, 3)", "nn.Conv1d(3, 8, 5, dilation=2, padding='same')", "nn.Conv3d(3, 8, (1, 3, 3), 2)",
          "nn.ConvTranspose2d(3, 8, 3, output_padding=[1, 1], stride=2)", "nn.MaxPool2d(2)",
          "nn.MaxPool2d((3, 3), stride=None, padding=1)", "nn.MaxPool1d(3, 2)", "nn.AvgPool2d(2)",
          "nn.AvgPool3d(2, stride=1)", "nn.AvgPool1d(4)", "PoolSame(3, 2)", "ConvSame(3, 8, 3, 2)"]


@pytest.mark.parametrize("layer", STORED)
def test_a_layers_stored_arguments_read_as_pytorch_keeps_them(layer):
    """`pool.kernel_size`, `conv.stride`: ints where PyTorch keeps ints (pooling), tuples where it
    makes them (convolutions, AvgPool1d), a stride of None as the kernel size; a subclass's too
    (timm's MaxPool2dSame/Conv2dSame read them in forward)."""
    from flake8_gpumem.interpreter import parse_expression
    from flake8_gpumem.source import read_source

    classes = ("class PoolSame(nn.MaxPool2d):\n    def __init__(self, k, s):\n        super().__init__(k, s)\n\n\n"
               "class ConvSame(nn.Conv2d):\n    pass\n")
    src = read_source(f"import torch.nn as nn\n\n\n{classes}\n\nm = {layer}\n", "m.py")
    namespace = {"nn": torch.nn}
    exec(f"{classes}\nm = {layer}", namespace)
    for name in ("kernel_size", "stride", "padding", "dilation", "output_padding"):
        if hasattr(namespace["m"], name) and (name != "output_padding" or "Transpose" in layer):
            got = src.probe.eval(parse_expression(f"m.{name}"), src.scope)
            assert got == getattr(namespace["m"], name), (layer, name, got)
            assert type(got) is type(getattr(namespace["m"], name)), (layer, name, got)
