"""The database schema (SQLAlchemy Core). Invariants are enforced here as well as in the code.

Alembic migrations under ``migrations/versions`` are the source of truth for the live schema; this
module must match the head revision (``tests/integration/test_migrations.py`` checks it).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

ID = String(32)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and read back aware UTC, on SQLite (which keeps no zone) and PostgreSQL.

    Contract: an aware value is converted to UTC before it is bound; a naive value is refused with
    ``ValueError`` (which zone it meant cannot be known); a value read back with no zone (SQLite) is UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise ValueError(f"timestamp must be a datetime, got {type(value).__name__}")
        if value.utcoffset() is None:
            raise ValueError("naive datetime refused: timestamps must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


TS = UtcDateTime()
MONEY = BigInteger

merchants = Table(
    "merchants",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(20), nullable=False, server_default="active"),
    Column("created_at", TS, nullable=False),
    CheckConstraint("status IN ('active','suspended')", name="status"),
)

stores = Table(
    "stores",
    metadata,
    Column("id", ID, primary_key=True),
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("created_at", TS, nullable=False),
    UniqueConstraint("merchant_id", "name", name="uq_stores_merchant_name"),
)

terminals = Table(
    "terminals",
    metadata,
    Column("id", ID, primary_key=True),
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("store_id", ID, ForeignKey("stores.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("created_at", TS, nullable=False),
    UniqueConstraint("store_id", "name", name="uq_terminals_store_name"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", ID, primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("role", String(20), nullable=False),
    Column("merchant_id", ID, ForeignKey("merchants.id")),
    Column("terminal_id", ID, ForeignKey("terminals.id")),
    Column("name", String(200), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("revoked_at", TS),
    CheckConstraint("role IN ('admin','merchant','terminal')", name="role"),
    CheckConstraint(
        "(role = 'admin' AND merchant_id IS NULL AND terminal_id IS NULL)"
        " OR (role = 'merchant' AND merchant_id IS NOT NULL AND terminal_id IS NULL)"
        " OR (role = 'terminal' AND merchant_id IS NOT NULL AND terminal_id IS NOT NULL)",
        name="scope",
    ),
)

products = Table(
    "products",
    metadata,
    Column("id", ID, primary_key=True),
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("sku", String(64), nullable=False),
    Column("barcode", String(64)),
    Column("name", String(200), nullable=False),
    Column("price", MONEY, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("stock", BigInteger),
    Column("active", Integer, nullable=False, server_default="1"),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    UniqueConstraint("merchant_id", "sku", name="uq_products_merchant_sku"),
    UniqueConstraint("merchant_id", "barcode", name="uq_products_merchant_barcode"),
    CheckConstraint("price >= 0 AND price <= 1000000000000", name="price"),
    CheckConstraint("active IN (0, 1)", name="active"),
)

counters = Table(
    "counters",
    metadata,
    Column("merchant_id", ID, ForeignKey("merchants.id"), primary_key=True),
    Column("name", String(32), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

# Orders, payments, refunds and shifts carry client-chosen ids that are unique per merchant only: the key
# is (merchant_id, id), so another merchant's id is just an unused id here (no existence oracle), and
# every reference to them includes merchant_id, so no row can point at another merchant's object.
orders = Table(
    "orders",
    metadata,
    Column("id", ID, nullable=False),
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("store_id", ID, ForeignKey("stores.id"), nullable=False),
    Column("terminal_id", ID, ForeignKey("terminals.id")),
    Column("number", BigInteger, nullable=False),
    Column("status", String(20), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("subtotal", MONEY, nullable=False),
    Column("discount_total", MONEY, nullable=False),
    Column("total", MONEY, nullable=False),
    Column("paid_amount", MONEY, nullable=False, server_default="0"),
    Column("refunded_amount", MONEY, nullable=False, server_default="0"),
    Column("cancel_reason", String(32)),
    Column("note", String(500)),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    PrimaryKeyConstraint("merchant_id", "id", name="pk_orders"),
    UniqueConstraint("merchant_id", "number", name="uq_orders_merchant_number"),
    CheckConstraint("status IN ('open','paid','cancelled','refunded')", name="status"),
    CheckConstraint("total >= 0 AND subtotal >= 0 AND discount_total >= 0", name="totals_nonneg"),
    CheckConstraint("total = subtotal - discount_total", name="total_sum"),
    CheckConstraint("paid_amount >= 0 AND paid_amount <= total", name="paid_range"),
    CheckConstraint("refunded_amount >= 0 AND refunded_amount <= paid_amount", name="refund_range"),
    CheckConstraint("status <> 'paid' OR paid_amount = total", name="paid_full"),
    CheckConstraint(
        "cancel_reason IS NULL OR cancel_reason IN "
        "('customer_cancelled','cashier_cancelled','payment_failed','timeout','other')",
        name="cancel_reason",
    ),
    CheckConstraint("(status = 'cancelled') = (cancel_reason IS NOT NULL)", name="cancel_has_reason"),
)
Index("ix_orders_merchant_created", orders.c.merchant_id, orders.c.created_at)

order_lines = Table(
    "order_lines",
    metadata,
    Column("merchant_id", ID, primary_key=True),
    Column("order_id", ID, primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("product_id", ID, ForeignKey("products.id"), nullable=False),
    Column("sku", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("unit_price", MONEY, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("discount", MONEY, nullable=False),
    Column("amount", MONEY, nullable=False),
    CheckConstraint("quantity > 0 AND quantity <= 9999", name="quantity"),
    CheckConstraint("unit_price >= 0 AND discount >= 0", name="nonneg"),
    CheckConstraint("amount = unit_price * quantity - discount AND amount >= 0", name="amount"),
    ForeignKeyConstraint(
        ["merchant_id", "order_id"], ["orders.merchant_id", "orders.id"], name="fk_order_lines_order"
    ),
)

payments = Table(
    "payments",
    metadata,
    # Our attempt id; for provider methods it is the provider's out_trade_no and is never reused.
    Column("id", ID, nullable=False),
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("order_id", ID, nullable=False),
    Column("terminal_id", ID, ForeignKey("terminals.id")),
    Column("method", String(16), nullable=False),
    Column("provider", String(16)),
    Column("amount", MONEY, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),
    Column("tendered", MONEY),
    Column("change_due", MONEY),
    Column("refunded_amount", MONEY, nullable=False, server_default="0"),
    Column("provider_ref", String(64)),
    Column("payment_code_masked", String(32)),
    Column("failure_code", String(64)),
    Column("failure_message", String(500)),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("resolved_at", TS),
    # monitoring (migration 0010): wall-clock milliseconds the pay call took, for channel health.
    Column("pay_latency_ms", Integer),
    # settlement (migration 0017_settle21): the card kind the provider's paid answer named (WeChat
    # bank_type, Alipay fund_bill_list), for the expected fee of a card-kind contract; NULL = unknown.
    Column("card_kind", String(8)),
    CheckConstraint("method IN ('cash','wechat','alipay')", name="method"),
    CheckConstraint("card_kind IS NULL OR card_kind IN ('balance','debit','credit')", name="card_kind"),
    CheckConstraint(
        "status IN ('pending','unknown','reversing','captured','failed','reversed','refunded')", name="status"
    ),
    CheckConstraint("amount > 0", name="amount_pos"),
    CheckConstraint("refunded_amount >= 0 AND refunded_amount <= amount", name="refund_range"),
    CheckConstraint("refunded_amount = 0 OR status IN ('captured','refunded')", name="refund_captured"),
    CheckConstraint("status <> 'refunded' OR refunded_amount = amount", name="refunded_full"),
    CheckConstraint(
        "tendered IS NULL OR (method = 'cash' AND tendered >= amount AND change_due = tendered - amount)",
        name="cash_tender",
    ),
    CheckConstraint("method = 'cash' OR provider = method", name="provider_method"),
    PrimaryKeyConstraint("merchant_id", "id", name="pk_payments"),
    ForeignKeyConstraint(
        ["merchant_id", "order_id"], ["orders.merchant_id", "orders.id"], name="fk_payments_order"
    ),
)
Index("ix_payments_order", payments.c.order_id)
# One in-flight attempt per order, enforced by the database on both SQLite and PostgreSQL.
Index(
    "uq_payments_one_in_flight",
    payments.c.merchant_id,
    payments.c.order_id,
    unique=True,
    sqlite_where=text("status IN ('pending','unknown','reversing')"),
    postgresql_where=text("status IN ('pending','unknown','reversing')"),
)

refunds = Table(
    "refunds",
    metadata,
    # Our refund id; for providers it is out_refund_no / out_request_no and is reused on retry.
    Column("id", ID, nullable=False),
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("order_id", ID, nullable=False),
    Column("payment_id", ID, nullable=False),
    Column("amount", MONEY, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", String(500)),
    Column("provider_ref", String(64)),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    CheckConstraint("amount > 0", name="amount_pos"),
    CheckConstraint("status IN ('pending','processing','succeeded','failed')", name="status"),
    PrimaryKeyConstraint("merchant_id", "id", name="pk_refunds"),
    ForeignKeyConstraint(
        ["merchant_id", "order_id"], ["orders.merchant_id", "orders.id"], name="fk_refunds_order"
    ),
    ForeignKeyConstraint(
        ["merchant_id", "payment_id"], ["payments.merchant_id", "payments.id"], name="fk_refunds_payment"
    ),
)
Index("ix_refunds_payment", refunds.c.payment_id)
Index("ix_refunds_order", refunds.c.order_id)

events = Table(
    "events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("order_id", ID),
    Column("entity", String(16), nullable=False),
    Column("entity_id", ID, nullable=False),
    Column("from_status", String(24)),  # 24: fulfilment's awaiting_fulfilment
    Column("to_status", String(24), nullable=False),
    Column("actor", String(100), nullable=False),
    Column("reason", String(500)),
    Column("provider_ref", String(64)),
    Column("at", TS, nullable=False),
    CheckConstraint("entity IN ('order','payment','refund','fulfilment')", name="entity"),
    ForeignKeyConstraint(
        ["merchant_id", "order_id"], ["orders.merchant_id", "orders.id"], name="fk_events_order"
    ),
)
Index("ix_events_order", events.c.order_id, events.c.id)
Index("ix_events_entity", events.c.entity_id, events.c.id)

ledger_postings = Table(
    "ledger_postings",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("txn_id", ID, nullable=False),
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("order_id", ID, nullable=False),
    Column("payment_id", ID),
    Column("refund_id", ID),
    Column("account", String(64), nullable=False),
    Column("amount", MONEY, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("created_at", TS, nullable=False),
    CheckConstraint("amount <> 0", name="amount_nonzero"),
    CheckConstraint("kind IN ('capture','refund','fee')", name="kind"),  # fee: settle12, booked from bills
    ForeignKeyConstraint(
        ["merchant_id", "order_id"], ["orders.merchant_id", "orders.id"], name="fk_ledger_postings_order"
    ),
    ForeignKeyConstraint(
        ["merchant_id", "payment_id"],
        ["payments.merchant_id", "payments.id"],
        name="fk_ledger_postings_payment",
    ),
    ForeignKeyConstraint(
        ["merchant_id", "refund_id"], ["refunds.merchant_id", "refunds.id"], name="fk_ledger_postings_refund"
    ),
)
Index("ix_ledger_order", ledger_postings.c.order_id)
Index("ix_ledger_txn", ledger_postings.c.txn_id)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    # The caller's merchant id, or 'admin' for operator keys: keys never collide across merchants.
    Column("scope", String(32), nullable=False),
    Column("key", String(255), nullable=False),
    Column("method", String(8), nullable=False),
    Column("path", String(500), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("response_status", Integer),
    Column("response_body", Text),
    Column("created_at", TS, nullable=False),
    Column("locked_at", TS),
    # For multi-phase requests (provider calls): the resource the first request created.
    Column("resource_id", ID),
    # Who holds an in-flight key (the process's boot id) and until when, unless it renews the hold: a key
    # whose holder died is taken over once its lease has passed, not after a fixed long timeout.
    Column("holder", String(64)),
    Column("lease_until", TS),
    UniqueConstraint("scope", "key", name="uq_idempotency_scope_key"),
    CheckConstraint("status IN ('in_flight','done')", name="status"),
    CheckConstraint("status <> 'done' OR response_status IS NOT NULL", name="done_has_response"),
)
Index("ix_idempotency_created", idempotency_keys.c.created_at)

provider_accounts = Table(
    "provider_accounts",
    metadata,
    Column("merchant_id", ID, ForeignKey("merchants.id"), primary_key=True),
    Column("provider", String(16), primary_key=True),
    # The provider's id for the account (WeChat mch_id, Alipay app_id): routes notifications.
    Column("account_ref", String(64), nullable=False),
    # JSON settings including secrets (API key, private key): never returned by the API, never logged.
    Column("config", Text, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    CheckConstraint("provider IN ('wechat','alipay')", name="provider"),
    UniqueConstraint("provider", "account_ref", name="uq_provider_accounts_ref"),
)

# Due-dated recovery work. A job is claimed with a lease; an expired lease means its worker died and
# another may take it. Every job's provider call is safe to repeat (query, reverse, refund with the same
# refund number); a pay call is never made by a job.
jobs = Table(
    "jobs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("payment_id", ID),
    Column("refund_id", ID),
    Column("exception_id", ID),
    Column("state", String(16), nullable=False),
    Column("due_at", TS, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("lease_until", TS),
    Column("leased_by", String(64)),
    Column("last_error", String(500)),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    # monitoring (migration 0010): the request that scheduled the job, carried into the job's logs.
    Column("request_id", String(64)),
    CheckConstraint("state IN ('pending','done')", name="state"),
    CheckConstraint(
        "kind IN ('resolve_payment','reverse_payment','confirm_refund','refund_unattached',"
        "'reconcile_daily'"
        ",'fulfilment_timers'"  # fulfilment: SLA, reminder and auto-confirm (migration 0008)
        ",'evaluate_alerts'"  # monitoring (migration 0010)
        ",'merchant_review','onboarding_poll'"  # merchants: re-review, 进件 polling (migration 0011)
        ",'settlement_daily'"  # settle12: the daily settlement check (migration 0012)
        ")",
        name="kind",
    ),
    ForeignKeyConstraint(
        ["merchant_id", "payment_id"], ["payments.merchant_id", "payments.id"], name="fk_jobs_payment"
    ),
    ForeignKeyConstraint(
        ["merchant_id", "refund_id"], ["refunds.merchant_id", "refunds.id"], name="fk_jobs_refund"
    ),
)
Index("ix_jobs_due", jobs.c.state, jobs.c.due_at)
Index(
    "uq_jobs_one_pending_per_payment",
    jobs.c.kind,
    jobs.c.merchant_id,
    jobs.c.payment_id,
    unique=True,
    sqlite_where=text("state = 'pending' AND payment_id IS NOT NULL AND refund_id IS NULL"),
    postgresql_where=text("state = 'pending' AND payment_id IS NOT NULL AND refund_id IS NULL"),
)

# Whatever the engine cannot settle itself, with a recommended action; resolved by a manager (audited).
exceptions = Table(
    "exceptions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("merchant_id", ID, ForeignKey("merchants.id")),
    Column("kind", String(40), nullable=False),
    Column("status", String(16), nullable=False),
    Column("order_id", ID),
    Column("payment_id", ID),
    Column("refund_id", ID),
    Column("provider", String(16)),
    Column("provider_ref", String(64)),
    Column("amount", MONEY),
    Column("recommended_action", String(200), nullable=False),
    Column("details", Text),
    Column("created_at", TS, nullable=False),
    Column("resolved_at", TS),
    Column("resolved_by", String(100)),
    Column("resolution", String(500)),
    CheckConstraint("status IN ('open','resolved')", name="status"),
    CheckConstraint(
        "status = 'open' OR (resolved_at IS NOT NULL AND resolved_by IS NOT NULL)", name="resolved"
    ),
)
Index("ix_exceptions_merchant_status", exceptions.c.merchant_id, exceptions.c.status)

# Provider notifications, deduplicated by the provider's own id; kept as evidence.
notifications = Table(
    "notifications",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("provider", String(16), nullable=False),
    # The provider account (Alipay app_id) that sent it: notify ids are deduplicated per account.
    Column("account_ref", String(64), nullable=False),
    Column("notify_id", String(128), nullable=False),
    Column("merchant_id", ID, ForeignKey("merchants.id")),
    Column("out_trade_no", String(64)),
    Column("trade_status", String(32)),
    Column("amount", MONEY),
    Column("outcome", String(32), nullable=False),
    Column("payload", Text, nullable=False),
    Column("received_at", TS, nullable=False),
    UniqueConstraint("provider", "account_ref", "notify_id", name="uq_notifications_account_notify_id"),
)

# Till shifts: opened with a cash float, closed with the counted cash. Each close report (Z report) is
# numbered per terminal and carries the hash of the previous one, so a missing or altered report shows.
shifts = Table(
    "shifts",
    metadata,
    Column("id", ID, nullable=False),  # client-generated on the till; unique per merchant
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("terminal_id", ID, ForeignKey("terminals.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("opened_at", TS, nullable=False),
    Column("closed_at", TS),
    Column("opening_float", MONEY, nullable=False),
    Column("counted_cash", MONEY),
    Column("expected_cash", MONEY),
    Column("report", Text),  # the Z report as JSON, exactly as hashed
    Column("report_hash", String(64)),
    Column("prev_hash", String(64)),
    PrimaryKeyConstraint("merchant_id", "id", name="pk_shifts"),
    UniqueConstraint("terminal_id", "number", name="uq_shifts_terminal_number"),
    CheckConstraint("status IN ('open','closed')", name="status"),
    CheckConstraint("opening_float >= 0", name="float_nonneg"),
    CheckConstraint(
        "status = 'open' OR (closed_at IS NOT NULL AND counted_cash IS NOT NULL AND report_hash IS NOT NULL)",
        name="closed_complete",
    ),
)

# Reconciliation (docs/reconciliation.md): provider bills as imported, one run per bill, and every
# difference found with its recommended action and open/resolved state (who resolved it and why).
recon_bills = Table(
    "recon_bills",
    metadata,
    Column("id", ID, primary_key=True),
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("provider", String(16), nullable=False),
    Column("format", String(16), nullable=False),
    Column("bill_type", String(16), nullable=False),
    Column("bill_date", Date, nullable=False),
    Column("account", String(64)),
    Column("filename", String(255), nullable=False),
    # Re-importing the same content for the same merchant and provider changes nothing.
    Column("sha256", String(64), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("row_count", Integer, nullable=False),
    Column("totals", Text, nullable=False),
    Column("source", String(16), nullable=False),
    Column("imported_by", String(100), nullable=False),
    Column("imported_at", TS, nullable=False),
    UniqueConstraint("merchant_id", "provider", "sha256", name="uq_recon_bills_content"),
    CheckConstraint("provider IN ('wechat','alipay')", name="provider"),
    CheckConstraint("format IN ('wechat','alipay','csv')", name="format"),
    CheckConstraint("source IN ('fetch','upload','cli')", name="source"),
)
Index("ix_recon_bills_day", recon_bills.c.merchant_id, recon_bills.c.provider, recon_bills.c.bill_date)

recon_runs = Table(
    "recon_runs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("provider", String(16), nullable=False),
    # NULL when the provider had no bill for the day (no trades): the run still checks local payments.
    Column("bill_id", ID, ForeignKey("recon_bills.id"), unique=True),
    Column("bill_date", Date, nullable=False),
    Column("bill_type", String(16), nullable=False),
    Column("source", String(16), nullable=False),
    Column("line_count", Integer, nullable=False),
    Column("matched", Integer, nullable=False),
    Column("discrepancy_count", Integer, nullable=False),
    Column("counts", Text, nullable=False),  # JSON {class: count}
    Column("amounts", Text, nullable=False),  # JSON {class: amount in minor units}
    Column("started_at", TS, nullable=False),
    Column("finished_at", TS, nullable=False),
    Column("created_by", String(100), nullable=False),
    CheckConstraint("provider IN ('wechat','alipay')", name="provider"),
    CheckConstraint("line_count >= 0 AND matched >= 0 AND discrepancy_count >= 0", name="counts_nonneg"),
)
Index("ix_recon_runs_merchant_date", recon_runs.c.merchant_id, recon_runs.c.bill_date)

recon_discrepancies = Table(
    "recon_discrepancies",
    metadata,
    Column("id", ID, primary_key=True),
    Column("run_id", ID, ForeignKey("recon_runs.id"), nullable=False),
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("provider", String(16), nullable=False),
    Column("bill_date", Date, nullable=False),
    Column("disc_class", String(24), nullable=False),  # the class ('class' is an SQL keyword)
    Column("reason", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("line", Integer),  # the bill line; NULL for a local payment absent from the bill
    Column("kind", String(8), nullable=False),
    Column("out_trade_no", String(64)),
    Column("out_refund_no", String(64)),
    Column("trade_no", String(64)),
    Column("refund_no", String(64)),
    Column("payment_id", ID),
    Column("refund_id", ID),
    Column("order_id", ID),
    Column("local_amount", MONEY),
    Column("provider_amount", MONEY),
    Column("local_status", String(16)),
    Column("provider_status", String(16)),
    Column("provider_fee", BigInteger),  # in 0.00001 yuan, as the bill states it
    Column("expected_fee", BigInteger),  # at the merchant's contracted rate
    Column("local_at", TS),
    Column("provider_at", TS),
    Column("matched_by", String(16)),
    Column("action", String(24), nullable=False),
    Column("recommended_action", String(300), nullable=False),
    Column("exception_id", ID),
    Column("created_at", TS, nullable=False),
    Column("resolved_at", TS),
    Column("resolved_by", String(100)),
    Column("resolution", String(500)),
    CheckConstraint(
        "disc_class IN ('missing_at_provider','missing_locally','amount_mismatch','status_mismatch',"
        "'fee_mismatch','duplicate','timing')",
        name="class",
    ),
    CheckConstraint("status IN ('open','resolved')", name="status"),
    CheckConstraint("kind IN ('payment','refund','revoke')", name="kind"),
    CheckConstraint(
        "status = 'open' OR (resolved_at IS NOT NULL AND resolved_by IS NOT NULL)", name="resolved"
    ),
)
Index("ix_recon_discrepancies_run", recon_discrepancies.c.run_id, recon_discrepancies.c.disc_class)
Index(
    "ix_recon_discrepancies_merchant_status", recon_discrepancies.c.merchant_id, recon_discrepancies.c.status
)
Index("ix_recon_discrepancies_payment", recon_discrepancies.c.payment_id)
Index("ix_recon_discrepancies_exception", recon_discrepancies.c.exception_id)

# --------------------------------------------------------------------------- settlement area (settle12)
# Fees and settlement (docs/settlement.md): contracted fee rates with effective dates, the fee/跳码
# findings of each bill row that disagrees with its contract, imported fund-flow / account / bank
# statements line by line, and the outcome of each merchant-day's expected settlement.
fee_contracts = Table(
    "fee_contracts",
    metadata,
    Column("id", ID, primary_key=True),
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("provider", String(16), nullable=False),
    Column("card_kind", String(8), nullable=False),
    Column("rate_ppm", Integer, nullable=False),  # 0.38 % = 3800
    Column("cap_fen", MONEY),  # at most this fee per payment (NULL: no cap)
    Column("settle_days", Integer, nullable=False),  # T+N
    Column("working_days", Integer, nullable=False),  # 1: N counts Monday-Friday only
    # The registered identity the bills must show (NULL: not checked).
    Column("merchant_no", String(32)),
    Column("merchant_name", String(100)),
    Column("mcc", String(4)),
    Column("effective_from", Date, nullable=False),
    Column("effective_to", Date),  # exclusive; NULL: open-ended
    Column("note", String(300)),
    Column("created_by", String(100), nullable=False),
    Column("created_at", TS, nullable=False),
    # A contract is never edited: it is ended (audited) and a new one starts.
    Column("ended_by", String(100)),
    Column("ended_at", TS),
    Column("end_reason", String(300)),
    UniqueConstraint("merchant_id", "provider", "card_kind", "effective_from", name="uq_fee_contracts_start"),
    CheckConstraint("provider IN ('wechat','alipay')", name="provider"),
    CheckConstraint("card_kind IN ('any','balance','debit','credit')", name="card_kind"),
    CheckConstraint("rate_ppm >= 0 AND rate_ppm <= 100000", name="rate_range"),
    CheckConstraint("cap_fen IS NULL OR cap_fen > 0", name="cap_pos"),
    CheckConstraint("settle_days >= 0 AND settle_days <= 30", name="settle_days_range"),
    CheckConstraint("working_days IN (0, 1)", name="working_days_bool"),
    CheckConstraint("effective_to IS NULL OR effective_to > effective_from", name="period"),
    CheckConstraint("mcc IS NULL OR length(mcc) = 4", name="mcc_len"),
)

fee_findings = Table(
    "fee_findings",
    metadata,
    Column("id", ID, primary_key=True),
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("provider", String(16), nullable=False),
    Column("bill_id", ID, ForeignKey("recon_bills.id"), nullable=False),
    Column("bill_date", Date, nullable=False),
    Column("line", Integer, nullable=False),
    Column("finding_class", String(16), nullable=False),  # code_jump (跳码) or fee_mismatch
    Column("kind", String(8), nullable=False),
    Column("out_trade_no", String(64)),
    Column("amount", MONEY, nullable=False),
    Column("contract_id", ID, ForeignKey("fee_contracts.id"), nullable=False),
    Column("evidence", Text, nullable=False),  # JSON [{field, contracted, billed}]
    Column("billed_fee_e5", BigInteger),
    Column("expected_fee_e5", BigInteger, nullable=False),
    Column("leakage_e5", BigInteger, nullable=False),  # billed - expected (positive: merchant overpaid)
    Column("created_at", TS, nullable=False),
    UniqueConstraint("bill_id", "line", name="uq_fee_findings_line"),
    CheckConstraint("finding_class IN ('code_jump','fee_mismatch')", name="finding_class"),
    CheckConstraint("kind IN ('payment','refund','revoke')", name="kind"),
)
Index("ix_fee_findings_merchant_day", fee_findings.c.merchant_id, fee_findings.c.bill_date)

settlement_statements = Table(
    "settlement_statements",
    metadata,
    Column("id", ID, primary_key=True),
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("source", String(16), nullable=False),
    Column("provider", String(16)),  # NULL for a bank statement
    Column("filename", String(255), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("line_count", Integer, nullable=False),
    Column("new_lines", Integer, nullable=False),
    Column("totals", Text, nullable=False),
    Column("imported_by", String(100), nullable=False),
    Column("imported_at", TS, nullable=False),
    UniqueConstraint("merchant_id", "source", "sha256", name="uq_settlement_statements_content"),
    CheckConstraint("source IN ('wechat_fundflow','alipay_account','bank')", name="source"),
    CheckConstraint("line_count >= 0 AND new_lines >= 0", name="counts_nonneg"),
)

statement_lines = Table(
    "statement_lines",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("statement_id", ID, ForeignKey("settlement_statements.id"), nullable=False),
    Column("source", String(16), nullable=False),
    Column("provider", String(16), nullable=False),  # the provider whose money the line moves
    # The statement's own line id (资金流水单号, 账务流水号, the bank's reference): the import key.
    Column("line_key", String(64), nullable=False),
    Column("booked_at", TS, nullable=False),
    Column("booked_day", Date, nullable=False),  # China time
    Column("kind", String(12), nullable=False),
    Column("amount", MONEY, nullable=False),  # signed fen: + into the account, - out of it
    Column("fee", MONEY),  # the fee the line says it kept (fen), when it says so
    Column("out_trade_no", String(64)),  # our payment (or refund) id, when the line names it
    Column("business_no", String(64)),  # the provider's transaction / refund id
    Column("trade_day", Date),  # for bank lines: the settlement batch day the reference names
    Column("balance", MONEY),
    Column("note", String(300)),
    UniqueConstraint("merchant_id", "source", "line_key", name="uq_statement_lines_key"),
    CheckConstraint("source IN ('wechat_fundflow','alipay_account','bank')", name="source"),
    CheckConstraint("provider IN ('wechat','alipay')", name="provider"),
    CheckConstraint("kind IN ('income','refund','fee','fee_return','withdrawal','other')", name="kind"),
)
Index("ix_statement_lines_trade", statement_lines.c.merchant_id, statement_lines.c.out_trade_no)
Index("ix_statement_lines_day", statement_lines.c.merchant_id, statement_lines.c.booked_day)

settlement_days = Table(
    "settlement_days",
    metadata,
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("provider", String(16), nullable=False),
    Column("trade_day", Date, nullable=False),
    Column("due_day", Date, nullable=False),
    Column("payments", Integer, nullable=False),
    Column("refund_count", Integer, nullable=False),
    Column("gross", MONEY, nullable=False),
    Column("refunds", MONEY, nullable=False),
    Column("fees", MONEY, nullable=False),
    Column("fee_returns", MONEY, nullable=False),
    Column("expected", MONEY, nullable=False),
    Column("received", MONEY, nullable=False),
    Column("received_lines", Integer, nullable=False),
    Column("received_source", String(16)),
    Column("last_credit_day", Date),
    Column("status", String(12), nullable=False),
    Column("age_days", Integer, nullable=False),
    Column("next_action", String(400), nullable=False),
    Column("evidence", Text, nullable=False),  # JSON: trades without a credit, duplicated trades
    Column("checked_at", TS, nullable=False),
    PrimaryKeyConstraint("merchant_id", "provider", "trade_day", name="pk_settlement_days"),
    CheckConstraint("provider IN ('wechat','alipay')", name="provider"),
    CheckConstraint(
        "status IN ('pending','settled','late','short','missing','over','duplicate')", name="status"
    ),
    CheckConstraint("age_days >= 0", name="age_nonneg"),
)
Index("ix_settlement_days_status", settlement_days.c.merchant_id, settlement_days.c.status)

# --- monitoring (migration 0010): alert rules, alerts and their events (docs/monitoring.md) ---------------
# A rule belongs to one merchant; its kind and parameters are validated by domain/alerts.py.
alert_rules = Table(
    "alert_rules",
    metadata,
    Column("id", ID, nullable=False),
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("provider", String(16)),  # NULL: every provider
    Column("threshold", BigInteger, nullable=False),  # per mille for rates, a count or hours otherwise
    Column("window_minutes", Integer, nullable=False),
    Column("min_attempts", Integer, nullable=False),
    Column("channels", String(200), nullable=False),  # comma-separated: email:<addr> / webhook:<url>
    Column("active", Integer, nullable=False, server_default="1"),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    # The language of the rule's mails and webhook texts (bo13b).
    Column("locale", String(8), nullable=False, server_default="zh-CN"),
    PrimaryKeyConstraint("merchant_id", "id", name="pk_alert_rules"),
    UniqueConstraint("merchant_id", "name", name="uq_alert_rules_merchant_name"),
    CheckConstraint(
        "kind IN ('failure_rate','unknown_rate','provider_errors','failure_spike','open_exceptions',"
        "'recon_differences','not_credited')",
        name="kind",
    ),
    CheckConstraint("threshold >= 0 AND window_minutes > 0 AND min_attempts >= 0", name="bounds"),
    CheckConstraint("active IN (0, 1)", name="active"),
    CheckConstraint("locale IN ('zh-CN','en')", name="locale"),
)

# What each till last said of its own journal when it synced (bo13b): the entries still waiting there after
# that batch, so the sync backlog metric is the till's own count, not a guess from the server's side.
till_sync_reports = Table(
    "till_sync_reports",
    metadata,
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("terminal_id", ID, ForeignKey("terminals.id"), nullable=False),
    Column("queued", Integer, nullable=False),
    Column("reported_at", TS, nullable=False),
    PrimaryKeyConstraint("merchant_id", "terminal_id", name="pk_till_sync_reports"),
    CheckConstraint("queued >= 0", name="queued_nonneg"),
)

# Every edit of a rule, one row per changed field: who, when, the old and the new value (bo13b).
alert_rule_changes = Table(
    "alert_rule_changes",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("merchant_id", ID, nullable=False),
    Column("rule_id", ID, nullable=False),
    Column("field", String(32), nullable=False),
    Column("old_value", String(200)),
    Column("new_value", String(200)),
    Column("actor", String(100), nullable=False),
    Column("at", TS, nullable=False),
    ForeignKeyConstraint(
        ["merchant_id", "rule_id"],
        ["alert_rules.merchant_id", "alert_rules.id"],
        name="fk_alert_rule_changes_rule",
    ),
)
Index(
    "ix_alert_rule_changes_rule",
    alert_rule_changes.c.merchant_id,
    alert_rule_changes.c.rule_id,
    alert_rule_changes.c.id,
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", ID, nullable=False),
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("rule_id", ID, nullable=False),
    # What the alert is about (rule + provider); one alert per key stays open: firing again updates it.
    Column("dedup_key", String(120), nullable=False),
    Column("status", String(16), nullable=False),
    Column("value", BigInteger, nullable=False),
    Column("threshold", BigInteger, nullable=False),
    Column("message", String(500), nullable=False),
    Column("occurrences", Integer, nullable=False, server_default="1"),
    Column("opened_at", TS, nullable=False),
    Column("last_seen_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("resolved_at", TS),
    PrimaryKeyConstraint("merchant_id", "id", name="pk_alerts"),
    ForeignKeyConstraint(
        ["merchant_id", "rule_id"], ["alert_rules.merchant_id", "alert_rules.id"], name="fk_alerts_rule"
    ),
    CheckConstraint("status IN ('firing','acknowledged','resolved')", name="status"),
    CheckConstraint("(status = 'resolved') = (resolved_at IS NOT NULL)", name="resolved"),
    CheckConstraint("occurrences > 0", name="occurrences"),
)
Index(
    "uq_alerts_one_open",
    alerts.c.merchant_id,
    alerts.c.dedup_key,
    unique=True,
    sqlite_where=text("status <> 'resolved'"),
    postgresql_where=text("status <> 'resolved'"),
)
Index("ix_alerts_merchant_status", alerts.c.merchant_id, alerts.c.status)

alert_events = Table(
    "alert_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("merchant_id", ID, nullable=False),
    Column("alert_id", ID, nullable=False),
    Column("from_status", String(16)),
    Column("to_status", String(16), nullable=False),
    Column("actor", String(100), nullable=False),
    Column("reason", String(500)),
    Column("at", TS, nullable=False),
    ForeignKeyConstraint(
        ["merchant_id", "alert_id"], ["alerts.merchant_id", "alerts.id"], name="fk_alert_events_alert"
    ),
)
Index("ix_alert_events_alert", alert_events.c.merchant_id, alert_events.c.alert_id, alert_events.c.id)
# --- fulfilment (pickup and delivery, the customer page, disputes): docs/fulfilment.md ---------------

# The server key customer links are signed with (fulfilment/links.py): one row, made on first use, so
# every process on the database signs alike. Not merchant data: it belongs to the installation.
link_keys = Table(
    "link_keys",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("key_hex", String(128), nullable=False),
    Column("created_at", TS, nullable=False),
    CheckConstraint("length(key_hex) >= 64", name="key_length"),
)

# The keys terminals sign the QR link on their paper receipts with (domain/links.py till_receipt_*): only
# the key id is stored; the key is derived from the server key. One active key per terminal; a revoked
# key's links answer 404 (docs/notifications.md, "The QR on the paper receipt").
receipt_link_keys = Table(
    "receipt_link_keys",
    metadata,
    Column("id", ID, primary_key=True),
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("terminal_id", ID, ForeignKey("terminals.id"), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("revoked_at", TS),
)
Index(
    "ux_receipt_link_keys_active",
    receipt_link_keys.c.terminal_id,
    unique=True,
    sqlite_where=receipt_link_keys.c.revoked_at.is_(None),
    postgresql_where=receipt_link_keys.c.revoked_at.is_(None),
)

# A merchant's own webhook endpoint (notifications/endpoints.py): the URL its system receives Tillit's
# events at and the secret they are signed with, sealed at rest like provider secrets (never answered).
merchant_webhooks = Table(
    "merchant_webhooks",
    metadata,
    Column("merchant_id", ID, ForeignKey("merchants.id"), primary_key=True),
    Column("url", String(320), nullable=False),
    Column("secret_sealed", String(600), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    # ful21: the endpoint's public id (the back office's pages address it by id) and whether it is on.
    Column("id", ID, nullable=False, unique=True),
    Column("enabled", Integer, nullable=False, server_default="1"),
    CheckConstraint("enabled IN (0, 1)", name="enabled"),
)

fulfilment_settings = Table(
    "fulfilment_settings",
    metadata,
    Column("merchant_id", ID, ForeignKey("merchants.id"), primary_key=True),
    Column("auto_confirm_days", Integer, nullable=False),
    Column("reminder_hours", Integer, nullable=False),
    Column("ship_sla_hours", Integer, nullable=False),
    Column("updated_at", TS, nullable=False),
    CheckConstraint("auto_confirm_days BETWEEN 1 AND 90", name="auto_confirm_days"),
    CheckConstraint("reminder_hours BETWEEN 1 AND 168", name="reminder_hours"),
    CheckConstraint("ship_sla_hours BETWEEN 1 AND 720", name="ship_sla_hours"),
)

fulfilments = Table(
    "fulfilments",
    metadata,
    Column("id", ID, nullable=False),
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("order_id", ID, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("status", String(24), nullable=False),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("contact_name", String(120)),
    Column("contact_phone", String(32)),
    Column("contact_email", String(254)),
    Column("language", String(8), nullable=False),
    Column("address", String(300)),
    Column("note", String(500)),
    Column("carrier", String(40)),
    Column("tracking_number", String(64)),
    Column("confirmed_by", String(16)),
    Column("dispute_reason", String(24)),
    Column("dispute_note", String(500)),
    Column("resolution", String(16)),
    Column("refund_id", ID),
    Column("refund_amount", MONEY),
    Column("ship_due_at", TS),
    Column("confirm_due_at", TS),
    Column("remind_at", TS),
    Column("reminded_at", TS),
    Column("extended_at", TS),  # the buyer extended the auto-confirm once (domain/fulfilment.py)
    Column("sla_exception_id", ID),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    PrimaryKeyConstraint("merchant_id", "id", name="pk_fulfilments"),
    UniqueConstraint("merchant_id", "order_id", name="uq_fulfilments_merchant_order"),
    ForeignKeyConstraint(
        ["merchant_id", "order_id"], ["orders.merchant_id", "orders.id"], name="fk_fulfilments_order"
    ),
    CheckConstraint("kind IN ('pickup','delivery')", name="kind"),
    CheckConstraint(
        "status IN ('awaiting_fulfilment','ready','shipped','delivered','disputed','redelivering',"
        "'redelivered','confirmed','cancelled','refunded')",
        name="status",
    ),
    CheckConstraint("kind <> 'delivery' OR address IS NOT NULL", name="delivery_address"),
    CheckConstraint("contact_phone IS NOT NULL OR contact_email IS NOT NULL", name="contact"),
    CheckConstraint("language IN ('zh-CN','en')", name="language"),
    CheckConstraint(
        "confirmed_by IS NULL OR confirmed_by IN ('customer','cashier','auto')", name="confirmed_by"
    ),
    CheckConstraint("(status = 'confirmed') = (confirmed_by IS NOT NULL)", name="confirmed_has_who"),
    CheckConstraint(
        "dispute_reason IS NULL OR dispute_reason IN ('not_received','wrong_items','damaged_items')",
        name="dispute_reason",
    ),
    CheckConstraint("resolution IS NULL OR resolution IN ('redeliver','refund','cancel')", name="resolution"),
    CheckConstraint("refund_amount IS NULL OR refund_amount > 0", name="refund_positive"),
    CheckConstraint("status <> 'refunded' OR refund_amount IS NOT NULL", name="refunded_amount"),
    CheckConstraint(
        "status NOT IN ('shipped','redelivering') OR tracking_number IS NOT NULL", name="shipped_tracking"
    ),
)
Index("ix_fulfilments_merchant_status", fulfilments.c.merchant_id, fulfilments.c.status, fulfilments.c.id)

fulfilment_photos = Table(
    "fulfilment_photos",
    metadata,
    Column("id", ID, nullable=False),
    Column("merchant_id", ID, nullable=False),
    Column("fulfilment_id", ID, nullable=False),
    Column("media_type", String(16), nullable=False),
    Column("size", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", TS, nullable=False),
    PrimaryKeyConstraint("merchant_id", "id", name="pk_fulfilment_photos"),
    ForeignKeyConstraint(
        ["merchant_id", "fulfilment_id"],
        ["fulfilments.merchant_id", "fulfilments.id"],
        name="fk_fulfilment_photos_fulfilment",
    ),
    CheckConstraint("media_type IN ('image/jpeg','image/png','image/webp')", name="media_type"),
    CheckConstraint("size > 0 AND size <= 2097152", name="size"),
)
Index("ix_fulfilment_photos_fulfilment", fulfilment_photos.c.merchant_id, fulfilment_photos.c.fulfilment_id)
# --- notifications (issue 14: the outbox, recipients' consent, a customer's contact on an order) -------

outbox_messages = Table(
    "outbox_messages",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    # What happened (payment id, refund id, alert id ...): with the channel, the deduplication key.
    Column("event_id", String(64), nullable=False),
    Column("channel", String(8), nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("template", String(48), nullable=False),
    Column("locale", String(8), nullable=False),
    Column("params", Text, nullable=False),  # JSON of notifications.messages.MessageParams
    Column("status", String(12), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", TS, nullable=False),
    Column("lease_until", TS),
    Column("leased_by", String(64)),
    Column("last_error", String(500)),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("sent_at", TS),
    UniqueConstraint("merchant_id", "event_id", "channel", name="uq_outbox_messages_dedup"),
    CheckConstraint("channel IN ('email','sms','webhook')", name="channel"),
    CheckConstraint("locale IN ('zh-CN','en')", name="locale"),
    CheckConstraint("status IN ('pending','sent','dead','suppressed')", name="status"),
    CheckConstraint("attempts >= 0", name="attempts_nonneg"),
    CheckConstraint("status <> 'sent' OR sent_at IS NOT NULL", name="sent_has_time"),
)
Index("ix_outbox_messages_due", outbox_messages.c.status, outbox_messages.c.next_attempt_at)

outbox_consents = Table(
    "outbox_consents",
    metadata,
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("channel", String(8), nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("opted_in", Integer, nullable=False),  # 1 in, 0 out; the latest word of the recipient wins
    Column("source", String(32), nullable=False),
    Column("updated_at", TS, nullable=False),
    PrimaryKeyConstraint("merchant_id", "channel", "recipient", name="pk_outbox_consents"),
    CheckConstraint("channel IN ('email','sms','webhook')", name="channel"),
    CheckConstraint("opted_in IN (0, 1)", name="opted_in"),
)

order_contacts = Table(
    "order_contacts",
    metadata,
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("order_id", ID, nullable=False),
    Column("email", String(254)),
    Column("phone", String(20)),
    Column("locale", String(8), nullable=False),
    Column("created_at", TS, nullable=False),
    PrimaryKeyConstraint("merchant_id", "order_id", name="pk_order_contacts"),
    ForeignKeyConstraint(
        ["merchant_id", "order_id"], ["orders.merchant_id", "orders.id"], name="fk_order_contacts_order"
    ),
    CheckConstraint("email IS NOT NULL OR phone IS NOT NULL", name="has_address"),
    CheckConstraint("locale IN ('zh-CN','en')", name="locale"),
)

# --- merchants area (issue 12): lifecycle, documents, blacklist, limits, provider onboarding --------
MERCHANT_STATUS_SQL = "'applied','under_review','active','rejected','suspended','terminated'"

# One row per merchant: its lifecycle status (domain/states.py MERCHANT) and operating settings. The
# legacy merchants.status column is superseded by this one.
merchant_profiles = Table(
    "merchant_profiles",
    metadata,
    Column("merchant_id", ID, ForeignKey("merchants.id"), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("timezone", String(64), nullable=False, server_default="Asia/Shanghai"),
    Column("cash_when_suspended", Integer, nullable=False, server_default="1"),
    Column("status_reason", String(500)),
    Column("submitted_by", String(100)),
    Column("submitted_at", TS),
    Column("reviewed_at", TS),
    Column("next_review_on", Date),
    Column("contact_phone_hash", String(64)),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("updated_at", TS, nullable=False),
    CheckConstraint(f"status IN ({MERCHANT_STATUS_SQL})", name="status"),
    CheckConstraint("cash_when_suspended IN (0, 1)", name="cash_flag"),
)
Index("ix_merchant_profiles_status", merchant_profiles.c.status)

merchant_events = Table(
    "merchant_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("from_status", String(20)),
    Column("to_status", String(20), nullable=False),
    Column("actor", String(100), nullable=False),
    Column("reason", String(500)),
    Column("at", TS, nullable=False),
    CheckConstraint(f"to_status IN ({MERCHANT_STATUS_SQL})", name="to_status"),
)
Index("ix_merchant_events_merchant", merchant_events.c.merchant_id, merchant_events.c.id)

# Qualification documents. Identifiers that identify a person or an account are kept only masked and
# as a keyed hash (HMAC with the keyring's key), so they can be matched against the blacklist and are
# never readable; a credit code and an MCC are public and kept as they are.
merchant_documents = Table(
    "merchant_documents",
    metadata,
    Column("id", ID, primary_key=True),
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("kind", String(24), nullable=False),
    Column("status", String(12), nullable=False),
    Column("public_value", String(200)),
    Column("holder_name", String(200)),
    Column("number_masked", String(40)),
    Column("number_hash", String(64)),
    # sealed (AES-GCM, secret box) only to be sent to the providers' onboarding APIs, never shown
    Column("number_sealed", Text),
    Column("file_sha256", String(64)),
    Column("file_type", String(40)),
    Column("file_size", Integer),
    Column("expires_on", Date),
    Column("reject_reason", String(500)),
    Column("reviewed_by", String(100)),
    Column("reviewed_at", TS),
    Column("created_by", String(100), nullable=False),
    Column("created_at", TS, nullable=False),
    CheckConstraint(
        "kind IN ('business_licence','legal_rep_id','bank_account','category','store_photo',"
        "'special_licence')",
        name="kind",
    ),
    CheckConstraint("status IN ('pending','approved','rejected')", name="status"),
    CheckConstraint("status <> 'rejected' OR reject_reason IS NOT NULL", name="reject_reason"),
    CheckConstraint("file_size IS NULL OR file_size > 0", name="file_size"),
)
Index("ix_merchant_documents_merchant", merchant_documents.c.merchant_id, merchant_documents.c.kind)
Index("ix_merchant_documents_hash", merchant_documents.c.number_hash)

blacklist_entries = Table(
    "blacklist_entries",
    metadata,
    Column("id", ID, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("match_key", String(64), nullable=False),  # credit code, or keyed hash of ID / account / phone
    Column("shown", String(40), nullable=False),  # masked, for people
    Column("source", String(100), nullable=False),
    Column("reason", String(500), nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("removed_at", TS),
    Column("removed_by", String(100)),
    CheckConstraint("kind IN ('credit_code','id_number','bank_account','phone')", name="kind"),
)
Index("ix_blacklist_entries_match", blacklist_entries.c.kind, blacklist_entries.c.match_key)

# Limits: scope is 'merchant' or a terminal id; NULL means no limit of that kind.
merchant_limits = Table(
    "merchant_limits",
    metadata,
    Column("merchant_id", ID, ForeignKey("merchants.id"), primary_key=True),
    Column("scope", String(32), primary_key=True),
    Column("method", String(16), primary_key=True),
    Column("single_max", MONEY),
    Column("daily_max", MONEY),
    Column("monthly_max", MONEY),
    Column("updated_by", String(100), nullable=False),
    Column("updated_at", TS, nullable=False),
    CheckConstraint("method IN ('wechat','alipay')", name="method"),
    CheckConstraint(
        "(single_max IS NULL OR single_max > 0) AND (daily_max IS NULL OR daily_max > 0)"
        " AND (monthly_max IS NULL OR monthly_max > 0)",
        name="positive",
    ),
)

limit_changes = Table(
    "limit_changes",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("scope", String(32), nullable=False),
    Column("method", String(16), nullable=False),
    Column("before", Text),
    Column("after", Text),
    Column("actor", String(100), nullable=False),
    Column("reason", String(500), nullable=False),
    Column("at", TS, nullable=False),
)
Index("ix_limit_changes_merchant", limit_changes.c.merchant_id, limit_changes.c.id)

# Counters the limit check moves with one conditional UPDATE (used + amount <= max), so concurrent
# attempts can never together pass a limit; period is a merchant-local day (YYYY-MM-DD) or month.
limit_usage = Table(
    "limit_usage",
    metadata,
    Column("merchant_id", ID, ForeignKey("merchants.id"), primary_key=True),
    Column("scope", String(32), primary_key=True),
    Column("method", String(16), primary_key=True),
    Column("period", String(10), primary_key=True),
    Column("used", MONEY, nullable=False, server_default="0"),
    CheckConstraint("used >= 0", name="used"),
)

# What one attempt reserved, so a definite failure or a refund gives back exactly that, once.
limit_holds = Table(
    "limit_holds",
    metadata,
    Column("merchant_id", ID, ForeignKey("merchants.id"), primary_key=True),
    Column("payment_id", ID, primary_key=True),
    Column("method", String(16), nullable=False),
    Column("scopes", String(200), nullable=False),  # counters moved: "d:merchant m:<terminal id> ..."
    Column("day", String(10), nullable=False),
    Column("month", String(10), nullable=False),
    Column("amount", MONEY, nullable=False),
    Column("returned", MONEY, nullable=False, server_default="0"),
    CheckConstraint("amount > 0 AND returned >= 0 AND returned <= amount", name="amounts"),
)

# Provider onboarding (进件), keyed by our own business code; the raw provider state is kept verbatim.
onboarding_applications = Table(
    "onboarding_applications",
    metadata,
    Column("id", ID, primary_key=True),
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("provider", String(16), nullable=False),
    Column("business_code", String(124), nullable=False),
    Column("status", String(20), nullable=False),
    Column("raw_state", String(64)),
    Column("provider_ref", String(64)),
    Column("sub_merchant_id", String(64)),
    Column("sign_url", String(500)),
    Column("detail", Text),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    CheckConstraint("provider IN ('wechat','alipay')", name="provider"),
    CheckConstraint(
        "status IN ('submitted','auditing','rejected','to_be_confirmed','to_be_signed','finished',"
        "'cancelled')",
        name="status",
    ),
    CheckConstraint("status <> 'finished' OR sub_merchant_id IS NOT NULL", name="finished_has_id"),
    UniqueConstraint("provider", "business_code", name="uq_onboarding_applications_code"),
)
Index("ix_onboarding_applications_merchant", onboarding_applications.c.merchant_id)

# ---- backoffice (branch bo13): sign-in sessions of the back-office pages --------------------------------
# A session is a random token in an HttpOnly cookie; only its SHA-256 is stored here, never the API key.
# The key is re-checked on every request (a revoked key ends its sessions at once); sign-out deletes the row.
backoffice_sessions = Table(
    "backoffice_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("key_id", ID, ForeignKey("api_keys.id"), nullable=False),
    Column("merchant_id", ID, ForeignKey("merchants.id")),  # NULL for an operator (admin key)
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    CheckConstraint("expires_at > created_at", name="expiry_after_creation"),
)
Index("ix_backoffice_sessions_expires", backoffice_sessions.c.expires_at)
# The back office's Today page reads a day of payments and refunds per merchant (sales/reports.today).
Index("ix_payments_merchant_created", payments.c.merchant_id, payments.c.created_at)
Index("ix_refunds_merchant_created", refunds.c.merchant_id, refunds.c.created_at)

# --- till station (issue 17): product tiles, store till settings, manager PINs ---------------------------

# How a product shows on the till's touch grid, and its image (stored here, served by the server, cached
# by the till). One row per product that has any of it; a product without one is an uncategorised tile.
product_tiles = Table(
    "product_tiles",
    metadata,
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("product_id", ID, ForeignKey("products.id"), nullable=False),
    Column("category", String(60)),
    Column("tile_colour", String(7)),
    Column("favourite", Integer, nullable=False, server_default="0"),
    Column("sort_order", Integer, nullable=False, server_default="0"),
    Column("image_type", String(16)),
    Column("image_data", LargeBinary),
    Column("image_sha256", String(64)),
    Column("updated_at", TS, nullable=False),
    PrimaryKeyConstraint("merchant_id", "product_id", name="pk_product_tiles"),
    CheckConstraint("favourite IN (0, 1)", name="favourite"),
    CheckConstraint("sort_order BETWEEN -1000000 AND 1000000", name="sort_order"),
    CheckConstraint("tile_colour IS NULL OR length(tile_colour) = 7", name="tile_colour"),
    CheckConstraint(
        "(image_data IS NULL AND image_type IS NULL AND image_sha256 IS NULL)"
        " OR (image_data IS NOT NULL AND image_type IS NOT NULL AND image_sha256 IS NOT NULL)",
        name="image",
    ),
)
Index("ix_product_tiles_product", product_tiles.c.product_id)

# A store's till rules: the discount/price-change limit above which a manager's PIN is needed, and how
# 抹零 rounds the total down (to the jiao or the yuan, or not at all).
store_till_settings = Table(
    "store_till_settings",
    metadata,
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("store_id", ID, ForeignKey("stores.id"), nullable=False),
    Column("discount_limit_pct", Integer, nullable=False),
    Column("rounding", String(8), nullable=False),
    Column("updated_at", TS, nullable=False),
    PrimaryKeyConstraint("merchant_id", "store_id", name="pk_store_till_settings"),
    CheckConstraint("discount_limit_pct BETWEEN 0 AND 100", name="discount_limit_pct"),
    CheckConstraint("rounding IN ('none', 'jiao', 'yuan')", name="rounding"),
)

# Managers who may approve an over-limit discount or price change at a store's tills; only a salted
# PBKDF2 hash of the PIN is kept (the till receives it to check a PIN offline).
store_manager_pins = Table(
    "store_manager_pins",
    metadata,
    Column("merchant_id", ID, ForeignKey("merchants.id"), nullable=False),
    Column("store_id", ID, ForeignKey("stores.id"), nullable=False),
    Column("name", String(60), nullable=False),
    Column("pin_hash", String(200), nullable=False),
    Column("created_at", TS, nullable=False),
    PrimaryKeyConstraint("merchant_id", "store_id", "name", name="pk_store_manager_pins"),
)
