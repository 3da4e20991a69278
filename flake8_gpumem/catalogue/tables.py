"""The tables: every layer type, function and tensor method gpumem knows, by name.

MODULES (nn layers by class name), LAZY (the lazy layers and what they become), FUNCTIONS
(by the qualified name they are imported under) and METHODS (tensor methods), each entry one
`Op` built from the rules of the family modules; then AUTOCAST marks which entries AMP runs
in half precision or float32. Adding a layer type means adding one entry here.
"""
from __future__ import annotations

from dataclasses import replace

from ..values import FLOAT_DTYPES, Tensor
from .attention import sdpa_aten, sdpa_backward, sdpa_saves, sdpa_shape
from .conv import conv, conv_fn
from .core import Args, Op, keeps_input, keeps_input_or_result, keeps_nothing, keeps_output, broadcast
from .creation import (CREATE, LEGACY, ONES, ZEROS, arange_shape, eye_shape, full_shape, like_shape, linspace_shape,
                       meshgrid_shape, new_shape, new_tensor_shape, normal_shape, one_hot_shape, randint_shape,
                       tensor_shape)
from .einops import einsum, pack, transform, unpack
from .elementwise import (ALL, BERNOULLI, COMPARE, CUMPROD, CUMSUM, DIFF, HISTC, WHERE, MAX, PROD, REDUCE,
                          REDUCE_KEEPS, RELU, SOFTMAX, SOFTMAX_FN, SORT, SUM, TOPK, TRIANGLE, VAR, cast_shape,
                          keeps_for_quotient, keeps_other_factor, polar_shape, pow_saves, prelu_shape, reduce_shape,
                          softmax_fn, to_dtype, activation, binary, dropout, functional, unary)
from .linear import (addmm_saves, addmm_shape, bilinear_shape, einsum_saves, einsum_shape, embedding_fn_shape,
                     embedding_shape, grouped_mm_shape, linear_aten, linear_bias_copy, linear_fn_shape, linear_saves,
                     linear_shape, matmul_aten, matmul_saves, matmul_shape, einsum_aten, outer_shape)
from .losses import CROSS_ENTROPY, MSE_LOSS, NLL_LOSS, functional_loss
from .normalisation import (batch_norm_saves, group_norm_fn_shape, group_norm_saves, group_norm_shape,
                            layer_norm_params, layer_norm_saves, layer_norm_shape, rms_norm, affine, batch_norm,
                            instance_norm)
from .pooling import adaptive, functional_pool, pool
from .recurrent import RNN_LAYER
from .shape import (CAT, INTERPOLATE, chunk_shape, index_select_shape, tile_shape, expand_shape, flatten_shape,
                    fpad_shape, narrow_shape, permute_shape, pixel_shuffle_shape, pixel_unshuffle_shape,
                    repeat_interleave_shape, repeat_shape, reshape_shape, size_value, split_shape, squeeze_shape,
                    stack_shape, t_shape, transpose_shape, unbind_shape, unflatten_shape, unfold_shape, unsqueeze_shape,
                    upsample_sizes, view_as_complex_shape, view_as_real_shape, view_as_shape, view_shape, pad)


MODULES: dict[str, Op] = {
    **{f"Conv{n}d": conv(n) for n in (1, 2, 3)},
    **{f"ConvTranspose{n}d": conv(n, transposed=True) for n in (1, 2, 3)},
    **{f"{k}Pool{n}d": pool(n, k) for n in (1, 2, 3) for k in ("Max", "Avg")},
    **{f"Adaptive{k}Pool{n}d": adaptive(n, k) for n in (1, 2, 3) for k in ("Max", "Avg")},
    **{f"BatchNorm{n}d": batch_norm(n) for n in (1, 2, 3)},
    **{f"InstanceNorm{n}d": instance_norm(n) for n in (1, 2, 3)},
    "LayerNorm": Op("normalized_shape, eps=1e-05, elementwise_affine=True, bias=True, device=None, dtype=None",
                    layer_norm_shape, layer_norm_params, saves=layer_norm_saves),
    "GroupNorm": Op("num_groups, num_channels, eps=1e-05, affine=True, device=None, dtype=None", group_norm_shape,
                    lambda a: affine(a.num_channels, a.affine), saves=group_norm_saves),
    "Linear": Op("in_features, out_features, bias=True, device=None, dtype=None", linear_shape,
                 lambda a: [(a.out_features, a.in_features)] + ([(a.out_features,)] if a.bias else []),
                 saves=linear_saves, forward_temp=linear_bias_copy, aten=linear_aten),
    "Bilinear": Op("in1_features, in2_features, out_features, bias=True, device=None, dtype=None", bilinear_shape,
                   lambda a: [(a.out_features, a.in1_features, a.in2_features)]
                   + ([(a.out_features,)] if a.bias else []),
                   saves=lambda a, out: [a.input1, a.input2], forward="input1, input2", aten=lambda a: None),
    "Embedding": Op("num_embeddings, embedding_dim, padding_idx=None, max_norm=None, norm_type=2.0, "
                    "scale_grad_by_freq=False, sparse=False, _weight=None, _freeze=False, device=None, dtype=None",
                    embedding_shape, lambda a: [(a.num_embeddings, a.embedding_dim)], saves=keeps_input),
    "Dropout": dropout("plain"), "Dropout1d": dropout("feature"), "Dropout2d": dropout("feature"),
    "Dropout3d": dropout("feature"), "AlphaDropout": dropout("alpha"), "FeatureAlphaDropout": dropout("alpha"),
    "ReLU": RELU,
    "ReLU6": activation(),
    "LeakyReLU": activation("negative_slope=0.01, inplace=False", saves=keeps_input_or_result),
    "PReLU": Op("num_parameters=1, init=0.25, device=None, dtype=None", prelu_shape,
                lambda a: [(a.num_parameters,)], saves=keeps_input,
                backward_temp=lambda a: a.input.nbytes),  # the weight's gradient before its reduction
    "ELU": activation("alpha=1.0, inplace=False", saves=keeps_input_or_result),
    "CELU": activation("alpha=1.0, inplace=False", saves=keeps_input_or_result),
    "SELU": activation(saves=keeps_input_or_result),
    "GELU": activation("approximate='none'"),
    "SiLU": activation(),
    "Mish": activation(),
    "Hardswish": activation(),
    "Hardsigmoid": activation(),
    "Hardtanh": activation("min_val=-1.0, max_val=1.0, inplace=False, min_value=None, max_value=None"),
    "Softplus": activation("beta=1.0, threshold=20.0"),
    "Softsign": activation(""),
    "LogSigmoid": activation(""),
    "Tanhshrink": activation(""),
    "Threshold": activation("threshold, value, inplace=False", saves=keeps_input_or_result),
    "Tanh": activation("", saves=keeps_output),
    "Sigmoid": activation("", saves=keeps_output),
    "Softmax": SOFTMAX,
    "LogSoftmax": SOFTMAX,
    "Softmax2d": activation("", saves=keeps_output),
    "Identity": Op("*args, **kwargs", lambda a: a.input),
    "Flatten": Op("start_dim=1, end_dim=-1", flatten_shape, grad="alias"),
    "Unflatten": Op("dim, unflattened_size", unflatten_shape, grad="alias"),
    "Upsample": Op("size=None, scale_factor=None, mode='nearest', align_corners=None, recompute_scale_factor=None",
                   upsample_sizes, saves=keeps_nothing),
    "UpsamplingNearest2d": Op("size=None, scale_factor=None", upsample_sizes),
    "UpsamplingBilinear2d": Op("size=None, scale_factor=None", upsample_sizes),
    "PixelShuffle": Op("upscale_factor", pixel_shuffle_shape),
    "PixelUnshuffle": Op("downscale_factor", pixel_unshuffle_shape),
    **{f"ConstantPad{n}d": pad(n, constant=True) for n in (1, 2, 3)},
    **{f"{k}Pad{n}d": pad(n) for n in (1, 2, 3) for k in ("Zero", "Circular")},
    **{f"{k}Pad{n}d": pad(n, saves_input=True) for n in (1, 2, 3) for k in ("Reflection", "Replication")},
    "CrossEntropyLoss": CROSS_ENTROPY,
    "NLLLoss": NLL_LOSS,
    "MSELoss": MSE_LOSS,
}


# Lazy layers: the layer they become (torch swaps the class at the first call), the argument
# inferred from that first input, and the input dimension it is read from.
LAZY = {
    "LazyLinear": ("Linear", "in_features", -1),
    **{f"LazyConv{n}d": (f"Conv{n}d", "in_channels", 1) for n in (1, 2, 3)},
    **{f"LazyConvTranspose{n}d": (f"ConvTranspose{n}d", "in_channels", 1) for n in (1, 2, 3)},
    **{f"LazyBatchNorm{n}d": (f"BatchNorm{n}d", "num_features", 1) for n in (1, 2, 3)},
    **{f"LazyInstanceNorm{n}d": (f"InstanceNorm{n}d", "num_features", 1) for n in (1, 2, 3)},
}


# Functions by the qualified name they are imported under.
# x / y, and floor or truncating division (rounding_mode)
DIVISION = Op("input, other, *, rounding_mode=None, out=None", lambda a: broadcast(a.input, a.other),
              saves=keeps_for_quotient)

FUNCTIONS: dict[str, Op] = {
    **{f"torch.nn.functional.{f}": functional(MODULES[m]) for f, m in (
        ("relu6", "ReLU6"), ("leaky_relu", "LeakyReLU"), ("elu", "ELU"), ("selu", "SELU"),
        ("celu", "CELU"), ("gelu", "GELU"), ("silu", "SiLU"), ("mish", "Mish"), ("hardswish", "Hardswish"),
        ("hardsigmoid", "Hardsigmoid"), ("hardtanh", "Hardtanh"), ("softplus", "Softplus"),
        ("logsigmoid", "LogSigmoid"), ("softsign", "Softsign"))},
    "torch.nn.functional.relu": functional(RELU),
    "torch.relu": functional(RELU),
    "torch.nn.functional.tanh": unary(keeps_output),
    "torch.tanh": unary(keeps_output),
    "torch.nn.functional.sigmoid": unary(keeps_output),
    "torch.sigmoid": unary(keeps_output),
    "torch.exp": unary(keeps_output),
    "torch.round": unary(keeps_nothing), "torch.sign": unary(keeps_nothing), "torch.log2": unary(),
    "torch.roll": unary(keeps_nothing, ", shifts, dims=None"), "torch.floor": unary(keeps_nothing),
    "torch.flip": unary(keeps_nothing, ", dims"),
    "torch.ceil": unary(keeps_nothing),
    "torch.diff": DIFF,
    "torch.pow": Op("input, exponent", lambda a: broadcast(a.input, a.exponent), saves=pow_saves),
    "torch.neg": unary(keeps_nothing), "torch.negative": unary(keeps_nothing),
    "torch.cos": unary(), "torch.sin": unary(), "torch.rsqrt": unary(keeps_output),
    "torch.tril": TRIANGLE, "torch.triu": TRIANGLE, "torch.topk": TOPK, "torch.sort": SORT, "torch.histc": HISTC,
    # one rule, an op each: numbers.py computes their values apart; torch.greater is gt's other name
    **{f"torch.{f}": replace(COMPARE) for f in ("eq", "ne", "lt", "le", "gt", "ge")},
    "torch.greater": replace(COMPARE),
    "torch.all": ALL, "torch.any": replace(ALL),
    "torch.bitwise_and": binary(), "torch.bitwise_or": binary(),  # masks combined: `a & b`
    "torch.bitwise_left_shift": binary(), "torch.bitwise_right_shift": binary(),  # lengths: `lengths >> 2`
    "torch.bitwise_not": Op("input, out=None", lambda a: a.input.like(a.input.shape)),  # `~mask`
    # the index's shape; backward scatters the gradient back by the index, and keeps the input too (PyTorch)
    "torch.gather": Op("input, dim, index, *, sparse_grad=False, out=None",
                       lambda a: a.input.like(a.index.shape), saves=lambda a, out: [a.input, a.index]),
    "torch.nn.functional.one_hot": Op("tensor, num_classes=-1", one_hot_shape),
    "torch.polar": Op("abs, angle, out=None", polar_shape, saves=keeps_output),
    "torch.view_as_complex": Op("input", view_as_complex_shape, grad="alias"),
    "torch.view_as_real": Op("input", view_as_real_shape, grad="alias"),
    "torch.outer": Op("input, vec2, out=None", outer_shape,  # x.reshape(-1, 1) * vec2: each keeps the other
                      saves=lambda a, out: keeps_other_factor(Args(input=a.input, other=a.vec2), out)),
    "torch.repeat_interleave": Op("input, repeats, dim=None, output_size=None", repeat_interleave_shape),
    "torch.log": unary(),
    "torch.sqrt": unary(keeps_output),
    "torch.square": unary(), "torch.log1p": unary(), "torch.expm1": unary(keeps_output),
    "torch.abs": unary(),
    "torch.clamp": unary(extra=", min=None, max=None"),
    "torch.nn.functional.normalize": unary(extra=", p=2.0, dim=1, eps=1e-12, out=None"),
    "torch.nn.functional.softmax": SOFTMAX_FN, "torch.softmax": SOFTMAX_FN,
    "torch.nn.functional.log_softmax": SOFTMAX_FN, "torch.log_softmax": SOFTMAX_FN,
    "torch.nn.functional.dropout": dropout("plain", functional=True),
    **{f"torch.nn.functional.dropout{n}d": dropout("feature", functional=True) for n in (1, 2, 3)},
    "torch.nn.functional.alpha_dropout": dropout("alpha", functional=True),
    "torch.nn.functional.feature_alpha_dropout": dropout("alpha", functional=True),
    **{f"torch.nn.functional.{k.lower()}_pool{n}d": functional_pool(n, k) for n in (1, 2, 3) for k in ("Max", "Avg")},
    **{f"torch.{k.lower()}_pool{n}d": functional_pool(n, k) for n in (1, 2, 3) for k in ("Max", "Avg")},
    **{f"torch.nn.functional.adaptive_{k.lower()}_pool{n}d":
       replace(adaptive(n, k), signature="input, " + adaptive(n, k).signature)
       for n in (1, 2, 3) for k in ("Max", "Avg")},
    "torch.nn.functional.interpolate": INTERPOLATE,
    "torch.nn.functional.upsample": INTERPOLATE,
    "torch.nn.functional.scaled_dot_product_attention": Op(
        "query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False",
        sdpa_shape, saves=sdpa_saves, backward_temp=sdpa_backward, aten=sdpa_aten),
    "torch.nn.functional.cross_entropy": functional_loss(CROSS_ENTROPY),
    "torch.nn.functional.nll_loss": functional_loss(NLL_LOSS),
    "torch.nn.functional.mse_loss": functional_loss(MSE_LOSS, ", weight=None"),
    "torch._gpumem_rnn_layer": RNN_LAYER,
    # composites.py: the last use of a buffer PyTorch's C++ code keeps alive (nothing is computed)
    "torch._gpumem_release": Op("*tensors", lambda a: None),
    "torch.nn.functional.pad": Op("input, pad, mode='constant', value=None", fpad_shape,
                                  saves=lambda a, out: [a.input] if a.mode in ("reflect", "replicate") else []),
    # the weight too, for the input's gradient: under AMP a half-precision copy, not the parameter
    "torch.nn.functional.batch_norm": Op("input, running_mean, running_var, weight=None, bias=None, training=False, "
                                         "momentum=0.1, eps=1e-05", lambda a: a.input.like(a.input.shape),
                                         saves=batch_norm_saves),
    "torch.nn.functional.layer_norm": Op("input, normalized_shape, weight=None, bias=None, eps=1e-05",
                                         layer_norm_shape, saves=layer_norm_saves),
    "torch.nn.functional.rms_norm": Op("input, normalized_shape, weight=None, eps=None", steps=rms_norm),
    "torch.nn.functional.group_norm": Op("input, num_groups, weight=None, bias=None, eps=1e-05",
                                         group_norm_fn_shape, saves=group_norm_saves),
    "torch.nn.functional.embedding": Op("input, weight, padding_idx=None, max_norm=None, norm_type=2.0, "
                                        "scale_grad_by_freq=False, sparse=False", embedding_fn_shape,
                                        saves=keeps_input),
    **{f"torch.nn.functional.conv{n}d": conv_fn(n) for n in (1, 2, 3)},
    "torch.nn.functional.linear": Op("input, weight, bias=None", linear_fn_shape,
                                     saves=lambda a, out: linear_saves(a, out) + [a.weight] * a.input.requires_grad,
                                     forward_temp=linear_bias_copy, aten=linear_aten),
    "torch.nn.functional.pixel_shuffle": Op("input, upscale_factor", pixel_shuffle_shape),
    "torch.nn.functional.pixel_unshuffle": Op("input, downscale_factor", pixel_unshuffle_shape),
    "torch.flatten": Op("input, start_dim=0, end_dim=-1", flatten_shape, grad="alias"),
    "torch.clone": Op("input, memory_format=None", lambda a: a.input.like(a.input.shape)),
    "torch.cat": CAT, "torch.concat": CAT, "torch.concatenate": CAT,
    "torch.stack": Op("tensors, dim=0, out=None", stack_shape, grad="alias"),
    "torch.add": binary(grad="alias"), "torch.sub": binary(),
    "torch.floor_divide": binary(), "torch.remainder": binary(),  # x // n, x % n: backward keeps nothing
    "torch.addcmul": Op("input, tensor1, tensor2, *, value=1, out=None",  # input + value * tensor1 * tensor2
                        lambda a: broadcast(broadcast(a.input, a.tensor1), a.tensor2),
                        saves=lambda a, out: [t for t in (a.tensor1, a.tensor2) if isinstance(t, Tensor)]),
    "torch.mul": binary(keeps_other_factor), "torch.multiply": binary(keeps_other_factor), "torch.div": DIVISION,
    "torch.divide": DIVISION,
    "torch.matmul": Op("input, other, out=None", matmul_shape, saves=matmul_saves, aten=matmul_aten),
    "torch.addmm": Op("input, mat1, mat2, beta=1, alpha=1, out=None", addmm_shape, saves=addmm_saves,
                      aten=lambda a: ("addmm",)),
    # input * beta + batch1 @ batch2 * alpha (BLOOM's ALiBi scores): each batch where the other needs its gradient
    "torch.baddbmm": Op("input, batch1, batch2, *, beta=1, alpha=1, out=None",
                        lambda a: broadcast(a.input, matmul_shape(Args(input=a.batch1, other=a.batch2))),
                        saves=lambda a, out: addmm_saves(Args(mat1=a.batch1, mat2=a.batch2), out),
                        aten=lambda a: ("baddbmm",)),
    "torch.einsum": Op("equation, *operands", einsum_shape, saves=einsum_saves, aten=einsum_aten),
    "torch.bmm": Op("input, mat2, out=None", lambda a: matmul_shape(Args(input=a.input, other=a.mat2)),
                    saves=lambda a, out: [a.input, a.mat2], aten=lambda a: ("bmm",)),
    # each operand where the other needs its gradient, as mm, and the group offsets
    "torch.nn.functional.grouped_mm": Op("mat_a, mat_b, *, offs=None, bias=None, out_dtype=None", grouped_mm_shape,
                                         saves=lambda a, out: addmm_saves(Args(mat1=a.mat_a, mat2=a.mat_b), out)
                                         + [t for t in (a.offs,) if isinstance(t, Tensor)], aten=lambda a: None),
    # A X = B for a triangular A (gated delta-rule attention): X in B's shape, batch dims broadcast;
    # backward keeps A and X
    "torch.linalg.solve_triangular": Op("A, B, *, upper, left=True, unitriangular=False, out=None",
                                        lambda a: broadcast(a.A.like(a.A.shape[:-2] + (1, 1)), a.B),
                                        saves=lambda a, out: [a.A, out]),
    "torch.logsumexp": Op("input, dim, keepdim=False, out=None", reduce_shape, saves=lambda a, out: [a.input, out]),
    # the input with the rows the index names: backward adds the gradient back by the index
    "torch.index_select": Op("input, dim, index, out=None", index_select_shape, saves=lambda a, out: [a.index]),
    **{f"torch.logical_{f}": Op("input, other, out=None", lambda a: broadcast(a.input, a.other).astype("bool"),
                                grad="none") for f in ("and", "or", "xor")},
    "torch.logical_not": Op("input, out=None", lambda a: a.input.like(a.input.shape, "bool"), grad="none"),
    "torch.mean": REDUCE, "torch.sum": SUM, "torch.amax": REDUCE_KEEPS, "torch.amin": REDUCE_KEEPS,
    "torch.max": MAX, "torch.min": replace(MAX),  # one rule, two ops: numbers.py tells them apart
    "torch.transpose": Op("input, dim0, dim1", transpose_shape, grad="alias"),
    "torch.swapaxes": Op("input, axis0, axis1", lambda a: transpose_shape(Args(input=a.input, dim0=a.axis0,
                                                                               dim1=a.axis1)), grad="alias"),
    "torch.permute": Op("input, *dims", permute_shape, grad="alias"),
    "torch.reshape": Op("input, *sizes, shape=None", reshape_shape, grad="alias"),  # DiT: x.reshape(shape=...)
    "torch.squeeze": Op("input, dim=None", squeeze_shape, grad="alias"),
    "torch.unsqueeze": Op("input, dim", unsqueeze_shape, grad="alias"),
    "torch.chunk": Op("input, chunks, dim=0", chunk_shape),
    "torch.split": Op("input, split_size_or_sections, dim=0", split_shape),
    "torch.unbind": Op("input, dim=0", unbind_shape),
    "torch.narrow": Op("input, dim, start, length", narrow_shape),  # a slice: backward as indexing's
    "torch.prod": PROD,
    "torch.var": VAR,
    # a p-norm over dims: backward needs the input and the norm
    "torch.norm": Op("input, p='fro', dim=None, keepdim=False, out=None, dtype=None", reduce_shape,
                     saves=lambda a, out: [a.input, out]),
    "torch.cumsum": CUMSUM,
    "torch.cumprod": CUMPROD,
    "torch.bernoulli": BERNOULLI,
    "torch.where": WHERE,
    # einops: each a composite of the reshapes, permutes, reductions and cats einops runs (einops.py)
    "einops.rearrange": Op("tensor, pattern, **axes_lengths", steps=transform("rearrange")),
    "einops.repeat": Op("tensor, pattern, **axes_lengths", steps=transform("repeat")),
    "einops.reduce": Op("tensor, pattern, reduction, **axes_lengths", steps=transform()),
    "einops.pack": Op("tensors, pattern", steps=pack),
    "einops.unpack": Op("tensor, packed_shapes, pattern", steps=unpack),
    "einops.einsum": Op("*tensors_and_pattern", steps=einsum),
    **{f"torch.{f}": CREATE for f in ("randn", "rand", "empty")}, "torch.zeros": ZEROS, "torch.ones": ONES,
    "torch.Tensor": LEGACY, "torch.FloatTensor": LEGACY,
    # a new tensor shaped like its input: no gradient flows back to the input
    **{f"torch.{f}": Op("input, dtype=None, device=None, requires_grad=False, memory_format=None", like_shape,
                        grad="none") for f in ("randn_like", "rand_like", "zeros_like", "ones_like", "empty_like")},
    "torch.normal": Op("mean, std=1.0, size=None, *, generator=None, out=None, dtype=None, layout=None, device=None, "
                       "pin_memory=False, requires_grad=False", normal_shape),
    "torch.randint": Op("low, high, size, dtype=None, device=None, generator=None, requires_grad=False",
                        randint_shape),
    "torch.arange": Op("start, end=None, step=1, out=None, dtype=None, layout=None, device=None, "
                       "pin_memory=False, requires_grad=False", arange_shape),
    "torch.eye": Op("n, m=None, *, out=None, dtype=None, layout=None, device=None, pin_memory=False, "
                    "requires_grad=False", eye_shape),
    "torch.linspace": Op("start, end, steps, out=None, dtype=None, layout=None, device=None, requires_grad=False",
                         linspace_shape),
    "torch.tensor": Op("data, dtype=None, device=None, requires_grad=False, pin_memory=False", tensor_shape),
    "torch.meshgrid": Op("*tensors, indexing='ij'", meshgrid_shape),
    "torch.full": Op("size, fill_value, out=None, dtype=None, layout=None, device=None, pin_memory=False, "
                     "requires_grad=False", full_shape),
    "torch.full_like": Op("input, fill_value, dtype=None, layout=None, device=None, requires_grad=False, "
                          "memory_format=None", like_shape, grad="none"),
}

# Layers of other libraries, by the qualified name they are imported under.
LIBRARY_MODULES: dict[str, Op] = {
    "einops.layers.torch.Rearrange": Op("pattern, **axes_lengths", steps=transform("rearrange")),
    "einops.layers.torch.Reduce": Op("pattern, reduction, **axes_lengths", steps=transform()),
}

# Tensor methods, by method name; the tensor is bound as `input`.
METHODS: dict[str, Op] = {
    **{name: FUNCTIONS[f"torch.{name}"] for name in ("reshape", "flatten", "squeeze", "unsqueeze", "permute",
                                                       "transpose", "chunk", "split", "unbind", "neg", "negative",
                                                       "cos", "sin", "rsqrt", "tril", "triu", "topk", "eq", "ne",
                                                       "lt", "le", "gt", "ge", "outer", "repeat_interleave", "narrow",
                                                       "prod", "cumsum", "cumprod", "bernoulli", "var", "norm",
                                                       "gather", "sort", "histc", "baddbmm", "logsumexp",
                                                       "index_select", "logical_and", "logical_or", "logical_xor",
                                                       "logical_not")},
    "unfold": Op("input, dimension, size, step", unfold_shape),  # a view; backward makes the input's gradient
    "view": Op("input, *shape", view_shape, grad="alias"),
    "view_as": Op("input, other", view_as_shape, grad="alias"),
    "reshape_as": Op("input, other", view_as_shape, grad="alias"),
    "t": Op("input", t_shape, grad="alias"),
    "expand": Op("input, *sizes", expand_shape),
    "expand_as": Op("input, other", view_as_shape),
    "repeat": Op("input, *sizes", repeat_shape),
    "tile": Op("input, *dims", tile_shape),
    "size": Op("input, dim=None", size_value),
    "dim": Op("input", lambda a: a.input.ndim),
    "numel": Op("input", lambda a: a.input.numel),
    "is_floating_point": Op("input", lambda a: a.input.dtype in FLOAT_DTYPES),
    "contiguous": Op("input, memory_format=None",
                     lambda a: a.input if a.input.contiguous else Tensor(a.input.shape, a.input.dtype)),
    "detach": Op("input", lambda a: Tensor(a.input.shape, a.input.dtype, False, base=a.input), grad="none"),
    "clone": FUNCTIONS["torch.clone"],
    # the index's places written over (a mask built from top-k groups): backward keeps the index
    "scatter_": Op("input, dim, index, src=None, value=None, *, reduce=None", lambda a: a.input.rewritten(),
                   saves=lambda a, out: [a.index]),
    "scatter": Op("input, dim, index, src=None, value=None, *, reduce=None", lambda a: a.input.like(a.input.shape),
                  saves=lambda a, out: [a.index]),
    "to": Op("input, *args, **kwargs", cast_shape),
    "cuda": Op("input, *args, **kwargs", cast_shape),
    "cpu": Op("input, *args, **kwargs", cast_shape),
    "type_as": Op("input, other", lambda a: a.input.astype(a.other.dtype)),
    "type": Op("input, dtype, non_blocking=False", lambda a: a.input.astype(a.dtype)),
    "float": to_dtype("float32"),
    "half": to_dtype("float16"),
    "bfloat16": to_dtype("bfloat16"),
    "double": to_dtype("float64"),
    "long": to_dtype("int64"),
    "int": to_dtype("int32"),
    "bool": to_dtype("bool"),
    "zero_": Op("input", lambda a: a.input.rewritten()),  # in place: the input's memory, written over
    "fill_": Op("input, value", lambda a: a.input.rewritten()),
    **{f"new_{f}": Op("input, *size, dtype=None, device=None, requires_grad=False, layout=None, pin_memory=False",
                      new_shape, grad="none") for f in ("zeros", "ones", "empty")},
    # of a tensor or array, PyTorch makes a copy of the data first (measured): a temporary of its size
    "new_tensor": Op("input, data, dtype=None, device=None, requires_grad=False", new_tensor_shape, grad="none",
                     forward_temp=lambda a, out: a.data.nbytes if isinstance(a.data, Tensor) else 0),
    "relu": FUNCTIONS["torch.relu"],
    "relu_": Op("input", lambda a: a.input.rewritten(), saves=keeps_output),
    "sigmoid": FUNCTIONS["torch.sigmoid"],
    "tanh": FUNCTIONS["torch.tanh"],
    "exp": FUNCTIONS["torch.exp"],
    "log": FUNCTIONS["torch.log"],
    "sqrt": FUNCTIONS["torch.sqrt"],
    **{name: FUNCTIONS[f"torch.{name}"] for name in ("square", "log1p", "expm1")},
    "abs": FUNCTIONS["torch.abs"],
    "flip": FUNCTIONS["torch.flip"],
    "clamp": FUNCTIONS["torch.clamp"],
    "pow": unary(extra=", exponent"),
    "softmax": softmax_fn("input, dim, dtype=None"),
    "log_softmax": softmax_fn("input, dim, dtype=None"),
    "mean": REDUCE, "sum": FUNCTIONS["torch.sum"], "all": FUNCTIONS["torch.all"], "any": FUNCTIONS["torch.any"],
    "amax": REDUCE_KEEPS, "amin": REDUCE_KEEPS,
    "max": MAX, "min": FUNCTIONS["torch.min"],
    "argmax": Op("input, dim=None, keepdim=False",
                 lambda a: Tensor(reduce_shape(a).shape, "int64")),
    "add": binary(grad="alias"), "sub": binary(), "mul": FUNCTIONS["torch.mul"], "div": FUNCTIONS["torch.div"],
    "matmul": FUNCTIONS["torch.matmul"],
    "bmm": FUNCTIONS["torch.bmm"],
    "unflatten": Op("input, dim, sizes", lambda a: unflatten_shape(Args(a, unflattened_size=a.sizes))),
    # backward masks the gradient: it keeps the mask
    "masked_fill": Op("input, mask, value", lambda a: broadcast(a.input, a.mask), saves=lambda a, out: [a.mask]),
    "masked_fill_": Op("input, mask, value", lambda a: a.input.rewritten(), saves=lambda a, out: [a.mask]),
}

# In place on the tensor's shape: the same memory seen anew, as the method without `_` sees it
METHODS.update({f"{name}_": replace(METHODS[name], rebinds=True)
                for name in ("unsqueeze", "squeeze", "transpose", "t")})

# Autocast (AMP): which ops compute in half precision, which are forced to float32
# (torch's autocast op lists; the CUDA float32 list is longer than the CPU one).
AUTOCAST = {
    "low": (
        [f"Conv{n}d" for n in (1, 2, 3)] + [f"ConvTranspose{n}d" for n in (1, 2, 3)]
        + [f"torch.nn.functional.conv{n}d" for n in (1, 2, 3)]
        + ["Linear", "PReLU", "torch._gpumem_rnn_layer", "torch.nn.functional.linear", "torch.matmul", "torch.bmm",
           "torch.addmm", "torch.einsum",
           "torch.nn.functional.scaled_dot_product_attention", "matmul", "bmm"]),
    "fp32-cuda": ["Softmax", "LogSoftmax", "LayerNorm", "torch.nn.functional.layer_norm", "GroupNorm", "Softplus",
                  "torch.nn.functional.group_norm",
                  "torch.nn.functional.softmax", "torch.softmax", "torch.nn.functional.log_softmax",
                  "torch.log_softmax", "torch.exp", "torch.log", "torch.sum", "softmax", "log_softmax", "exp", "log",
                  "pow", "sum", "torch.pow", "torch.rsqrt", "rsqrt"],
    "fp32": ["torch.polar", "torch.view_as_complex",  # as CPU autocast; modelled so on CUDA too
             "CrossEntropyLoss", "NLLLoss", "MSELoss", "torch.nn.functional.cross_entropy",
             "torch.nn.functional.nll_loss", "torch.nn.functional.mse_loss", "MaxPool3d", "AdaptiveAvgPool3d",
             "AvgPool3d", "ReflectionPad1d", "ReflectionPad2d", "ReplicationPad1d", "ReplicationPad2d",
             "ReplicationPad3d"],
    "promote": ["torch.cat", "torch.concat", "torch.concatenate", "torch.stack"],  # to the widest input's dtype
}
for _mode, _names in AUTOCAST.items():
    for _name in _names:
        for _table in (MODULES, FUNCTIONS, METHODS):
            if _name in _table:
                _table[_name] = replace(_table[_name], autocast=_mode)
