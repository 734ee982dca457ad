"""Charts as server-rendered SVG: no JavaScript, no CDN, nothing fetched by the browser.

Contract: every function returns one self-contained ``<svg>`` element; every text it draws is escaped;
sizes are fixed so a page lays out before it is drawn. Colours come from one sequential scale so the
heat map reads the same in print.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from tillit.monitoring.analytics import FailureCell, SalesBucket

SCALE = ("#f7fbff", "#c6dbef", "#6baed6", "#2171b5", "#08306b")


def _shade(value: int, top: int) -> str:
    if value <= 0 or top <= 0:
        return SCALE[0]
    return SCALE[1 + min(len(SCALE) - 2, (value * (len(SCALE) - 1) - 1) // top)]


def bar_chart(title: str, buckets: Sequence[SalesBucket], *, width: int = 640, height: int = 220) -> str:
    """Sales (paid amount) per bucket as vertical bars, labelled with the bucket and the yuan amount."""
    pad, label_h = 36, 28
    top = max((b.sales for b in buckets), default=0)
    n = max(len(buckets), 1)
    bar_w = min((width - 2 * pad) / n, 48.0)  # a few buckets stay bars, not blocks
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" class="chart bar-chart"><title>{escape(title)}</title>',
        f'<text x="{pad}" y="16" font-size="13">{escape(title)}</text>',
    ]
    plot_h = height - pad - label_h
    for i, b in enumerate(buckets):
        h = 0 if top == 0 else plot_h * b.sales / top
        x = pad + i * bar_w
        y = pad + plot_h - h
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(bar_w - 2, 1):.1f}" height="{h:.1f}" '
            f'fill="#2171b5" data-bucket="{escape(b.bucket)}" data-sales="{b.sales}">'
            f"<title>{escape(b.label)}: {b.sales / 100:.2f} ({b.orders})</title></rect>"
        )
        if n <= 31 or i % max(n // 24, 1) == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{height - 10}" font-size="9" text-anchor="middle">'
                f"{escape(b.label[:10])}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def heat_map(cells: Sequence[FailureCell], *, lang: str = "en", cell: int = 22) -> str:
    """Cancellations and failures: one row per (reason, terminal), one column per local hour 0-23, the
    count as colour and as text. Rows are labelled with the cashier message of the reason."""
    rows: dict[tuple[str, str], dict[int, int]] = {}
    labels: dict[tuple[str, str], str] = {}
    for c in cells:
        key = (c.reason, c.terminal_id)
        rows.setdefault(key, {})[c.hour] = rows.get(key, {}).get(c.hour, 0) + c.count
        message = c.message_zh if lang.startswith("zh") else c.message_en
        labels[key] = f"{c.terminal} · {message}"
    top = max((n for hours in rows.values() for n in hours.values()), default=0)
    left, head = 330, 34
    width = left + 24 * cell + 10
    height = head + max(len(rows), 1) * cell + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" class="chart heat-map" data-max="{top}">'
        "<title>Cancellations and failures by reason, terminal and hour</title>"
    ]
    for hour in range(24):
        parts.append(
            f'<text x="{left + hour * cell + cell / 2}" y="{head - 8}" font-size="10" '
            f'text-anchor="middle">{hour:02d}</text>'
        )
    for r, key in enumerate(sorted(rows)):
        y = head + r * cell
        label = labels[key]
        parts.append(
            f'<text x="{left - 6}" y="{y + cell * 0.7:.1f}" font-size="11" text-anchor="end">'
            f"{escape(label[:48])}</text>"
        )
        for hour in range(24):
            n = rows[key].get(hour, 0)
            x = left + hour * cell
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cell - 1}" height="{cell - 1}" fill="{_shade(n, top)}" '
                f'data-reason="{escape(key[0])}" data-terminal="{escape(key[1])}" data-hour="{hour}" '
                f'data-count="{n}"><title>{escape(label)} {hour:02d}:00 — {n}</title></rect>'
            )
            if n:
                ink = "#fff" if n * 2 > top else "#000"
                parts.append(
                    f'<text x="{x + cell / 2 - 0.5}" y="{y + cell * 0.68:.1f}" font-size="10" '
                    f'text-anchor="middle" fill="{ink}">{n}</text>'
                )
    parts.append("</svg>")
    return "".join(parts)
