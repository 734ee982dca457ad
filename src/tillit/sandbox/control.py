"""The control API under ``/sandbox/`` (JSON; not part of either provider protocol).

Tests and the demo use it to play the customer (wallets, payment codes, password confirm or
cancel), to read the ground truth (a wallet's true debits and refunds), to set the fault profile
and to read or advance the sandbox clock. Bad input gets ``{"error": {"code", "message",
"details"}}`` with a 4xx status and writes nothing.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from tillit.sandbox.engine import ControlError, Trade
from tillit.sandbox.faults import FAULTS_META, FaultProfile, FaultProfileError
from tillit.sandbox.money import yuan
from tillit.sandbox.runtime import runtime
from tillit.sandbox.store import set_meta

router = APIRouter(prefix="/sandbox")

MAX_BODY = 64 * 1024


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ControlError(413, "body_too_large", f"request body over {MAX_BODY} bytes")
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ControlError(400, "invalid_json", f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ControlError(400, "invalid_json", "body must be a JSON object")
    return data


def _field(data: dict[str, Any], name: str, kind: type, default: Any = ...) -> Any:
    if name not in data:
        if default is not ...:
            return default
        raise ControlError(422, "missing_field", f"'{name}' is required", {"field": name})
    value = data[name]
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise ControlError(422, "invalid_field", f"'{name}' must be {kind.__name__}", {"field": name})
    return value


def _wallet_id(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 12:
        raise ControlError(404, "wallet_not_found", f"no wallet {raw!r}")
    return int(raw)


def trade_json(trade: Trade) -> dict[str, Any]:
    """A trade as the control API shows it (amounts in fen, plus yuan for humans)."""
    return {
        "provider": trade.provider,
        "merchant": trade.merchant,
        "out_trade_no": trade.out_trade_no,
        "trade_no": trade.trade_no,
        "wallet_id": trade.wallet_id,
        "amount_fen": trade.amount_fen,
        "amount_yuan": yuan(trade.amount_fen),
        "refunded_fen": trade.refunded_fen,
        "currency": "CNY",
        "status": trade.status,
        "fail_code": trade.fail_code,
        "reverse_action": trade.reverse_action,
        "subject": trade.extra.get("subject") or trade.extra.get("body") or "",
        # the sub-merchant the trade was paid to (WeChat sub_mch_id / Alipay 直付通 smid), if any
        "sub_merchant_id": trade.extra.get("sub_mch_id") or trade.extra.get("smid") or None,
        "created_at": trade.created.isoformat(),
        "paid_at": trade.paid.isoformat() if trade.paid else None,
        "closed_at": trade.closed.isoformat() if trade.closed else None,
    }


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    """Liveness plus the sandbox time."""
    return {"ok": True, "now": runtime(request).engine.now().isoformat()}


@router.post("/wallets", status_code=201)
async def create_wallet(request: Request) -> dict[str, Any]:
    """Create a wallet: ``{"provider", "name", "balance_fen", "password"?, "always_password"?,
    "funding"?}`` (``funding``: how it pays, engine.FUNDING — WeChat ``bank_type``, Alipay
    ``fund_channel``)."""
    data = await _body(request)
    wallet = runtime(request).engine.create_wallet(
        provider=_field(data, "provider", str),
        name=_field(data, "name", str),
        balance_fen=_field(data, "balance_fen", int),
        password=_field(data, "password", str, "123456"),
        always_password=_field(data, "always_password", bool, False),
        funding=_field(data, "funding", str, ""),
    )
    return wallet.public()


@router.get("/wallets")
async def list_wallets(request: Request) -> dict[str, Any]:
    """Every wallet."""
    return {"wallets": [w.public() for w in runtime(request).engine.wallets()]}


@router.get("/wallets/{wallet_id}")
async def get_wallet(request: Request, wallet_id: str) -> dict[str, Any]:
    """One wallet with its balance."""
    return runtime(request).engine.wallet(_wallet_id(wallet_id)).public()


@router.post("/wallets/{wallet_id}/topup")
async def top_up(request: Request, wallet_id: str) -> dict[str, Any]:
    """Add ``amount_fen`` to the balance (outside the provider ledger)."""
    data = await _body(request)
    return runtime(request).engine.top_up(_wallet_id(wallet_id), _field(data, "amount_fen", int)).public()


@router.post("/wallets/{wallet_id}/codes", status_code=201)
async def issue_code(request: Request, wallet_id: str) -> dict[str, Any]:
    """Issue a single-use payment code (expires after ``code_ttl_seconds`` of sandbox time)."""
    return runtime(request).engine.issue_code(_wallet_id(wallet_id))


@router.get("/wallets/{wallet_id}/pending")
async def pending(request: Request, wallet_id: str) -> dict[str, Any]:
    """Payments waiting for this customer's password."""
    return {
        "pending": [trade_json(t) for t in runtime(request).engine.pending_for_wallet(_wallet_id(wallet_id))]
    }


@router.post("/wallets/{wallet_id}/confirm")
async def confirm(request: Request, wallet_id: str) -> dict[str, Any]:
    """The customer enters ``password`` for the pending payment (``trade_no`` picks one)."""
    data = await _body(request)
    trade = runtime(request).engine.confirm(
        _wallet_id(wallet_id), _field(data, "password", str), _field(data, "trade_no", str, None)
    )
    return trade_json(trade)


@router.post("/wallets/{wallet_id}/cancel")
async def cancel(request: Request, wallet_id: str) -> dict[str, Any]:
    """The customer closes the password box."""
    data = await _body(request)
    trade = runtime(request).engine.customer_cancel(
        _wallet_id(wallet_id), _field(data, "trade_no", str, None)
    )
    return trade_json(trade)


@router.get("/wallets/{wallet_id}/ledger")
async def ledger(request: Request, wallet_id: str) -> dict[str, Any]:
    """Ground truth: every debit and refund that really moved this wallet's money."""
    return runtime(request).engine.ledger(_wallet_id(wallet_id))


@router.get("/wallets/{wallet_id}/history")
async def history(request: Request, wallet_id: str) -> dict[str, Any]:
    """The wallet's trades, newest first."""
    engine = runtime(request).engine
    wid = _wallet_id(wallet_id)
    engine.wallet(wid)
    return {"trades": [trade_json(t) for t in engine.history(wid)]}


@router.get("/trades")
async def trades(request: Request) -> dict[str, Any]:
    """Recent trades (``?provider=wechat|alipay``)."""
    provider = request.query_params.get("provider")
    if provider not in (None, "wechat", "alipay"):
        raise ControlError(422, "invalid_provider", "provider must be 'wechat' or 'alipay'")
    return {"trades": [trade_json(t) for t in runtime(request).engine.trades(provider)]}


BILL_PLANTS = {
    "sub_mch_id": "bill_sub_mch_id",
    "store_name": "bill_store_name",
    "bank_type": "bill_bank_type",
}


@router.post("/trades/{trade_no}/bill")
async def plant_bill_identity(request: Request, trade_no: str) -> dict[str, Any]:
    """Plant what the trade bill prints for a trade: ``sub_mch_id`` (WeChat 特约商户号), ``store_name``
    (Alipay 门店名称) — another payee than the contract, i.e. 跳码 — and ``bank_type`` (WeChat 付款银行,
    e.g. ``CMB_CREDIT``). An empty string removes a plant."""
    data = await _body(request)
    unknown = sorted(set(data) - set(BILL_PLANTS))
    if unknown:
        raise ControlError(422, "invalid_request", f"unknown field(s): {', '.join(unknown)}")
    engine = runtime(request).engine
    with engine.store.tx() as conn:
        row = conn.execute("SELECT id, extra FROM trades WHERE trade_no = ?", (trade_no,)).fetchone()
        if row is None:
            raise ControlError(404, "trade_not_found", f"no trade {trade_no}")
        extra = json.loads(row["extra"])
        for name, key in BILL_PLANTS.items():
            if name in data:
                value = data[name]
                if not isinstance(value, str) or len(value) > 64:
                    raise ControlError(422, "invalid_request", f"{name} must be a string of at most 64")
                if value:
                    extra[key] = value
                else:
                    extra.pop(key, None)
        conn.execute("UPDATE trades SET extra = ? WHERE id = ?", (json.dumps(extra), row["id"]))
    return {"trade_no": trade_no, "bill": {n: extra.get(k) for n, k in BILL_PLANTS.items()}}


@router.get("/faults")
async def get_faults(request: Request) -> dict[str, Any]:
    """The current fault profile and seed."""
    faults = runtime(request).faults
    return {"seed": faults.seed, "profile": faults.profile.to_json()}


@router.put("/faults")
async def put_faults(request: Request) -> dict[str, Any]:
    """Replace the fault profile; an integer ``seed`` restarts the fault sequence from it."""
    data = await _body(request)
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ControlError(422, "invalid_field", "'seed' must be an integer", {"field": "seed"})
    try:
        profile = FaultProfile.from_json(data)
    except FaultProfileError as exc:
        raise ControlError(422, "invalid_fault_profile", str(exc)) from exc
    faults = runtime(request).faults
    faults.set_profile(profile, seed)
    # Kept in the state file, so a sandbox killed and started again goes on with the same faults.
    store = request.app.state.store
    with store.tx() as conn:
        set_meta(conn, FAULTS_META, json.dumps({"seed": faults.seed, "profile": profile.to_json()}))
    return {"seed": faults.seed, "profile": profile.to_json()}


@router.get("/faults/log")
async def fault_log(request: Request) -> dict[str, Any]:
    """Faults that fired, in order (``n`` counts every decision, fired or not)."""
    return {"seed": runtime(request).faults.seed, "log": list(runtime(request).faults.log)}


@router.get("/faults/stats")
async def fault_stats(request: Request) -> dict[str, Any]:
    """Every fault decision since this process started, fired or not (docs/sandbox.md)."""
    return runtime(request).faults.stats()


@router.get("/clock")
async def get_clock(request: Request) -> dict[str, Any]:
    """Sandbox time and speed."""
    engine = runtime(request).engine
    return {"now": engine.now().isoformat(), "speed": engine.clock.speed}


@router.post("/clock/advance")
async def advance_clock(request: Request) -> dict[str, Any]:
    """Advance sandbox time by ``seconds``, then apply timeouts and deliver due notifications."""
    data = await _body(request)
    if "seconds" not in data:
        raise ControlError(422, "missing_field", "'seconds' is required", {"field": "seconds"})
    seconds = data["seconds"]
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ControlError(422, "invalid_field", "'seconds' must be a number", {"field": "seconds"})
    rt = runtime(request)
    now = rt.engine.advance_clock(float(seconds))
    delivered = await request.app.state.notifier.run_due()
    return {"now": now.isoformat(), "speed": rt.engine.clock.speed, "notifications_acked": delivered}


@router.get("/notifications")
async def notifications(request: Request) -> dict[str, Any]:
    """Async notifications and their delivery state."""
    return {"notifications": request.app.state.notifier.list()}


def control_error_response(exc: ControlError) -> JSONResponse:
    """The JSON error body every control API failure uses."""
    return JSONResponse(
        {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}, status_code=exc.status
    )
