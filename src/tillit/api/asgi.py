"""ASGI entry point for process managers: ``uvicorn --factory tillit.api.asgi:create``."""

from __future__ import annotations

import os

from fastapi import FastAPI

from tillit.api.app import create_app
from tillit.bootstrap import build
from tillit.monitoring import logs


def create() -> FastAPI:
    """Serve the API; the resolver runs in-process unless TILLIT_RUN_WORKER=0 (separate `tillit worker`s)."""
    logs.configure()  # structured JSON logs with request ids (monitoring/logs.py)
    return create_app(build(), run_worker=os.environ.get("TILLIT_RUN_WORKER", "1") != "0")
