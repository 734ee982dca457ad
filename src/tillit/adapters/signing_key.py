"""The server key that signs customer links (e-receipts) and derives merchants' webhook secrets.

From settings (base64 of at least 32 bytes) or, unset, ``<home>/signing.key`` created on first use
(mode 0600). Rotating it invalidates every link already sent.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

FILE_NAME = "signing.key"


def load_signing_key(home: Path, configured: str | None) -> bytes:
    if configured:
        key = base64.b64decode(configured)
        if len(key) < 32:
            raise ValueError("TILLIT_SIGNING_KEY must be base64 of at least 32 bytes")
        return key
    path = home / FILE_NAME
    if path.exists():
        return base64.b64decode(path.read_text().strip())
    home.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return base64.b64decode(path.read_text().strip())
    try:
        os.write(fd, base64.b64encode(key))
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return key
