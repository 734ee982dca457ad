"""Wire signing for both providers.

WeChat Pay v2 (providers.md §1.1): non-empty fields except ``sign``, ASCII-sorted, ``k=v&…`` with raw
values, ``&key=<api key>``, MD5 or HMAC-SHA256, uppercase hex. Alipay (§2.1): parameters except
``sign`` (and empty ones), sorted, joined raw, SHA256withRSA PKCS#1 v1.5, base64.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from functools import lru_cache
from xml.sax.saxutils import escape

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

WECHAT_SIGN_TYPES = ("MD5", "HMAC-SHA256")


def wechat_string_to_sign(fields: Mapping[str, str]) -> str:
    """``stringA``: the sorted ``k=v`` join of every non-empty field except ``sign``."""
    return "&".join(f"{k}={fields[k]}" for k in sorted(fields) if k != "sign" and fields[k] != "")


def wechat_sign(fields: Mapping[str, str], api_key: str, sign_type: str = "MD5") -> str:
    """The WeChat v2 signature of ``fields`` (uppercase hex)."""
    payload = f"{wechat_string_to_sign(fields)}&key={api_key}".encode()
    if sign_type == "HMAC-SHA256":
        return hmac.new(api_key.encode(), payload, hashlib.sha256).hexdigest().upper()
    if sign_type == "MD5":
        return hashlib.md5(payload).hexdigest().upper()
    raise ValueError(f"unsupported sign_type {sign_type!r}")


def wechat_verify(fields: Mapping[str, str], api_key: str) -> bool:
    """True when ``fields['sign']`` is right for the ``sign_type`` the request declares."""
    sign_type = fields.get("sign_type") or "MD5"
    if sign_type not in WECHAT_SIGN_TYPES or not fields.get("sign"):
        return False
    return hmac.compare_digest(wechat_sign(fields, api_key, sign_type), fields["sign"])


class XmlError(ValueError):
    """The body is not a flat WeChat ``<xml>`` envelope."""


def parse_wechat_xml(body: bytes) -> dict[str, str]:
    """Parse a flat ``<xml><k>v</k>…</xml>`` envelope (CDATA or plain text values).

    DTDs are refused outright: no entity expansion from untrusted input.
    """
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise XmlError("DTD not allowed")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise XmlError(str(exc)) from exc
    if root.tag != "xml":
        raise XmlError("root element must be <xml>")
    result: dict[str, str] = {}
    for child in root:
        if len(child):
            raise XmlError(f"nested element in <{child.tag}>")
        result[child.tag] = (child.text or "").strip()
    return result


def to_wechat_xml(fields: Mapping[str, str]) -> str:
    """Render fields as WeChat does: CDATA for text, bare digits for numbers."""
    parts = ["<xml>"]
    for key, value in fields.items():
        if value.isdigit():
            parts.append(f"<{key}>{value}</{key}>")
        elif "]]>" in value:
            parts.append(f"<{key}>{escape(value)}</{key}>")
        else:
            parts.append(f"<{key}><![CDATA[{value}]]></{key}>")
    parts.append("</xml>")
    return "".join(parts)


@lru_cache(maxsize=64)
def _private_key(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


@lru_cache(maxsize=64)
def _public_key(pem: str) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


def alipay_string_to_sign(params: Mapping[str, str], exclude: tuple[str, ...] = ("sign",)) -> str:
    """Sorted ``k=v`` join of non-empty parameters (``sign_type`` included for requests)."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in exclude and params[k] != "")


def rsa2_sign(message: str, private_pem: str) -> str:
    """SHA256withRSA (PKCS#1 v1.5) over UTF-8 ``message``, base64."""
    signature = _private_key(private_pem).sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode()


def rsa2_verify(message: str, signature: str, public_pem: str) -> bool:
    """True when ``signature`` (base64) is a valid SHA256withRSA signature of ``message``."""
    try:
        raw = base64.b64decode(signature, validate=False)
        _public_key(public_pem).verify(raw, message.encode(), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True
