"""`--format html`: one self-contained page (no scripts, fonts or styles from elsewhere) with each
model's timeline (inline SVG), totals and per-layer table, and the diagnostics: for CI artifacts
and PR previews."""
from __future__ import annotations

from html import escape

from ..analysis import Analysis
from ..summary import diagnostic_lines, heading, rows, totals
from .timeline import svg

STYLE = """
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1000px;
       color: #1a1a1a; padding: 0 1em; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ccc; }
svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { padding: 0.2em 0.7em; border-bottom: 1px solid #e3e3e3; text-align: right; white-space: nowrap; }
th { background: #f2f2f2; } td:nth-child(-n+2), th:nth-child(-n+2) { text-align: left; }
table.totals td { white-space: normal; text-align: left; } table.totals td:first-child { font-weight: bold; }
.diagnostics li { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.85em; margin: 0.3em 0; }
"""


def page(analysis: Analysis) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>gpumem report</title>", f"<style>{STYLE}</style></head><body>",
             "<h1>Training memory, simulated by gpumem</h1>"]
    for m in analysis.models:
        parts.append(f"<h2>{escape(heading(m))}</h2>")
        if m.timeline is not None and m.memory is not None:
            parts.append(svg(m))
        parts.append('<table class="totals">' + "".join(
            f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in totals(m)) + "</table>")
        head, *body = rows(m)
        parts.append("<table><tr>" + "".join(f"<th>{escape(c)}</th>" for c in head) + "</tr>" + "".join(
            "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in body) + "</table>")
    diags = diagnostic_lines(analysis)
    if diags:
        parts.append('<h2>Diagnostics</h2><ul class="diagnostics">' + "".join(
            f"<li>{escape(d)}</li>" for d in diags[0].splitlines()) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
