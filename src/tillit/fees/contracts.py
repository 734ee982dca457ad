"""Fee contract use cases (docs/settlement.md): create, end, list, and the contract in force on a day.

Contract: contracts are never edited. A new contract for the same merchant, provider and card kind ends
the one in force at its start day; a start on or before an existing contract's start is refused
(``contract_overlap``), so periods never overlap and history is kept. Every lookup is scoped by
merchant: another merchant's contract id answers like an unknown id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, TypedDict

from sqlalchemy import Connection, and_, insert, or_, select, update

from tillit.adapters.db.schema import fee_contracts, merchants
from tillit.domain.errors import conflict, invalid, not_found
from tillit.domain.fees import CARD_KINDS, MAX_RATE_PPM, fee_fen
from tillit.domain.settlement import DEFAULT_CYCLE_DAYS, MAX_CYCLE_DAYS
from tillit.kernel.context import Deps, iso

PROVIDERS = ("wechat", "alipay")


@dataclass(frozen=True, slots=True)
class Contract:
    """The terms in force: what reconciliation and settlement read."""

    id: str
    merchant_id: str
    provider: str
    card_kind: str
    rate_ppm: int
    cap_fen: int | None
    settle_days: int
    working_days: bool
    merchant_no: str | None
    merchant_name: str | None
    mcc: str | None
    effective_from: date
    effective_to: date | None

    def fee(self, amount: int) -> int:
        """The expected fee of one payment of ``amount`` fen under this contract."""
        return fee_fen(amount, self.rate_ppm, self.cap_fen)

    def covers(self, day: date) -> bool:
        return self.effective_from <= day and (self.effective_to is None or day < self.effective_to)


@dataclass(frozen=True, slots=True)
class ContractTerms:
    """What a person asks for when signing a contract (validated by ``create_contract``)."""

    provider: str
    rate_ppm: int
    effective_from: date
    card_kind: str = "any"
    cap_fen: int | None = None
    settle_days: int = DEFAULT_CYCLE_DAYS
    working_days: bool = False
    merchant_no: str | None = None
    merchant_name: str | None = None
    mcc: str | None = None
    effective_to: date | None = None
    note: str | None = None


class ContractView(TypedDict):
    id: str
    merchant_id: str
    provider: str
    card_kind: str
    rate_ppm: int
    cap_fen: int | None
    settle_days: int
    working_days: bool
    merchant_no: str | None
    merchant_name: str | None
    mcc: str | None
    effective_from: str
    effective_to: str | None
    note: str | None
    created_by: str
    created_at: str | None
    ended_by: str | None
    ended_at: str | None
    end_reason: str | None


def _contract(row: Mapping[Any, Any]) -> Contract:
    return Contract(
        id=row["id"],
        merchant_id=row["merchant_id"],
        provider=row["provider"],
        card_kind=row["card_kind"],
        rate_ppm=int(row["rate_ppm"]),
        cap_fen=None if row["cap_fen"] is None else int(row["cap_fen"]),
        settle_days=int(row["settle_days"]),
        working_days=bool(row["working_days"]),
        merchant_no=row["merchant_no"],
        merchant_name=row["merchant_name"],
        mcc=row["mcc"],
        effective_from=row["effective_from"],
        effective_to=row["effective_to"],
    )


def view(row: Mapping[Any, Any]) -> ContractView:
    return {
        "id": row["id"],
        "merchant_id": row["merchant_id"],
        "provider": row["provider"],
        "card_kind": row["card_kind"],
        "rate_ppm": int(row["rate_ppm"]),
        "cap_fen": row["cap_fen"],
        "settle_days": int(row["settle_days"]),
        "working_days": bool(row["working_days"]),
        "merchant_no": row["merchant_no"],
        "merchant_name": row["merchant_name"],
        "mcc": row["mcc"],
        "effective_from": row["effective_from"].isoformat(),
        "effective_to": row["effective_to"].isoformat() if row["effective_to"] else None,
        "note": row["note"],
        "created_by": row["created_by"],
        "created_at": iso(row["created_at"]),
        "ended_by": row["ended_by"],
        "ended_at": iso(row["ended_at"]),
        "end_reason": row["end_reason"],
    }


def _validate(terms: ContractTerms) -> None:
    if terms.provider not in PROVIDERS:
        raise invalid("contract_invalid", "provider must be wechat or alipay", {"field": "provider"})
    if terms.card_kind not in CARD_KINDS:
        raise invalid(
            "contract_invalid", f"card_kind must be one of {', '.join(CARD_KINDS)}", {"field": "card_kind"}
        )
    if not 0 <= terms.rate_ppm <= MAX_RATE_PPM:
        raise invalid(
            "contract_invalid", f"rate_ppm must be 0..{MAX_RATE_PPM} (0.38 % is 3800)", {"field": "rate_ppm"}
        )
    if terms.cap_fen is not None and terms.cap_fen <= 0:
        raise invalid("contract_invalid", "cap_fen must be positive (or absent)", {"field": "cap_fen"})
    if not 0 <= terms.settle_days <= MAX_CYCLE_DAYS:
        raise invalid(
            "contract_invalid", f"settle_days must be 0..{MAX_CYCLE_DAYS}", {"field": "settle_days"}
        )
    if terms.mcc is not None and not (len(terms.mcc) == 4 and terms.mcc.isdigit()):
        raise invalid("contract_invalid", "mcc must be 4 digits", {"field": "mcc"})
    if terms.effective_to is not None and terms.effective_to <= terms.effective_from:
        raise invalid(
            "contract_invalid", "effective_to must be after effective_from", {"field": "effective_to"}
        )


def create_contract(
    conn: Connection, deps: Deps, *, merchant_id: str, terms: ContractTerms, actor: str
) -> ContractView:
    """Sign ``terms`` for ``merchant_id``; the contract in force at its start ends that day."""
    _validate(terms)
    # Serialise contract changes per merchant (PostgreSQL row lock; SQLite writes are serial anyway).
    if (
        conn.execute(select(merchants.c.id).where(merchants.c.id == merchant_id).with_for_update()).first()
        is None
    ):
        raise not_found("merchant", merchant_id)
    key = and_(
        fee_contracts.c.merchant_id == merchant_id,
        fee_contracts.c.provider == terms.provider,
        fee_contracts.c.card_kind == terms.card_kind,
    )
    later = conn.execute(
        select(fee_contracts.c.id, fee_contracts.c.effective_from).where(
            key, fee_contracts.c.effective_from >= terms.effective_from
        )
    ).first()
    if later is not None:
        raise conflict(
            "contract_overlap",
            f"A contract for {terms.provider}/{terms.card_kind} already starts on "
            f"{later.effective_from.isoformat()}: a new one must start after it.",
            {"contract_id": later.id, "effective_from": later.effective_from.isoformat()},
        )
    now = deps.clock.now()
    conn.execute(
        update(fee_contracts)
        .where(
            key,
            or_(fee_contracts.c.effective_to.is_(None), fee_contracts.c.effective_to > terms.effective_from),
        )
        .values(
            effective_to=terms.effective_from,
            ended_by=actor[:100],
            ended_at=now,
            end_reason="superseded by a new contract",
        )
    )
    record = {
        "id": deps.ids.new(),
        "merchant_id": merchant_id,
        "provider": terms.provider,
        "card_kind": terms.card_kind,
        "rate_ppm": terms.rate_ppm,
        "cap_fen": terms.cap_fen,
        "settle_days": terms.settle_days,
        "working_days": 1 if terms.working_days else 0,
        "merchant_no": terms.merchant_no,
        "merchant_name": terms.merchant_name,
        "mcc": terms.mcc,
        "effective_from": terms.effective_from,
        "effective_to": terms.effective_to,
        "note": terms.note,
        "created_by": actor[:100],
        "created_at": now,
        "ended_by": None,
        "ended_at": None,
        "end_reason": None,
    }
    conn.execute(insert(fee_contracts).values(**record))
    return view(record)


def end_contract(
    conn: Connection,
    deps: Deps,
    *,
    merchant_id: str | None,
    contract_id: str,
    end_day: date,
    reason: str,
    actor: str,
) -> ContractView:
    """End a contract on ``end_day`` (exclusive). Ending before its start, or an ended one, is refused."""
    row = _row(conn, merchant_id, contract_id, lock=True)
    if row["ended_at"] is not None:
        raise conflict("contract_ended", "This contract has already ended.", {"contract_id": contract_id})
    if end_day <= row["effective_from"]:
        raise invalid("contract_invalid", "the end day must be after the start day", {"field": "end_day"})
    if row["effective_to"] is not None and end_day > row["effective_to"]:
        raise invalid(
            "contract_invalid", "a contract cannot be extended: sign a new one", {"field": "end_day"}
        )
    conn.execute(
        update(fee_contracts)
        .where(fee_contracts.c.id == row["id"])
        .values(
            effective_to=end_day, ended_by=actor[:100], ended_at=deps.clock.now(), end_reason=reason[:300]
        )
    )
    return view(_row(conn, merchant_id, contract_id))


def _row(
    conn: Connection, merchant_id: str | None, contract_id: str, *, lock: bool = False
) -> Mapping[Any, Any]:
    query = select(fee_contracts).where(fee_contracts.c.id == contract_id)
    if merchant_id is not None:
        query = query.where(fee_contracts.c.merchant_id == merchant_id)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    if row is None:
        raise not_found("fee_contract", contract_id)
    return row


def get_contract(conn: Connection, merchant_id: str | None, contract_id: str) -> ContractView:
    return view(_row(conn, merchant_id, contract_id))


def list_contracts(
    conn: Connection, merchant_id: str | None, *, provider: str | None = None
) -> list[ContractView]:
    query = select(fee_contracts).order_by(
        fee_contracts.c.merchant_id,
        fee_contracts.c.provider,
        fee_contracts.c.card_kind,
        fee_contracts.c.effective_from,
    )
    if merchant_id is not None:
        query = query.where(fee_contracts.c.merchant_id == merchant_id)
    if provider is not None:
        query = query.where(fee_contracts.c.provider == provider)
    return [view(r) for r in conn.execute(query.limit(1000)).mappings()]


def contracts_between(
    conn: Connection, merchant_id: str, provider: str, first: date, last: date
) -> list[Contract]:
    """Every contract of the merchant and provider in force on some day of ``first..last``."""
    rows = conn.execute(
        select(fee_contracts).where(
            fee_contracts.c.merchant_id == merchant_id,
            fee_contracts.c.provider == provider,
            fee_contracts.c.effective_from <= last,
            or_(fee_contracts.c.effective_to.is_(None), fee_contracts.c.effective_to > first),
        )
    ).mappings()
    return [_contract(r) for r in rows]


def in_force(contracts: list[Contract], day: date, card_kind: str = "any") -> Contract | None:
    """The contract for ``card_kind`` on ``day``, falling back to the ``any`` contract."""
    for kind in (card_kind, "any"):
        for contract in contracts:
            if contract.card_kind == kind and contract.covers(day):
                return contract
    return None


def contract_on(
    conn: Connection, merchant_id: str, provider: str, day: date, card_kind: str = "any"
) -> Contract | None:
    return in_force(contracts_between(conn, merchant_id, provider, day, day), day, card_kind)
