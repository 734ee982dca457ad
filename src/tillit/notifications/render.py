"""Templates per language (Jinja2, ``templates/<locale>/<template>.txt``): the first line is
``subject: ...``, the rest the body. SMS sends the body alone. Webhooks are not rendered: they carry
the message's JSON. StrictUndefined: a template naming a parameter that does not exist fails loudly in
tests, not silently in a customer's inbox; known parameters a message lacks render empty.

A template may also have an HTML part, ``templates/<locale>/<template>.html`` (a fragment: the sender
wraps it in a document), rendered with autoescaping; e-mail then carries both parts (ful21: the
confirm-receipt reminder, whose link to the customer's order page is in both)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound

from tillit.notifications.messages import PARAM_KEYS

HERE = Path(__file__).resolve().parent


def _money(value: Any) -> str:
    """Minor units (fen) as a decimal amount: 1234 -> 12.34."""
    fen = int(value or 0)
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


_ENV = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=False,  # plain text mail and SMS; nothing here is HTML
    undefined=StrictUndefined,
    keep_trailing_newline=False,
)
_ENV.filters["money"] = _money
_HTML_ENV = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=True, undefined=StrictUndefined
)
_HTML_ENV.filters["money"] = _money
# Links the sender adds at send time (signed, never stored in the outbox row).
SENDER_PARAMS = ("receipt_url", "order_url")


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    body: str
    html: str | None = None  # the HTML fragment, when the template has one


def render(template: str, locale: str, params: dict[str, Any]) -> Rendered:
    """Every known parameter the message lacks is empty; an unknown name in a template is an error."""
    values: dict[str, Any] = dict.fromkeys(PARAM_KEYS, "")
    values.update(dict.fromkeys(SENDER_PARAMS, ""))
    values.update(params)
    text = _ENV.get_template(f"{locale}/{template}.txt").render(**values)
    first, _, rest = text.partition("\n")
    subject = first.removeprefix("subject:").strip()
    body = "\n".join(line.rstrip() for line in rest.strip().splitlines())
    try:
        html: str | None = _HTML_ENV.get_template(f"{locale}/{template}.html").render(**values).strip()
    except TemplateNotFound:
        html = None
    return Rendered(subject=subject, body=body, html=html)
