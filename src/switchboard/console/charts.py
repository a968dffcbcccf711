"""Charts drawn on the server as SVG: no JavaScript library, no CDN, readable without scripts."""

from __future__ import annotations

from markupsafe import Markup, escape

from switchboard.services.statistics import OUTCOMES

_COLOURS = {"sent": "#3b6fd4", "delivered": "#2e9d5b", "failed": "#c8423b"}
_WIDTH, _HEIGHT, _PAD = 720, 220, 28


def daily_chart(days: list[str], by_day: dict[str, dict[str, int]]) -> Markup:
    """Grouped bars of sent / delivered / failed per day, with a title and a text summary."""
    top = max([1, *(by_day[d][o] for d in days for o in OUTCOMES)])
    group = (_WIDTH - 2 * _PAD) / max(1, len(days))
    bar = max(1.0, group / (len(OUTCOMES) + 1))
    parts = [
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        'aria-labelledby="chart-title" xmlns="http://www.w3.org/2000/svg">',
        '<title id="chart-title">Messages sent, delivered and failed per day</title>',
        f'<line x1="{_PAD}" y1="{_HEIGHT - _PAD}" x2="{_WIDTH - _PAD}" '
        f'y2="{_HEIGHT - _PAD}" stroke="#999"/>',
        f'<text x="4" y="{_PAD - 8}" font-size="11">{top}</text>',
    ]
    usable = _HEIGHT - 2 * _PAD
    for n, day in enumerate(days):
        x0 = _PAD + n * group
        for k, outcome in enumerate(OUTCOMES):
            value = by_day[day][outcome]
            height = usable * value / top
            x = x0 + k * bar
            y = _HEIGHT - _PAD - height
            parts.append(
                f'<rect class="bar-{outcome}" data-day="{escape(day)}" data-value="{value}" '
                f'x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{height:.1f}" '
                f'fill="{_COLOURS[outcome]}"><title>{escape(day)} {outcome}: {value}</title></rect>'
            )
        if n % max(1, len(days) // 7) == 0:
            parts.append(
                f'<text x="{x0:.1f}" y="{_HEIGHT - 8}" font-size="11">{escape(day[5:])}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - built above from numbers and escaped dates
