"""The reconciliation report page: server-rendered HTML with inline SVG charts (no scripts, no build
step). Amounts by class over the period, differences per day over the last 30 days, recent runs and
the open discrepancies with their recommended actions."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from html import escape

from tillit.reconciliation.match import CLASSES
from tillit.reconciliation.views import DiscrepancyView, HistoryPoint, RunView

COLOURS = {
    "missing_at_provider": "#c0392b",
    "missing_locally": "#d35400",
    "amount_mismatch": "#8e44ad",
    "status_mismatch": "#2c3e50",
    "fee_mismatch": "#16a085",
    "duplicate": "#b7950b",
    "timing": "#7f8c8d",
}
LABELS = {
    "missing_at_provider": "missing at provider (短款)",
    "missing_locally": "missing locally (长款)",
    "amount_mismatch": "amount mismatch",
    "status_mismatch": "status mismatch",
    "fee_mismatch": "fee mismatch",
    "duplicate": "duplicate",
    "timing": "timing",
}


def yuan(fen: int | None) -> str:
    if fen is None:
        return ""
    sign = "-" if fen < 0 else ""
    return f"{sign}¥{abs(fen) // 100:,}.{abs(fen) % 100:02d}"


def bars_by_class(totals: dict[str, int]) -> str:
    """Horizontal bars: amount per class."""
    width, row, left = 640, 26, 210
    top = max(totals.values(), default=0) or 1
    height = row * len(CLASSES) + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="Amounts by class"><title>Amounts by class</title>'
    ]
    for i, cls in enumerate(CLASSES):
        y = 5 + i * row
        amount = totals.get(cls, 0)
        length = 0 if amount <= 0 else max(2, round((width - left - 110) * amount / top))
        parts.append(
            f'<text x="{left - 8}" y="{y + 16}" text-anchor="end" font-size="13">{escape(LABELS[cls])}</text>'
            f'<rect x="{left}" y="{y + 4}" width="{length}" height="16" fill="{COLOURS[cls]}">'
            f"<title>{escape(LABELS[cls])}: {escape(yuan(amount))}</title></rect>"
            f'<text x="{left + length + 6}" y="{y + 16}" font-size="12">{escape(yuan(amount))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def daily_columns(per_day: dict[date, dict[str, int]], start: date, days: int) -> str:
    """Stacked columns: discrepancies found per bill day and class."""
    width, height, left, bottom = 640, 220, 40, 30
    slot = (width - left - 10) / days
    top = max((sum(v.values()) for v in per_day.values()), default=0) or 1
    scale = (height - bottom - 10) / top
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="Differences per day"><title>Differences over the last {days} days</title>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 5}" y2="{height - bottom}" stroke="#999"/>',
        f'<text x="{left - 6}" y="16" text-anchor="end" font-size="11">{top}</text>',
        f'<text x="{left - 6}" y="{height - bottom}" text-anchor="end" font-size="11">0</text>',
    ]
    for i in range(days):
        day = start + timedelta(days=i)
        x = left + i * slot + 1
        y = float(height - bottom)
        for cls in CLASSES:
            n = per_day.get(day, {}).get(cls, 0)
            if not n:
                continue
            h = n * scale
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(slot - 2, 1):.1f}" height="{h:.1f}" '
                f'fill="{COLOURS[cls]}"><title>{day.isoformat()} {escape(LABELS[cls])}: {n}</title></rect>'
            )
        if i % 5 == 0 or i == days - 1:
            parts.append(
                f'<text x="{x + slot / 2:.1f}" y="{height - bottom + 16}" text-anchor="middle" '
                f'font-size="10">{day.strftime("%m-%d")}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def render(
    *,
    title: str,
    today: date,
    days: int,
    history: list[HistoryPoint],
    runs: list[RunView],
    open_items: list[DiscrepancyView],
) -> str:
    start = today - timedelta(days=days - 1)
    per_day: dict[date, dict[str, int]] = defaultdict(dict)
    totals: dict[str, int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)
    for h in history:
        per_day[h["bill_date"]][h["class"]] = per_day[h["bill_date"]].get(h["class"], 0) + h["count"]
        totals[h["class"]] += h["amount"]
        counts[h["class"]] += h["count"]
    legend = "".join(
        f'<span class="key"><i style="background:{COLOURS[c]}"></i>'
        f"{escape(LABELS[c])} ({counts.get(c, 0)})</span>"
        for c in CLASSES
    )
    run_rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{escape(str(v))}</td>"
            for v in (
                r["bill_date"],
                r["provider"],
                r["bill_type"],
                r["source"],
                r["lines"],
                r["matched"],
                r["discrepancies"],
                r["open"],
                r["id"],
            )
        )
        + "</tr>"
        for r in runs
    )
    open_rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{escape(str(v if v is not None else ''))}</td>"
            for v in (
                d["bill_date"],
                d["provider"],
                LABELS.get(d["class"], d["class"]),
                d["line"],
                d["out_trade_no"],
                yuan(d["provider_amount"]),
                yuan(d["local_amount"]),
                d["recommended_action"],
                d["id"],
            )
        )
        + "</tr>"
        for d in open_items
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }}
h1 {{ font-size: 20px; }} h2 {{ font-size: 16px; margin-top: 28px; }}
table {{ border-collapse: collapse; font-size: 13px; }} td, th {{ border: 1px solid #ddd; padding: 3px 6px; }}
th {{ background: #f4f4f4; text-align: left; }} .key {{ margin-right: 14px; white-space: nowrap; }}
.key i {{ display: inline-block; width: 10px; height: 10px; margin-right: 4px; }}
</style></head><body>
<h1>{escape(title)}</h1>
<p>Bills from {start.isoformat()} to {today.isoformat()}. Amounts are the provider's (or Tillit's where the
provider has none). Export a run as CSV or JSON from <code>/v1/reconciliation/runs/{{id}}/export</code>.</p>
<h2>Amounts by class</h2>
{bars_by_class(dict(totals))}
<h2>Differences over the last {days} days</h2>
<p>{legend}</p>
{daily_columns(per_day, start, days)}
<h2>Open discrepancies ({len(open_items)})</h2>
<table><tr><th>bill date</th><th>provider</th><th>class</th><th>line</th><th>out_trade_no</th>
<th>provider</th>
<th>Tillit</th><th>recommended action</th><th>id</th></tr>{open_rows}</table>
<h2>Runs</h2>
<table><tr><th>bill date</th><th>provider</th><th>bill type</th><th>source</th><th>lines</th><th>matched</th>
<th>discrepancies</th><th>open</th><th>run id</th></tr>{run_rows}</table>
</body></html>
"""
