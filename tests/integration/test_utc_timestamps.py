"""Timestamp columns store UTC and read back aware UTC on SQLite and PostgreSQL (issue #9, defect 11)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, MetaData, String, Table, insert, select

from tillit.adapters.db.schema import TS
from tillit.bootstrap import Container

CN = timezone(timedelta(hours=8))


def test_offset_time_round_trips_as_utc(container: Container) -> None:
    md = MetaData()
    name = f"tmp_ts_{uuid.uuid4().hex[:8]}"
    table = Table(name, md, Column("id", String(8), primary_key=True), Column("at", TS))
    md.create_all(container.db.engine)
    try:
        with container.db.engine.begin() as conn:
            conn.execute(insert(table).values(id="a", at=datetime(2026, 11, 20, 16, 0, tzinfo=CN)))
            got = conn.execute(select(table.c.at)).scalar_one()
        assert got.utcoffset() == timedelta(0)
        assert got == datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
        assert got.replace(tzinfo=None) == datetime(2026, 11, 20, 8, 0)
        with pytest.raises(Exception, match="naive datetime refused"), container.db.engine.begin() as conn:
            conn.execute(insert(table).values(id="b", at=datetime(2026, 11, 20, 16, 0)))
    finally:
        md.drop_all(container.db.engine)
