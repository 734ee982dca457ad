"""SMS through an HTTP gateway: ``POST {url}`` with JSON ``{"to": ..., "text": ...}`` and a bearer token.

2xx is sent; 4xx (except 408/429) is permanent (bad number, refused); anything else, or no answer, is
retried later by the outbox.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from tillit.adapters.delivery import PermanentDeliveryError, TransientDeliveryError


@dataclass(frozen=True)
class SmsGatewayConfig:
    url: str
    token: str | None = None
    timeout_s: float = 5.0


class HttpSmsGateway:
    def __init__(self, config: SmsGatewayConfig) -> None:
        self.config = config
        self._client = httpx.Client(timeout=config.timeout_s)

    def send(self, to: str, text: str, message_id: str) -> None:
        headers = {"Idempotency-Key": message_id}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        try:
            resp = self._client.post(self.config.url, json={"to": to, "text": text}, headers=headers)
        except httpx.HTTPError as exc:
            raise TransientDeliveryError(f"sms gateway unavailable: {type(exc).__name__}") from exc
        if resp.is_success:
            return
        if 400 <= resp.status_code < 500 and resp.status_code not in (408, 429):
            raise PermanentDeliveryError(f"sms gateway {resp.status_code}")
        raise TransientDeliveryError(f"sms gateway {resp.status_code}")

    def close(self) -> None:
        self._client.close()
