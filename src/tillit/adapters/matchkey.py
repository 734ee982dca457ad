"""Keyed hashes for matching personal identifiers (ID numbers, bank accounts, phones) without storing them.

HMAC-SHA256 under a dedicated matching key kept beside the secret keyring (``<TILLIT_HOME>/match.key``,
created on first use, mode 0600) or given as ``TILLIT_MATCH_KEY`` (base64, 32 bytes). It is not
rotated with the sealing keys: every stored hash would have to be recomputed from values Tillit no
longer has. A leaked database alone cannot be brute-forced back to ID numbers without this key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
from pathlib import Path

KEY_FILE = "match.key"


class KeyedHasher:
    def __init__(self, home: Path, env_key: str | None = None) -> None:
        self.path = home / KEY_FILE
        self._env_key = env_key
        self._key: bytes | None = None
        self._lock = threading.Lock()

    def _load(self) -> bytes:
        with self._lock:
            if self._key is not None:
                return self._key
            if self._env_key:
                self._key = base64.b64decode(self._env_key)
            else:
                if not self.path.exists():
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    except FileExistsError:
                        pass  # another process made it first: read theirs
                    else:
                        with os.fdopen(fd, "w") as out:
                            out.write(base64.b64encode(secrets.token_bytes(32)).decode())
                self._key = base64.b64decode(self.path.read_text().strip())
            return self._key

    def digest(self, value: str, purpose: str) -> str:
        """Hex HMAC of ``value`` for ``purpose`` (``id_number``, ``bank_account``, ``phone``)."""
        return hmac.new(self._load(), f"{purpose}\x00{value}".encode(), hashlib.sha256).hexdigest()
