"""A content-addressed file store on the local disk (merchant documents), behind the FileStore port.

Files live under ``<TILLIT_HOME>/files/<merchant>/<aa>/<sha256>``: the name is the content's SHA-256,
so storing the same bytes twice is one file and a stored file can never change under its name. An
S3-compatible store can replace this class: the port (merchants/documents.py) is put / get / exists.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

_SHA = re.compile(r"^[0-9a-f]{64}$")
_ID = re.compile(r"^[0-9a-f]{32}$")


class LocalFileStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, merchant_id: str, sha256: str) -> Path:
        # Both parts are checked so no caller-supplied value can walk out of the store.
        if not _SHA.match(sha256) or not _ID.match(merchant_id):
            raise ValueError("bad file address")
        return self.root / merchant_id / sha256[:2] / sha256

    def put(self, merchant_id: str, data: bytes) -> str:
        """Store ``data`` for the merchant; answer its SHA-256 (hex). Atomic: a reader sees all or none."""
        sha = hashlib.sha256(data).hexdigest()
        path = self._path(merchant_id, sha)
        if path.exists():
            return sha
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha

    def get(self, merchant_id: str, sha256: str) -> bytes | None:
        path = self._path(merchant_id, sha256)
        return path.read_bytes() if path.exists() else None

    def exists(self, merchant_id: str, sha256: str) -> bool:
        return self._path(merchant_id, sha256).exists()
