"""Alipay async notification delivery: at-least-once, retried on the provider's schedule.

Each attempt is claimed in a transaction (attempt count and next due time written first), then
sent outside the lock, so two tickers can never send the same attempt twice by accident; only
the ``duplicate`` fault does that on purpose. A notification is done when the merchant answers
exactly ``success``; after the last scheduled retry the sandbox gives up, as Alipay does.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import httpx

from tillit.sandbox.alipay import notification_params
from tillit.sandbox.clock import to_ms
from tillit.sandbox.engine import Trade
from tillit.sandbox.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attempt:
    """One claimed delivery attempt."""

    notification_id: int
    url: str
    form: dict[str, str]
    copies: int  # 0 = lost, 2 = duplicated


class Notifier:
    """Delivers due notifications; :meth:`run_due` is called by the ticker and the clock API."""

    def __init__(self, rt: Runtime, transport: httpx.AsyncBaseTransport | None = None, timeout: float = 5.0):
        self.rt = rt
        self._transport = transport
        self._timeout = timeout

    def _claim(self) -> list[Attempt]:
        rt = self.rt
        schedule = rt.config.behaviour.notify_retry_seconds
        attempts: list[Attempt] = []
        reorder = False
        with rt.engine.store.tx() as conn:
            now = rt.engine.now()
            now_ms = to_ms(now)
            rows = conn.execute(
                "SELECT * FROM notifications WHERE acked_ms IS NULL AND next_ms IS NOT NULL AND next_ms <= ?"
                " ORDER BY next_ms, id LIMIT 100",
                (now_ms,),
            ).fetchall()
            for row in rows:
                faults = rt.faults.decide_notify(row["notify_id"])
                reorder = reorder or "reorder" in faults
                if "delay" in faults:
                    conn.execute(
                        "UPDATE notifications SET next_ms = ? WHERE id = ?",
                        (now_ms + rt.faults.profile.delay_seconds * 1000, row["id"]),
                    )
                    continue
                done = row["attempts"] + 1
                next_ms = now_ms + schedule[done - 1] * 1000 if done - 1 < len(schedule) else None
                conn.execute(
                    "UPDATE notifications SET attempts = ?, next_ms = ? WHERE id = ?",
                    (done, next_ms, row["id"]),
                )
                trade_row = conn.execute("SELECT * FROM trades WHERE id = ?", (row["trade_id"],)).fetchone()
                trade = Trade.from_row(trade_row)
                merchant = rt.config.alipay_merchant(trade.merchant)
                if merchant is None:
                    continue
                event = json.loads(row["params"])
                wallet = rt.engine.wallet_of(trade)
                form = notification_params(
                    merchant, trade, wallet, event["trade_status"], event["event_ms"], row["notify_id"], now
                )
                copies = 0 if "loss" in faults else 2 if "duplicate" in faults else 1
                attempts.append(Attempt(row["id"], row["url"], form, copies))
            if reorder:
                rt.faults.shuffle(attempts)
        return attempts

    async def run_due(self) -> int:
        """Send every due attempt once; return how many notifications were acknowledged."""
        attempts = self._claim()
        if not attempts:
            return 0
        acked = 0
        async with httpx.AsyncClient(transport=self._transport, timeout=self._timeout) as client:
            for attempt in attempts:
                ok = False
                for _ in range(attempt.copies):
                    try:
                        response = await client.post(attempt.url, data=attempt.form)
                        ok = ok or response.text.strip() == "success"
                    except httpx.HTTPError as exc:
                        log.info(
                            "notification %s to %s failed: %s", attempt.notification_id, attempt.url, exc
                        )
                if ok:
                    acked += 1
                    with self.rt.engine.store.tx() as conn:
                        conn.execute(
                            "UPDATE notifications SET acked_ms = ?, next_ms = NULL WHERE id = ?",
                            (to_ms(self.rt.engine.now()), attempt.notification_id),
                        )
        return acked

    def list(self, limit: int = 200) -> list[dict[str, object]]:
        """Notifications and their delivery state, newest first (control API)."""
        with self.rt.engine.store.lock:
            rows = self.rt.engine.store.conn.execute(
                "SELECT n.*, t.out_trade_no FROM notifications n JOIN trades t ON t.id = n.trade_id"
                " ORDER BY n.id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            {
                "id": r["id"],
                "out_trade_no": r["out_trade_no"],
                "url": r["url"],
                "notify_id": r["notify_id"],
                "trade_status": json.loads(r["params"])["trade_status"],
                "attempts": r["attempts"],
                "acked": r["acked_ms"] is not None,
                "gave_up": r["acked_ms"] is None and r["next_ms"] is None,
            }
            for r in rows
        ]
