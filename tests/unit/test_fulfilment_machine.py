"""Property tests over the fulfilment machine (domain/fulfilment.py) and the customer links it hands out."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from tillit.domain.errors import DomainError
from tillit.domain.fulfilment import (
    AUTO_CONFIRM_FROM,
    CUSTOMER_CONFIRMABLE,
    DISPUTABLE,
    FULFILMENT,
    KIND_ONLY,
    Periods,
    confirm_due,
    remind_due,
    sniff_photo,
)
from tillit.fulfilment.links import FORM_TOKEN_TTL, LinkSigner

STATUSES = sorted(FULFILMENT.statuses)
KEY = bytes(range(32))


def _rank() -> dict[str, int]:
    """Longest distance from the initial status: every allowed move goes strictly up."""
    rank = {s: 0 for s in FULFILMENT.statuses}
    for _ in STATUSES:
        for src, targets in FULFILMENT.moves.items():
            for dst in targets:
                rank[dst] = max(rank[dst], rank[src] + 1)
    return rank


RANK = _rank()


@given(st.lists(st.tuples(st.sampled_from(STATUSES), st.sampled_from(["pickup", "delivery"])), max_size=40))
def test_a_random_walk_never_regresses_and_ends_terminal_or_alive(attempts: list[tuple[str, str]]) -> None:
    for kind in ("pickup", "delivery"):
        current = "awaiting_fulfilment"
        seen = [current]
        for target, _ in attempts:
            allowed = FULFILMENT.can(current, target) and KIND_ONLY.get(target, kind) == kind
            try:
                FULFILMENT.check(current, target)
                accepted = True
            except DomainError as exc:
                assert exc.code == "fulfilment_invalid_transition" and exc.details == {
                    "from": current,
                    "to": target,
                }
                accepted = False
            assert accepted == FULFILMENT.can(current, target)
            if allowed:
                assert RANK[target] > RANK[current]
                current = target
                seen.append(current)
        assert len(set(seen)) == len(seen)  # no status is ever entered twice
        if kind == "pickup":
            assert not {"shipped", "delivered"} & set(seen)
        else:
            assert "ready" not in seen
        assert FULFILMENT.is_terminal(current) or FULFILMENT.moves[current]


def test_every_status_is_reachable_and_can_end() -> None:
    reachable = {"awaiting_fulfilment"}
    frontier = ["awaiting_fulfilment"]
    while frontier:
        for nxt in FULFILMENT.moves[frontier.pop()]:
            if nxt not in reachable:
                reachable.add(nxt)
                frontier.append(nxt)
    assert reachable == FULFILMENT.statuses
    for status in FULFILMENT.statuses - FULFILMENT.terminal:
        assert FULFILMENT.moves[status], status  # a dead end would leave the order in limbo
    assert DISPUTABLE <= AUTO_CONFIRM_FROM and all(FULFILMENT.can(s, "disputed") for s in DISPUTABLE)
    assert all(FULFILMENT.can(s, "confirmed") for s in CUSTOMER_CONFIRMABLE)


@given(
    st.integers(1, 90),
    st.integers(1, 168),
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)),
)
def test_the_reminder_comes_before_the_auto_confirm_or_not_at_all(
    days: int, hours: int, now: datetime
) -> None:
    p = Periods(auto_confirm_days=days, reminder_hours=hours)
    due = confirm_due(now, p)
    assert due - now == timedelta(days=days)
    remind = remind_due(due, p, now)
    if remind is None:
        assert timedelta(hours=hours) >= timedelta(days=days)
    else:
        assert now < remind < due and due - remind == timedelta(hours=hours)


ids = st.binary(min_size=16, max_size=16).map(bytes.hex)


@settings(max_examples=200)
@given(ids, ids, st.integers(0, 47), st.integers(1, 255))
def test_a_link_verifies_only_unaltered(merchant: str, order: str, position: int, flip: int) -> None:
    signer = LinkSigner(KEY)
    token = signer.token(merchant, order)
    assert len(token) == 64
    ref = signer.verify(token)
    assert ref is not None and (ref.merchant_id, ref.order_id) == (merchant, order)
    raw = bytearray(base64.urlsafe_b64decode(token))
    raw[position] ^= flip
    forged = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    assert signer.verify(forged) is None
    assert LinkSigner(bytes(32)).verify(token) is None  # another server's key
    assert signer.verify(token[:-1]) is None and signer.verify(token + "A") is None


B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@settings(max_examples=100)
@given(st.one_of(st.text(max_size=80), st.text(alphabet=B64, min_size=64, max_size=64)))
def test_garbage_never_verifies_nor_raises(text: str) -> None:
    assert LinkSigner(KEY).verify(text) is None


def test_form_tokens_are_per_link_per_form_and_expire() -> None:
    signer = LinkSigner(KEY)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    a, b = signer.token("a" * 32, "b" * 32), signer.token("a" * 32, "c" * 32)
    form = signer.form_token(a, "confirm", now)
    assert signer.check_form_token(a, "confirm", form, now + timedelta(hours=1))
    assert not signer.check_form_token(b, "confirm", form, now)
    assert not signer.check_form_token(a, "dispute", form, now)
    assert not signer.check_form_token(a, "confirm", form, now + FORM_TOKEN_TTL + timedelta(seconds=1))
    assert not signer.check_form_token(a, "confirm", "1." + "0" * 32, now)
    assert not signer.check_form_token(a, "confirm", "", now)


def test_photos_are_recognised_by_their_bytes() -> None:
    assert sniff_photo(b"\xff\xd8\xff\xe0" + b"\x00" * 10) == "image/jpeg"
    assert sniff_photo(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10) == "image/png"
    assert sniff_photo(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    for other in (b"", b"GIF89a", b"<svg>", b"XXXX\x00\x00\x00\x00WEBP", b"%PDF-1.7"):
        assert sniff_photo(other) is None
