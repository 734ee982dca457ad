"""Product CSV parsing (sales/catalog_csv.py) and the back office's money input, without a database."""

from __future__ import annotations

import pytest

from tillit.backoffice.web import parse_yuan
from tillit.domain.errors import DomainError
from tillit.sales.catalog_csv import parse


def codes(data: str) -> list[tuple[int, str]]:
    return [(e["line"], e["code"]) for e in parse(data.encode())[1]]


def test_good_rows_parse_with_yuan_prices_and_optional_columns() -> None:
    rows, errors = parse("\ufeffsku,name,price,stock,active\nA,茶,12.5,3,1\nB,Bun,0,,0\n\n".encode())
    assert errors == []
    assert [(r.sku, r.price, r.stock, r.active) for r in rows] == [
        ("A", 1250, 3, True),
        ("B", 0, None, False),
    ]


def test_each_bad_cell_is_reported_with_its_line() -> None:
    assert codes("sku,name,price\n=cmd,x,1\nB,,1\nC,c,1.234\nD,d,-1\nD,d,2\nD,e,3\n") == [
        (2, "formula_cell"),
        (3, "invalid_name"),
        (4, "invalid_price"),
        (5, "invalid_price"),
        (7, "duplicate_sku"),
    ]
    assert codes("name,price\nx,1\n") == [(1, "csv_header")]
    assert codes("sku,name,price\nA,a,1,extra\n") == []
    assert parse(b"\xff\xfe")[1][0]["code"] == "csv_not_utf8"


def test_quoted_formula_text_from_our_own_export_reads_back() -> None:
    rows, errors = parse(b"sku,name,price\n'=X,'+1 deal,1\n")
    assert errors == [] and (rows[0].sku, rows[0].name) == ("=X", "+1 deal")


@pytest.mark.parametrize(
    ("text", "fen"), [("12", 1200), ("12.5", 1250), ("0.05", 5), (" 3.10 ", 310), ("", None)]
)
def test_parse_yuan(text: str, fen: int | None) -> None:
    assert parse_yuan(text) == fen


@pytest.mark.parametrize("text", ["1.234", "-1", "1,5", "abc", "1e3", "99999999999"])
def test_parse_yuan_refuses(text: str) -> None:
    with pytest.raises(DomainError) as refused:
        parse_yuan(text)
    assert refused.value.code == "invalid_amount"
