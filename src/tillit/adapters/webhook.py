"""Signed webhooks to a merchant's system.

Every request carries ``Tillit-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``
and ``Tillit-Message-Id`` (the outbox dedup key: a receiver drops repeats). A receiver recomputes the
HMAC over the raw body and refuses a timestamp older or newer than the replay window
(``REPLAY_WINDOW_S``, five minutes) — ``verify()`` below does both, for receivers and tests.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import httpx

from tillit.adapters.delivery import PermanentDeliveryError, TransientDeliveryError

SIGNATURE_HEADER = "Tillit-Signature"
MESSAGE_ID_HEADER = "Tillit-Message-Id"
REPLAY_WINDOW_S = 300


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: bytes, header: str, body: bytes, now: int, window_s: int = REPLAY_WINDOW_S) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and its timestamp is within ``window_s`` of
    ``now`` (unix seconds). Constant-time comparison; a malformed header is simply False."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > window_s:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)


@dataclass(frozen=True)
class WebhookConfig:
    timeout_s: float = 5.0


class HttpWebhookSender:
    def __init__(self, config: WebhookConfig) -> None:
        self._client = httpx.Client(timeout=config.timeout_s, follow_redirects=False)

    def send(self, url: str, body: bytes, secret: bytes, timestamp: int, message_id: str) -> None:
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret, timestamp, body),
            MESSAGE_ID_HEADER: message_id,
        }
        try:
            resp = self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise TransientDeliveryError(f"webhook unavailable: {type(exc).__name__}") from exc
        if resp.is_success:
            return
        if 400 <= resp.status_code < 500 and resp.status_code not in (408, 429):
            raise PermanentDeliveryError(f"webhook {resp.status_code}")
        raise TransientDeliveryError(f"webhook {resp.status_code}")

    def close(self) -> None:
        self._client.close()
