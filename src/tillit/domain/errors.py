"""Domain errors: every failure a caller can see has a stable machine code.

The API maps ``kind`` to an HTTP status; the ``code`` is what clients and docs/errors.md rely on.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorKind(StrEnum):
    """How a failure should be reported; the API turns each kind into one HTTP status."""

    INVALID = "invalid"  # the request can never succeed as written (422)
    NOT_FOUND = "not_found"  # unknown id, or an id of another merchant (404)
    CONFLICT = "conflict"  # the request is valid but the current state forbids it (409)
    FORBIDDEN = "forbidden"  # the caller's role may not do this (403)
    UNAUTHENTICATED = "unauthenticated"  # no or bad credentials (401)


class DomainError(Exception):
    """A rule was broken. Raising it must leave no writes behind (the transaction rolls back)."""

    def __init__(
        self, code: str, message: str, kind: ErrorKind = ErrorKind.INVALID, details: Any = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.kind = kind
        self.details = details

    def __repr__(self) -> str:
        return f"DomainError({self.code!r}, {self.message!r})"


def not_found(entity: str, entity_id: str) -> DomainError:
    """The one error for 'does not exist or belongs to someone else' (never reveal which)."""
    return DomainError(
        f"{entity}_not_found", f"No {entity} with id {entity_id}.", ErrorKind.NOT_FOUND, {"id": entity_id}
    )


def conflict(code: str, message: str, details: Any = None) -> DomainError:
    return DomainError(code, message, ErrorKind.CONFLICT, details)


def invalid(code: str, message: str, details: Any = None) -> DomainError:
    return DomainError(code, message, ErrorKind.INVALID, details)
