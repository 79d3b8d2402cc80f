"""Usage charts, drawn on the server: no CDN, no script needed to read them.

A :class:`Chart` is data for ``templates/usage/_chart.html``: the plot as an
SVG that stretches to its box (bars, lines, grid), and everything a person
reads as HTML around it (axis labels at the page's font size, one slot per
day that shows its exact values on hover, touch and keyboard focus).
``static/xrouter/charts.js`` only adds arrow keys between the slots.

Usage (any view; the key page passes ``key=``)::

    summary = selectors.usage_summary(team=team, start=start, end=end,
                                      group="model", key=api_key)
    context["charts"] = charts.usage_charts(summary)
    # template: {% include "usage/_charts.html" %}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from django.utils.formats import date_format, number_format
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from routing.usage.selectors import UsageSummary
from xrouter_site.templatetags.xrouter import count, format_rub

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
#: The plot's own coordinates; the SVG stretches them to its box, so lines
#: and grid use ``vector-effect: non-scaling-stroke`` and no text is in it.
WIDTH, HEIGHT = 1000, 200
TICKS = 4
#: At most this many dates under a chart; "minor" ones hide on a phone.
MAX_X_LABELS = 10

Format = Callable[[float], str]


def color(index: int) -> str:
    """Return the series colour at ``index`` (the legend uses the same)."""
    return PALETTE[index % len(PALETTE)]


def compact(value: float) -> str:
    """Return ``value`` short for an axis, in the active locale: 1.5k, 1,5 тыс."""
    magnitude = abs(value)
    suffixes = (
        (1e9, pgettext("axis label: billions", "%(n)sB")),
        (1e6, pgettext("axis label: millions", "%(n)sM")),
        (1e3, pgettext("axis label: thousands", "%(n)sk")),
    )
    for limit, suffix in suffixes:
        if magnitude >= limit:
            return suffix % {"n": _short(value / limit)}
    return _short(value)


def _short(value: float) -> str:
    rounded = round(value, 2 if abs(value) < 1 else 1)
    decimals = 0 if rounded == int(rounded) else (2 if abs(value) < 1 else 1)
    return number_format(rounded, decimals)


def milliseconds(value: float) -> str:
    """Return ``value`` ms with the locale's grouping and unit: ``1 234 мс``."""
    return _("%(ms)s ms") % {"ms": number_format(round(value), 0, force_grouping=True)}


def _ms_axis(value: float) -> str:
    return _("%(ms)s ms") % {"ms": compact(value)}


def _exact_count(value: float) -> str:
    return count(round(value))


def nice_step(peak: float, *, integer: bool) -> float:
    """Return a round tick step (1, 1.5, 2, 2.5 or 5 x 10^n) so ``TICKS`` steps cover ``peak``."""
    if peak <= 0:
        return 1.0
    raw = peak / TICKS
    exponent = math.floor(math.log10(raw))
    base = 10.0**exponent
    for factor in (1, 1.5, 2, 2.5, 5, 10):
        step = factor * base
        if step >= raw and (not integer or step == int(step)):
            return step
    return 10 * base


@dataclass(frozen=True)
class Entry:
    """One series' value on one day, as the tooltip shows it."""

    label: str
    colour: str
    value: str


@dataclass(frozen=True)
class Slot:
    """One day of a chart: its axis label and what hovering it shows."""

    day: date
    label: str
    minor: bool
    heading: str
    entries: list[Entry]
    total: str
    flip: bool
    current: bool


@dataclass(frozen=True)
class Chart:
    """Everything ``usage/_chart.html`` draws for one chart."""

    title: str
    svg: SafeString
    #: y-axis labels from the bottom (0) to the top.
    ticks: list[str]
    slots: list[Slot]
    legend: list[tuple[str, str]]
    empty: bool


def _grid() -> list[str]:
    parts = []
    for i in range(TICKS + 1):
        y = HEIGHT - HEIGHT * i / TICKS
        parts.append(
            f'<line class="grid" x1="0" x2="{WIDTH}" y1="{y:g}" y2="{y:g}" '
            'vector-effect="non-scaling-stroke"/>'
        )
    return parts


def _svg(title: str, parts: list[str]) -> SafeString:
    head = (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" preserveAspectRatio="none" '
        'xmlns="http://www.w3.org/2000/svg" aria-hidden="true" focusable="false">'
        f"<title>{escape(title)}</title>"
    )
    return mark_safe(head + "".join(parts) + "</svg>")  # noqa: S308 - labels escaped


def _slots(days: Sequence[date], entries: list[list[Entry]], totals: list[str]) -> list[Slot]:
    step = max(1, math.ceil(len(days) / MAX_X_LABELS))
    axis_format = pgettext("date under a chart", "M j")
    slots = []
    for i, day in enumerate(days):
        # Labels count back from the last day, which is always labelled.
        from_end = len(days) - 1 - i
        labelled = from_end % step == 0
        slots.append(
            Slot(
                day=day,
                label=date_format(day, axis_format) if labelled else "",
                minor=labelled and (from_end // step) % 2 == 1,
                heading=date_format(day, "DATE_FORMAT"),
                entries=entries[i],
                total=totals[i],
                flip=i >= len(days) / 2,
                current=i == len(days) - 1,
            )
        )
    return slots


def bar_chart(
    days: Sequence[date],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    axis: Format = compact,
    exact: Format = _exact_count,
    integer: bool = True,
) -> Chart:
    """Return one bar per day, stacked by series (in the order given)."""
    totals = [sum(values[i] for values in series.values()) for i in range(len(days))]
    step = nice_step(max(totals, default=0), integer=integer)
    top = step * TICKS
    slot_w = WIDTH / max(1, len(days))
    bar_w = slot_w * 0.72
    parts = _grid()
    for i in range(len(days)):
        base = float(HEIGHT)
        x = slot_w * i + (slot_w - bar_w) / 2
        for index, values in enumerate(series.values()):
            if values[i] <= 0:
                continue
            h = HEIGHT * values[i] / top
            base -= h
            parts.append(
                f'<rect x="{x:.2f}" y="{base:.2f}" width="{bar_w:.2f}" height="{h:.2f}" '
                f'fill="{color(index)}"/>'
            )
    entries = [
        [
            Entry(label, color(index), exact(values[i]))
            for index, (label, values) in enumerate(series.items())
            if values[i] > 0
        ]
        for i in range(len(days))
    ]
    return Chart(
        title=title,
        svg=_svg(title, parts),
        ticks=[axis(step * i) for i in range(TICKS + 1)],
        slots=_slots(days, entries, [exact(total) for total in totals]),
        legend=[(label, color(index)) for index, label in enumerate(series)],
        empty=not any(totals),
    )


def line_chart(
    days: Sequence[date],
    series: Mapping[str, Sequence[float | None]],
    *,
    title: str,
    axis: Format = _ms_axis,
    exact: Format = milliseconds,
) -> Chart:
    """Return one line per series; ``None`` (no data that day) breaks the line."""
    peak = max((v for values in series.values() for v in values if v is not None), default=0)
    step = nice_step(peak, integer=True)
    top = step * TICKS
    slot_w = WIDTH / max(1, len(days))
    parts = _grid()
    for index, values in enumerate(series.values()):
        runs: list[list[tuple[float, float]]] = [[]]
        for i, value in enumerate(values):
            if value is None:
                runs.append([])
                continue
            runs[-1].append((slot_w * (i + 0.5), HEIGHT - HEIGHT * value / top))
        for run in runs:
            if len(run) == 1:
                # A lone day still shows: a short level stroke across its slot.
                (x, y), half = run[0], slot_w * 0.2
                run = [(x - half, y), (x + half, y)]
            if run:
                points = " ".join(f"{x:.2f},{y:.2f}" for x, y in run)
                parts.append(
                    f'<polyline class="line" points="{points}" stroke="{color(index)}" '
                    'vector-effect="non-scaling-stroke"/>'
                )
    no_data = _("no requests")
    entries = [
        [
            Entry(label, color(index), no_data if values[i] is None else exact(values[i] or 0))
            for index, (label, values) in enumerate(series.items())
        ]
        for i in range(len(days))
    ]
    return Chart(
        title=title,
        svg=_svg(title, parts),
        ticks=[axis(step * i) for i in range(TICKS + 1)],
        slots=_slots(days, entries, [""] * len(days)),
        legend=[(label, color(index)) for index, label in enumerate(series)],
        empty=all(v is None for values in series.values() for v in values),
    )


def usage_charts(summary: UsageSummary) -> list[Chart]:
    """Return the usage page's charts: requests, tokens, cost, errors, latency."""
    days = summary.days

    def by_group(attr: str) -> dict[str, list[float]]:
        return {
            label: [float(getattr(t, attr)) for t in totals]
            for label, totals in summary.series.items()
        }

    def money(value: float) -> str:
        return format_rub(value)

    return [
        bar_chart(days, by_group("requests"), title=_("Requests")),
        bar_chart(days, by_group("tokens"), title=_("Tokens")),
        bar_chart(
            days,
            by_group("cost_rub"),
            title=_("Cost, RUB"),
            axis=money,
            exact=money,
            integer=False,
        ),
        bar_chart(days, by_group("errors"), title=_("Errors")),
        line_chart(
            days,
            {
                "p50": [t.p50_ms if t.requests else None for t in summary.per_day],
                "p95": [t.p95_ms if t.requests else None for t in summary.per_day],
            },
            title=_("Latency percentiles"),
        ),
    ]
