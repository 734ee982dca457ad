"""The CSV formula-injection rule and its use by the reconciliation export."""

from tillit.domain.csvsafe import safe_cell
from tillit.reconciliation.service import EXPORT_FIELDS, export_csv


def test_dangerous_text_is_prefixed() -> None:
    for text in ['=HYPERLINK("http://x","y")', "+1", "-cmd", "@SUM(A1)", "\tx", "\rx", "-12.50"]:
        assert safe_cell(text) == "'" + text


def test_plain_values_unchanged() -> None:
    assert safe_cell(None) == ""
    assert safe_cell(-1250) == "-1250"
    assert safe_cell("wx_123") == "wx_123"
    assert safe_cell("a=b") == "a=b"


def test_export_neutralises_every_field() -> None:
    field = next(iter(EXPORT_FIELDS))
    out = export_csv([{field: "=1+1"}])
    assert out.splitlines()[1].startswith("'=1+1")
