"""The composition root: the one place where settings, database, clock, ids and providers are wired."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from tillit.adapters.db.engine import Database, make_engine
from tillit.adapters.files import LocalFileStore
from tillit.adapters.mail import SmtpConfig, SmtpMailer
from tillit.adapters.matchkey import KeyedHasher
from tillit.adapters.providers.alipay import AlipayAccount, AlipayProvider
from tillit.adapters.providers.onboarding import AlipayOnboarding, WeChatOnboarding
from tillit.adapters.providers.wechat import WeChatAccount, WeChatPayProvider
from tillit.adapters.secrets import AesGcmSecretBox, FileKeyring
from tillit.adapters.signing_key import load_signing_key
from tillit.adapters.sms import HttpSmsGateway, SmsGatewayConfig
from tillit.adapters.webhook import HttpWebhookSender, WebhookConfig
from tillit.config import Settings
from tillit.domain.clock import Clock, ScaledClock, SystemClock
from tillit.domain.ids import IdGenerator
from tillit.domain.links import receipt_path, unsubscribe_path, webhook_secret
from tillit.domain.provider import PaymentProvider
from tillit.exceptions import cases
from tillit.fulfilment import keys as fulfilment_keys
from tillit.fulfilment import notify as fulfilment_notify
from tillit.fulfilment import outbox as fulfilment_outbox
from tillit.fulfilment import timers as fulfilment_timers
from tillit.fulfilment.links import customer_path
from tillit.kernel.context import Deps, KeyHolder, SecretBox
from tillit.merchants import lifecycle as merchant_lifecycle
from tillit.merchants import onboarding, review
from tillit.merchants.ports import MerchantsConfig, OnboardingClient
from tillit.monitoring import alerts
from tillit.notifications import endpoints
from tillit.notifications.sender import Channels, OutboxSender, SenderConfig
from tillit.payments import accounts, engine
from tillit.payments.accounts import ProviderDirectory, ProviderFactory
from tillit.payments.engine import EngineConfig, trigger_resolution
from tillit.payments.gateway import EngineGateway
from tillit.reconciliation import daily
from tillit.reconciliation.outcomes import late_payment_handler
from tillit.reconciliation.service import resolve_for_exception
from tillit.sales import payments as sales_payments
from tillit.sales.gateway import ProviderGateway
from tillit.settlement import daily as settlement_daily
from tillit.settlement import service as settlement_service


def wire_areas() -> None:
    """Let lower areas reach higher ones without importing them (docs/architecture.md): each hook is a
    handler a higher area registers here. Idempotent: every build() calls it."""
    cases.on_resolved("bill_", resolve_for_exception)  # a resolved bill exception closes its discrepancy
    accounts.on_account_connected(daily.ensure_scheduled)  # a connected account's bills are fetched daily
    engine.register_job_handler("reconcile_daily", daily.run_daily)  # the resolver runs that fetch
    # settle12: a connected account's settlement is checked daily; the resolver runs that check.
    accounts.on_account_connected(settlement_daily.ensure_scheduled)
    engine.register_job_handler(settlement_daily.KIND, settlement_daily.run_daily)
    engine.register_job_handler(alerts.KIND, alerts.run_evaluation)  # monitoring: alert rules evaluated
    alerts.on_not_credited(settlement_service.not_credited_days)  # the not_credited rule reads settlement
    # fulfilment: shipping SLA, reminder and auto-confirm timers (docs/fulfilment.md)
    engine.register_job_handler(fulfilment_timers.TIMER_JOB, fulfilment_timers.run_job)
    fulfilment_notify.on_message(fulfilment_outbox.enqueue_message)  # its messages go to the outbox
    # merchants area (issue 12)
    sales_payments.on_cash_payment(merchant_lifecycle.ensure_may_take_cash)  # suspended: cash per setting
    onboarding.on_sub_merchant(accounts.record_sub_merchant)  # a sub-merchant id configures the account
    engine.register_job_handler(review.JOB_KIND, review.run_review)  # periodic re-review, expiry
    engine.register_job_handler(onboarding.JOB_KIND, onboarding.run_poll)  # 进件 polled to completion


@dataclass
class Container:
    settings: Settings
    db: Database
    deps: Deps
    engine: EngineConfig | None = None
    gateway: ProviderGateway | None = None  # provider payments and refunds as sales sees them
    # --- notifications (issue 14) ---
    outbox: OutboxSender | None = None  # run by the resolver (worker.py) in every round
    signing_key: bytes | None = None  # signs e-receipt links and derives webhook secrets
    merchants: MerchantsConfig | None = None  # documents' file store, matching key, onboarding clients

    def receipt_url(self, merchant_id: str, order_id: str) -> str:
        assert self.signing_key is not None, "build() loads the signing key"
        return self.settings.public_url + receipt_path(self.signing_key, merchant_id, order_id)


def build_outbox(
    settings: Settings,
    signing_key: bytes,
    box: SecretBox | None = None,
    order_url: Callable[[str, str], str] | None = None,
) -> OutboxSender:
    """The outbox sender with every channel the settings configure (an unconfigured channel's messages
    wait). A new sender per call: each owns its own connections. ``order_url`` (``order_link``) puts the
    customer's order page link in fulfilment messages."""
    channels = Channels(
        email=SmtpMailer(
            SmtpConfig(
                host=settings.smtp_host,
                port=settings.smtp_port,
                security=settings.smtp_security,
                username=settings.smtp_username,
                password=settings.smtp_password,
                sender=settings.smtp_from,
                timeout_s=settings.smtp_timeout_s,
                verify_tls=settings.smtp_verify_tls,
            )
        )
        if settings.smtp_host
        else None,
        sms=HttpSmsGateway(SmsGatewayConfig(settings.sms_gateway_url, settings.sms_gateway_token))
        if settings.sms_gateway_url
        else None,
        webhook=HttpWebhookSender(WebhookConfig(timeout_s=settings.webhook_timeout_s)),
    )
    config = SenderConfig(
        max_attempts=settings.outbox_max_attempts,
        backoff_s=settings.outbox_backoff_s,
        backoff_max_s=settings.outbox_backoff_max_s,
        batch=settings.outbox_batch,
    )
    return OutboxSender(
        channels,
        config,
        receipt_url=lambda merchant_id, order_id: (
            settings.public_url + receipt_path(signing_key, merchant_id, order_id)
        ),
        webhook_secret=lambda merchant_id: webhook_secret(signing_key, merchant_id),
        open_secret=_endpoint_secret(box) if box is not None else None,
        unsubscribe_url=lambda merchant_id, address: (
            settings.public_url + unsubscribe_path(signing_key, merchant_id, address)
        ),
        order_url=order_url,
    )


def order_link(settings: Settings, db: Database, deps: Deps) -> Callable[[str, str], str]:
    """The customer's order page (``/c/{token}``, fulfilment/links.py), signed with the database's link
    key — the link the fulfilment API answers as ``customer_path`` and the page verifies."""

    def order_url(merchant_id: str, order_id: str) -> str:
        signer = fulfilment_keys.signer_for(db, deps)
        return settings.public_url + customer_path(signer, merchant_id, order_id)

    return order_url


def _endpoint_secret(box: SecretBox) -> Callable[[str, str], bytes]:
    """A merchant endpoint's secret, sealed at rest, opened only to sign one message (endpoints.py)."""

    def open_secret(merchant_id: str, sealed: str) -> bytes:
        return endpoints.open_secret(box, merchant_id, sealed)

    return open_secret


def provider_factory(settings: Settings) -> ProviderFactory:
    """Build the production adapters from a merchant's stored account settings."""

    def make(provider: str, config: dict[str, Any]) -> PaymentProvider:
        if provider == "wechat":
            return WeChatPayProvider(WeChatAccount(**_known(WeChatAccount, config, settings)))
        return AlipayProvider(AlipayAccount(**_known(AlipayAccount, config, settings)))

    return make


def _known(cls: type, config: dict[str, Any], settings: Settings) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    chosen = {k: v for k, v in config.items() if k in names}
    if "timeout_s" in names and "timeout_s" not in chosen:
        chosen["timeout_s"] = settings.provider_timeout_s
    return chosen


def build(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    factory: ProviderFactory | None = None,
) -> Container:
    wire_areas()
    settings = settings or Settings.from_env()
    if settings.is_sqlite:
        settings.home.mkdir(parents=True, exist_ok=True)
    sql_engine = make_engine(
        settings.database_url, sqlite_synchronous=settings.sqlite_synchronous, pool_size=settings.db_pool_size
    )
    if clock is None:
        clock = SystemClock()
        if settings.clock_speed != 1 or settings.clock_start:
            start = datetime.fromisoformat(settings.clock_start) if settings.clock_start else None
            clock = ScaledClock(settings.clock_speed, settings.clock_origin or time.time(), start)
    # The keyring is read lazily: a missing or wrong key is an error only where a secret is used.
    box = AesGcmSecretBox(FileKeyring(settings.home, settings.secret_key))
    directory = ProviderDirectory(factory or provider_factory(settings), box)
    # The safety-net look at an attempt comes after the adapters' pay timeout has surely passed.
    guard = timedelta(seconds=settings.provider_timeout_s * settings.clock_speed + 15)
    # Reconciliation asks the engine to look at an attempt through deps, and hears how a late payment
    # ended through the engine's outcome hook (reconciliation/outcomes.py).
    # A held Idempotency-Key's lease is measured on Tillit's clock, which may run faster than real time.
    holder = KeyHolder(lease=timedelta(seconds=settings.key_lease_s * settings.clock_speed))
    deps = Deps(
        clock=clock,
        ids=IdGenerator(clock, rng),
        secrets=box,
        resolve_attempt=trigger_resolution,
        holder=holder,
    )
    engine_cfg = EngineConfig(
        providers=directory, pay_guard=guard, on_late_payment_outcome=[late_payment_handler(deps)]
    )
    signing_key = load_signing_key(settings.home, settings.signing_key)
    merchants_cfg = merchants_config(settings)
    onboarding.configure(merchants_cfg)
    db = Database(sql_engine)
    return Container(
        settings=settings,
        db=db,
        deps=deps,
        engine=engine_cfg,
        gateway=EngineGateway(engine_cfg),
        outbox=build_outbox(settings, signing_key, box, order_link(settings, db, deps)),
        signing_key=signing_key,
        merchants=merchants_cfg,
    )


def merchants_config(settings: Settings) -> MerchantsConfig:
    """The merchants area's adapters: files and the matching key under TILLIT_HOME; onboarding endpoints
    from TILLIT_ONBOARDING_WECHAT_URL / TILLIT_ONBOARDING_ALIPAY_URL (the sandbox, here)."""
    clients: dict[str, OnboardingClient] = {}
    if url := os.environ.get("TILLIT_ONBOARDING_WECHAT_URL"):
        clients["wechat"] = WeChatOnboarding(url, settings.provider_timeout_s)
    if url := os.environ.get("TILLIT_ONBOARDING_ALIPAY_URL"):
        clients["alipay"] = AlipayOnboarding(url, settings.provider_timeout_s)
    return MerchantsConfig(
        hasher=KeyedHasher(settings.home, os.environ.get("TILLIT_MATCH_KEY")),
        files=LocalFileStore(settings.home / "files"),
        four_eyes=os.environ.get("TILLIT_FOUR_EYES", "1") != "0",
        onboarding=clients,
    )
