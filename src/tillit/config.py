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
    # Jobs of one claimed batch run on this many threads: a provider call that hangs until its timeout
    # must not hold back the queries of every other unknown payment behind it.
    worker_threads: int = 4
    # How long (real seconds) an in-flight Idempotency-Key stays held unless its process renews it (it does,
    # every quarter of this, while the request runs): a resend after a crash waits at most this long.
    key_lease_s: float = 3.0
    # Base64 of the 32-byte key sealing provider secrets; unset: the keyring file under ``home``.
    secret_key: str | None = None
    # monitoring: a token a Prometheus scraper may send (`Bearer <token>`) to read /metrics without a key.
    metrics_token: str | None = None
    # monitoring: count and time requests for /metrics (off only to measure what that costs: bench/).
    metrics_enabled: bool = True
    # --- notifications (issue 14): the outbox's channels, e-receipt links ---
    smtp_host: str | None = None  # unset: e-mail is not configured and mail rows wait (status pending)
    smtp_port: int = 25
    smtp_security: str = "none"  # none | starttls | tls (implicit TLS, usually port 465)
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "Tillit <no-reply@tillit.local>"
    smtp_timeout_s: float = 10.0
    smtp_verify_tls: bool = True  # False only for a local test server with a self-signed certificate
    sms_gateway_url: str | None = None  # the HTTP SMS gateway's send endpoint
    sms_gateway_token: str | None = None
    webhook_timeout_s: float = 5.0
    # Base64 of the key signing receipt links and merchants' webhooks; unset: ``home/signing.key``.
    signing_key: str | None = None
    public_url: str = "http://127.0.0.1:8000"  # where customers reach receipt pages
    outbox_max_attempts: int = 8  # then the message is dead-lettered
    outbox_backoff_s: float = 30.0  # first retry after this, doubling each time
    outbox_backoff_max_s: float = 3600.0
    outbox_batch: int = 50
    receipt_font: str | None = None  # a CJK .ttf/.ttc for receipt PDFs; unset: fonts-noto-cjk's

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
            worker_threads=min(32, max(1, int(env.get("TILLIT_WORKER_THREADS", "4")))),
            key_lease_s=min(60.0, max(1.0, float(env.get("TILLIT_KEY_LEASE_S", "3")))),
            secret_key=env.get("TILLIT_SECRET_KEY") or None,
            metrics_token=env.get("TILLIT_METRICS_TOKEN") or None,
            metrics_enabled=env.get("TILLIT_METRICS", "1") != "0",
            # --- notifications (issue 14) ---
            smtp_host=env.get("TILLIT_SMTP_HOST") or None,
            smtp_port=int(env.get("TILLIT_SMTP_PORT", "25")),
            smtp_security=env.get("TILLIT_SMTP_SECURITY", "none"),
            smtp_username=env.get("TILLIT_SMTP_USERNAME") or None,
            smtp_password=env.get("TILLIT_SMTP_PASSWORD") or None,
            smtp_from=env.get("TILLIT_SMTP_FROM", "Tillit <no-reply@tillit.local>"),
            smtp_timeout_s=float(env.get("TILLIT_SMTP_TIMEOUT_S", "10")),
            smtp_verify_tls=env.get("TILLIT_SMTP_VERIFY_TLS", "1") != "0",
            sms_gateway_url=env.get("TILLIT_SMS_GATEWAY_URL") or None,
            sms_gateway_token=env.get("TILLIT_SMS_GATEWAY_TOKEN") or None,
            webhook_timeout_s=float(env.get("TILLIT_WEBHOOK_TIMEOUT_S", "5")),
            signing_key=env.get("TILLIT_SIGNING_KEY") or None,
            public_url=env.get("TILLIT_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/"),
            outbox_max_attempts=int(env.get("TILLIT_OUTBOX_MAX_ATTEMPTS", "8")),
            outbox_backoff_s=float(env.get("TILLIT_OUTBOX_BACKOFF_S", "30")),
            outbox_backoff_max_s=float(env.get("TILLIT_OUTBOX_BACKOFF_MAX_S", "3600")),
            outbox_batch=int(env.get("TILLIT_OUTBOX_BATCH", "50")),
            receipt_font=env.get("TILLIT_RECEIPT_FONT") or None,
        )
