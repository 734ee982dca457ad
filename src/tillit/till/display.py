"""The customer display's e-receipt QR: an inline SVG made on the till (no network, no CDN)."""

from __future__ import annotations

import qrcode
import qrcode.image.svg


def qr_svg(url: str) -> str:
    """The QR of ``url`` as an SVG element (safe to inline: only path data and the size)."""
    image = qrcode.make(url[:500], image_factory=qrcode.image.svg.SvgPathImage, box_size=8, border=2)
    text: str = image.to_string(encoding="unicode")
    return text[text.index("<svg") :]
