"""The typed shape of an outbox message and the checks every message passes before it is stored."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, TypedDict, get_args

from tillit.domain.errors import invalid

Channel = Literal["email", "sms", "webhook"]
Locale = Literal["zh-CN", "en"]
CHANNELS: tuple[str, ...] = get_args(Channel)
LOCALES: tuple[str, ...] = get_args(Locale)
TEMPLATES = (
    "payment_captured",
    "refund_done",
    "order_ready",
    "order_shipped",
    "order_delivered",
    "confirm_reminder",
    "dispute_update",
    "alert",
)
MAX_PARAM_CHARS = 500
MAX_EVENT_ID = 64

EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
PHONE = re.compile(r"^\+?[0-9]{6,15}$")
# Payment codes are 16-24 digit numbers (WeChat 18, Alipay 16-24): no message may carry one.
_LONG_DIGITS = re.compile(r"[0-9]{16,}")
# Ids are 32 hex characters and may hold a run of digits by chance: checked for their own shape instead.
_ID_PARAMS = {"order_id": re.compile(r"^[0-9a-f]{32}$")}


class MessageParams(TypedDict, total=False):
    """What a template may use. Amounts in minor units (fen). Never a payment code or a secret."""

    order_id: str  # the sender turns it into ``receipt_url`` (a signed link)
    order_number: int
    merchant_name: str
    store_name: str
    amount: int
    refund_amount: int
    currency: str
    tracking_number: str
    carrier: str
    confirm_by: str  # ISO time the order is confirmed automatically
    dispute_reason: str
    dispute_status: str
    alert_title: str
    alert_detail: str
    severity: str


PARAM_KEYS = frozenset(MessageParams.__annotations__)


@dataclass(frozen=True, slots=True)
class Message:
    merchant_id: str
    event_id: str  # with ``channel``, the deduplication key: one event is sent once per channel
    channel: Channel
    recipient: str  # e-mail address, phone number (E.164 digits) or https URL for a webhook
    template: str
    locale: Locale
    params: MessageParams

    @property
    def dedup_key(self) -> str:
        return f"{self.event_id}:{self.channel}"


# The webhook recipient meaning "the merchant's own endpoint" (notifications/endpoints.py), resolved when
# the message is sent, so a waiting message follows a rotation.
MERCHANT_ENDPOINT = "merchant"


def check_recipient(channel: str, recipient: str) -> str:
    """The recipient normalised for ``channel`` (e-mail lower-cased), or a DomainError."""
    value = recipient.strip()
    if channel == "email" and len(value) <= 254 and EMAIL.match(value):
        return value.lower()
    if channel == "sms" and PHONE.match(value):
        return value
    if channel == "webhook" and len(value) <= 320 and value.startswith(("https://", "http://")):
        return value
    if channel == "webhook" and value == MERCHANT_ENDPOINT:
        return value
    raise invalid(
        "invalid_recipient", f"{recipient!r} is not a valid {channel} recipient.", {"channel": channel}
    )


def check_event(event_id: str, template: str) -> None:
    if template not in TEMPLATES:
        raise invalid("invalid_template", f"Unknown template {template!r}.")
    if not event_id or len(event_id) > MAX_EVENT_ID:
        raise invalid("invalid_event_id", f"event_id must be 1 to {MAX_EVENT_ID} characters.")


def check_params(params: MessageParams | dict[str, object]) -> None:
    """Refuse parameters a template does not know, too long, or that look like a payment code. Run when
    a message is stored and again by the sender on the parameters it adds (the shop's names)."""
    unknown = set(params) - PARAM_KEYS
    if unknown:
        raise invalid("invalid_params", f"Unknown message parameters: {sorted(unknown)}.")
    for key, value in params.items():
        text = str(value)
        if len(text) > MAX_PARAM_CHARS:
            raise invalid("invalid_params", f"Parameter {key} is longer than {MAX_PARAM_CHARS} characters.")
        shape = _ID_PARAMS.get(key)
        if shape is not None:
            if not shape.match(text):
                raise invalid("invalid_params", f"Parameter {key} must be a Tillit id.")
        elif _LONG_DIGITS.search(text):
            raise invalid("payment_code_in_message", f"Parameter {key} looks like a payment code.")


def check_message(message: Message) -> Message:
    """Refuse a message that could not be sent or would leak a payment code."""
    if message.channel not in CHANNELS:
        raise invalid(
            "invalid_channel", f"Unknown channel {message.channel!r}.", {"channel": message.channel}
        )
    if message.locale not in LOCALES:
        raise invalid("invalid_locale", f"Unknown locale {message.locale!r}.", {"locale": message.locale})
    check_event(message.event_id, message.template)
    check_params(message.params)
    recipient = check_recipient(message.channel, message.recipient)
    if recipient != message.recipient:
        return Message(
            message.merchant_id,
            message.event_id,
            message.channel,
            recipient,
            message.template,
            message.locale,
            message.params,
        )
    return message
