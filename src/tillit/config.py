"""Settings from the environment. Every limit Tillit enforces is named here."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    sqlite_synchronous: str = "FULL"
    idempotency_retention_hours: int = 24
    max_body_bytes: int = 64 * 1024
    db_pool_size: int = 10

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        home = Path(env.get("TILLIT_HOME", "./var")).resolve()
        url = env.get("TILLIT_DATABASE_URL") or f"sqlite:///{home / 'tillit.sqlite'}"
        return cls(
            home=home,
            database_url=url,
            sqlite_synchronous=env.get("TILLIT_SQLITE_SYNCHRONOUS", "FULL"),
            idempotency_retention_hours=max(24, int(env.get("TILLIT_IDEMPOTENCY_RETENTION_HOURS", "24"))),
            max_body_bytes=int(env.get("TILLIT_MAX_BODY_BYTES", str(64 * 1024))),
            db_pool_size=int(env.get("TILLIT_DB_POOL_SIZE", "10")),
        )
