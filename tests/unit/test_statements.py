"""Statement parsers (settlement/statements.py): WeChat 资金账单, Alipay 账务明细, Tillit's bank CSV;
bad files are refused as a whole with a stable code and the line."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from tests.support.statements import Line, alipay_account, bank_csv, wechat_fundflow
from tillit.domain.errors import DomainError
from tillit.settlement import statements
from tillit.settlement.statements import CHINA

AT = datetime(2026, 11, 21, 9, 0, 1, tzinfo=CHINA)


def test_wechat_fundflow_lines_and_fee_note() -> None:
    data = wechat_fundflow(
        [
            Line(AT, "F1", "交易", 3984, "P1", "结算总金额 39.99 元;含手续费 0.15 元"),
            Line(AT, "F2", "退款", -2, "R1", "缺货"),
            Line(AT, "F3", "提现", -3000, "W1"),
        ]
    )
    parsed = statements.parse(data, "wechat_fundflow")
    kinds = [(x.line_key, x.kind, x.amount, x.fee, x.out_trade_no) for x in parsed.lines]
    assert kinds == [
        ("F1", "income", 3984, 15, "P1"),
        ("F2", "refund", -2, None, "R1"),
        ("F3", "withdrawal", -3000, None, "W1"),
    ]
    assert parsed.lines[0].booked_day == date(2026, 11, 21)
    assert parsed.totals == {"lines": 3, "income": 3984, "expense": 3002}


def test_alipay_account_by_header_in_a_zip_with_tabs_and_fullwidth_brackets() -> None:
    lines = [
        Line(AT, "A1", "在线支付", 3999, "P1"),
        Line(AT, "A2", "手续费", -15, "P1"),
        Line(AT, "A3", "交易退款", -1999, "P1"),
    ]
    for data in (alipay_account(lines), alipay_account(lines, zipped=False)):
        parsed = statements.parse(data, "alipay_account")
        assert [(x.line_key, x.kind, x.amount) for x in parsed.lines] == [
            ("A1", "income", 3999),
            ("A2", "fee", -15),
            ("A3", "refund", -1999),
        ]
        assert parsed.totals["account"] == "20881021778468800156"


def test_bank_csv_provider_and_trade_day_from_the_memo() -> None:
    data = bank_csv(
        [
            ("2026-11-21", 8966, "财付通支付科技有限公司", "B1", "微信支付结算 20261120"),
            ("2026-11-21", 500, "张三", "B2", "transfer"),
            ("2026-11-22", 100, "支付宝（中国）网络技术有限公司", "B3", "结算"),
        ]
    )
    parsed = statements.parse(data, "bank")
    assert [(x.line_key, x.provider, x.amount, x.trade_day) for x in parsed.lines] == [
        ("B1", "wechat", 8966, date(2026, 11, 20)),
        ("B3", "alipay", 100, None),
    ]


@pytest.mark.parametrize(
    ("source", "data", "code"),
    [
        ("wechat_fundflow", b"", "statement_unreadable"),
        ("wechat_fundflow", b"a,b\r\n", "statement_header"),
        (
            "wechat_fundflow",
            wechat_fundflow([Line(AT, "F1", "交易", 100, "P1")]).rsplit(b"\r\n", 3)[0],
            "statement_truncated",
        ),
        (
            "wechat_fundflow",
            wechat_fundflow(
                [Line(AT, "F1", "交易", 100, "P1")], summary=("1.0", "1.0", "2.00", "0.0", "0.00")
            ),
            "statement_totals_mismatch",
        ),
        ("wechat_fundflow", b"\xff\xfe", "statement_encoding"),
        (
            "alipay_account",
            alipay_account([Line(AT, "A1", "在线支付", 100, "P1")], footer_income=200),
            "statement_totals_mismatch",
        ),
        ("alipay_account", b"PK\x03\x04broken", "statement_unreadable"),
        ("bank", b"value_date,amount\n", "statement_header"),
        ("bank", bank_csv([("21/11/2026", 1, "财付通", "B1", "")]), "statement_row"),
        ("bank", bank_csv([("2026-11-21", 1, "财付通", "", "")]), "statement_row"),
    ],
)
def test_bad_files_are_refused_with_a_stable_code(source: str, data: bytes, code: str) -> None:
    with pytest.raises(DomainError) as err:
        statements.parse(data, source)
    assert err.value.code == code
