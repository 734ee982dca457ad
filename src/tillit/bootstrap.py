"""The composition root: the one place where settings, database, clock, ids and providers are wired."""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from tillit.adapters.db.engine import Database, make_engine
from tillit.adapters.files import LocalFileStore
from tillit.adapters.matchkey import KeyedHasher
from tillit.adapters.providers.alipay import AlipayAccount, AlipayProvider
from tillit.adapters.providers.onboarding import AlipayOnboarding, WeChatOnboarding
from tillit.adapters.providers.wechat import WeChatAccount, WeChatPayProvider
from tillit.adapters.secrets import AesGcmSecretBox, FileKeyring
from tillit.config import Settings
from tillit.domain.clock import Clock, ScaledClock, SystemClock
from tillit.domain.ids import IdGenerator
from tillit.domain.provider import PaymentProvider
from tillit.exceptions import cases
from tillit.kernel.context import Deps
from tillit.merchants import lifecycle as merchant_lifecycle
from tillit.merchants import onboarding, review
from tillit.merchants.ports import MerchantsConfig, OnboardingClient
from tillit.payments import accounts, engine
from tillit.payments.accounts import ProviderDirectory, ProviderFactory
from tillit.payments.engine import EngineConfig, trigger_resolution
from tillit.payments.gateway import EngineGateway
from tillit.reconciliation import daily
from tillit.reconciliation.outcomes import late_payment_handler
from tillit.reconciliation.service import resolve_for_exception
from tillit.sales import payments as sales_payments
from tillit.sales.gateway import ProviderGateway


def wire_areas() -> None:
    """Let lower areas reach higher ones without importing them (docs/architecture.md): each hook is a
    handler a higher area registers here. Idempotent: every build() calls it."""
    cases.on_resolved("bill_", resolve_for_exception)  # a resolved bill exception closes its discrepancy
    accounts.on_account_connected(daily.ensure_scheduled)  # a connected account's bills are fetched daily
    engine.register_job_handler("reconcile_daily", daily.run_daily)  # the resolver runs that fetch
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
    merchants: MerchantsConfig | None = None  # documents' file store, matching key, onboarding clients


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
    deps = Deps(clock=clock, ids=IdGenerator(clock, rng), secrets=box, resolve_attempt=trigger_resolution)
    engine_cfg = EngineConfig(
        providers=directory, pay_guard=guard, on_late_payment_outcome=[late_payment_handler(deps)]
    )
    merchants_cfg = merchants_config(settings)
    onboarding.configure(merchants_cfg)
    return Container(
        settings=settings,
        db=Database(sql_engine),
        deps=deps,
        engine=engine_cfg,
        gateway=EngineGateway(engine_cfg),
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
