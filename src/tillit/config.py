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
    provider_timeout_s: float = 10.0
    # Demo, chaos and tests only: run Tillit's clock faster than real time from ``clock_origin``, so
    # provider minutes pass in seconds (the sandbox is started with the same speed and origin).
    clock_speed: float = 1.0
    clock_origin: float = 0.0
    clock_start: str | None = None  # ISO time the scaled clock reads at ``clock_origin`` (default: origin)
    worker_poll_s: float = 0.25
    # Base64 of the 32-byte key sealing provider secrets; unset: the keyring file under ``home``.
    secret_key: str | None = None
    # monitoring: a token a Prometheus scraper may send (`Bearer <token>`) to read /metrics without a key.
    metrics_token: str | None = None

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
            provider_timeout_s=float(env.get("TILLIT_PROVIDER_TIMEOUT_S", "10")),
            clock_speed=float(env.get("TILLIT_CLOCK_SPEED", "1")),
            clock_origin=float(env.get("TILLIT_CLOCK_ORIGIN", "0")),
            clock_start=env.get("TILLIT_CLOCK_START") or None,
            worker_poll_s=float(env.get("TILLIT_WORKER_POLL_S", "0.25")),
            secret_key=env.get("TILLIT_SECRET_KEY") or None,
            metrics_token=env.get("TILLIT_METRICS_TOKEN") or None,
        )
