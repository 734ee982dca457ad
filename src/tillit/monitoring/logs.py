"""Structured JSON logs (structlog) with a request id, and the redaction that keeps secrets and payment
codes out of them.

Contract: ``configure()`` makes every structlog logger write one JSON object per line to stderr, with
``ts`` (UTC ISO), ``level``, ``event`` and the context bound for the request or job (``request_id``).
``redact`` runs last before rendering: a key that names a secret (key, secret, password, token,
authorization, payment/auth code, private key, sign) is replaced by ``"[redacted]"``, and any run of
16-24 digits in any string (a WeChat / Alipay payment code is 18) becomes ``[code]``. So a log line
cannot carry a payment code even when an error message quotes one.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_DIGITS = re.compile(r"(?<!\d)\d{16,24}(?!\d)")
_SECRET_KEYS = re.compile(
    r"(secret|password|passwd|token|authori[sz]ation|api_?key|private|auth_code|payment_code|sign$|^key$)",
    re.IGNORECASE,
)


def request_id_from(value: str | None) -> str:
    """The caller's request id when it is a short safe token, else a fresh one (never echo junk)."""
    if value and _REQUEST_ID.match(value):
        return value
    return uuid.uuid4().hex


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return _DIGITS.sub("[code]", value)
    if isinstance(value, Mapping):
        return {k: "[redacted]" if _SECRET_KEYS.search(str(k)) else _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if key in ("event", "level", "ts", "request_id"):
            event[key] = _clean(event[key])
        elif _SECRET_KEYS.search(key):
            event[key] = "[redacted]"
        else:
            event[key] = _clean(event[key])
    return event


def configure(level: int = logging.INFO) -> None:
    """JSON lines on stderr for structlog and for the standard library (uvicorn's own messages)."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.format_exc_info,
            redact,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redact,
                structlog.processors.JSONRenderer(ensure_ascii=False),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
