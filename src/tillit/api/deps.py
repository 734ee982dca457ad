"""Request dependencies: the container, the authenticated actor, role guards, idempotent execution."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from tillit.access import idempotency
from tillit.access.keys import KeyCache, authenticate_hash, hash_key
from tillit.bootstrap import Container
from tillit.domain.errors import DomainError, ErrorKind
from tillit.kernel.context import Actor


def container(request: Request) -> Container:
    return request.app.state.container  # type: ignore[no-any-return]


def key_cache(request: Request) -> KeyCache:
    return request.app.state.key_cache  # type: ignore[no-any-return]


async def actor(
    request: Request,
    authorization: str | None = Header(default=None, description="`Bearer <API key>`"),
) -> Actor:
    """The caller, from the app's key cache or, on a miss, one database read in the threadpool.

    A coroutine, so that a cache hit costs no threadpool hand-off (see access/keys.py for how long a
    revoked key may stay accepted).
    """
    if not authorization or not authorization.startswith("Bearer "):
        raise DomainError(
            "unauthenticated",
            "Send your API key as `Authorization: Bearer <key>`.",
            ErrorKind.UNAUTHENTICATED,
        )
    key_hash = hash_key(authorization[7:].strip())
    cache = key_cache(request)
    who = cache.get(key_hash)
    if who is None:
        who = await run_in_threadpool(_lookup, container(request), key_hash)
        cache.put(key_hash, who)
    return who


def _lookup(c: Container, key_hash: str) -> Actor:
    with c.db.read() as conn:
        return authenticate_hash(conn, key_hash)


def role(*roles: str) -> Callable[..., Any]:
    async def guard(who: Actor = Depends(actor)) -> Actor:
        who.require(*roles)
        return who

    guard.roles = roles  # type: ignore[attr-defined]  # read by the tenant-isolation test
    return guard


ADMIN = Depends(role("admin"))
MANAGER = Depends(role("merchant"))
STAFF = Depends(role("merchant", "terminal"))
OVERSEER = Depends(role("admin", "merchant"))
CASHIER = Depends(role("terminal"))
ANY = Depends(actor)

# Required in the OpenAPI document with the limits access/idempotency.check_key enforces (1-255
# printable ASCII). A missing or bad header still answers 400 idempotency_key_missing/_invalid: the
# validation handler in api/errors.py maps FastAPI's header errors back to those codes.
IDEMPOTENCY_HEADER = Header(
    ...,
    alias="Idempotency-Key",
    min_length=1,
    max_length=idempotency.MAX_KEY_LENGTH,
    pattern="^[\x20-\x7e]+$",
    description="Required: 1-255 printable ASCII characters. Same key and body replays the first response; "
    "see docs/api.md.",
)


# The UUID forms domain/ids.normalise_id accepts (32 hex digits, optionally hyphenated, braced or
# urn:uuid:-prefixed), declared so the OpenAPI document says what the server takes. A mismatch still
# answers 422 invalid_id (api/errors.py maps the path error back to it).
UUID_PATTERN = (
    r"^(urn:uuid:)?\{?[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\}?$"
)
IdPath = Annotated[str, Path(pattern=UUID_PATTERN, max_length=45, description="A UUID")]
IdQuery = Annotated[str | None, Query(pattern=UUID_PATTERN, max_length=45, description="A UUID")]


def idempotent(
    request: Request,
    who: Actor,
    key: str | None,
    body: Any,
    operation: Callable[[Connection], tuple[int, Any]],
) -> Response:
    c = container(request)
    stored = idempotency.run(c.db, c.deps, who, key, request.method, request.url.path, body, operation)
    headers = {"Idempotent-Replayed": "true"} if stored.replayed else {}
    return Response(stored.body, status_code=stored.status, media_type="application/json", headers=headers)


def phased(
    request: Request,
    who: Actor,
    key: str | None,
    body: Any,
    prepare: Callable[[Connection], Any],
    takeover: Callable[[Connection, str], tuple[int, Any]],
) -> Response:
    c = container(request)
    stored = idempotency.run_phased(
        c.db, c.deps, who, key, request.method, request.url.path, body, prepare, takeover
    )
    headers = {"Idempotent-Replayed": "true"} if stored.replayed else {}
    return Response(stored.body, status_code=stored.status, media_type="application/json", headers=headers)


def ok(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)
