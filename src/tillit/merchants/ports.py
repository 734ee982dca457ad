"""What the merchants area needs from outside, as protocols, and its settings (wired in bootstrap)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from tillit.domain.merchants import MAX_FILE_BYTES, REVIEW_INTERVAL_MONTHS


class FileStore(Protocol):
    """Content-addressed bytes per merchant (adapters/files.py; an S3-compatible store may replace it)."""

    def put(self, merchant_id: str, data: bytes) -> str: ...
    def get(self, merchant_id: str, sha256: str) -> bytes | None: ...
    def exists(self, merchant_id: str, sha256: str) -> bool: ...


class Hasher(Protocol):
    """Keyed hashes of personal identifiers (adapters/matchkey.py)."""

    def digest(self, value: str, purpose: str) -> str: ...


class OnboardingClient(Protocol):
    """A provider's onboarding API (进件), as merchants/onboarding.py uses it (adapters/providers/).

    ``submit`` answers the provider's reference (applyment_id / order_id); ``query`` the raw state
    answer as a mapping of strings (state, sub-merchant id, reasons, sign url)."""

    def submit(self, business_code: str, application: dict[str, object]) -> str: ...
    def query(self, business_code: str) -> dict[str, object]: ...


@dataclass
class MerchantsConfig:
    hasher: Hasher
    files: FileStore
    #: a reviewer may not approve an application they submitted themselves
    four_eyes: bool = True
    review_interval_months: int = REVIEW_INTERVAL_MONTHS
    max_file_bytes: int = MAX_FILE_BYTES
    #: provider -> onboarding client; empty: provider onboarding is not configured
    onboarding: dict[str, OnboardingClient] = field(default_factory=dict)
    #: seconds between polls of a provider onboarding application
    onboarding_poll_s: float = 60.0
