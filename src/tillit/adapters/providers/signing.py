"""Wire signing and parsing for both providers (pure functions, no I/O).

WeChat Pay v2 (providers.md §1.1): every non-empty field except ``sign``, ASCII-sorted by name,
joined ``k=v&…`` with raw values, then ``&key=<API key>``; MD5 or HMAC-SHA256 (keyed with the API
key); uppercase hex.

Alipay (§2.1): parameters except ``sign`` and empty ones (``sign_type`` *is* signed), sorted,
joined ``k=v&…`` raw, SHA256withRSA (PKCS#1 v1.5) with the app private key, base64. A synchronous
answer is verified over the raw JSON text of its ``<method>_response`` member exactly as received;
a notification over every parameter except ``sign`` and ``sign_type``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from xml.sax.saxutils import escape

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

WECHAT_SIGN_TYPES = ("MD5", "HMAC-SHA256")


# --------------------------------------------------------------------------- WeChat


def wechat_string_to_sign(fields: Mapping[str, str]) -> str:
    """``stringA``: the sorted ``k=v`` join of every non-empty field except ``sign``."""
    return "&".join(f"{k}={fields[k]}" for k in sorted(fields) if k != "sign" and fields[k] != "")


def wechat_sign(fields: Mapping[str, str], api_key: str, sign_type: str = "MD5") -> str:
    """The WeChat Pay v2 signature of ``fields``: uppercase hex MD5 or HMAC-SHA256."""
    payload = f"{wechat_string_to_sign(fields)}&key={api_key}".encode()
    if sign_type == "HMAC-SHA256":
        return hmac.new(api_key.encode(), payload, hashlib.sha256).hexdigest().upper()
    if sign_type == "MD5":
        return hashlib.md5(payload).hexdigest().upper()
    raise ValueError(f"unsupported WeChat sign_type {sign_type!r}")


def wechat_verify(fields: Mapping[str, str], api_key: str, sign_type: str) -> bool:
    """True when ``fields['sign']`` is the signature of the other fields (constant-time compare).

    Unknown extra fields are included, as the protocol requires.
    """
    received = fields.get("sign", "")
    if not received or sign_type not in WECHAT_SIGN_TYPES:
        return False
    return hmac.compare_digest(wechat_sign(fields, api_key, sign_type), received.upper())


class XmlError(ValueError):
    """The body is not a flat WeChat ``<xml>`` envelope (or carries a DTD)."""


def parse_wechat_xml(body: bytes) -> dict[str, str]:
    """Parse a flat ``<xml><k>v</k>…</xml>`` envelope; values (CDATA or text) are kept exactly.

    ``xml.etree`` never fetches external entities, and a document with a DTD is refused before
    parsing, so no entity (internal or external) is ever expanded.
    """
    head = body.upper()
    if b"<!DOCTYPE" in head or b"<!ENTITY" in head:
        raise XmlError("DTDs are not allowed")
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
        if child.tag in result:
            raise XmlError(f"duplicate field <{child.tag}>")
        result[child.tag] = child.text or ""
    return result


def to_wechat_xml(fields: Mapping[str, str]) -> bytes:
    """Render a request envelope (values escaped; names are our own constants)."""
    parts = ["<xml>"]
    parts.extend(f"<{k}>{escape(v)}</{k}>" for k, v in fields.items())
    parts.append("</xml>")
    return "".join(parts).encode("utf-8")


# --------------------------------------------------------------------------- Alipay / RSA2


def _pem(text: str, label: str) -> bytes:
    """Accept a PEM or the bare base64 body Alipay's console shows (wrapped with ``label``)."""
    stripped = text.strip()
    if stripped.startswith("-----BEGIN"):
        return stripped.encode()
    body = "".join(stripped.split())
    return f"-----BEGIN {label}-----\n{textwrap.fill(body, 64)}\n-----END {label}-----\n".encode()


def load_private_key(text: str) -> rsa.RSAPrivateKey:
    """An RSA private key from PEM (PKCS#8 or PKCS#1) or bare base64; ValueError if unusable."""
    errors: list[str] = []
    for label in ("PRIVATE KEY", "RSA PRIVATE KEY"):
        try:
            key = serialization.load_pem_private_key(_pem(text, label), None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            errors.append(type(exc).__name__)
            continue
        if isinstance(key, rsa.RSAPrivateKey):
            return key
        raise ValueError("the app private key is not an RSA key")
    # Never echo the key material in the error.
    raise ValueError(f"unreadable app private key ({', '.join(errors)})")


def load_public_key(text: str) -> rsa.RSAPublicKey:
    """An RSA public key from PEM (SubjectPublicKeyInfo or PKCS#1) or bare base64."""
    for label in ("PUBLIC KEY", "RSA PUBLIC KEY"):
        try:
            key = serialization.load_pem_public_key(_pem(text, label))
        except (ValueError, UnsupportedAlgorithm):
            continue
        if isinstance(key, rsa.RSAPublicKey):
            return key
        raise ValueError("the Alipay public key is not an RSA key")
    raise ValueError("unreadable Alipay public key")


def alipay_string_to_sign(params: Mapping[str, str], exclude: tuple[str, ...] = ("sign",)) -> str:
    """Sorted ``k=v`` join of the non-empty parameters not in ``exclude``."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in exclude and params[k] != "")


def rsa2_sign(message: str, key: rsa.RSAPrivateKey) -> str:
    """SHA256withRSA (PKCS#1 v1.5) over the UTF-8 bytes of ``message``, base64."""
    return base64.b64encode(key.sign(message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa2_verify(message: str, signature: str, key: rsa.RSAPublicKey) -> bool:
    """True when ``signature`` (base64) is a valid SHA256withRSA signature of ``message``."""
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


class ResponseFormatError(ValueError):
    """An Alipay answer that is not a JSON object of the expected shape."""


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def top_level_members(text: str) -> dict[str, tuple[str, object]]:
    """Each top-level member of a JSON object: name -> (its raw text as received, parsed value).

    Walks the object with the JSON decoder itself, so the raw text of a member is exactly the
    bytes the provider signed (no re-serialisation), and a name inside a string value can never
    be mistaken for a member.
    """
    decoder = json.JSONDecoder()
    members: dict[str, tuple[str, object]] = {}
    try:
        i = _skip_ws(text, 0)
        if i >= len(text) or text[i] != "{":
            raise ResponseFormatError("answer is not a JSON object")
        i = _skip_ws(text, i + 1)
        if i < len(text) and text[i] == "}":
            return members
        while True:
            name, i = decoder.raw_decode(text, i)
            if not isinstance(name, str):
                raise ResponseFormatError("member name is not a string")
            i = _skip_ws(text, i)
            if i >= len(text) or text[i] != ":":
                raise ResponseFormatError("expected ':'")
            start = _skip_ws(text, i + 1)
            value, end = decoder.raw_decode(text, start)
            if name in members:
                raise ResponseFormatError(f"duplicate member {name!r}")
            members[name] = (text[start:end], value)
            i = _skip_ws(text, end)
            if i < len(text) and text[i] == ",":
                i = _skip_ws(text, i + 1)
                continue
            if i < len(text) and text[i] == "}":
                break
            raise ResponseFormatError("expected ',' or '}'")
        if _skip_ws(text, i + 1) != len(text):
            raise ResponseFormatError("trailing data after the JSON object")
    except json.JSONDecodeError as exc:
        raise ResponseFormatError(str(exc)) from exc
    return members


# --------------------------------------------------------------------------- amounts


def fen_to_yuan(fen: int) -> str:
    """Minor units (fen) as Alipay's yuan string with two decimals: 1234 -> "12.34"."""
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise TypeError("amounts are integer fen")
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


def yuan_to_fen(text: str) -> int:
    """A yuan string ("12.34", "12.3", "12") as integer fen; ValueError if malformed or finer than a fen."""
    stripped = text.strip()
    if not stripped or stripped[0] in "+" or "e" in stripped.lower() or "_" in stripped:
        raise ValueError(f"not a yuan amount: {text!r}")
    try:
        value = Decimal(stripped)
    except InvalidOperation as exc:
        raise ValueError(f"not a yuan amount: {text!r}") from exc
    if not value.is_finite():
        raise ValueError(f"not a yuan amount: {text!r}")
    fen = value * 100
    if fen != fen.to_integral_value():
        raise ValueError(f"more than two decimals: {text!r}")
    return int(fen)
