"""SMTP mail with smtplib: plain, STARTTLS or implicit TLS, optional AUTH.

A refused recipient, or content refused with 5xx, is permanent (the outbox dead-letters the message);
everything else — no server, timeouts, 4xx, failed AUTH, TLS required — is transient.

One connection is kept open between messages (a batch of the outbox reuses it) and reopened after any
error. Not thread-safe: each sender thread owns its own ``SmtpMailer``.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate

from tillit.adapters.delivery import PermanentDeliveryError, TransientDeliveryError

SECURITY_MODES = ("none", "starttls", "tls")


def message_id_header(dedup_key: str) -> str:
    """The Message-ID of the outbox message ``dedup_key`` (``<merchant>:<event>:<channel>``): the same
    key always gives the same header, so a receiver can drop a repeat. Characters a msg-id may not hold
    (``:``, ``@``, spaces) become dots."""
    return "<" + _NOT_ATEXT.sub(".", dedup_key)[:200] + "@tillit.local>"


_NOT_ATEXT = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]")


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 25
    security: str = "none"  # none | starttls | tls
    username: str | None = None
    password: str | None = None
    sender: str = "Tillit <no-reply@tillit.local>"
    timeout_s: float = 10.0
    verify_tls: bool = True

    def __post_init__(self) -> None:
        if self.security not in SECURITY_MODES:
            raise ValueError(f"smtp security must be one of {SECURITY_MODES}, not {self.security!r}")


class SmtpMailer:
    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._smtp: smtplib.SMTP | None = None

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if not self.config.verify_tls:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _connect(self) -> smtplib.SMTP:
        cfg = self.config
        smtp: smtplib.SMTP
        if cfg.security == "tls":
            smtp = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout_s, context=self._context())
        else:
            smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s)
            if cfg.security == "starttls":
                smtp.starttls(context=self._context())
        if cfg.username:
            smtp.login(cfg.username, cfg.password or "")
        return smtp

    def send(
        self,
        to: str,
        subject: str,
        body: str,
        message_id: str,
        headers: dict[str, str] | None = None,
        html: str | None = None,
    ) -> None:
        """Send one mail: plain text, or text and ``html`` as multipart/alternative. ``message_id`` (the
        outbox dedup key) becomes part of the Message-ID header, so a receiver can drop the rare
        duplicate left by a crash after sending."""
        msg = EmailMessage()
        msg["From"] = self.config.sender
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = message_id_header(message_id)
        for name, value in (headers or {}).items():  # List-Unsubscribe and List-Unsubscribe-Post
            msg[name] = value
        msg.set_content(body)
        if html is not None:
            msg.add_alternative(html, subtype="html")
        try:
            if self._smtp is None:
                self._smtp = self._connect()
            self._smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            self.close()
            raise PermanentDeliveryError("recipient refused") from exc
        except smtplib.SMTPDataError as exc:  # the server refused this message's content
            self.close()
            error = PermanentDeliveryError if 500 <= exc.smtp_code < 600 else TransientDeliveryError
            raise error(f"smtp {exc.smtp_code}") from exc
        except smtplib.SMTPResponseException as exc:
            # Authentication, sender or TLS required: our configuration, not the message. Retried, so mail
            # waits (and is sent) once the operator fixes the settings.
            self.close()
            raise TransientDeliveryError(f"smtp {exc.smtp_code}") from exc
        except (TimeoutError, OSError, smtplib.SMTPException) as exc:
            self.close()
            raise TransientDeliveryError(f"smtp unavailable: {type(exc).__name__}") from exc

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()
