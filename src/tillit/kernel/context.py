"""What every use case receives: who is acting, and the injected clock and id source."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, overload

if TYPE_CHECKING:
    from sqlalchemy import Connection

from tillit.domain.clock import Clock
from tillit.domain.errors import DomainError, ErrorKind
from tillit.domain.ids import IdGenerator

ROLES = ("admin", "merchant", "terminal")


@dataclass(frozen=True, slots=True)
class Actor:
    """The authenticated caller. ``merchant_id`` is None only for operator (admin) keys."""

    key_id: str
    role: str
    merchant_id: str | None = None
    terminal_id: str | None = None
    store_id: str | None = None

    @property
    def label(self) -> str:
        """How the actor is written into event rows: role and key id, never the secret."""
        return f"{self.role}:{self.key_id}"

    def require(self, *roles: str) -> None:
        if self.role not in roles:
            raise DomainError(
                "forbidden",
                f"A {self.role} key cannot do this; it needs a {' or '.join(roles)} key.",
                ErrorKind.FORBIDDEN,
                {"role": self.role, "required": list(roles)},
            )

    def merchant(self) -> str:
        """The merchant this actor works for; operators must act through a merchant key."""
        if self.merchant_id is None:
            raise DomainError(
                "forbidden",
                "This needs a merchant or terminal key.",
                ErrorKind.FORBIDDEN,
                {"role": self.role},
            )
        return self.merchant_id


SYSTEM = Actor(key_id="system", role="admin")


class SecretBox(Protocol):
    """Seals secrets for storage and opens them again (adapters/secrets.py is the implementation).

    ``context`` names where the value lives (row and field); a sealed value opens only in its own
    context. Failures raise DomainErrors with stable codes and never carry the secret.
    """

    def is_sealed(self, value: str) -> bool: ...
    def key_id(self, value: str) -> str | None: ...
    def seal(self, value: str, context: str) -> str: ...
    def open(self, value: str, context: str) -> str: ...
    def has_key(self) -> bool: ...
    def create_key(self) -> bool: ...
    def add_current_key(self) -> str: ...
    def retire_keys(self, in_use: set[str]) -> list[str]: ...


class KeyHolder:
    """This process as the holder of in-flight Idempotency-Keys (access/idempotency.py).

    ``boot`` is new each time a process builds its container, so keys held by a process that died are
    told apart from keys of the one running now. ``lease`` is how long (on the injected clock) a held key
    stays held without being renewed; ``held`` counts the requests of this process holding one right now,
    so the renewer writes nothing while there are none.
    """

    def __init__(self, lease: timedelta = timedelta(seconds=5), boot: str | None = None) -> None:
        self.boot = boot or uuid.uuid4().hex
        self.lease = lease
        self._held = 0
        self._lock = threading.Lock()

    def hold(self) -> None:
        with self._lock:
            self._held += 1

    def release(self) -> None:
        with self._lock:
            self._held -= 1

    @property
    def held(self) -> int:
        return self._held


@dataclass(frozen=True, slots=True)
class Deps:
    clock: Clock
    ids: IdGenerator
    secrets: SecretBox | None = None  # None only where no provider secret is ever stored or read
    #: The engine's "look at this attempt now" (engine.trigger_resolution), given at the composition
    #: root so use cases outside the engine (reconciliation) need not import it. None: nobody can ask.
    resolve_attempt: Callable[[Connection, Deps, Any], None] | None = None
    #: Who this process is when it holds an in-flight Idempotency-Key, and for how long a hold lasts.
    holder: KeyHolder = field(default_factory=KeyHolder)


@overload
def iso(value: datetime) -> str: ...
@overload
def iso(value: None) -> None: ...
@overload
def iso(value: datetime | None) -> str | None: ...
def iso(value: datetime | None) -> str | None:
    """Timestamps leave Tillit as ISO 8601 UTC with a Z suffix (SQLite returns them naive)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def row_dict(row: Any) -> dict[str, Any]:
    return dict(row._mapping)
