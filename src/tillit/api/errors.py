"""One error shape for every 4xx/5xx: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tillit.domain.errors import DomainError, ErrorKind

log = structlog.get_logger("tillit.api")

KIND_STATUS = {
    ErrorKind.INVALID: 422,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.UNAUTHENTICATED: 401,
}
# Codes whose status differs from their kind's default.
CODE_STATUS = {"idempotency_key_missing": 400, "idempotency_key_invalid": 400}

HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def status_for(exc: DomainError) -> int:
    return CODE_STATUS.get(exc.code, KIND_STATUS[exc.kind])


def error_response(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "details": details}}, status_code=status)


def _clean_validation(errors: list[Any]) -> list[dict[str, Any]]:
    cleaned = []
    for err in errors[:20]:
        cleaned.append(
            {"loc": [str(p) for p in err.get("loc", ())], "msg": err.get("msg"), "type": err.get("type")}
        )
    return cleaned


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_request: Request, exc: DomainError) -> JSONResponse:
        return error_response(status_for(exc), exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(
                400, "malformed_json", "The request body is not valid JSON.", _clean_validation(errors)
            )
        path_ids = [
            e
            for e in errors
            if len(e.get("loc", ())) == 2
            and (e["loc"][0] == "path" or (e["loc"][0] == "query" and str(e["loc"][1]).endswith("_id")))
            and e.get("type") in ("string_pattern_mismatch", "string_too_long")
        ]
        if path_ids and len(path_ids) == len(errors):
            # A malformed id (path, or an *_id query) keeps normalise_id's code (docs/errors.md).
            field = str(path_ids[0]["loc"][1])
            return error_response(
                422,
                "invalid_id",
                f"{field} must be a UUID.",
                {"field": field, "value": str(path_ids[0].get("input", ""))[:64]},
            )
        key_errors = [e for e in errors if tuple(e.get("loc", ()))[:2] == ("header", "Idempotency-Key")]
        if key_errors and len(key_errors) == len(errors):
            # Only the header is wrong: keep the stable codes the service gave before the header was
            # declared required (docs/errors.md), rather than a generic validation_error.
            if any(e.get("type") == "missing" or e.get("input") in ("", None) for e in key_errors):
                return error_response(
                    400,
                    "idempotency_key_missing",
                    "This request moves money or creates something: send an Idempotency-Key header.",
                )
            return error_response(
                400,
                "idempotency_key_invalid",
                "Idempotency-Key must be 1-255 printable ASCII characters.",
                _clean_validation(errors),
            )
        return error_response(
            422,
            "validation_error",
            "The request does not match the expected shape.",
            _clean_validation(errors),
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code
        return error_response(exc.status_code, code, message)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled_error", error=type(exc).__name__)
        return error_response(500, "internal_error", "Something went wrong on our side; it has been logged.")
