"""Recurrent layers: one layer and direction of nn.LSTM/GRU/RNN (RNN_LAYER).

What it keeps (oneDNN's workspace, or the native cells' gates and states per step), what it
holds while it runs, and its backward replayed allocation by allocation on a `Ledger`
(`replay` with `elman_step`, `gru_step`, `lstm_step`). composites.py builds the modules
from this entry.
"""
from __future__ import annotations

from ..values import DTYPE_BYTES, Tensor, view_layout
from .core import Args, Op, Ledger, need_channels, need_rank


# One layer and direction of nn.LSTM/GRU/RNN as PyTorch 2.13 runs it on the CPU (composites.py
# builds the module from these). LSTM without projection runs oneDNN's kernel, which keeps a
# workspace (7 buffers, each rounded up to a 4096-byte page, leading dimensions padded as oneDNN's
# get_good_ld does); GRU, RNN and projected LSTM run the native per-step cells, which keep their
# gates and states per step. Byte rules measured against PyTorch step by step.

PAGE = 4096
GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


def _page(n: int, align: int = PAGE) -> int:
    return -(-n // align) * align


def _good_ld(dim: int, size: int) -> int:
    ld = _page(dim, 64 // size)
    return ld + 64 // size if ld % 256 == 0 else ld


def lstm_workspace(T: int, N: int, I: int, H: int, s: int) -> int:
    parts = [T * N * _good_ld(4 * H, s) * s, T * N * _good_ld(H, s) * s,
             2 * (T + 1) * N * _good_ld(max(H, I), s) * s, 2 * (T + 1) * N * H * s,
             2 * (T + 1) * N * _good_ld(max(I, H), 4) * 4, 2 * (T + 1) * N * _good_ld(max(I, H), 4) * 4,
             2 * (T + 1) * N * H * 4]
    return sum(_page(p) for p in parts)


def _rnn_dims(a: Args):
    x = a.input
    H = a.w_hh.shape[0] // GATES[a.kind]
    return x.shape[0], x.shape[1], x.shape[2], H, DTYPE_BYTES[x.dtype]


def _onednn(a: Args) -> bool:
    return a.kind == "lstm" and a.w_hr is None and a.input.dtype in ("float32", "bfloat16")


def _rnn_layer_shape(a: Args):
    x = a.input
    need_rank(x, (3,), "recurrent layer")
    need_channels(x, a.w_ih.shape[1], -1, "input_size")
    T, N, _, H, _ = _rnn_dims(a)
    h_out = a.w_hr.shape[0] if a.w_hr is not None else H
    out = x.like((T, N, h_out)) if a.kind != "gru" else Tensor((T, N, h_out), _state_dtype(a))
    if _onednn(a):
        states, kept = (out, x.like((N, h_out)), x.like((N, H))), ()
    else:
        # the last states are their own tensors, not slices of the stacked output
        states = (out, Tensor((N, h_out), out.dtype)) + ((Tensor((N, H), _state_dtype(a)),) if a.kind == "lstm" else ())
        kept = (x.like((T, N, GATES[a.kind] * H)),) if a.joined == 2 else ()
        if _gru_float_states(a):
            kept += (Tensor((T - 1, N, H), out.dtype),)
    return states + ((kept,) if a.joined else ())


def _state_dtype(a: Args) -> str:
    """A GRU's states and an LSTM's cell states mix the gates with the previous state ((1 - z) * n
    + z * h, f * c + i * g), starting from zeros in the dtype of the layers' input (`state`): under
    AMP, half-precision gates on a float32 input give float32 states (an Elman state is the
    activation of the gates alone)."""
    gates = a.input.dtype
    return a.state if a.state and DTYPE_BYTES[a.state] > DTYPE_BYTES[gates] else gates


def _rnn_layer_saves(a: Args, out) -> list:
    x = a.input
    T, N, I, H, s = _rnn_dims(a)
    if _onednn(a):
        # its input, states, outputs and weights (under AMP their half-precision copies) and workspace
        kept = [x, a.hx, a.cx, a.w_ih, a.w_hh, *([a.b_ih, a.b_hh] if a.b_ih is not None else []), *out[:3],
                Tensor((lstm_workspace(T, N, I, H, s),), "uint8")]
        return kept + ([Tensor((4 * H * (I + H) * s,), "uint8")] if a.b_ih is None else [])
    # linear_ih keeps its input (a copy when it cannot be viewed as 2-d), each step its gates/states.
    # A GRU step keeps seven N x H units: six in half precision under AMP (the hidden gates, a copy,
    # a sum, the previous state's half-precision copy) and one in the state's float32. An LSTM step
    # (projected, or float16) keeps its gates, c and tanh(c) (float32 under AMP), the cell output
    # (under AMP its half-precision copy) and the projected state (under AMP with w_hr's copy, cast
    # again each step). An Elman layer's last state is kept by its activation, apart from the output.
    sc = DTYPE_BYTES[_state_dtype(a)]
    if a.kind == "lstm":
        steps = (4 * T * s + (2 * T - 1) * sc) * N * H
        if a.w_hr is not None:
            steps += T * N * H * s + (T - 1) * N * a.w_hr.shape[0] * s + T * a.w_hr.numel * s * (sc != s)
        else:
            steps += (T - 1) * N * H * s
    else:
        steps = {"rnn_tanh": T - 1, "rnn_relu": T - 1, "gru": 6 * T - 1}[a.kind] * N * H * s
        steps += T * N * H * sc if a.kind == "gru" else 0
    kept = [a.hx, Tensor((steps,), "uint8")] + [a.w_hh] * (T > 1) + [a.w_ih] * x.requires_grad
    if a.kind in ("rnn_tanh", "rnn_relu"):
        kept.append(out[1])  # the last state, which its activation keeps
    if a.cx is not None:
        kept.append(a.cx)
    if view_layout(x, (T * N, I)) is False:
        return kept + [Tensor((T * N * I * s,), "uint8")]
    return kept + [x]


def _rnn_layer_backward(a: Args):
    """The layer's backward beyond the input and weight gradients the simulator has allocated
    (negative where it frees what the forward kept): one number, or (before, after) the layer has
    consumed its output's gradient."""
    T, N, I, H, s = _rnn_dims(a)
    G = GATES[a.kind]
    x_grad = T * N * I * s if a.input.requires_grad else 0
    bias = a.b_ih is not None
    weights = sum(w.nbytes for w in (a.w_ih, a.w_hh, a.b_ih, a.b_hh, a.w_hr) if w is not None)
    ledger = Ledger()
    if _onednn(a):
        # oneDNN writes every gradient in float32 (input, weights, both biases, both initial states);
        # the unused ones are freed, the rest converted to the layer's precision one by one
        grads = [T * N * I, 4 * H * I, 4 * H * H, 4 * H, 4 * H]
        ledger(*(4 * g for g in grads), 2 * N * H * 4, -2 * N * H * 4)
        kept = [a.input.requires_grad, True, True, bias, bias]
        ledger(*(-4 * g for g, k in zip(grads, kept) if not k))
        if s != 4:
            for g, k in zip(grads, kept):
                ledger(g * s if k else 0, -4 * g if k else 0)
        return ledger.peak - x_grad - weights
    # Under AMP the layer gets half-precision copies of its weights: w_hh's is kept for the state
    # gradients until step 1, and its gradient is converted to float32 right after the steps.
    copies = not a.w_hh.is_param
    p = DTYPE_BYTES[a.get("_float") or a.w_hh.dtype]
    h0 = a.hx.nbytes if a.hx.base is None else a.frees_h0 * s  # the initial state: its copy, or the zeros
    h, W, b = N * H * s, a.w_hh.numel * s, G * H * s * bias
    w = a.w_hh.nbytes * copies
    if a.kind == "lstm":  # with a projection, or in float16 (oneDNN runs the others)
        h_out = a.w_hr.shape[0] if a.w_hr is not None else H
        c0 = a.cx.nbytes if a.cx.base is None else a.frees_h0 // h_out * H * s
        Wr = a.w_hr.numel * s if a.w_hr is not None else None
        replay(ledger, T, lambda led, t: lstm_step(led, t, T, h, N * h_out * s, W, Wr, b, h0, c0, w))
    else:
        step = gru_step if a.kind == "gru" else elman_step
        replay(ledger, T, lambda led, t: step(led, t, T, h, W, b, h0, w))
    if copies:
        ledger(a.w_hh.numel * p, -W, G * H * p * bias, -b)
        if a.w_hr is not None:
            ledger(a.w_hr.numel * p, -a.w_hr.numel * s)
    Y = T * N * G * H * s  # the input gates' gradients of all steps, stacked
    ledger(Y, -Y, x_grad, G * H * I * s, b, -Y)  # then linear_ih's backward
    return ledger.before - x_grad - weights, ledger.peak - x_grad - weights


# The native cells' backward, step by step from the last, as ATen 2.13's autograd runs it on the CPU
# (traced allocation by allocation). h: one state (N x H); W, b: the gradient of w_hh, b_hh; h0: the
# initial states, freed with the last step; w: w_hh's half-precision copy under AMP. A step's
# input-gate gradient is kept for the stack after the loop; the gradients of w_hh/b_hh are summed
# step by step into new buffers; the output's gradient (one view per step) is consumed in step 1.

def replay(ledger: Ledger, T: int, step) -> None:
    """Run step(ledger, t) from the last step to the first. Steps T-2 .. 2 are alike (the same
    bytes in the same order), so one is run and the rest extrapolated: a long sequence costs O(1)."""
    step(ledger, T - 1)
    alike = T - 3
    if alike > 0:
        probe = Ledger()
        step(probe, 2)
        ledger.peak = max(ledger.peak, ledger.cur + probe.peak + (alike - 1) * max(probe.cur, 0))
        ledger.cur += alike * probe.cur
    for t in range(min(T - 2, 1), -1, -1):
        step(ledger, t)


def elman_step(ledger: Ledger, t: int, T: int, h: int, W: int, b: int, h0: int, w: int) -> None:
    first, last = t == T - 1, t == 0
    ledger(h)  # tanh_backward: the input gates' gradient of the step
    if T == 1:
        ledger.release()
    if not first:
        ledger(-h)  # the gradient of h_t, consumed
    ledger(-h)  # h_t, kept by the activation
    if not last:
        ledger(h)  # mm: the gradient of h_t-1
    ledger(W, b, -w if t == 1 else 0, -h0 if last else 0)
    _accumulate(ledger, first, last, h, W, b, release=t == 1)


def gru_step(ledger: Ledger, t: int, T: int, h: int, W: int, b: int, h0: int, w: int) -> None:
    first, last = t == T - 1, t == 0
    ledger(h, h, -h, h)  # h = (h_t-1 - n) * z + n: two muls, the kept copy freed, neg for n
    if last:
        ledger(-h)  # h0 takes no gradient
    else:
        ledger(h)  # add: the gradient of h_t-1, the output's view plus the mul
        if t == 1 and not first:
            ledger.release()
    ledger(h)  # add: the gradient of n
    if first and t <= 1:
        ledger.release()
    ledger(-h if not first else 0, -h if not last else 0, -h)  # the step's gradient, mul, neg
    ledger(h, -h, -h)  # tanh_backward; n's gradient and n
    ledger(h, h, -h, h, -h, h, -h)  # r * hn: two muls, a kept copy; sigmoid_backward of r and z
    ledger(-3 * h, 3 * h, -h)  # the hidden gates freed, their gradient (cat), hn's mul freed
    if not last:
        ledger(h)  # mm: the gradient of h_t-1
    ledger(W, b, -3 * h, -h if not last else -h0, -w if t == 1 else 0)  # h_t-1 and the gates consumed
    _accumulate(ledger, first, last, h, W, b, earlier=h)
    ledger(3 * h, -3 * h)  # the input gates' gradient (cat of the three), kept for the stack


def lstm_step(ledger: Ledger, t: int, T: int, h: int, p: int, W: int, Wr: int | None, b: int, h0: int,
               c0: int, w: int) -> None:
    """p: one state (N x proj_size with a projection); Wr: the gradient of w_hr (None: no projection);
    c0: the initial cell state."""
    first, last = t == T - 1, t == 0
    if Wr is not None:
        ledger(Wr, h)  # the projection's backward: w_hr's gradient, the cell output's
        if T == 1:
            ledger.release()
        ledger(-p if not first else 0, -h)  # the projected state's gradient; the cell output, kept by it
        if not first:
            ledger(Wr, -Wr, -Wr)
        ledger(h, h, -h)  # output = o * tanh(c): two muls; the output's gradient consumed
    else:
        ledger(h, h, -h if not first else 0)  # output = o * tanh(c): two muls; the state's gradient consumed
        if T == 1:
            ledger.release()
    ledger(h, -h, -h)  # tanh_backward; its mul and tanh(c) freed
    if not first:
        ledger(h, -h, -h)  # add: c's gradient plus the later step's
    ledger(h, h, h, h if not last else 0, -h, -h if not last else -c0)  # c = f * c_prev + i * g
    ledger(h, -h, h, -h, h, -h, h, -h)  # the four gates' sigmoid/tanh backward, each freeing its mul
    ledger(-4 * h, 4 * h, -4 * h)  # the gates freed, their gradient (cat, kept for the stack)
    if not last:
        ledger(p)  # mm: the gradient of the previous projected state
    ledger(W, b, -p if not last else -h0, -w if t == 1 else 0)
    _accumulate(ledger, first, last, p, W, b, release=t == 1)


def _accumulate(ledger: Ledger, first: bool, last: bool, h: int, W: int, b: int, earlier: int = 0,
                release: bool = False) -> None:
    """Sum the step's b_hh gradient, the gradient of h_t-1 (replacing an `earlier` partial sum) and
    the w_hh gradient into new buffers."""
    if not first:
        ledger(b, -b)
    if not last:
        ledger(h, -earlier)
        if release:
            ledger.release()
    ledger(-b if not first else 0, -h if not last else 0)  # the step's b_hh gradient and mm
    if not first:
        ledger(W, -W, -W)


def _rnn_layer_forward(a: Args, out) -> int:
    """The input gates of all steps (native cells) or the summed bias (oneDNN), and a GRU's float32
    states under AMP, while the layer runs.

    One of two `joined` directions (1 forward, 2 reverse) returns instead, as its last output, what
    ATen keeps until both are concatenated (torch._gpumem_release): the reverse direction's gates,
    both directions' float32 states. Under AMP an input that linear_ih has to copy (batch-first)
    is autocast's copy for this layer alone, freed once the copy is made."""
    T, N, I, H, s = _rnn_dims(a)
    if _onednn(a):
        return 4 * H * s
    gates = 0 if a.joined == 2 else T * N * GATES[a.kind] * H * s
    cast = a.state not in (None, a.input.dtype) and view_layout(a.input, (T * N, I)) is False
    return gates + (0 if a.joined else _gru_float_states(a)) - a.input.nbytes * cast


def _gru_float_states(a: Args) -> int:
    """Under AMP the steps keep half-precision copies of a GRU's float32 states; the states
    themselves live only until the layer has stacked its output."""
    T, N, _, H, s = _rnn_dims(a)
    sh = DTYPE_BYTES[_state_dtype(a)] if a.kind == "gru" else s
    return (T - 1) * N * H * sh if sh != s else 0


# Arguments in the order ATen's layer reaches them, last first: autocast casts an op's arguments last
# to first, so linear_ih casts b_ih, w_ih, the input, then the first step b_hh, w_hh, hx.
RNN_LAYER = Op("cx, w_hr, hx, w_hh, b_hh, input, w_ih, b_ih, kind, frees_h0, joined, state", _rnn_layer_shape,
               saves=_rnn_layer_saves, backward_temp=_rnn_layer_backward, forward_temp=_rnn_layer_forward,
               aten=lambda a: None)  # its cells' matrix products, in an order not read
