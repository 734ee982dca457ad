"""How a message adapter (mail, SMS, webhook) says a delivery failed.

``TransientDeliveryError``: try again later (server down, timeout, 4xx SMTP, 5xx HTTP).
``PermanentDeliveryError``: trying again cannot help (recipient refused, 4xx HTTP); the outbox
dead-letters the message at once. Messages never carry the message body or any secret.
"""

from __future__ import annotations


class DeliveryError(Exception):
    permanent = False


class TransientDeliveryError(DeliveryError):
    permanent = False


class PermanentDeliveryError(DeliveryError):
    permanent = True
