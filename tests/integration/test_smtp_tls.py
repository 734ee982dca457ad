"""The mail adapter's STARTTLS and AUTH against a real aiosmtpd server with a throwaway certificate:
the login happens inside TLS and the message arrives; without TLS the server refuses and the failure is
transient (a configuration to fix, not a message to drop)."""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.mailbox import Mailbox, free_port
from tillit.adapters.delivery import TransientDeliveryError
from tillit.adapters.mail import SmtpConfig, SmtpMailer


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"shop",
        b"s3cret",
    )
    return AuthResult(success=ok)


@pytest.fixture(scope="module")
def tls_smtp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Mailbox]]:
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    box = Mailbox()
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
        auth_required=True,
    )
    controller.start()
    yield int(controller.port), box
    controller.stop()


def test_starttls_and_auth(tls_smtp: tuple[int, Mailbox]) -> None:
    port, box = tls_smtp
    base = {"host": "127.0.0.1", "port": port, "timeout_s": 5, "verify_tls": False, "username": "shop"}
    mailer = SmtpMailer(SmtpConfig(security="starttls", password="s3cret", **base))  # type: ignore[arg-type]
    mailer.send("tls@example.com", "支付成功", "电子小票", "m:tls:email")
    mailer.close()
    assert [m["Subject"] for m in box.to("tls@example.com")] == ["支付成功"]
    # The server insists on TLS: a configuration error, retried (not dead-lettered) until it is fixed.
    plain = SmtpMailer(SmtpConfig(host="127.0.0.1", port=port, timeout_s=5))
    with pytest.raises(TransientDeliveryError):
        plain.send("tls@example.com", "x", "y", "m:tls3:email")
    assert len(box.to("tls@example.com")) == 1


def test_implicit_tls(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port(), ssl_context=context)
    controller.start()
    try:
        config = SmtpConfig(
            host="127.0.0.1", port=int(controller.port), security="tls", verify_tls=False, timeout_s=5
        )
        mailer = SmtpMailer(config)
        mailer.send("465@example.com", "退款成功", "已退款", "m:tls4:email")
        mailer.close()
        # Verifying the certificate (the default) refuses the self-signed one: retried, never sent in clear.
        strict = SmtpMailer(
            SmtpConfig(host="127.0.0.1", port=int(controller.port), security="tls", timeout_s=5)
        )
        with pytest.raises(TransientDeliveryError):
            strict.send("465@example.com", "x", "y", "m:tls5:email")
    finally:
        controller.stop()
    assert [m["Subject"] for m in box.to("465@example.com")] == ["退款成功"]
