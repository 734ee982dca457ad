"""ASGI entry point for process managers: ``uvicorn --factory tillit.api.asgi:create``."""

from __future__ import annotations

from fastapi import FastAPI

from tillit.api.app import create_app
from tillit.bootstrap import build


def create() -> FastAPI:
    return create_app(build())
