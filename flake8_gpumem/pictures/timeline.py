"""The memory timeline: a stacked-area SVG of one training step, memory against its events.

Hand-built SVG (no plotting dependency), sized to be read where a README or a PR comment shows it:
about 900 pixels wide, labels at 13-15 px.
"""
from __future__ import annotations

from html import escape

from ..analysis import ModelReport
from ..diagnostics import human
from ..summary import setup_words
from ..trace import ACTIVATIONS, GRADIENTS, OPTIMIZER, TEMPORARIES, WEIGHTS, moments

WIDTH, HEIGHT = 960, 440
LEFT, RIGHT, TOP, BOTTOM = 78, 24, 104, 46  # the plot's margins
COLUMNS = 600  # at most this many moments are drawn; each column keeps its highest
# bottom to top: what lives through the step first (Okabe-Ito colours, told apart by colour-blind readers)
STACK = ((WEIGHTS, "#0072B2"), (OPTIMIZER, "#56B4E9"), (GRADIENTS, "#E69F00"), (ACTIVATIONS, "#009E73"),
         (TEMPORARIES, "#D55E00"))
PHASE_SHADES = {"forward": "#f4f4f4", "backward": "#e9eef5", "optimizer": "#f4f4f4"}
OPTIMIZER_SHARE = 0.09  # the optimizer step is one moment: drawn this wide a share of the plot
FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"'


def phase_of(phase: str) -> str:
    """forward, backward or optimizer, from a Reach's phase ("backward, features.4")."""
    if phase.startswith("optimizer"):
        return "optimizer"
    return "backward" if phase.startswith("backward") else "forward"


def columns(m: ModelReport) -> list[tuple]:
    """(Reach, bytes per category, phase) per drawn column: consecutive moments of one phase are
    bucketed down to COLUMNS, each bucket keeping its highest moment, so the peak is always drawn."""
    moments_ = [(r, split, _band(phase_of(r.phase), mb, m)) for r, split, mb in moments(m.timeline.records)]
    per = max(1, -(-len(moments_) // COLUMNS))
    out, i = [], 0
    while i < len(moments_):
        j = i + 1
        while j < len(moments_) and j - i < per and moments_[j][2] == moments_[i][2]:
            j += 1
        out.append(max(moments_[i:j], key=lambda c: c[0].total))
        i = j
    return out


def _band(phase: str, micro_batch: int, m: ModelReport) -> str:
    """What a band is named: its phase, and its micro-batch where several make the step."""
    several = (m.settings.accumulate or 1) > 1 and phase != "optimizer"
    return f"{phase} (micro-batch {micro_batch})" if several else phase


def title(m: ModelReport) -> str:
    """Model name, batch, dtype and optimizer: what the picture is of."""
    s = m.settings
    return f"{m.name}: one training step, batch {m.batch}, {s.dtype}, {s.optimizer}"


def svg(m: ModelReport) -> str:
    cols = columns(m)
    n = len(cols)
    widths = [max(1.0, OPTIMIZER_SHARE * n) if c[2].startswith("optimizer") else 1.0 for c in cols]
    unit = (WIDTH - LEFT - RIGHT) / sum(widths)
    edges = [LEFT]
    for w in widths:
        edges.append(edges[-1] + w * unit)
    peak = m.memory.peak
    limit = m.budget - m.memory.reserve if m.budget is not None else None
    top = max(peak, limit) if limit is not None and limit < 3 * peak else peak  # a far budget is named, not drawn
    top_tick, ticks, unit = _ticks(top * 1.15)  # room above the peak for its label
    plot_h = HEIGHT - TOP - BOTTOM

    def y(v: float) -> float:
        return round(HEIGHT - BOTTOM - v / top_tick * plot_h, 1)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
           f'height="{HEIGHT}" {FONT} font-size="13">',
           f'<title>{escape(title(m))}: peak {human(peak)}</title>',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>']
    out += _phases(cols, edges, y(top_tick))
    for v in ticks:
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(v)}" y2="{y(v)}" stroke="#d0d0d0"/>')
        out.append(f'<text x="{LEFT - 8}" y="{y(v)}" text-anchor="end" dominant-baseline="central" fill="#444">'
                   f'{_tick_label(v, unit)}</text>')
    below = [0] * n
    for category, colour in STACK:
        upper = [b + c[1][category] for b, c in zip(below, cols)]
        out.append(f'<path d="{_area(edges, below, upper, y)}" fill="{colour}"><title>{category}</title></path>')
        below = upper
    out += _budget(limit, top, m, y)
    out += _peak(cols, edges, m, y)
    out += _header(m, cols)
    out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(0)}" y2="{y(0)}" stroke="#555"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _area(edges: list, lower: list, upper: list, y) -> str:
    """A band between two step lines: each column flat across its width."""
    top = [f"{x:.1f},{y(v)}" for k, v in enumerate(upper) for x in (edges[k], edges[k + 1])]
    bottom = [f"{x:.1f},{y(v)}" for k, v in reversed(list(enumerate(lower))) for x in (edges[k + 1], edges[k])]
    return "M" + " L".join(top + bottom) + " Z"


def _phases(cols: list, edges: list, plot_top: float) -> list[str]:
    """Shaded bands, one per run of a phase, named at their top."""
    out, start = [], 0
    for k in range(1, len(cols) + 1):
        if k < len(cols) and cols[k][2] == cols[start][2]:
            continue
        name = cols[start][2]
        x0, x1 = edges[start], edges[k]
        shade = PHASE_SHADES[name.split(" (")[0]]
        out.append(f'<rect x="{x0:.1f}" y="{plot_top}" width="{x1 - x0:.1f}" height="{HEIGHT - BOTTOM - plot_top}" '
                   f'fill="{shade}"/>')
        if start:
            out.append(f'<line x1="{x0:.1f}" x2="{x0:.1f}" y1="{plot_top}" y2="{HEIGHT - BOTTOM + 6}" '
                       'stroke="#888" stroke-dasharray="4 3"/>')
        label = name if x1 - x0 > 7.5 * len(name) else _short(name)
        out.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{HEIGHT - BOTTOM + 20}" text-anchor="middle" fill="#333" '
                   f'font-weight="bold">{escape(label)}</text>')
        start = k
    out.append(f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 8}" text-anchor="end" fill="#777" font-size="12">'
               'events of the step, in order \u2192</text>')
    return out


def _short(phase: str) -> str:
    """A narrow band's name: "fwd", "bwd 2" (micro-batch 2), "opt"."""
    words = phase.replace("(", "").replace(")", "").split(" ")
    return " ".join([{"forward": "fwd", "backward": "bwd", "optimizer": "opt"}[words[0]]] + words[2:])


def _budget(limit: int | None, top: int, m: ModelReport, y) -> list[str]:
    if limit is None:
        return []
    per_gpu = " per GPU" if m.settings.strategy in ("ddp", "fsdp") else ""
    reserve = f" (after the {human(m.memory.reserve)} reserve)" if m.memory.reserve else ""
    words = f"budget{per_gpu} {human(limit)}{reserve}"
    if limit > top:  # off the scale
        return [f'<text x="{WIDTH - RIGHT - 4}" y="{TOP - 8}" text-anchor="end" fill="#b00020">{words} '
                '(above the scale)</text>']
    return [f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(limit)}" y2="{y(limit)}" stroke="#b00020" '
            'stroke-width="2" stroke-dasharray="8 4"/>',
            f'<text x="{WIDTH - RIGHT - 4}" y="{y(limit) - 6}" text-anchor="end" fill="#b00020" '
            f'font-weight="bold">{words}</text>']


def _peak(cols: list, edges: list, m: ModelReport, y) -> list[str]:
    """A marker on the highest column, with the peak's value and where it happens."""
    k = max(range(len(cols)), key=lambda i: cols[i][0].total)
    x, top = (edges[k] + edges[k + 1]) / 2, y(cols[k][0].total)
    where = _fit(m.memory.peak_phase, 56)
    anchor, dx = ("end", -10) if x > LEFT + 0.6 * (WIDTH - LEFT - RIGHT) else ("start", 10)
    return [f'<circle cx="{x:.1f}" cy="{top}" r="5" fill="#000" stroke="#fff" stroke-width="2"/>',
            f'<text x="{x + dx:.1f}" y="{top - 20:.1f}" text-anchor="{anchor}" font-weight="bold" font-size="15" '
            f'fill="#000">peak {human(m.memory.peak)}</text>',
            f'<text x="{x + dx:.1f}" y="{top - 5:.1f}" text-anchor="{anchor}" fill="#222">{escape(where)}</text>']


def _header(m: ModelReport, cols: list) -> list[str]:
    """Title and the training set-up, then the legend: each category with its bytes at the peak."""
    at_peak = max(cols, key=lambda c: c[0].total)[1]
    out = [f'<text x="{LEFT}" y="24" font-size="16" font-weight="bold" fill="#000">{escape(_fit(title(m), 92))}</text>',
           f'<text x="{LEFT}" y="43" fill="#333">{escape(_fit(setup_words(m.settings).lstrip(", "), 120))}</text>']
    x = LEFT
    for category, colour in STACK:
        words = f"{category} {human(at_peak[category])}"
        out.append(f'<rect x="{x}" y="55" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{x + 17}" y="65.5" font-size="12" fill="#222">{escape(words)}</text>')
        x += 28 + 6.8 * len(words)
    out.append(f'<text x="{LEFT}" y="87" fill="#555" font-size="12">at the peak; what autograd keeps and the batch '
               'are activations; activation gradients, transients and gathers are temporaries</text>')
    return out


def _fit(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[:chars - 1] + "\u2026"


UNITS = ((2 ** 30, "GiB"), (2 ** 20, "MiB"), (2 ** 10, "KiB"), (1, "B"))


def _ticks(top: float) -> tuple[float, list[float], tuple]:
    """A round axis maximum at or above `top`, 4-6 round ticks up to it, and their binary unit."""
    unit = next(u for u in UNITS if top >= u[0] or u[0] == 1)
    span = top / unit[0]
    step = next(s * 10 ** e for e in range(-2, 6) for s in (1, 2, 2.5, 5) if span / (s * 10 ** e) <= 6)
    count = -(-span // step)
    return count * step * unit[0], [k * step * unit[0] for k in range(int(count) + 1)], unit


def _tick_label(v: float, unit: tuple) -> str:
    return f"{v / unit[0]:g} {unit[1]}" if v else "0"
