"""The simulated step as a PyTorch memory snapshot (`torch.cuda.memory._snapshot()`'s dict), so that
pytorch.org/memory_viz and `python -m torch.cuda._memory_viz trace_plot` draw it like a real run.

`device_traces[0]` holds the step's `alloc`, `free_requested` and `free_completed` entries, each
block framed by the model's file, the line of the layer that made or freed it and its name;
`segments` holds the blocks still live when the step ends (weights, gradients, optimizer state), in
one segment. Addresses come from a first-fit heap with the CUDA allocator's 512-byte blocks; sizes
are exact, so replaying the entries reaches the reported peak.
"""
from __future__ import annotations

import bisect

from ..analysis import ModelReport
from ..memory import CUDA_BLOCK
from ..trace import TEMPORARIES, Block, Restart

BASE = 0x7F0000000000  # where the segment starts: any address a CUDA heap could have
SEGMENT_ROUND = 2 ** 21  # large segments are cudaMalloc'd in 2 MiB multiples


class _Heap:
    """First-fit placement with coalescing: blocks freed are reused, as an allocator would."""

    def __init__(self):
        self.free: list[list[int]] = []  # [start, size], sorted, never adjacent
        self.end = 0

    def take(self, size: int) -> int:
        for k, (start, room) in enumerate(self.free):
            if room >= size:
                if room == size:
                    del self.free[k]
                else:
                    self.free[k] = [start + size, room - size]
                return start
        if self.free and self.free[-1][0] + self.free[-1][1] == self.end:
            start = self.free.pop()[0]
        else:
            start = self.end
        self.end = start + size
        return start

    def give(self, start: int, size: int) -> None:
        k = bisect.bisect(self.free, [start, size])
        self.free.insert(k, [start, size])
        if k + 1 < len(self.free) and start + size == self.free[k + 1][0]:
            self.free[k][1] += self.free.pop(k + 1)[1]
        if k and self.free[k - 1][0] + self.free[k - 1][1] == start:
            self.free[k - 1][1] += self.free.pop(k)[1]


class _Trace:
    """The device trace being written: blocks placed on the heap, by the key the simulator gave them."""

    def __init__(self):
        self.heap, self.live, self.entries, self.held = _Heap(), {}, [], 0

    def alloc(self, nbytes: int, key, frames: list, category: str) -> None:
        addr = self.heap.take(_rounded(nbytes))
        self.live[key] = (addr, nbytes, frames, category)
        self.held += nbytes
        self.entries.append(_entry("alloc", addr, nbytes, frames, category))

    def free(self, key, frames: list | None = None) -> None:
        addr, nbytes, made, category = self.live.pop(key)
        self.heap.give(addr, _rounded(nbytes))
        self.held -= nbytes
        for action in ("free_requested", "free_completed"):
            self.entries.append(_entry(action, addr, nbytes, frames or made, category))


def snapshot(m: ModelReport) -> dict:
    tl, out = m.timeline, _Trace()

    def frames(at: int | None, name: str) -> list[dict]:
        line = tl.lines[at] if at is not None else None
        return [{"filename": m.file, "line": line or m.line, "name": name},
                {"filename": m.file, "line": m.line, "name": m.name}]

    for r in tl.records:
        if isinstance(r, Block):
            label = tl.labels[r.at] if r.at is not None else "before forward"
            where = frames(r.at, r.key if isinstance(r.key, str) else f"{label}: {r.category}")
            if r.nbytes > 0:
                out.alloc(r.nbytes, r.key, where, r.category)
            elif r.key in out.live:
                out.free(r.key, where)
            else:  # freed without its allocation in the trace: a block from before it, as real traces have
                out.alloc(-r.nbytes, r.key, where, r.category)
                out.entries.pop()
                out.free(r.key)
        elif isinstance(r, Restart):
            for key in list(out.live):
                out.free(key)
        elif r.total > out.held:  # a kernel's workspace, a gradient summed in place: made and freed at once
            out.alloc(r.total - out.held, "transient", frames(r.at, f"{r.phase}: {TEMPORARIES}"), TEMPORARIES)
            out.free("transient")
    return {"segments": _segments(out.heap, out.live), "device_traces": [out.entries]}


def _entry(action: str, addr: int, nbytes: int, frames: list, category: str) -> dict:
    return {"action": action, "addr": BASE + addr, "size": nbytes, "stream": 0, "frames": frames,
            "category": category}


def _segments(heap: _Heap, live: dict) -> list[dict]:
    """One segment holding the blocks live at the end, the rest of it inactive."""
    total = -(-heap.end // SEGMENT_ROUND) * SEGMENT_ROUND
    if not total:
        return []
    blocks, at = [], 0
    for addr, nbytes, frames, _ in sorted(live.values(), key=lambda v: v[0]):
        if addr > at:
            blocks.append({"address": BASE + at, "size": addr - at, "requested_size": 0, "state": "inactive",
                           "frames": []})
        blocks.append({"address": BASE + addr, "size": _rounded(nbytes), "requested_size": nbytes,
                       "state": "active_allocated", "frames": frames})
        at = addr + _rounded(nbytes)
    if at < total:
        blocks.append({"address": BASE + at, "size": total - at, "requested_size": 0, "state": "inactive",
                       "frames": []})
    active = sum(b["size"] for b in blocks if b["state"] == "active_allocated")
    return [{"device": 0, "address": BASE, "total_size": total, "allocated_size": active, "active_size": active,
             "requested_size": sum(b["requested_size"] for b in blocks), "stream": 0, "segment_type": "large",
             "segment_pool_id": (0, 0), "is_expandable": False, "frames": [], "blocks": blocks}]


def _rounded(nbytes: int) -> int:
    return -(-nbytes // CUDA_BLOCK) * CUDA_BLOCK
