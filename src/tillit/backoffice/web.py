"""What every back-office page shares: the signed-in context, the CSRF check, rendering, error pages.

Contract:
- ``context`` (a FastAPI dependency) answers the signed-in ``Ctx`` or raises ``SignInRequired`` (the app
  redirects to the sign-in page). On any method but GET/HEAD it first checks the CSRF token — the form
  field ``csrf_token`` or the ``X-CSRF-Token`` header (htmx) — against the session's, and raises
  ``CsrfRefused`` (a 403 page, nothing written) when it is missing or wrong.
- ``require(roles)`` is the guard the app puts in front of each registered page's router: another role
  gets a 403 page.
- Every page reads data through ``ctx.merchant_id``: the caller's own merchant, never a request value.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from tillit.backoffice import sessions
from tillit.backoffice.i18n import LOCALES, Translate, pick, translator
from tillit.backoffice.registry import Page
from tillit.bootstrap import Container
from tillit.domain.errors import DomainError, ErrorKind
from tillit.kernel.context import Actor

HERE = Path(__file__).parent
BASE = "/backoffice"  # where api/app.py mounts the back office
SESSION_COOKIE = "tillit_bo_session"
SIGNIN_CSRF_COOKIE = "tillit_bo_signin"
LANG_COOKIE = "tillit_bo_lang"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = {"GET", "HEAD"}
# The shop's day (today's figures, the search form's times): China Standard Time, as the providers' bills.
SHOP_TZ = timezone(timedelta(hours=8), name="Asia/Shanghai")


class SignInRequired(Exception):
    """No live session: the app answers with the sign-in page (a redirect; HX-Redirect for htmx)."""


class CsrfRefused(Exception):
    """A form arrived without this session's CSRF token: refused with a page, nothing written."""


class RoleRefused(Exception):
    def __init__(self, role: str, roles: Iterable[str]) -> None:
        super().__init__(role)
        self.role = role
        self.roles = sorted(roles)


def money(value: int | None, currency: str = "CNY") -> str:
    """Minor units as a decimal amount, e.g. 1250 -> '¥12.50' (integer arithmetic, no float)."""
    if value is None:
        return "—"
    sign = "-" if value < 0 else ""
    whole, cents = divmod(abs(int(value)), 100)
    symbol = "¥" if currency == "CNY" else f"{currency} "
    return f"{sign}{symbol}{whole:,}.{cents:02d}"


ENV = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
ENV.filters["money"] = money
ENV.globals["base"] = BASE


def env() -> Environment:
    return ENV


def container(request: Request) -> Container:
    return request.app.state.container  # type: ignore[no-any-return]


def pages_of(request: Request) -> tuple[Page, ...]:
    return request.app.state.pages  # type: ignore[no-any-return]


def locale_of(request: Request) -> str:
    return pick(request.cookies.get(LANG_COOKIE))


def same_token(sent: object, expected: str | None) -> bool:
    return (
        isinstance(sent, str)
        and bool(sent)
        and expected is not None
        and hmac.compare_digest(sent.encode(), expected.encode())
    )


async def sent_csrf(request: Request) -> object:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()  # cached on the request: the route's Form() params read it again
        return form.get(CSRF_FIELD)
    return None


@dataclass
class Ctx:
    """The signed-in request: who, in which language, with the token every form must carry."""

    request: Request
    container: Container
    session: sessions.Session
    locale: str
    t: Translate
    nav: list[Page] = field(default_factory=list)

    @property
    def actor(self) -> Actor:
        return self.session.actor

    @property
    def merchant_id(self) -> str:
        """The caller's merchant (every page query is scoped by it); operators have none (403)."""
        return self.actor.merchant()

    @property
    def csrf(self) -> str:
        return self.session.csrf_token

    def render(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = ENV.get_template(template).render(
            t=self.t,
            locale=self.locale,
            locales=LOCALES,
            csrf=self.csrf,
            actor=self.actor,
            merchant_name=self.session.merchant_name,
            nav=self.nav,
            path=self.request.url.path,
            **values,
        )
        return HTMLResponse(html, status_code=status)


async def context(request: Request) -> Ctx:
    c = container(request)
    token = request.cookies.get(SESSION_COOKIE)

    def load() -> sessions.Session | None:
        with c.db.read() as conn:
            return sessions.resolve(conn, c.deps, token)

    session = await run_in_threadpool(load)
    if session is None:
        raise SignInRequired()
    if request.method not in SAFE_METHODS and not same_token(await sent_csrf(request), session.csrf_token):
        raise CsrfRefused()
    locale = locale_of(request)
    visible = [p for p in pages_of(request) if session.actor.role in p.roles]
    return Ctx(request, c, session, locale, translator(locale), visible)


CTX = Depends(context)


def require(roles: frozenset[str]) -> Callable[..., Awaitable[Ctx]]:
    async def guard(ctx: Ctx = CTX) -> Ctx:
        if ctx.actor.role not in roles:
            raise RoleRefused(ctx.actor.role, roles)
        return ctx

    return guard


def plain_page(request: Request, template: str, status: int, **values: Any) -> HTMLResponse:
    """A page outside a session (sign-in, refusals): no navigation."""
    locale = locale_of(request)
    html = ENV.get_template(template).render(
        t=translator(locale),
        locale=locale,
        locales=LOCALES,
        nav=[],
        actor=None,
        csrf=None,
        path=request.url.path,
        **values,
    )
    return HTMLResponse(html, status_code=status)


ERROR_STATUS = {
    ErrorKind.INVALID: 422,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.UNAUTHENTICATED: 401,
}


def error_status(exc: DomainError) -> int:
    return ERROR_STATUS[exc.kind]


YUAN = re.compile(r"^\s*(\d{1,10})(?:\.(\d{1,2}))?\s*$")


def parse_yuan(text: str | None, field_name: str = "amount") -> int | None:
    """'12.5' -> 1250 fen; blank -> None; anything else is ``invalid_amount`` (at most 2 decimals)."""
    if text is None or not text.strip():
        return None
    found = YUAN.match(text)
    if found is None:
        raise DomainError(
            "invalid_amount",
            f"{field_name}: enter an amount in yuan with at most two decimals, e.g. 12.50.",
            ErrorKind.INVALID,
            {"field": field_name},
        )
    return int(found.group(1)) * 100 + int((found.group(2) or "0").ljust(2, "0"))


def parse_local_time(text: str | None, field_name: str) -> datetime | None:
    """A ``datetime-local`` form value in the shop's time zone -> an aware datetime; blank -> None."""
    if text is None or not text.strip():
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise DomainError(
            "invalid_time",
            f"{field_name}: enter a date and time such as 2026-12-03T09:30.",
            ErrorKind.INVALID,
            {"field": field_name},
        ) from None
    return value.replace(tzinfo=SHOP_TZ) if value.tzinfo is None else value


def shop_time(value: str | None) -> str:
    """An ISO UTC timestamp shown in the shop's time zone, to the second."""
    if not value:
        return "—"
    return (
        datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(SHOP_TZ).strftime("%Y-%m-%d %H:%M:%S")
    )


ENV.filters["shoptime"] = shop_time
