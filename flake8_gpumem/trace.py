"""The record of one simulated step (memory.simulate's `trace`), from which the pictures are drawn.

In order: a `Block` at each allocation and free, a `Reach` at each place the peak can occur, a
`Restart` where the next micro-batch begins. Summing the blocks gives the running total at any
moment; a `Reach` adds that moment's transients on top.
"""
from __future__ import annotations

from typing import NamedTuple

# What a block holds
WEIGHTS, GRADIENTS, OPTIMIZER, ACTIVATIONS, TEMPORARIES = (
    "weights", "gradients", "optimizer state", "activations", "temporaries")
CATEGORIES = (WEIGHTS, GRADIENTS, OPTIMIZER, ACTIVATIONS, TEMPORARIES)


class Block(NamedTuple):
    """A block allocated (nbytes > 0) or freed (< 0); a free names the key its allocation had."""

    nbytes: int
    category: str
    key: object
    at: int | None  # the event whose forward or backward did it; None: before forward, or the optimizer


class Reach(NamedTuple):
    """A place the peak can occur: `total` is the live blocks plus the transients of that moment."""

    total: int
    phase: str
    at: int | None


class Restart(NamedTuple):
    """The next micro-batch: the blocks its step starts from replace all that are live."""

    micro_batch: int


def moments(records: list):
    """Each Reach with the bytes live per category at that moment (its transients counted as
    temporaries) and the micro-batch it belongs to: the columns of the timeline. A backward that
    frees part of what it kept midway (an RNN's, whose transients are then negative) shows as
    fewer activations."""
    live, micro_batch = dict.fromkeys(CATEGORIES, 0), 1
    for r in records:
        if isinstance(r, Block):
            live[r.category] += r.nbytes
        elif isinstance(r, Restart):
            live, micro_batch = dict.fromkeys(CATEGORIES, 0), r.micro_batch
        else:
            split = dict(live)
            split[TEMPORARIES] += r.total - sum(live.values())
            freed_midway = max(0, -split[TEMPORARIES])
            split[TEMPORARIES] += freed_midway
            split[ACTIVATIONS] -= freed_midway
            yield r, split, micro_batch
