"""Statements fetched from the providers, not only uploaded (docs/settlement.md).

For a merchant-day, each connected provider account's adapter downloads the day's statement over the
provider's own protocol — WeChat ``/pay/downloadfundflow`` (BASIC account, HMAC-SHA256, gzip), Alipay
``alipay.data.dataservice.bill.downloadurl.query`` with ``bill_type=signcustomer`` then the 30-second
ZIP URL (operations.md §1.1, §2.1) — and imports it with ``service.import_statement`` under the name
``<source>_<yyyymmdd>``. A day already fetched answers ``already`` without downloading again (a past
day's statement is final); the import itself is idempotent on the file's hash and each line's own id.

Each (provider, day) ends as one of:

* ``imported`` — new lines stored; ``already`` — the same file (or its lines) was there;
* ``no_movement`` — WeChat's ``NO_BILL_EXIST``: nothing moved in the account that day;
* ``not_ready`` — the provider has not generated it yet (``BILL_CREATING``, Alipay's
  ``isp.bill_not_exist``): the daily job tries again later, it is not an error;
* ``failed`` — any other download or parse failure, with its code (the daily job retries it too and
  the operator sees it; nothing is imported from a file that does not parse).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Protocol, TypedDict, runtime_checkable

import structlog
from sqlalchemy import Connection, select

from tillit.adapters.db.engine import Database
from tillit.adapters.db.schema import provider_accounts, settlement_statements
from tillit.adapters.providers.http import BillDownloadError, StatementFile, StatementNotReady
from tillit.domain.errors import DomainError, invalid
from tillit.kernel.context import Deps
from tillit.settlement import service

log = structlog.get_logger("tillit.settlement.fetch")

#: The statement source each provider's adapter delivers.
SOURCE_OF = {"wechat": "wechat_fundflow", "alipay": "alipay_account"}
OUTCOMES = ("imported", "already", "no_movement", "not_ready", "failed")


@runtime_checkable
class StatementSource(Protocol):
    """What an adapter offers to fetch a day's fund-flow / account statement (both production
    adapters implement it): raw bytes (or a StatementFile with the provider's digest of them), None
    when nothing moved, StatementNotReady while not built."""

    def download_statement(self, bill_date: date) -> bytes | StatementFile | None: ...


class AdapterDirectory(Protocol):
    """payments/accounts.py ``ProviderDirectory`` as this module uses it."""

    def get(self, conn: Connection, merchant_id: str, provider: str) -> object: ...


class FetchView(TypedDict):
    provider: str
    day: str
    source: str
    outcome: str
    statement_id: str | None
    new_lines: int
    code: str | None


@dataclass(frozen=True, slots=True)
class Fetched:
    provider: str
    day: date
    outcome: str
    statement_id: str | None = None
    new_lines: int = 0
    code: str | None = None

    def view(self) -> FetchView:
        return {
            "provider": self.provider,
            "day": self.day.isoformat(),
            "source": SOURCE_OF[self.provider],
            "outcome": self.outcome,
            "statement_id": self.statement_id,
            "new_lines": self.new_lines,
            "code": self.code,
        }


def no_providers() -> AdapterDirectory:
    """For an entry point built without a payment engine: nothing can be fetched."""
    raise invalid("providers_not_configured", "This process has no provider adapters configured.")


def connected_providers(db: Database, merchant_id: str) -> list[str]:
    with db.read() as conn:
        rows = conn.execute(
            select(provider_accounts.c.provider).where(provider_accounts.c.merchant_id == merchant_id)
        )
        return sorted(str(r[0]) for r in rows if r[0] in SOURCE_OF)


def fetch_day(
    db: Database,
    deps: Deps,
    directory: AdapterDirectory,
    *,
    merchant_id: str,
    provider: str,
    day: date,
    actor: str,
) -> Fetched:
    """Download and import one provider account's statement of ``day`` (see the module contract)."""
    if provider not in SOURCE_OF:
        raise invalid("invalid_provider", "provider must be wechat or alipay.", {"provider": provider})
    source = SOURCE_OF[provider]
    name = f"{source}_{day:%Y%m%d}"
    with db.read() as conn:
        # A provider's statement of a past day is final: fetched once, never again (its ZIP's member
        # times differ per download, so a second copy would otherwise be a second statement record).
        done = conn.execute(
            select(settlement_statements.c.id, settlement_statements.c.new_lines).where(
                settlement_statements.c.merchant_id == merchant_id,
                settlement_statements.c.source == source,
                settlement_statements.c.filename == name,
            )
        ).first()
        if done is not None:
            return Fetched(provider, day, "already", str(done.id), 0)
        try:
            adapter = directory.get(conn, merchant_id, provider)
        except DomainError as exc:  # e.g. the account's secrets cannot be opened: say so, go on
            return Fetched(provider, day, "failed", code=exc.code)
    if not isinstance(adapter, StatementSource):
        return Fetched(provider, day, "failed", code="not_supported")
    try:
        data = adapter.download_statement(day)
    except StatementNotReady as exc:
        return Fetched(provider, day, "not_ready", code=exc.code)
    except BillDownloadError as exc:
        log.warning("statement_fetch_failed", merchant=merchant_id, provider=provider, code=exc.code)
        return Fetched(provider, day, "failed", code=exc.code)
    if data is None:
        return Fetched(provider, day, "no_movement")
    digest: tuple[str, str] | None = None
    if isinstance(data, StatementFile):
        if data.hash_value is not None:
            digest = (data.hash_type or "SHA1", data.hash_value)
        data = data.data
    try:
        view = service.import_statement(
            db,
            deps,
            merchant_id=merchant_id,
            data=data,
            source=source,
            filename=name,
            actor=actor,
            digest=digest,
        )
    except DomainError as exc:  # a file that does not parse or match its digest: nothing is imported
        return Fetched(provider, day, "failed", code=exc.code)
    outcome = "imported" if view["created"] else "already"
    return Fetched(provider, day, outcome, view["id"], int(view["new_lines"]))


def fetch(
    db: Database,
    deps: Deps,
    directory: AdapterDirectory,
    *,
    merchant_id: str,
    day: date,
    actor: str,
    provider: str | None = None,
) -> list[Fetched]:
    """Every connected account's statement of ``day`` (or only ``provider``'s)."""
    providers = connected_providers(db, merchant_id)
    if provider is not None:
        if provider not in SOURCE_OF:
            raise invalid("invalid_provider", "provider must be wechat or alipay.", {"provider": provider})
        providers = [p for p in providers if p == provider]
    return [
        fetch_day(db, deps, directory, merchant_id=merchant_id, provider=p, day=day, actor=actor)
        for p in providers
    ]
