"""Signed customer links and derived secrets: pure HMAC, no I/O.

A receipt link is ``/receipts/{merchant_id}/{order_id}/{signature}`` where the signature is the first
128 bits of HMAC-SHA256(server key, "receipt:" merchant ":" order), hex. Ids are not secret; the
signature is what makes the link unguessable. A wrong signature answers exactly like a missing order.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEX = 32


def _mac(key: bytes, purpose: str, *parts: str) -> str:
    return hmac.new(key, ":".join((purpose, *parts)).encode(), hashlib.sha256).hexdigest()


def receipt_signature(key: bytes, merchant_id: str, order_id: str) -> str:
    return _mac(key, "receipt", merchant_id, order_id)[:SIGNATURE_HEX]


def receipt_path(key: bytes, merchant_id: str, order_id: str) -> str:
    return f"/receipts/{merchant_id}/{order_id}/{receipt_signature(key, merchant_id, order_id)}"


def check_receipt_signature(key: bytes, merchant_id: str, order_id: str, signature: str) -> bool:
    return hmac.compare_digest(receipt_signature(key, merchant_id, order_id), signature)


def webhook_secret(key: bytes, merchant_id: str) -> bytes:
    """The secret a merchant's webhooks are signed with (shown to the merchant by ``tillit`` tooling)."""
    return hmac.new(key, f"webhook:{merchant_id}".encode(), hashlib.sha256).digest()
