"""The framework ceiling for a money-moving POST (issue 11.1): what FastAPI + uvicorn, on the server's own
HTTP parser and event loop, do for ``POST /v1/orders`` when the route does nothing but what any route
must — parse a JSON body, validate it with the order route's own pydantic model, and answer a body of
a real order answer's size — with no database, no authentication and no threadpool hand-off.

The answer is read once from the file named by ``TILLIT_CEILING_ANSWER`` (bench/checkout.py writes a
real order answer of the run there), so the ceiling serialises as many bytes as the server does.

    python -m uvicorn bench.harness.ceiling_app:app --port P --no-access-log
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from tillit.api.schemas import OrderCreate

ANSWER: Any = json.loads(Path(os.environ["TILLIT_CEILING_ANSWER"]).read_text())

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/orders", status_code=201)
async def create_order(body: OrderCreate) -> JSONResponse:
    # Serialised per request, as the server does (its answer differs per order).
    return JSONResponse(ANSWER, status_code=201)
