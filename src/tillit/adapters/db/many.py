"""Many rows into one table through the driver's own ``executemany``.

``conn.execute(insert(table), rows)`` spends most of its time per row in SQLAlchemy's generic parameter
handling (compiling the parameter set of each row, looking up each column's type processor). For the
bulk sync (issue 11.5), which writes thousands of rows per request into a few tables, ``ManyRows``
builds the statement text and each column's bind processor once per dialect and hands the driver plain
tuples. The values bound are the same as SQLAlchemy would bind: the same processors run (timestamps to
UTC, and to text on SQLite), once per distinct value in a call (a batch's rows share their timestamps).

Contract: every row gives exactly the columns named at construction; the table's other columns must
have no Python-side default (they get their server default or NULL), which the constructor checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Table

Processor = Callable[[Any], Any]
_MARKERS = {"qmark": "?", "format": "%s", "pyformat": "%s", "numeric": None, "named": None}


class ManyRows:
    def __init__(self, table: Table, columns: Sequence[str]) -> None:
        missing = [c for c in columns if c not in table.c]
        if missing:
            raise ValueError(f"{table.name} has no column {missing}")
        with_default = [c.name for c in table.c if c.name not in columns and c.default is not None]
        if with_default:
            raise ValueError(f"{table.name}: columns with a Python default must be given: {with_default}")
        self.table = table
        self.columns = tuple(columns)
        only = self.columns[0] if len(self.columns) == 1 else None
        self._get: Callable[[dict[str, Any]], tuple[Any, ...]] = (
            itemgetter(*self.columns) if only is None else (lambda row: (row[only],))
        )
        self._by_dialect: dict[str, tuple[str, list[tuple[int, Processor]]]] = {}

    def _prepared(self, conn: Connection) -> tuple[str, list[tuple[int, Processor]]]:
        dialect = conn.dialect
        known = self._by_dialect.get(dialect.name)
        if known is not None:
            return known
        marker = _MARKERS.get(dialect.paramstyle)
        if marker is None:
            raise ValueError(f"paramstyle {dialect.paramstyle} is not supported")
        quote = dialect.identifier_preparer
        sql = "INSERT INTO {} ({}) VALUES ({})".format(
            quote.format_table(self.table),
            ", ".join(quote.format_column(self.table.c[name]) for name in self.columns),
            ", ".join([marker] * len(self.columns)),
        )
        processors: list[tuple[int, Processor]] = []
        for index, name in enumerate(self.columns):
            process = self.table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                processors.append((index, process))
        self._by_dialect[dialect.name] = (sql, processors)
        return sql, processors

    def insert(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Insert ``rows`` (dicts keyed by column name) in one executemany, in the given order."""
        if not rows:
            return
        sql, processors = self._prepared(conn)
        get = self._get
        if not processors:
            params: list[Any] = [get(row) for row in rows]
        else:
            memo: list[dict[Any, Any]] = [{} for _ in processors]
            params = []
            for row in rows:
                values = list(get(row))
                for (index, process), seen in zip(processors, memo, strict=True):
                    raw = values[index]
                    if raw is not None:
                        done = seen.get(raw)
                        if done is None:
                            done = seen[raw] = process(raw)
                        values[index] = done
                params.append(tuple(values))
        conn.exec_driver_sql(sql, params)
