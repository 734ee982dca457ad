"""Signed customer links and derived secrets: pure HMAC, no I/O.

A receipt link is ``/receipts/{merchant_id}/{order_id}/{signature}`` where the signature is the first
128 bits of HMAC-SHA256(server key, "receipt:" merchant ":" order), hex. Ids are not secret; the
signature is what makes the link unguessable. A wrong signature answers exactly like a missing order.
"""

from __future__ import annotations

import base64
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


# --- receipt links a till prints offline (the QR on the paper receipt) ---------------------------------
#
# The server gives each terminal a receipt-link key: key = HMAC-SHA256(server key, "till-receipt-key:" +
# key id), where the key id is 128 random bits stored with the terminal (``receipt_link_keys``). Only the
# key id is stored: the server derives the key again to verify. The till keeps its key and prints
#     {public url}/r/{key id}/{order id}/{mac},  mac = HMAC-SHA256(key, "till-receipt:" + order id)[:128 bits]
# with no server in reach. A revoked key id verifies nothing; a mac under another key is a forgery.


def till_receipt_key(server_key: bytes, key_id: str) -> bytes:
    return hmac.new(server_key, f"till-receipt-key:{key_id}".encode(), hashlib.sha256).digest()


def till_receipt_mac(terminal_key: bytes, order_id: str) -> str:
    return _mac(terminal_key, "till-receipt", order_id)[:SIGNATURE_HEX]


def till_receipt_path(key_id: str, terminal_key: bytes, order_id: str) -> str:
    return f"/r/{key_id}/{order_id}/{till_receipt_mac(terminal_key, order_id)}"


def check_till_receipt_mac(terminal_key: bytes, order_id: str, mac: str) -> bool:
    return hmac.compare_digest(till_receipt_mac(terminal_key, order_id), mac)


# --- unsubscribe links in customer e-mail ---------------------------------------------------------------
#
#     /u/{merchant_id}/{base64url(address)}/{signature},  signature = HMAC-SHA256(server key,
#     "unsubscribe:" merchant ":" channel ":" address)[:128 bits], hex
# The link is the credential (no login): only the addressee's mail holds it; an altered one answers 404.


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def unsubscribe_signature(key: bytes, merchant_id: str, channel: str, address: str) -> str:
    return _mac(key, "unsubscribe", merchant_id, channel, address)[:SIGNATURE_HEX]


def unsubscribe_path(key: bytes, merchant_id: str, address: str, channel: str = "email") -> str:
    sig = unsubscribe_signature(key, merchant_id, channel, address)
    return f"/u/{merchant_id}/{_b64(address)}/{sig}"


def check_unsubscribe(key: bytes, merchant_id: str, encoded: str, signature: str) -> str | None:
    """The address an unsubscribe link names, or None when it is malformed or its signature is wrong."""
    if len(encoded) > 400 or len(signature) != SIGNATURE_HEX:
        return None
    try:
        address = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    expected = unsubscribe_signature(key, merchant_id, "email", address)
    return address if hmac.compare_digest(expected, signature) else None
