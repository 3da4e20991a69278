"""The largest batch that fits, in closed form.

A simulated step is a sequence of points where the peak can occur (memory.simulate's `points`,
(phase, total) each). For almost every model the sequence is the same at every batch size from 2
on and each total is affine in the batch: t_i(b) = a_i + c_i*b. The steps at batches 2 and 3 give
a_i and c_i, and the largest b with max_i t_i(b) <= limit is one division per point; a step at
the first batch that answer says does not fit checks the form there. Batch 1 is not on the line:
a repeat or a contiguous copy along a dimension of size 1 makes no new tensor, so that step has
fewer points. Where the points differ between batches (control flow on the batch size) or a
total is not affine (an op quadratic in the batch), `largest_batch` or `affine_at` says so and
the caller searches instead.
"""
from __future__ import annotations


def largest_batch(two: list, three: list, limit: int) -> int | None:
    """The largest batch b >= 2 whose every point fits `limit`, from the steps at batches 2 and 3;
    1 where batch 2 does not fit (whether batch 1 does is the caller's to find out); None where the
    two steps do not pair up point for point, a total shrinks as the batch grows, or none grows."""
    if [phase for phase, _ in two] != [phase for phase, _ in three]:
        return None
    if max(total for _, total in two) > limit:
        return 1
    best = None
    for (_, t2), (_, t3) in zip(two, three):
        slope = t3 - t2
        if slope < 0:
            return None
        if slope:
            b = 2 + (limit - t2) // slope
            best = b if best is None else min(best, b)
    return best


def affine_at(two: list, three: list, other: list, batch: int) -> bool:
    """Whether the step at `batch` has the same points, each on the line through batches 2 and 3."""
    return [p for p, _ in two] == [p for p, _ in other] and all(
        t2 + (t3 - t2) * (batch - 2) == t for (_, t2), (_, t3), (_, t) in zip(two, three, other))
