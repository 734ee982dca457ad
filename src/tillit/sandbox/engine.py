"""Provider-neutral payment behaviour: wallets, payment codes, trades, refunds, ground truth.

The protocol modules (:mod:`wechat`, :mod:`alipay`) translate wire requests into calls here and
outcomes back into each provider's codes. Every method runs in one SQLite transaction, applies
due timeouts first (so provider time is honoured lazily even without the background task) and
either commits fully or raises/returns an outcome without writing.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from tillit.sandbox.clock import SandboxClock, from_ms, to_ms
from tillit.sandbox.config import SandboxConfig, WalletSpec
from tillit.sandbox.store import Store, next_seq, set_meta


class Outcome(StrEnum):
    """What an operation did, before any provider-specific wording."""

    OK = "OK"
    REPLAY = "REPLAY"  # the same request again: answered from the existing record
    MISMATCH = "MISMATCH"  # same merchant reference, other parameters
    TOMBSTONE = "TOMBSTONE"  # the reference was reversed/cancelled before any trade existed
    CODE_INVALID = "CODE_INVALID"
    CODE_EXPIRED = "CODE_EXPIRED"
    CODE_USED = "CODE_USED"
    NOT_FOUND = "NOT_FOUND"
    STATUS_ERROR = "STATUS_ERROR"
    PAID_ALREADY = "PAID_ALREADY"
    CLOSED_ALREADY = "CLOSED_ALREADY"
    USER_PAYING = "USER_PAYING"
    EXCEEDS = "EXCEEDS"
    TOO_MANY = "TOO_MANY"
    TOO_SOON = "TOO_SOON"
    EXPIRED = "EXPIRED"


class ControlError(Exception):
    """Bad input to the control API: mapped to a 4xx JSON error, nothing written."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


@dataclass(frozen=True)
class Trade:
    """A trade row as the protocol layers see it."""

    id: int
    provider: str
    merchant: str
    out_trade_no: str
    trade_no: str
    wallet_id: int | None
    amount_fen: int
    refunded_fen: int
    status: str
    fail_code: str | None
    reverse_action: str | None
    tombstone: bool
    params: dict[str, Any]
    extra: dict[str, Any]
    created: datetime
    paid: datetime | None
    closed: datetime | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Trade:
        return cls(
            id=row["id"],
            provider=row["provider"],
            merchant=row["merchant"],
            out_trade_no=row["out_trade_no"],
            trade_no=row["trade_no"],
            wallet_id=row["wallet_id"],
            amount_fen=row["amount_fen"],
            refunded_fen=row["refunded_fen"],
            status=row["status"],
            fail_code=row["fail_code"],
            reverse_action=row["reverse_action"],
            tombstone=bool(row["tombstone"]),
            params=json.loads(row["params"]),
            extra=json.loads(row["extra"]),
            created=from_ms(row["created_ms"]),
            paid=None if row["paid_ms"] is None else from_ms(row["paid_ms"]),
            closed=None if row["closed_ms"] is None else from_ms(row["closed_ms"]),
        )


@dataclass(frozen=True)
class Refund:
    """A refund (or the refund part of a reversal of a paid trade)."""

    id: int
    trade_id: int
    out_refund_no: str
    refund_no: str
    amount_fen: int
    kind: str
    status: str
    created: datetime
    success: datetime | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Refund:
        return cls(
            id=row["id"],
            trade_id=row["trade_id"],
            out_refund_no=row["out_refund_no"],
            refund_no=row["refund_no"],
            amount_fen=row["amount_fen"],
            kind=row["kind"],
            status=row["status"],
            created=from_ms(row["created_ms"]),
            success=None if row["success_ms"] is None else from_ms(row["success_ms"]),
        )


@dataclass(frozen=True)
class Wallet:
    """A customer wallet (the money side of the ground truth)."""

    id: int
    provider: str
    name: str
    balance_fen: int
    always_password: bool
    buyer_id: str
    logon_id: str
    #: how the customer pays (``FUNDING`` below): '' = the provider's default (WeChat ``OTHERS``,
    #: Alipay ``ALIPAYACCOUNT``)
    funding: str = ""

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Wallet:
        return cls(
            id=row["id"],
            provider=row["provider"],
            name=row["name"],
            balance_fen=row["balance_fen"],
            always_password=bool(row["always_password"]),
            buyer_id=row["buyer_id"],
            logon_id=row["logon_id"],
            funding=row["funding"],
        )

    def public(self) -> dict[str, Any]:
        """JSON view for the control API (never the password)."""
        return {
            "id": self.id,
            "provider": self.provider,
            "name": self.name,
            "balance_fen": self.balance_fen,
            "currency": "CNY",
            "always_password": self.always_password,
            "buyer_id": self.buyer_id,
            "logon_id": self.logon_id,
            "funding": self.funding or DEFAULT_FUNDING[self.provider],
        }


@dataclass(frozen=True)
class PayResult:
    """Outcome of a pay request; ``trade`` is set whenever a trade exists for the reference."""

    outcome: Outcome
    trade: Trade | None = None
    wallet: Wallet | None = None


@dataclass(frozen=True)
class ReverseResult:
    """Outcome of WeChat reverse / Alipay cancel."""

    outcome: Outcome
    trade: Trade | None = None
    action: str | None = None  # "close" | "refund" | None
    retry: bool = False


@dataclass(frozen=True)
class RefundResult:
    """Outcome of a refund request; ``fund_change`` is False on an idempotent replay."""

    outcome: Outcome
    trade: Trade | None = None
    refund: Refund | None = None
    fund_change: bool = False


def _dump(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


PROVIDER_CODE_PREFIXES = {"wechat": (10, 15), "alipay": (25, 30)}
# A wallet's funding source, as the provider reports it: WeChat ``bank_type`` (``CMB_DEBIT``,
# ``ICBC_CREDIT``, ``CFT`` 零钱 ...), Alipay ``fund_channel`` (``ALIPAYACCOUNT``, ``PCREDIT`` 花呗,
# ``BANKCARD:DEBIT_CARD`` / ``BANKCARD:CREDIT_CARD`` for a bank card with its ``fund_type``).
DEFAULT_FUNDING = {"wechat": "OTHERS", "alipay": "ALIPAYACCOUNT"}
FUNDING = {
    "wechat": re.compile(r"^[A-Z0-9_]{1,32}$"),
    "alipay": re.compile(r"^(?:[A-Z]{1,32}|BANKCARD:(?:DEBIT_CARD|CREDIT_CARD|MIXED_CARD))$"),
}
FUNDING_HELP = {
    "wechat": "funding must be a WeChat bank_type such as CMB_DEBIT, ICBC_CREDIT or CFT",
    "alipay": "funding must be an Alipay fund_channel such as ALIPAYACCOUNT, PCREDIT or BANKCARD:DEBIT_CARD",
}
MAX_WALLETS = 10_000
MAX_BALANCE_FEN = 10**12


class Engine:
    """All state changes of the sandbox. Thread-safe (one transaction at a time)."""

    def __init__(self, store: Store, config: SandboxConfig, clock: SandboxClock, rng: random.Random):
        self.store = store
        self.config = config
        self.clock = clock
        self.rng = rng  # ids and payment codes; never the fault RNG
        # Sandbox time never goes backwards across restarts.
        high = store.get_meta("clock_high_water_ms")
        if high is not None:
            clock.not_before(from_ms(int(high)))
        self._seed_wallets(config.wallets)

    # ----------------------------------------------------------------- helpers
    def now(self) -> datetime:
        """Current sandbox time."""
        return self.clock.now()

    def _stamp(self, conn: sqlite3.Connection, now: datetime) -> int:
        ms = to_ms(now)
        set_meta(conn, "clock_high_water_ms", str(ms))
        return ms

    def _digits(self, count: int) -> str:
        return "".join(str(self.rng.randrange(10)) for _ in range(count))

    def _trade_no(self, conn: sqlite3.Connection, provider: str, now: datetime) -> str:
        seq = next_seq(conn)
        day = now.strftime("%Y%m%d")
        if provider == "wechat":
            return f"4200{seq % 10**6:06d}{day}{self._digits(10)}"  # 28 digits like real ids
        return f"{day}22001{seq % 10**7:07d}{self._digits(8)}"  # 28 digits: date + 22001 + …

    def _refund_no(self, conn: sqlite3.Connection, provider: str) -> str:
        seq = next_seq(conn)
        if provider == "wechat":
            return f"50{seq % 10**8:08d}{self._digits(6)}"
        return f"R{seq % 10**8:08d}{self._digits(8)}"

    def _seed_wallets(self, specs: tuple[WalletSpec, ...]) -> None:
        for spec in specs:
            with self.store.tx() as conn:
                exists = conn.execute(
                    "SELECT 1 FROM wallets WHERE provider = ? AND name = ?", (spec.provider, spec.name)
                ).fetchone()
                if not exists:
                    self._insert_wallet(
                        conn,
                        spec.provider,
                        spec.name,
                        spec.balance_fen,
                        spec.password,
                        spec.always_password,
                        spec.funding,
                    )

    def _insert_wallet(
        self,
        conn: sqlite3.Connection,
        provider: str,
        name: str,
        balance: int,
        password: str,
        always: bool,
        funding: str = "",
    ) -> Wallet:
        seq = next_seq(conn)
        if provider == "wechat":
            alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
            buyer_id = "oUpF8" + "".join(self.rng.choice(alphabet) for _ in range(21)) + f"{seq % 100:02d}"
            logon_id = buyer_id
        else:
            buyer_id = f"2088{seq % 10**4:04d}{self._digits(8)}"
            logon_id = f"138{self._digits(8)}@qq.com"
        cur = conn.execute(
            "INSERT INTO wallets(provider, name, balance_fen, password, always_password, buyer_id, logon_id,"
            " created_ms, funding) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (provider, name, balance, password, int(always), buyer_id, logon_id, to_ms(self.now()), funding),
        )
        row = conn.execute("SELECT * FROM wallets WHERE id = ?", (cur.lastrowid,)).fetchone()
        return Wallet.from_row(row)

    def _trade_row(self, conn: sqlite3.Connection, trade_id: int) -> Trade:
        return Trade.from_row(conn.execute("SELECT * FROM trades WHERE id = ?", (trade_id,)).fetchone())

    def _find_trade(
        self,
        conn: sqlite3.Connection,
        provider: str,
        merchant: str,
        out_trade_no: str | None,
        trade_no: str | None,
        include_tombstone: bool = False,
    ) -> Trade | None:
        if trade_no:
            row = conn.execute(
                "SELECT * FROM trades WHERE provider = ? AND merchant = ? AND trade_no = ?",
                (provider, merchant, trade_no),
            ).fetchone()
        elif out_trade_no:
            row = conn.execute(
                "SELECT * FROM trades WHERE provider = ? AND merchant = ? AND out_trade_no = ?",
                (provider, merchant, out_trade_no),
            ).fetchone()
        else:
            return None
        if row is None:
            return None
        trade = Trade.from_row(row)
        if trade.tombstone and not include_tombstone:
            return None
        return trade

    def _pending_timeout(self, provider: str) -> int:
        b = self.config.behaviour
        return b.wechat_pending_timeout_seconds if provider == "wechat" else b.alipay_pending_timeout_seconds

    def _settle(self, conn: sqlite3.Connection, now: datetime) -> list[int]:
        """Apply every timeout that is due at ``now``; return ids of trades that changed."""
        now_ms = to_ms(now)
        changed: list[int] = []
        for row in conn.execute("SELECT * FROM trades WHERE status = 'PENDING'").fetchall():
            deadline = row["created_ms"] + self._pending_timeout(row["provider"]) * 1000
            if deadline <= now_ms:
                # WeChat auto-revokes an unpaid micropay at 45 s; Alipay closes the trade.
                status = "REVOKED" if row["provider"] == "wechat" else "CLOSED"
                conn.execute(
                    "UPDATE trades SET status = ?, fail_code = 'TIMEOUT', closed_ms = ? WHERE id = ?",
                    (status, deadline, row["id"]),
                )
                changed.append(row["id"])
        for row in conn.execute(
            "SELECT * FROM refunds WHERE status = 'PROCESSING' AND due_ms <= ?", (now_ms,)
        ).fetchall():
            self._complete_refund(conn, row["id"], row["due_ms"])
        return changed

    def _complete_refund(self, conn: sqlite3.Connection, refund_id: int, at_ms: int) -> None:
        refund = conn.execute("SELECT * FROM refunds WHERE id = ?", (refund_id,)).fetchone()
        trade = conn.execute("SELECT * FROM trades WHERE id = ?", (refund["trade_id"],)).fetchone()
        conn.execute("UPDATE refunds SET status = 'SUCCESS', success_ms = ? WHERE id = ?", (at_ms, refund_id))
        conn.execute(
            "UPDATE wallets SET balance_fen = balance_fen + ? WHERE id = ?",
            (refund["amount_fen"], trade["wallet_id"]),
        )
        conn.execute(
            "INSERT INTO ledger(wallet_id, trade_id, refund_id, kind, amount_fen, at_ms)"
            " VALUES (?, ?, ?, 'refund', ?, ?)",
            (trade["wallet_id"], trade["id"], refund_id, refund["amount_fen"], at_ms),
        )

    def _debit(
        self, conn: sqlite3.Connection, trade_id: int, wallet_id: int, amount: int, now_ms: int
    ) -> None:
        conn.execute("UPDATE wallets SET balance_fen = balance_fen - ? WHERE id = ?", (amount, wallet_id))
        conn.execute("UPDATE trades SET status = 'PAID', paid_ms = ? WHERE id = ?", (now_ms, trade_id))
        conn.execute(
            "INSERT INTO ledger(wallet_id, trade_id, refund_id, kind, amount_fen, at_ms)"
            " VALUES (?, ?, NULL, 'debit', ?, ?)",
            (wallet_id, trade_id, amount, now_ms),
        )

    def tick(self) -> list[int]:
        """Apply due timeouts now (the background task calls this); returns changed trade ids."""
        with self.store.tx() as conn:
            now = self.now()
            self._stamp(conn, now)
            return self._settle(conn, now)

    # ----------------------------------------------------------------- wallets and codes
    def create_wallet(
        self,
        provider: str,
        name: str,
        balance_fen: int,
        password: str = "123456",
        always_password: bool = False,
        funding: str = "",
    ) -> Wallet:
        """Create a wallet; ControlError on bad input or a duplicate name."""
        if provider not in PROVIDER_CODE_PREFIXES:
            raise ControlError(422, "invalid_provider", "provider must be 'wechat' or 'alipay'")
        if not name or len(name) > 64:
            raise ControlError(422, "invalid_name", "name must be 1-64 characters")
        if not 0 <= balance_fen <= MAX_BALANCE_FEN:
            raise ControlError(422, "invalid_amount", f"balance_fen must be between 0 and {MAX_BALANCE_FEN}")
        if not (password.isdigit() and len(password) == 6):
            raise ControlError(422, "invalid_password", "password must be 6 digits")
        if funding and not FUNDING[provider].match(funding):
            raise ControlError(422, "invalid_funding", FUNDING_HELP[provider])
        with self.store.tx() as conn:
            if conn.execute(
                "SELECT 1 FROM wallets WHERE provider = ? AND name = ?", (provider, name)
            ).fetchone():
                raise ControlError(409, "wallet_exists", f"a {provider} wallet named {name!r} exists")
            if conn.execute("SELECT count(*) FROM wallets").fetchone()[0] >= MAX_WALLETS:
                raise ControlError(422, "too_many_wallets", f"at most {MAX_WALLETS} wallets")
            return self._insert_wallet(conn, provider, name, balance_fen, password, always_password, funding)

    def wallets(self) -> list[Wallet]:
        """Every wallet, oldest first."""
        with self.store.lock:
            rows = self.store.conn.execute("SELECT * FROM wallets ORDER BY id").fetchall()
        return [Wallet.from_row(r) for r in rows]

    def wallet(self, wallet_id: int) -> Wallet:
        """One wallet; ControlError 404 if unknown."""
        with self.store.lock:
            row = self.store.conn.execute("SELECT * FROM wallets WHERE id = ?", (wallet_id,)).fetchone()
        if row is None:
            raise ControlError(404, "wallet_not_found", f"no wallet {wallet_id}")
        return Wallet.from_row(row)

    def top_up(self, wallet_id: int, amount_fen: int) -> Wallet:
        """Add money to a wallet (not a provider operation; outside the ground-truth ledger)."""
        if not 0 < amount_fen <= MAX_BALANCE_FEN:
            raise ControlError(422, "invalid_amount", "amount_fen must be positive")
        self.wallet(wallet_id)
        with self.store.tx() as conn:
            conn.execute(
                "UPDATE wallets SET balance_fen = balance_fen + ? WHERE id = ?", (amount_fen, wallet_id)
            )
            return Wallet.from_row(
                conn.execute("SELECT * FROM wallets WHERE id = ?", (wallet_id,)).fetchone()
            )

    def issue_code(self, wallet_id: int) -> dict[str, Any]:
        """A fresh single-use payment code in the wallet's provider format."""
        wallet = self.wallet(wallet_id)
        low, high = PROVIDER_CODE_PREFIXES[wallet.provider]
        ttl = self.config.behaviour.code_ttl_seconds
        with self.store.tx() as conn:
            now = self.now()
            now_ms = self._stamp(conn, now)
            while True:
                # WeChat: 18 digits starting 10-15; Alipay: 18 digits (16-24 allowed) starting 25-30.
                code = f"{self.rng.randint(low, high)}{self._digits(16)}"
                if not conn.execute("SELECT 1 FROM codes WHERE code = ?", (code,)).fetchone():
                    break
            expires_ms = now_ms + ttl * 1000
            conn.execute(
                "INSERT INTO codes(code, wallet_id, issued_ms, expires_ms) VALUES (?, ?, ?, ?)",
                (code, wallet_id, now_ms, expires_ms),
            )
        return {
            "code": code,
            "wallet_id": wallet_id,
            "provider": wallet.provider,
            "issued_at": now.isoformat(),
            "expires_at": from_ms(expires_ms).isoformat(),
        }

    # ----------------------------------------------------------------- payments
    def pay(
        self,
        provider: str,
        merchant: str,
        out_trade_no: str,
        auth_code: str,
        amount_fen: int,
        params: dict[str, Any],
        extra: dict[str, Any],
    ) -> PayResult:
        """Take a barcode payment. ``params`` must match on a retry of the same ``out_trade_no``."""
        with self.store.tx() as conn:
            now = self.now()
            now_ms = self._stamp(conn, now)
            self._settle(conn, now)
            existing = self._find_trade(conn, provider, merchant, out_trade_no, None, include_tombstone=True)
            if existing is not None:
                if existing.tombstone:
                    return PayResult(Outcome.TOMBSTONE, existing)
                if existing.params != params:
                    return PayResult(Outcome.MISMATCH, existing)
                return PayResult(Outcome.REPLAY, existing)
            code = conn.execute("SELECT * FROM codes WHERE code = ?", (auth_code,)).fetchone()
            if code is None:
                return PayResult(Outcome.CODE_INVALID)
            wallet = Wallet.from_row(
                conn.execute("SELECT * FROM wallets WHERE id = ?", (code["wallet_id"],)).fetchone()
            )
            if wallet.provider != provider:
                return PayResult(Outcome.CODE_INVALID)
            if code["used_ms"] is not None:
                return PayResult(Outcome.CODE_USED)
            if code["expires_ms"] <= now_ms:
                return PayResult(Outcome.CODE_EXPIRED)
            trade_no = self._trade_no(conn, provider, now)
            if wallet.funding:  # how it is paid: what the answers, notifications and bills report
                extra = {**extra, "funding": wallet.funding}
            cur = conn.execute(
                "INSERT INTO trades(provider, merchant, out_trade_no, trade_no, wallet_id, amount_fen,"
                " status, params, extra, created_ms) VALUES (?, ?, ?, ?, ?, ?, 'PENDING', ?, ?, ?)",
                (
                    provider,
                    merchant,
                    out_trade_no,
                    trade_no,
                    wallet.id,
                    amount_fen,
                    _dump(params),
                    _dump(extra),
                    now_ms,
                ),
            )
            trade_id = int(cur.lastrowid or 0)
            conn.execute(
                "UPDATE codes SET used_ms = ?, trade_id = ? WHERE code = ?", (now_ms, trade_id, auth_code)
            )
            if wallet.balance_fen < amount_fen:
                conn.execute(
                    "UPDATE trades SET status = 'FAILED', fail_code = 'NOTENOUGH', closed_ms = ?"
                    " WHERE id = ?",
                    (now_ms, trade_id),
                )
            elif wallet.always_password or amount_fen > self.config.behaviour.password_threshold_fen:
                pass  # stays PENDING until the customer confirms or cancels, or it times out
            else:
                self._debit(conn, trade_id, wallet.id, amount_fen, now_ms)
            return PayResult(Outcome.OK, self._trade_row(conn, trade_id), wallet)

    def find_trade(
        self, provider: str, merchant: str, out_trade_no: str | None, trade_no: str | None
    ) -> Trade | None:
        """The trade for a reference after applying due timeouts (tombstones are invisible)."""
        with self.store.tx() as conn:
            now = self.now()
            self._stamp(conn, now)
            self._settle(conn, now)
            return self._find_trade(conn, provider, merchant, out_trade_no, trade_no)

    def pending_for_wallet(self, wallet_id: int) -> list[Trade]:
        """Trades waiting for this wallet's password, oldest first."""
        self.wallet(wallet_id)
        with self.store.tx() as conn:
            now = self.now()
            self._settle(conn, now)
            rows = conn.execute(
                "SELECT * FROM trades WHERE wallet_id = ? AND status = 'PENDING' ORDER BY id", (wallet_id,)
            ).fetchall()
        return [Trade.from_row(r) for r in rows]

    def _pending_target(self, conn: sqlite3.Connection, wallet_id: int, trade_no: str | None) -> sqlite3.Row:
        row: sqlite3.Row | None
        if trade_no:
            row = conn.execute(
                "SELECT * FROM trades WHERE wallet_id = ? AND trade_no = ?", (wallet_id, trade_no)
            ).fetchone()
            if row is None:
                raise ControlError(404, "trade_not_found", f"no trade {trade_no} for wallet {wallet_id}")
            if row["status"] != "PENDING":
                raise ControlError(409, "not_pending", f"trade {trade_no} is {row['status']}, not pending")
            return row
        row = conn.execute(
            "SELECT * FROM trades WHERE wallet_id = ? AND status = 'PENDING' ORDER BY id DESC LIMIT 1",
            (wallet_id,),
        ).fetchone()
        if row is None:
            raise ControlError(409, "no_pending_payment", f"wallet {wallet_id} has no payment waiting")
        return row

    def confirm(self, wallet_id: int, password: str, trade_no: str | None = None) -> Trade:
        """The customer enters the password: the pending payment is paid (or fails on balance).

        A wrong password changes nothing (the real password box stays open: USERPAYING).
        """
        wallet_row = self.wallet(wallet_id)
        with self.store.tx() as conn:
            now = self.now()
            now_ms = self._stamp(conn, now)
            self._settle(conn, now)
            row = self._pending_target(conn, wallet_id, trade_no)
            stored = conn.execute("SELECT password FROM wallets WHERE id = ?", (wallet_id,)).fetchone()
            if stored["password"] != password:
                raise ControlError(403, "wrong_password", "wrong payment password")
            balance = conn.execute("SELECT balance_fen FROM wallets WHERE id = ?", (wallet_id,)).fetchone()[0]
            if balance < row["amount_fen"]:
                conn.execute(
                    "UPDATE trades SET status = 'FAILED', fail_code = 'NOTENOUGH', closed_ms = ?"
                    " WHERE id = ?",
                    (now_ms, row["id"]),
                )
            else:
                self._debit(conn, row["id"], wallet_row.id, row["amount_fen"], now_ms)
                # The merchant got 10003 synchronously: Alipay tells it the outcome asynchronously.
                self._enqueue_notify(conn, self._trade_row(conn, row["id"]), "TRADE_SUCCESS", now_ms)
            return self._trade_row(conn, row["id"])

    def customer_cancel(self, wallet_id: int, trade_no: str | None = None) -> Trade:
        """The customer closes the password box: WeChat PAYERROR, Alipay trade closed."""
        self.wallet(wallet_id)
        with self.store.tx() as conn:
            now = self.now()
            now_ms = self._stamp(conn, now)
            self._settle(conn, now)
            row = self._pending_target(conn, wallet_id, trade_no)
            conn.execute(
                "UPDATE trades SET status = 'FAILED', fail_code = 'USER_CANCEL', closed_ms = ? WHERE id = ?",
                (now_ms, row["id"]),
            )
            return self._trade_row(conn, row["id"])

    # ----------------------------------------------------------------- reverse / cancel / close
    def reverse(
        self, provider: str, merchant: str, out_trade_no: str | None, trade_no: str | None
    ) -> ReverseResult:
        """WeChat reverse / Alipay cancel: close if unpaid, refund in full if paid.

        Unknown references are tombstoned so that a pay request arriving late (after the
        merchant gave up on it) cannot charge the customer.
        """
        behaviour = self.config.behaviour
        with self.store.tx() as conn:
            now = self.now()
            now_ms = self._stamp(conn, now)
            self._settle(conn, now)
            trade = self._find_trade(conn, provider, merchant, out_trade_no, trade_no, include_tombstone=True)
            closed_status = "REVOKED" if provider == "wechat" else "CLOSED"
            if trade is None:
                if not out_trade_no:
                    return ReverseResult(Outcome.NOT_FOUND)
                conn.execute(
                    "INSERT INTO trades(provider, merchant, out_trade_no, trade_no, wallet_id, amount_fen,"
                    " status, fail_code, reverse_action, tombstone, params, extra, created_ms, closed_ms)"
                    " VALUES (?, ?, ?, ?, NULL, 0, ?, 'REVERSED', 'close', 1, '{}', '{}', ?, ?)",
                    (
                        provider,
                        merchant,
                        out_trade_no,
                        self._trade_no(conn, provider, now),
                        closed_status,
                        now_ms,
                        now_ms,
                    ),
                )
                return ReverseResult(Outcome.TOMBSTONE, None, None, False)
            if trade.tombstone:
                return ReverseResult(Outcome.TOMBSTONE, None, None, False)
            if trade.status == "PENDING":
                if provider == "wechat" and behaviour.reverse_while_paying == "userpaying":
                    return ReverseResult(Outcome.USER_PAYING, trade, None, True)
                conn.execute(
                    "UPDATE trades SET status = ?, reverse_action = 'close', closed_ms = ? WHERE id = ?",
                    (closed_status, now_ms, trade.id),
                )
                return ReverseResult(Outcome.OK, self._trade_row(conn, trade.id), "close")
            if trade.status == "PAID":
                if provider == "wechat" and trade.paid and now - trade.paid > timedelta(days=7):
                    return ReverseResult(Outcome.EXPIRED, trade)
                remaining = trade.amount_fen - trade.refunded_fen
                if remaining > 0:
                    # Keyed on the provider trade number: never collides with a merchant refund number.
                    self._insert_refund(conn, trade, trade.trade_no, remaining, "reverse", now_ms, 0)
                conn.execute(
                    "UPDATE trades SET status = ?, reverse_action = 'refund', closed_ms = ? WHERE id = ?",
                    (closed_status, now_ms, trade.id),
                )
                return ReverseResult(Outcome.OK, self._trade_row(conn, trade.id), "refund")
            if trade.status == "FAILED":
                conn.execute(
                    "UPDATE trades SET status = ?, reverse_action = 'close', closed_ms = ? WHERE id = ?",
                    (closed_status, now_ms, trade.id),
                )
                return ReverseResult(Outcome.OK, self._trade_row(conn, trade.id), "close")
            # Already CLOSED/REVOKED: reversing again is idempotent.
            return ReverseResult(Outcome.REPLAY, trade, trade.reverse_action or "close")

    def close(
        self, provider: str, merchant: str, out_trade_no: str | None, trade_no: str | None
    ) -> ReverseResult:
        """WeChat closeorder / Alipay close: unpaid trades only."""
        with self.store.tx() as conn:
            now = self.now()
            now_ms = self._stamp(conn, now)
            self._settle(conn, now)
            trade = self._find_trade(conn, provider, merchant, out_trade_no, trade_no)
            if trade is None:
                return ReverseResult(Outcome.NOT_FOUND)
            if trade.status == "PAID":
                return ReverseResult(Outcome.PAID_ALREADY, trade)
            if trade.status in ("CLOSED", "REVOKED"):
                return ReverseResult(Outcome.CLOSED_ALREADY, trade)
            conn.execute(
                "UPDATE trades SET status = 'CLOSED', closed_ms = ? WHERE id = ?", (now_ms, trade.id)
            )
            return ReverseResult(Outcome.OK, self._trade_row(conn, trade.id), "close")

    def _enqueue_notify(self, conn: sqlite3.Connection, trade: Trade, status: str, now_ms: int) -> None:
        """Queue an Alipay async notification (first attempt due now) if the trade asked for one."""
        url = trade.extra.get("notify_url")
        if trade.provider != "alipay" or not url:
            return
        notify_id = f"{self._digits(8)}{next_seq(conn):08d}{self._digits(16)}"
        conn.execute(
            "INSERT INTO notifications(trade_id, url, params, notify_id, next_ms, created_ms)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (trade.id, url, _dump({"trade_status": status, "event_ms": now_ms}), notify_id, now_ms, now_ms),
        )

    # ----------------------------------------------------------------- refunds
    def _insert_refund(
        self,
        conn: sqlite3.Connection,
        trade: Trade,
        out_refund_no: str,
        amount: int,
        kind: str,
        now_ms: int,
        processing_seconds: int,
    ) -> int:
        due_ms = now_ms + processing_seconds * 1000
        cur = conn.execute(
            "INSERT INTO refunds(trade_id, out_refund_no, refund_no, amount_fen, kind, status, created_ms,"
            " due_ms)"
            " VALUES (?, ?, ?, ?, ?, 'PROCESSING', ?, ?)",
            (trade.id, out_refund_no, self._refund_no(conn, trade.provider), amount, kind, now_ms, due_ms),
        )
        refund_id = int(cur.lastrowid or 0)
        conn.execute("UPDATE trades SET refunded_fen = refunded_fen + ? WHERE id = ?", (amount, trade.id))
        if processing_seconds <= 0:
            self._complete_refund(conn, refund_id, now_ms)
        return refund_id

    def refund(
        self,
        provider: str,
        merchant: str,
        out_trade_no: str | None,
        trade_no: str | None,
        out_refund_no: str,
        amount_fen: int,
    ) -> RefundResult:
        """Refund part or all of a paid trade, idempotent on ``out_refund_no``."""
        behaviour = self.config.behaviour
        with self.store.tx() as conn:
            now = self.now()
            now_ms = self._stamp(conn, now)
            self._settle(conn, now)
            trade = self._find_trade(conn, provider, merchant, out_trade_no, trade_no)
            if trade is None:
                return RefundResult(Outcome.NOT_FOUND)
            row = conn.execute(
                "SELECT * FROM refunds WHERE trade_id = ? AND out_refund_no = ?", (trade.id, out_refund_no)
            ).fetchone()
            if row is not None:
                refund = Refund.from_row(row)
                if refund.amount_fen != amount_fen or refund.kind != "refund":
                    return RefundResult(Outcome.MISMATCH, trade, refund)
                return RefundResult(Outcome.REPLAY, trade, refund, fund_change=False)
            fully_refunded = trade.refunded_fen == trade.amount_fen
            if trade.status != "PAID" or (provider == "alipay" and fully_refunded):
                # A fully refunded Alipay trade is TRADE_CLOSED: its state, not the amount, refuses.
                return RefundResult(Outcome.STATUS_ERROR, trade)
            if amount_fen <= 0 or amount_fen > trade.amount_fen - trade.refunded_fen:
                return RefundResult(Outcome.EXCEEDS, trade)
            refunds = conn.execute(
                "SELECT count(*), max(created_ms) FROM refunds WHERE trade_id = ? AND kind = 'refund'",
                (trade.id,),
            ).fetchone()
            if refunds[0] >= behaviour.max_refunds:
                return RefundResult(Outcome.TOO_MANY, trade)
            if provider == "wechat":
                if trade.paid and now - trade.paid > timedelta(days=365):
                    return RefundResult(Outcome.EXPIRED, trade)
                last = refunds[1]
                if last is not None and now_ms - last < behaviour.wechat_refund_min_interval_seconds * 1000:
                    return RefundResult(Outcome.TOO_SOON, trade)
            processing = behaviour.wechat_refund_processing_seconds if provider == "wechat" else 0
            refund_id = self._insert_refund(
                conn, trade, out_refund_no, amount_fen, "refund", now_ms, processing
            )
            refund = Refund.from_row(
                conn.execute("SELECT * FROM refunds WHERE id = ?", (refund_id,)).fetchone()
            )
            after = self._trade_row(conn, trade.id)
            if after.refunded_fen == after.amount_fen:
                # A full refund closes an Alipay trade and is notified as TRADE_CLOSED (§2.6).
                self._enqueue_notify(conn, after, "TRADE_CLOSED", now_ms)
            return RefundResult(Outcome.OK, after, refund, fund_change=True)

    def refunds_of(self, trade_id: int) -> list[Refund]:
        """Refunds of a trade, oldest first (after completing any that are due)."""
        with self.store.tx() as conn:
            self._settle(conn, self.now())
            rows = conn.execute(
                "SELECT * FROM refunds WHERE trade_id = ? ORDER BY id", (trade_id,)
            ).fetchall()
        return [Refund.from_row(r) for r in rows]

    def find_refund(self, provider: str, merchant: str, refund_no: str) -> tuple[Trade, Refund] | None:
        """A refund by the provider's refund id."""
        with self.store.tx() as conn:
            self._settle(conn, self.now())
            row = conn.execute(
                "SELECT r.* FROM refunds r JOIN trades t ON t.id = r.trade_id"
                " WHERE t.provider = ? AND t.merchant = ? AND r.refund_no = ?",
                (provider, merchant, refund_no),
            ).fetchone()
            if row is None:
                return None
            return self._trade_row(conn, row["trade_id"]), Refund.from_row(row)

    def find_refund_by_out_no(
        self, provider: str, merchant: str, out_refund_no: str
    ) -> tuple[Trade, Refund] | None:
        """A refund by the merchant's refund number (unique per trade; first match wins)."""
        with self.store.tx() as conn:
            self._settle(conn, self.now())
            row = conn.execute(
                "SELECT r.* FROM refunds r JOIN trades t ON t.id = r.trade_id"
                " WHERE t.provider = ? AND t.merchant = ? AND r.out_refund_no = ? AND r.kind = 'refund'"
                " ORDER BY r.id LIMIT 1",
                (provider, merchant, out_refund_no),
            ).fetchone()
            if row is None:
                return None
            return self._trade_row(conn, row["trade_id"]), Refund.from_row(row)

    # ----------------------------------------------------------------- ground truth and bills
    def ledger(self, wallet_id: int) -> dict[str, Any]:
        """The wallet's true money movements: what tests compare Tillit against."""
        wallet = self.wallet(wallet_id)
        with self.store.tx() as conn:
            self._settle(conn, self.now())
            rows = conn.execute(
                "SELECT l.*, t.provider, t.merchant, t.out_trade_no, t.trade_no, r.out_refund_no,"
                " r.refund_no,"
                " r.kind AS refund_kind FROM ledger l JOIN trades t ON t.id = l.trade_id"
                " LEFT JOIN refunds r ON r.id = l.refund_id WHERE l.wallet_id = ? ORDER BY l.id",
                (wallet_id,),
            ).fetchall()
            wallet = Wallet.from_row(
                conn.execute("SELECT * FROM wallets WHERE id = ?", (wallet_id,)).fetchone()
            )
        debits, refunds = [], []
        for r in rows:
            entry = {
                "merchant": r["merchant"],
                "out_trade_no": r["out_trade_no"],
                "trade_no": r["trade_no"],
                "amount_fen": r["amount_fen"],
                "at": from_ms(r["at_ms"]).isoformat(),
            }
            if r["kind"] == "debit":
                debits.append(entry)
            else:
                entry.update(out_refund_no=r["out_refund_no"], refund_no=r["refund_no"], via=r["refund_kind"])
                refunds.append(entry)
        return {
            "wallet": wallet.public(),
            "debits": debits,
            "refunds": refunds,
            "total_debited_fen": sum(d["amount_fen"] for d in debits),
            "total_refunded_fen": sum(r["amount_fen"] for r in refunds),
        }

    def history(self, wallet_id: int, limit: int = 50) -> list[Trade]:
        """The wallet's trades, newest first."""
        with self.store.tx() as conn:
            self._settle(conn, self.now())
            rows = conn.execute(
                "SELECT * FROM trades WHERE wallet_id = ? ORDER BY id DESC LIMIT ?", (wallet_id, limit)
            ).fetchall()
        return [Trade.from_row(r) for r in rows]

    def trades_for_bill(
        self, provider: str, merchant: str, start: datetime, end: datetime
    ) -> tuple[list[Trade], list[tuple[Trade, Refund]]]:
        """Payments that succeeded in ``[start, end)`` and refunds initiated in it."""
        with self.store.tx() as conn:
            self._settle(conn, self.now())
            s, e = to_ms(start), to_ms(end)
            paid = conn.execute(
                "SELECT * FROM trades WHERE provider = ? AND merchant = ? AND paid_ms >= ? AND paid_ms < ?"
                " ORDER BY paid_ms, id",
                (provider, merchant, s, e),
            ).fetchall()
            refund_rows = conn.execute(
                "SELECT r.* FROM refunds r JOIN trades t ON t.id = r.trade_id WHERE t.provider = ?"
                " AND t.merchant = ? AND r.created_ms >= ? AND r.created_ms < ? ORDER BY r.created_ms, r.id",
                (provider, merchant, s, e),
            ).fetchall()
            refunds = [(self._trade_row(conn, r["trade_id"]), Refund.from_row(r)) for r in refund_rows]
        return [Trade.from_row(r) for r in paid], refunds

    def trades(self, provider: str | None = None, limit: int = 200) -> list[Trade]:
        """Recent non-tombstone trades, newest first (control API)."""
        with self.store.tx() as conn:
            self._settle(conn, self.now())
            if provider:
                rows = conn.execute(
                    "SELECT * FROM trades WHERE tombstone = 0 AND provider = ? ORDER BY id DESC LIMIT ?",
                    (provider, limit),
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT * FROM trades WHERE tombstone = 0 ORDER BY id DESC LIMIT ?", (limit,)
                ).fetchall()
        return [Trade.from_row(r) for r in rows]

    def wallet_of(self, trade: Trade) -> Wallet | None:
        """The wallet that paid (or tried to pay) a trade."""
        if trade.wallet_id is None:
            return None
        return self.wallet(trade.wallet_id)

    def advance_clock(self, seconds: float) -> datetime:
        """Move sandbox time forward and apply whatever became due."""
        if not 0 <= seconds <= 400 * 86400:
            raise ControlError(422, "invalid_seconds", "seconds must be between 0 and 34560000")
        self.clock.advance(seconds)
        self.tick()
        return self.now()
