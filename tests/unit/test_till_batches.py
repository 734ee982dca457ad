"""The till cuts its journal into sync batches the server takes (domain/tillrules.py bounds)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from tillit.domain.tillrules import SYNC_MAX_BYTES, SYNC_MAX_ENTRIES
from tillit.till.journal import OutboxEntry
from tillit.till.service import batch_body, next_batch


def entry(seq: int, op: str = "order", note: int = 0) -> OutboxEntry:
    body = {"id": f"{seq:032x}", "note": "备注" * (note // 2)}  # CJK: 3 bytes a character in UTF-8
    return OutboxEntry(seq, op, f"k-{seq}", None, None, None, body, 0, json.dumps(body, ensure_ascii=False))


def body_size(batch: list[OutboxEntry]) -> int:
    """What the client sends: the batch body (UTF-8 bytes), which must also be valid JSON."""
    sent = batch_body(batch, 10**7)
    assert [e["body"] for e in json.loads(sent)["entries"]] == [e.body for e in batch]
    return len(sent)


def cut(entries: list[OutboxEntry], **bounds: int) -> list[list[OutboxEntry]]:
    batches, i = [], 0
    while i < len(entries):
        if entries[i].op == "shift":  # sent on its own by the till
            batches.append([entries[i]])
            i += 1
            continue
        batch = next_batch(entries, i, **bounds)
        batches.append(batch)
        i += len(batch)
    return batches


def test_plain_sales_fill_batches_to_the_entry_bound() -> None:
    entries = [entry(n) for n in range(1, 1201)]
    batches = cut(entries)
    assert [len(b) for b in batches] == [SYNC_MAX_ENTRIES, SYNC_MAX_ENTRIES, 200]


def test_big_entries_are_cut_by_bytes_and_never_exceed_the_body_bound() -> None:
    entries = [entry(n, note=5000) for n in range(1, 501)]  # about 2.5 MB in all
    batches = cut(entries)
    assert len(batches) >= 3
    assert all(body_size(b) <= SYNC_MAX_BYTES for b in batches)
    assert [e.seq for b in batches for e in b] == list(range(1, 501))


def test_a_non_batchable_entry_ends_the_batch_and_an_oversize_entry_goes_alone() -> None:
    entries = [entry(1), entry(2), entry(3, "shift"), entry(4), entry(5, note=200), entry(6)]
    assert [[e.seq for e in b] for b in cut(entries, max_bytes=600)] == [[1, 2], [3], [4], [5], [6]]


@given(
    st.lists(
        st.tuples(st.sampled_from(["order", "payment", "refund", "cancel", "shift"]), st.integers(0, 3000)),
        min_size=1,
        max_size=60,
    ),
    st.integers(1, 20),
    st.integers(2000, 20000),
)
def test_batches_keep_journal_order_and_their_bounds(
    ops: list[tuple[str, int]], most: int, room: int
) -> None:
    entries = [entry(n + 1, op, note) for n, (op, note) in enumerate(ops)]
    batches = cut(entries, max_entries=most, max_bytes=room)
    assert [e.seq for b in batches for e in b] == [e.seq for e in entries]
    for b in batches:
        assert len(b) <= most
        assert len(b) == 1 or (body_size(b) <= room and all(e.op != "shift" for e in b))
