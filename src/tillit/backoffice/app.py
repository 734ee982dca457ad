"""The back-office ASGI app: sign-in/out, language, static files, and every registered page.

Mounted by api/app.py at ``/backoffice``. ``PAGES`` is the registry: to add a page, write a module with
``PAGE = Page(...)`` (registry.py) and add it to this tuple (docs/backoffice.md).
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import Depends, FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from tillit.access.keys import KeyCache
from tillit.backoffice import sessions
from tillit.backoffice.i18n import LOCALES
from tillit.backoffice.pages import merchants, monitoring, orders, products, shifts, terminals, today
from tillit.backoffice.pages import settlement as settlement_pages  # settle12
from tillit.backoffice.pages import webhooks as webhook_pages  # ful21
from tillit.backoffice.registry import Page, check
from tillit.backoffice.throttle import SignInThrottle
from tillit.backoffice.web import (
    BASE,
    CTX,
    LANG_COOKIE,
    SESSION_COOKIE,
    SIGNIN_CSRF_COOKIE,
    CsrfRefused,
    Ctx,
    RoleRefused,
    SignInRequired,
    error_status,
    plain_page,
    require,
    same_token,
    signed_in,
)
from tillit.bootstrap import Container
from tillit.domain.errors import DomainError

# The registry (registry.py). Other areas' pages are added here, one line each.
PAGES: tuple[Page, ...] = check(
    (
        today.PAGE,
        orders.PAGE,
        shifts.PAGE,
        products.PAGE,
        terminals.PAGE,
        webhook_pages.PAGE,  # ful21: the merchant's webhook endpoint
        settlement_pages.PAGE,  # settle12
        settlement_pages.FEES_PAGE,  # settle12
        monitoring.ANALYTICS,  # mon13: analytics, channel health, alerts
        monitoring.HEALTH,
        monitoring.ALERTS,
        merchants.PAGE,  # operator pages of the merchants area (issue 12)
        merchants.BLACKLIST_PAGE,
    )
)


def create_backoffice_app(
    container: Container, key_cache: KeyCache | None = None, pages: tuple[Page, ...] = PAGES
) -> FastAPI:
    """``key_cache`` is the API app's: a key revoked on a page is forgotten there at once."""
    app = FastAPI(title="Tillit back office", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.container = container
    app.state.key_cache = key_cache if key_cache is not None else KeyCache()
    throttle = app.state.signin_throttle = SignInThrottle()
    app.state.pages = pages
    app.mount("/static", StaticFiles(directory=__file__.rsplit("/", 1)[0] + "/static"), name="static")
    _install_error_pages(app)

    @app.get("/", response_class=HTMLResponse)
    def home(ctx: Ctx = CTX) -> Response:
        """The first page the role may open, or a page saying there is none yet."""
        if ctx.nav:
            return RedirectResponse(BASE + ctx.nav[0].path, status_code=303)
        return ctx.render("home.html")

    @app.get("/signin", response_class=HTMLResponse)
    def signin_form(request: Request) -> HTMLResponse:
        return _signin_page(request, 200)

    @app.post("/signin", response_class=HTMLResponse)
    async def signin(request: Request, api_key: str = Form(""), csrf_token: str = Form("")) -> Response:
        # Before a session exists the CSRF token is a double-submit cookie set by the sign-in form.
        if not same_token(csrf_token, request.cookies.get(SIGNIN_CSRF_COOKIE)):
            raise CsrfRefused()
        client = request.client.host if request.client else "unknown"
        if throttle.blocked(client):
            return _signin_page(request, 429, error="Too many failed sign-ins: wait a minute and try again.")

        def start() -> str:
            with container.db.transaction() as conn:
                token, _session = sessions.start(conn, container.deps, api_key)
                return token

        try:
            token = await run_in_threadpool(start)
        except DomainError:
            throttle.failed(client)
            return _signin_page(request, 401, error="The API key is unknown or revoked.")
        response = RedirectResponse(BASE + "/", status_code=303)
        _set_cookie(request, response, SESSION_COOKIE, token, int(sessions.SESSION_TTL.total_seconds()))
        response.delete_cookie(SIGNIN_CSRF_COOKIE, path=BASE)
        return response

    @app.post("/signout")
    async def signout(request: Request, _ctx: Ctx = CTX) -> Response:
        token = request.cookies.get(SESSION_COOKIE)

        def end() -> None:
            with container.db.transaction() as conn:
                sessions.end(conn, token)

        await run_in_threadpool(end)
        response = RedirectResponse(BASE + "/signin", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=BASE)
        return response

    @app.get("/lang/{code}")
    def set_lang(request: Request, code: str) -> Response:
        """Remember the language (a preference, not state: a GET is fine) and go back where one was."""
        back = request.query_params.get("next", "/")
        target = BASE + back if back.startswith("/") and not back.startswith("//") else BASE + "/"
        response = RedirectResponse(target, status_code=303)
        if code in LOCALES:
            _set_cookie(request, response, LANG_COOKIE, code, 365 * 86400, http_only=False)
        return response

    for page in pages:
        app.include_router(page.router, dependencies=[Depends(require(page.roles))])

    @app.middleware("http")
    async def page_headers(request: Request, call_next: Any) -> Response:
        """No framing (clickjacking), no referrer leaving the site, no caching of signed-in pages."""
        response: Response = await call_next(request)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if not request.url.path.startswith(BASE + "/static"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return app


def _signin_page(request: Request, status: int, error: str | None = None) -> HTMLResponse:
    token = secrets.token_urlsafe(32)
    response = plain_page(request, "signin.html", status, signin_csrf=token, error=error)
    _set_cookie(request, response, SIGNIN_CSRF_COOKIE, token, 3600)
    return response


def _set_cookie(
    request: Request, response: Response, name: str, value: str, max_age: int, http_only: bool = True
) -> None:
    """HttpOnly, SameSite=Strict, scoped to the back office; Secure whenever the request came over TLS."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=BASE,
        httponly=http_only,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _install_error_pages(app: FastAPI) -> None:
    @app.exception_handler(SignInRequired)
    async def to_signin(request: Request, _exc: SignInRequired) -> Response:
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": BASE + "/signin"})
        return RedirectResponse(BASE + "/signin", status_code=303)

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, _exc: CsrfRefused) -> Response:
        return plain_page(request, "refused.html", 403, reason="csrf")

    @app.exception_handler(RoleRefused)
    async def role_refused(request: Request, exc: RoleRefused) -> Response:
        return plain_page(request, "refused.html", 403, reason="role", role=exc.role, roles=exc.roles)

    @app.exception_handler(RequestValidationError)
    async def bad_form(request: Request, exc: RequestValidationError) -> Response:
        fields = sorted({str(e.get("loc", ("", ""))[-1]) for e in exc.errors()[:20]})
        error = DomainError(
            "invalid_form", f"These fields are missing or too long: {', '.join(fields)}.", details=fields
        )
        return await domain_error(request, error)

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> Response:
        """The refusal with its code and message, inside the navigation when the caller is signed in."""
        ctx = await signed_in(request)
        if ctx is None:
            return plain_page(request, "error.html", error_status(exc), error=exc)
        return ctx.render("error.html", error_status(exc), error=exc)
