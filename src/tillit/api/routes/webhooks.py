"""A merchant's own webhook endpoint (docs/notifications.md, "The merchant's webhook endpoint"): set or
rotate its URL and secret, read it back without the secret, remove it. Manager keys only; each merchant
sees and changes only its own."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from tillit.api.deps import MANAGER, container, ok
from tillit.api.schemas import ErrorOut, Strict
from tillit.kernel.context import Actor
from tillit.notifications import endpoints

router = APIRouter(prefix="/v1", tags=["notifications"], responses={"4XX": {"model": ErrorOut}})


class EndpointBody(Strict):
    url: Annotated[str, Field(min_length=1, max_length=endpoints.MAX_URL, description="http(s) URL")]
    secret: Annotated[
        str,
        Field(
            min_length=endpoints.SECRET_LENGTH[0],
            max_length=endpoints.SECRET_LENGTH[1],
            description="The secret Tillit signs each message with (HMAC-SHA256); sealed at rest, never "
            "answered. Setting a new one rotates it.",
        ),
    ]


class EndpointOut(BaseModel):
    id: str | None = Field(description="The endpoint's id (the back office's pages address it by id).")
    enabled: bool = Field(description="False when disabled in the back office: nothing is sent to it.")
    url: str | None
    secret_set: bool
    default: bool = Field(description="True when the merchant has no endpoint.")
    created_at: str | None
    updated_at: str | None


class RemovedOut(BaseModel):
    removed: bool


@router.get(
    "/webhook-endpoint",
    summary="The merchant's webhook endpoint (never its secret)",
    responses={200: {"model": EndpointOut}},
)
def get_endpoint(request: Request, who: Actor = MANAGER) -> JSONResponse:
    with container(request).db.read() as conn:
        return ok(endpoints.get_endpoint(conn, who.merchant()))


@router.put(
    "/webhook-endpoint",
    summary="Set or rotate the merchant's webhook endpoint: URL and signing secret",
    responses={200: {"model": EndpointOut}},
)
def put_endpoint(body: EndpointBody, request: Request, who: Actor = MANAGER) -> JSONResponse:
    c = container(request)
    with c.db.transaction() as conn:
        return ok(endpoints.set_endpoint(conn, c.deps, who.merchant(), body.model_dump()))


@router.delete(
    "/webhook-endpoint",
    summary="Remove the merchant's webhook endpoint (messages still waiting for it are suppressed)",
    responses={200: {"model": RemovedOut}},
)
def delete_endpoint(request: Request, who: Actor = MANAGER) -> JSONResponse:
    with container(request).db.transaction() as conn:
        return ok({"removed": endpoints.remove_endpoint(conn, who.merchant())})
