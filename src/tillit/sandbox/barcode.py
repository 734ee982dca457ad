"""Payment codes as images: Code 128 (set C, all-digit codes) drawn by hand as SVG, and QR via
the ``qrcode`` package. Both are what a till's scanner reads from the customer's phone."""

from __future__ import annotations

import io

import qrcode
import qrcode.image.svg

# Bar/space module widths of the 107 Code 128 symbols (0-102 data, 103-105 start A/B/C, 106 stop).
PATTERNS: tuple[str, ...] = (
    "212222",
    "222122",
    "222221",
    "121223",
    "121322",
    "131222",
    "122213",
    "122312",
    "132212",
    "221213",
    "221312",
    "231212",
    "112232",
    "122132",
    "122231",
    "113222",
    "123122",
    "123221",
    "223211",
    "221132",
    "221231",
    "213212",
    "223112",
    "312131",
    "311222",
    "321122",
    "321221",
    "312212",
    "322112",
    "322211",
    "212123",
    "212321",
    "232121",
    "111323",
    "131123",
    "131321",
    "112313",
    "132113",
    "132311",
    "211313",
    "231113",
    "231311",
    "112133",
    "112331",
    "132131",
    "113123",
    "113321",
    "133121",
    "313121",
    "211331",
    "231131",
    "213113",
    "213311",
    "213131",
    "311123",
    "311321",
    "331121",
    "312113",
    "312311",
    "332111",
    "314111",
    "221411",
    "431111",
    "111224",
    "111422",
    "121124",
    "121421",
    "141122",
    "141221",
    "112214",
    "112412",
    "122114",
    "122411",
    "142112",
    "142211",
    "241211",
    "221114",
    "413111",
    "241112",
    "134111",
    "111242",
    "121142",
    "121241",
    "114212",
    "124112",
    "124211",
    "411212",
    "421112",
    "421211",
    "212141",
    "214121",
    "412121",
    "111143",
    "111341",
    "131141",
    "114113",
    "114311",
    "411113",
    "411311",
    "113141",
    "114131",
    "311141",
    "411131",
    "211412",
    "211214",
    "211232",
    "2331112",
)
START_C = 105
STOP = 106


def code128c_symbols(digits: str) -> list[int]:
    """Symbol values (start, data, checksum, stop) for an even-length string of digits."""
    if not digits.isdigit() or len(digits) % 2:
        raise ValueError("Code 128 set C needs an even number of digits")
    data = [int(digits[i : i + 2]) for i in range(0, len(digits), 2)]
    checksum = (START_C + sum(i * v for i, v in enumerate(data, start=1))) % 103
    return [START_C, *data, checksum, STOP]


def code128_svg(digits: str, module: int = 2, height: int = 80) -> str:
    """An SVG Code 128 barcode with quiet zones and the human-readable digits below."""
    quiet = 10 * module
    x = quiet
    rects = []
    for symbol in code128c_symbols(digits):
        for i, width in enumerate(PATTERNS[symbol]):
            w = int(width) * module
            if i % 2 == 0:  # even positions are bars, odd are spaces
                rects.append(f'<rect x="{x}" y="0" width="{w}" height="{height}"/>')
            x += w
    total = x + quiet
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="{height + 22}" '
        f'viewBox="0 0 {total} {height + 22}"><rect width="100%" height="100%" fill="#fff"/>'
        f'<g fill="#000">{"".join(rects)}</g>'
        f'<text x="{total // 2}" y="{height + 17}" font-family="monospace" font-size="14" '
        f'text-anchor="middle">{digits}</text></svg>'
    )


def qr_svg(data: str) -> str:
    """A QR code for ``data`` as inline SVG."""
    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    buffer = io.BytesIO()
    image.save(buffer)
    text = buffer.getvalue().decode()
    return text[text.index("<svg") :]
