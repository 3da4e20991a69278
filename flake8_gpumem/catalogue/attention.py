"""Attention: F.scaled_dot_product_attention.

A fused kernel (flash / memory-efficient: always on CUDA, on the CPU without dropout) keeps
q, k, v, the output and a log-sum-exp per row; the math path keeps the scores-sized
intermediates and replays its backward on a `Ledger`. The entry is in tables.py.
"""
from __future__ import annotations

from ..values import STRIDED, ShapeError, Tensor
from .core import Args, Ledger, fmt


def sdpa_shape(a: Args):
    q, k, v = a.query, a.key, a.value
    if q.shape[-1] != k.shape[-1] or k.shape[:-1] != v.shape[:-1]:
        raise ShapeError(f"scaled_dot_product_attention of query {fmt(q.shape)}, key {fmt(k.shape)} and "
                         f"value {fmt(v.shape)}: the sizes do not fit")
    out = Tensor(q.shape[:-1] + v.shape[-1:], q.dtype)
    if _sdpa_fused(a):  # written in the query's memory order; a query sliced from a fused projection
        # (`c_attn(x).split(...)`, viewed to heads, transposed) is (batch, tokens, heads, dim) in memory
        out.layout = q.layout if q.layout != STRIDED else (0, 2, 1, 3) if q.ndim == 4 else None
    return out


def _sdpa_fused(a: Args) -> bool:
    """CUDA always runs a fused kernel (flash / memory-efficient); the CPU only without dropout."""
    return a.get("_device") == "cuda" or not a.dropout_p


# the fused kernels CUDA chooses among by GPU, dtype and head size, which the source does not say
CUDA_SDPA = ("_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
             "_scaled_dot_product_cudnn_attention")


def sdpa_aten(a: Args) -> tuple | None:
    """The ATen op a selective checkpointing policy sees (Op.aten): the CPU's fused kernel, or one of
    CUDA's; the math path (CPU dropout) decomposes into matmuls and softmax, not read."""
    if not _sdpa_fused(a):
        return None
    return CUDA_SDPA if a.get("_device") == "cuda" else ("_scaled_dot_product_flash_attention_for_cpu",)


def sdpa_saves(a: Args, out) -> list:
    q, k, v = a.query, a.key, a.value
    stats = Tensor(q.shape[:-1], "float32")  # log-sum-exp per query row
    if _sdpa_fused(a):
        kept = [q, k, v, out, stats]
        return kept + [Tensor((2,), "int64")] if a.dropout_p else kept  # the dropout RNG seed/offset
    # The math path keeps the scaled q and k, the softmax, the dropout noise and its product;
    # on the CPU it computes half precision in float32 (copies of q, k and v).
    scores = _sdpa_scores(q, k)
    ct = scores.dtype
    kept = [Tensor(q.shape, ct), Tensor(k.shape, ct), scores, scores.like(scores.shape), scores.like(scores.shape)]
    return kept + [v if ct == v.dtype else Tensor(v.shape, ct)]


def _sdpa_scores(q: Tensor, k: Tensor) -> Tensor:
    """The math path's attention scores, in float32 for half-precision inputs."""
    return Tensor(q.shape[:-1] + k.shape[-2:-1], "float32" if q.dtype in ("float16", "bfloat16") else q.dtype)


def sdpa_backward(a: Args) -> int:
    """The fused backward works in blocks. The math one (traced on the CPU) goes back through
    attn @ v, dropout and softmax, each freeing what it kept as it makes the next scores-sized
    gradient, and ends with q @ k^T's."""
    if _sdpa_fused(a):
        return 0
    q, k, v = a.query, a.key, a.value
    S = _sdpa_scores(q, k).nbytes
    ledger = Ledger()
    ledger(v.nbytes, S, -S)  # attn @ v: the gradients of v and of the attention; the dropped-out attention
    ledger(S, -S, -S)  # dropout: its gradient; the attention's and the noise
    ledger(S, -S, -S)  # softmax: its gradient; dropout's and the softmax
    ledger(q.nbytes, k.nbytes)  # q @ k^T
    return ledger.peak - q.nbytes - k.nbytes - v.nbytes
