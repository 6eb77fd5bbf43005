"""Small bar charts as inline SVG, drawn on the server: a page shows its last hour without any
script (the console's pages read without JavaScript, and its CSP allows none inline).

A chart is one bar per minute, oldest on the left; its colour comes from console.css (a class
per kind: ``sends``, ``refusals``, ``failures``), since the CSP forbids inline styles. Each bar
carries a ``<title>`` (the browser's tooltip: how many, how long ago) and the whole chart an
``aria-label`` that says in words what it shows.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

#: The drawing's size in SVG units (it scales to the width CSS gives it).
WIDTH = 240
HEIGHT = 48


def bar_chart(values: Sequence[int], *, kind: str, label: str) -> Markup:
    """``values`` (one per minute, the current one last) as an SVG of bars; ``kind`` its CSS
    class, ``label`` what it counts (``sends``)."""
    total, peak = sum(values), max(values, default=0)
    summary = f"{label}: {total} in the last {len(values)} minutes, at most {peak} in a minute"
    parts = [
        f'<svg class="chart {escape(kind)}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(summary)}" preserveAspectRatio="none">',
        f'<line class="axis" x1="0" y1="{HEIGHT - 0.5}" x2="{WIDTH}" y2="{HEIGHT - 0.5}"/>',
    ]
    step = WIDTH / max(len(values), 1)
    for index, value in enumerate(values):
        if value <= 0:
            continue
        height = max(1.0, (HEIGHT - 1) * value / peak)
        ago = len(values) - 1 - index
        when = "this minute" if ago == 0 else f"{ago} min ago"
        parts.append(
            f'<rect x="{index * step:.2f}" y="{HEIGHT - 1 - height:.2f}" '
            f'width="{max(step - 1, 0.5):.2f}" height="{height:.2f}">'
            f"<title>{value} {escape(label)}, {when}</title></rect>"
        )
    parts.append("</svg>")
    # Every text above is escaped; the rest are numbers this function formatted.
    return Markup("".join(parts))  # noqa: S704


def per_minute(times: Sequence[float], *, now: float, minutes: int = 60) -> list[int]:
    """How many of ``times`` (epoch seconds) fall in each of the last ``minutes`` whole clock
    minutes, oldest first, the current one last (the buckets ``sends_per_minute`` uses)."""
    current = int(now) // 60
    counts = [0] * minutes
    for at in times:
        ago = current - int(at) // 60
        if 0 <= ago < minutes:
            counts[minutes - 1 - ago] += 1
    return counts
