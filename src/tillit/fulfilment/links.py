"""The customer's link to an order: an unguessable token, HMAC-SHA256 over (merchant, order) with a
server key. Nothing is stored: the token proves itself. A token that does not verify names no order
(the page answers 404, exactly as for an unknown order).

Format: base64url(merchant id 16 bytes + order id 16 bytes + first 16 bytes of the MAC), 64 characters.
Form tokens (CSRF for the customer page, which has no session) are a second HMAC over the link token,
the form's purpose and an issue time, valid for ``FORM_TOKEN_TTL``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

TOKEN_LENGTH = 64
MAC_BYTES = 16
FORM_TOKEN_TTL = timedelta(hours=12)


@dataclass(frozen=True, slots=True)
class OrderRef:
    merchant_id: str
    order_id: str


def _mac(key: bytes, label: bytes, payload: bytes) -> bytes:
    return hmac.new(key, label + b"\x00" + payload, hashlib.sha256).digest()


@dataclass(frozen=True)
class LinkSigner:
    """Signs and verifies customer links with ``key`` (32 random bytes kept by the server)."""

    key: bytes

    def __post_init__(self) -> None:
        assert len(self.key) >= 32, "the link key must be at least 32 bytes"

    def token(self, merchant_id: str, order_id: str) -> str:
        payload = bytes.fromhex(merchant_id) + bytes.fromhex(order_id)
        raw = payload + _mac(self.key, b"order-link", payload)[:MAC_BYTES]
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def verify(self, token: str) -> OrderRef | None:
        """The order a token names, or None when it is malformed or forged (constant-time check)."""
        if len(token) != TOKEN_LENGTH or not token.isascii():
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError):
            return None
        if len(raw) != 32 + MAC_BYTES:
            return None
        payload, mac = raw[:32], raw[32:]
        if not hmac.compare_digest(mac, _mac(self.key, b"order-link", payload)[:MAC_BYTES]):
            return None
        return OrderRef(payload[:16].hex(), payload[16:].hex())

    def form_token(self, token: str, purpose: str, now: datetime) -> str:
        issued = str(int(now.timestamp()))
        mac = _mac(self.key, b"form", f"{token}:{purpose}:{issued}".encode()).hex()[:32]
        return f"{issued}.{mac}"

    def check_form_token(self, token: str, purpose: str, form_token: str, now: datetime) -> bool:
        issued, _, mac = form_token.partition(".")
        if not issued.isdigit() or len(issued) > 12 or len(mac) != 32:
            return False
        expected = _mac(self.key, b"form", f"{token}:{purpose}:{issued}".encode()).hex()[:32]
        if not hmac.compare_digest(mac, expected):
            return False
        age = now.timestamp() - int(issued)
        return -60 <= age <= FORM_TOKEN_TTL.total_seconds()


def customer_path(signer: LinkSigner, merchant_id: str, order_id: str) -> str:
    return f"/c/{signer.token(merchant_id, order_id)}"
