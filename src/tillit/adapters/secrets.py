"""AES-256-GCM envelope encryption for provider secrets at rest, and the keyring that holds the keys.

A sealed value reads ``v1:<key_id>:<nonce b64>:<ciphertext b64>``. The associated data is the version,
the key id and the caller's *context* (``provider_accounts/<merchant>/<provider>/<field>``), so a value
copied to another row or field, or with any byte changed, is refused instead of decrypted.

Keys: ``TILLIT_SECRET_KEY`` (base64 of 32 bytes) when set, else the keyring file
``TILLIT_HOME/secret-keys.json`` (mode 0600) holding the current key and the older ones still in use.
The file is re-read whenever a key id is unknown and before every encryption, so a server keeps working
(and never seals under a retired key) after another process ran ``tillit secrets rotate``.

Errors are DomainErrors with stable codes; no message ever contains a key or a secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets as _random
import threading
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tillit.domain.errors import DomainError, conflict

VERSION = "v1"
KEY_FILE = "secret-keys.json"
ENV_KEY = "TILLIT_SECRET_KEY"
NONCE_BYTES = 12


def _missing() -> DomainError:
    return conflict(
        "secret_key_missing",
        f"No secret key: run `tillit init` (creates {KEY_FILE} under TILLIT_HOME) or set {ENV_KEY}.",
    )


def _b64_key(text: str, where: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise conflict(
            "secret_key_invalid", f"{where} must be the base64 of exactly 32 bytes.", {"where": where}
        )
    return raw


def env_key_id(key: bytes) -> str:
    """The id of a key given in the environment: derived from the key, so every process agrees on it."""
    return "e" + hashlib.sha256(b"tillit-key-id:" + key).hexdigest()[:11]


class FileKeyring:
    """The keys that may open stored secrets, and the current one that seals new ones."""

    def __init__(self, home: Path, env_key: str | None = None) -> None:
        self.path = home / KEY_FILE
        self._env_key = env_key or None
        self._lock = threading.Lock()
        self._keys: dict[str, bytes] = {}
        self._current: str | None = None
        self._loaded = False

    @property
    def from_env(self) -> bool:
        return self._env_key is not None

    def reload(self) -> None:
        keys: dict[str, bytes] = {}
        current: str | None = None
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                file_keys = {str(k): _b64_key(str(v), str(self.path)) for k, v in data["keys"].items()}
                file_current = str(data["current"])
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                raise conflict(
                    "secret_key_invalid",
                    f"The keyring {self.path} cannot be read.",
                    {"where": str(self.path)},
                ) from None
            keys.update(file_keys)
            current = file_current if file_current in keys else None
        if self._env_key is not None:
            key = _b64_key(self._env_key, ENV_KEY)
            current = env_key_id(key)
            keys[current] = key
        with self._lock:
            self._keys, self._current, self._loaded = keys, current, True

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self.reload()

    def key(self, key_id: str) -> bytes | None:
        self._ensure_loaded()
        found = self._keys.get(key_id)
        if found is None:
            self.reload()  # another process may have rotated since we read the file
            found = self._keys.get(key_id)
        return found

    def current(self) -> tuple[str, bytes]:
        self.reload()  # never seal under a key another process has retired
        if self._current is None:
            raise _missing()
        return self._current, self._keys[self._current]

    def has_key(self) -> bool:
        self._ensure_loaded()
        return self._current is not None

    def ids(self) -> set[str]:
        self._ensure_loaded()
        return set(self._keys)

    def _write(self, keys: dict[str, bytes], current: str) -> None:
        """Write the whole keyring atomically with mode 0600 (a reader sees the old or the new file)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps(
            {
                "version": 1,
                "current": current,
                "keys": {k: base64.b64encode(v).decode() for k, v in keys.items()},
            },
            indent=2,
        )
        tmp = self.path.with_name(f".{KEY_FILE}.{os.getpid()}.{_random.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def create(self) -> bool:
        """Create the keyring file with a fresh key if there is none. True if this call created it.

        Safe when several processes start at once: the file is linked into place only if absent.
        """
        if self.path.exists():
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kid = _random.token_hex(6)
        tmp = self.path.with_name(f".{KEY_FILE}.{os.getpid()}.{_random.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            key = base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()
            f.write(json.dumps({"version": 1, "current": kid, "keys": {kid: key}}, indent=2))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, self.path)
            created = True
        except FileExistsError:
            created = False
        finally:
            os.unlink(tmp)
        self.reload()
        return created

    def add_current(self) -> str:
        """Add a new key and make it current (older keys stay, to open what they sealed)."""
        if self.from_env:
            raise conflict(
                "secret_key_from_env",
                f"The key comes from {ENV_KEY}: rotate it yourself, or unset it to use the keyring file.",
            )
        self.reload()
        kid = _random.token_hex(6)
        keys = dict(self._keys)
        keys[kid] = AESGCM.generate_key(bit_length=256)
        self._write(keys, kid)
        self.reload()
        return kid

    def retire(self, in_use: set[str]) -> list[str]:
        """Drop every key that is neither current nor used by a stored secret. Returns the dropped ids."""
        self.reload()
        if self.from_env or self._current is None:
            return []
        keep = {k: v for k, v in self._keys.items() if k == self._current or k in in_use}
        dropped = sorted(set(self._keys) - set(keep))
        if dropped:
            self._write(keep, self._current)
            self.reload()
        return dropped


class AesGcmSecretBox:
    """Seals and opens secrets with AES-256-GCM under a FileKeyring (see the module docstring)."""

    def __init__(self, keyring: FileKeyring) -> None:
        self.keyring = keyring

    @staticmethod
    def _aad(key_id: str, context: str) -> bytes:
        return f"{VERSION}:{key_id}|{context}".encode()

    def is_sealed(self, value: str) -> bool:
        return isinstance(value, str) and value.startswith(VERSION + ":") and value.count(":") == 3

    def key_id(self, value: str) -> str | None:
        return value.split(":")[1] if self.is_sealed(value) else None

    def seal(self, value: str, context: str) -> str:
        kid, key = self.keyring.current()
        nonce = os.urandom(NONCE_BYTES)
        ct = AESGCM(key).encrypt(nonce, value.encode("utf-8"), self._aad(kid, context))
        return ":".join((VERSION, kid, base64.b64encode(nonce).decode(), base64.b64encode(ct).decode()))

    def open(self, value: str, context: str) -> str:
        if not self.is_sealed(value):
            raise conflict(
                "secret_not_encrypted",
                "A stored provider secret is not encrypted: run `tillit migrate` to encrypt it.",
                {"context": context},
            )
        _, kid, nonce_b64, ct_b64 = value.split(":")
        key = self.keyring.key(kid)
        if key is None:
            if not self.keyring.has_key():
                raise _missing()
            raise conflict(
                "secret_key_unknown",
                f"A stored secret was sealed with key {kid}, which is not in this keyring "
                f"(wrong {ENV_KEY} or keyring file?).",
                {"key_id": kid, "context": context},
            )
        try:
            nonce = base64.b64decode(nonce_b64, validate=True)
            plain = AESGCM(key).decrypt(
                nonce, base64.b64decode(ct_b64, validate=True), self._aad(kid, context)
            )
        except (InvalidTag, binascii.Error, ValueError):
            raise conflict(
                "secret_undecryptable",
                "A stored secret failed its integrity check: it was altered, moved from another row, "
                "or the key is wrong.",
                {"key_id": kid, "context": context},
            ) from None
        return plain.decode("utf-8")

    # Keyring management, used by `tillit secrets rotate` and the first secret of a fresh install.
    def has_key(self) -> bool:
        return self.keyring.has_key()

    def create_key(self) -> bool:
        return self.keyring.create()

    def add_current_key(self) -> str:
        return self.keyring.add_current()

    def retire_keys(self, in_use: set[str]) -> list[str]:
        return self.keyring.retire(in_use)
