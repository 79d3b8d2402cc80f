"""Server-side SVG charts for the usage dashboard: no JavaScript, no CDN.

Each function returns a complete ``<svg>`` element (marked safe; every label
is escaped) that scales to its container. Bars and points carry a
``<title>``, which browsers show as a tooltip and screen readers read.

Usage::

    svg = stacked_bars(days, {"gpt": [1, 2], "lite": [0, 3]}, title="Requests")
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import date

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = (
    "#2453d6",
    "#e0752d",
    "#2e9d5b",
    "#c23b6e",
    "#7a5af5",
    "#1c9aa8",
    "#b8860b",
    "#6b7280",
    "#a3a3a3",
)
WIDTH, HEIGHT = 960, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 12, 28


def color(index: int) -> str:
    """Return the series colour at ``index`` (the legend uses the same)."""
    return PALETTE[index % len(PALETTE)]


def compact(value: float) -> str:
    """Return ``value`` in a short form for axis labels: 950, 1.2k, 3.4M."""
    magnitude = abs(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= limit:
            return f"{value / limit:.1f}".rstrip("0").rstrip(".") + suffix
    if magnitude and magnitude < 1:
        return f"{value:.2f}"
    return f"{value:.0f}"


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    base = 10**exponent
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * base:
            return float(step * base)
    return float(10 * base)


def _frame(days: Sequence[date], top: float, title: str, fmt: Callable[[float], str]) -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" preserveAspectRatio="none" '
        'xmlns="http://www.w3.org/2000/svg" font-size="11" font-family="system-ui, sans-serif">',
        f"<title>{escape(title)}</title>",
    ]
    for i in range(5):
        y = TOP + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#dde1e8" stroke-width="1"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#5b6475">'
            f"{escape(fmt(top * i / 4))}</text>"
        )
    step = max(1, math.ceil(len(days) / 10))
    slot = (WIDTH - LEFT - RIGHT) / max(1, len(days))
    for i in range(0, len(days), step):
        x = LEFT + slot * (i + 0.5)
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle" fill="#5b6475">'
            f"{days[i]:%m-%d}</text>"
        )
    return parts


def stacked_bars(
    days: Sequence[date],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    fmt: Callable[[float], str] = compact,
) -> SafeString:
    """Return one bar per day, stacked by series (in the order given)."""
    totals = [sum(values[i] for values in series.values()) for i in range(len(days))]
    top = _nice_max(max(totals, default=0))
    parts = _frame(days, top, title, fmt)
    plot_h = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT - RIGHT) / max(1, len(days))
    bar_w = max(1.0, slot * 0.8)
    for i, day in enumerate(days):
        base = float(TOP + plot_h)
        x = LEFT + slot * i + (slot - bar_w) / 2
        for index, (label, values) in enumerate(series.items()):
            value = values[i]
            if value <= 0:
                continue
            h = plot_h * value / top
            base -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{color(index)}"><title>{escape(label)} · {day:%Y-%m-%d}: '
                f"{escape(fmt(value))}</title></rect>"
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated label is escaped


def lines(
    days: Sequence[date],
    series: dict[str, Sequence[float | None]],
    *,
    title: str,
    fmt: Callable[[float], str] = compact,
) -> SafeString:
    """Return one polyline per series; ``None`` values break the line."""
    peak = max((v for values in series.values() for v in values if v is not None), default=0)
    top = _nice_max(peak)
    parts = _frame(days, top, title, fmt)
    plot_h = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT - RIGHT) / max(1, len(days))
    for index, (label, values) in enumerate(series.items()):
        segment: list[str] = []
        segments: list[list[str]] = [segment]
        for i, value in enumerate(values):
            if value is None:
                segment = []
                segments.append(segment)
                continue
            x = LEFT + slot * (i + 0.5)
            y = TOP + plot_h - plot_h * value / top
            segment.append(f"{x:.1f},{y:.1f}")
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color(index)}">'
                f"<title>{escape(label)} · {days[i]:%Y-%m-%d}: {escape(fmt(value))}</title>"
                "</circle>"
            )
        for points in segments:
            if len(points) > 1:
                parts.append(
                    f'<polyline fill="none" stroke="{color(index)}" stroke-width="2" '
                    f'points="{" ".join(points)}"/>'
                )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated label is escaped
