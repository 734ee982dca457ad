"""Bill parsers: the shared samples exactly, every WeChat layout, the Alipay ZIP, a generic CSV with a
mapping, and malformed files rejected with file, line and reason (never skipped)."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import date
from pathlib import Path

import duckdb
import pytest

from tests.support import recon
from tillit.reconciliation import formats
from tillit.reconciliation.errors import BillFormatError
from tillit.sandbox import bills as sandbox_bills

DATA = Path(__file__).resolve().parents[1] / "data"
WECHAT_SAMPLE = DATA / "wechat_all_20261120.csv"
ALIPAY_SAMPLE = DATA / "alipay_trade_20261120.csv.zip"
PROVIDERS_MD_WECHAT = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,"
    "应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,"
    "手续费,费率,订单金额,申请退款金额,费率备注\n"
    "`2022-03-21 13:51:31,`wxfdc955f7104ad557,`180023671,`176531292,`,`420000612032130748613220688,"
    "`2021WERUN1647840687637,`oZWaCKXip5njeEiloC4oeOV1TTsk,`JSAPI,`SUCCESS,`OTHERS,`CNY,`0.01,`0.00,`0,`0,"
    "`0.00,`0.00,`,`,`微信云托管支付测试,`,`0.00000,`0.90%,`0.01,`0.00,`\n"
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\n"
    "`1,`0.01,`0.00,`0.00,`0.00000,`0.01,`0.00\n"
)


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    yield c
    c.close()


def rows(con: duckdb.DuckDBPyConnection, bill: formats.ParsedBill) -> list[dict]:
    cur = con.execute(f"SELECT * FROM {bill.table} ORDER BY line")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def test_wechat_shared_sample(con: duckdb.DuckDBPyConnection) -> None:
    bill = formats.parse(con, WECHAT_SAMPLE, "wechat")
    assert (bill.bill_type, bill.bill_date, bill.account, bill.rows, bill.payments, bill.refunds) == (
        "ALL",
        date(2026, 11, 20),
        "10000100",
        14,
        12,
        2,
    )
    assert bill.totals["总交易单数"] == 14 and bill.totals["手续费总金额"] == 117716
    got = rows(con, bill)
    assert got[0]["line"] == 2 and got[0]["out_trade_no"] == "TLW000000" and got[0]["amount"] == 3999
    assert got[0]["fee"] == 15196 and got[0]["rate_ppm"] == 3800 and got[0]["kind"] == "payment"
    assert str(got[0]["ts"]) == "2026-11-20 03:26:45"  # 11:26:45 China time in UTC
    refund = got[1]
    assert (
        refund["kind"],
        refund["out_refund_no"],
        refund["refund_no"],
        refund["amount"],
        refund["fee"],
    ) == (
        "refund",
        "RTLW000000",
        "5030497189547844",
        1999,
        -7596,
    )
    assert sorted(r["out_trade_no"] for r in got if r["kind"] == "payment") == [
        f"TLW{i:06d}" for i in range(12)
    ]


def test_alipay_shared_sample(con: duckdb.DuckDBPyConnection) -> None:
    bill = formats.parse(con, ALIPAY_SAMPLE, "alipay")
    assert (bill.bill_date, bill.account, bill.rows, bill.payments, bill.refunds) == (
        date(2026, 11, 20),
        "20881021778468800156",
        13,
        12,
        1,
    )
    assert bill.totals["pay"] == {"count": 12, "received": 54368, "discount": 0}
    assert bill.totals["refund"] == {"count": 1, "received": -1250, "discount": 0}
    got = rows(con, bill)
    first = got[0]
    assert first["line"] == 6 and first["out_trade_no"] == "TLA000007" and first["amount"] == 1250
    assert first["trade_no"] == "2026112022001366078001513806" and first["fee"] == 5000  # 0.05 yuan
    assert (got[1]["kind"], got[1]["out_refund_no"], got[1]["amount"]) == ("refund", "RTLA000007", 1250)


def test_providers_md_wechat_example(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "md.csv"
    path.write_text(PROVIDERS_MD_WECHAT, encoding="utf-8")
    bill = formats.parse(con, path, "wechat")
    (row,) = rows(con, bill)
    assert (row["out_trade_no"], row["amount"], row["rate_ppm"], row["kind"]) == (
        "2021WERUN1647840687637",
        1,
        9000,
        "payment",
    )


def test_providers_md_example_totals_disagree(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    """providers.md's own example prints a summary of 12 trades under one detail row: rejected."""
    path = tmp_path / "md.csv"
    path.write_text(PROVIDERS_MD_WECHAT.replace("`1,`0.01,", "`12,`0.06,"), encoding="utf-8")
    with pytest.raises(BillFormatError) as err:
        formats.parse(con, path, "wechat")
    assert err.value.code == "bill_totals_mismatch" and err.value.line == 4


@pytest.mark.parametrize("bill_type", ["SUCCESS", "REFUND", "ALL"])
def test_wechat_layouts(con: duckdb.DuckDBPyConnection, tmp_path: Path, bill_type: str) -> None:
    corpus = recon.build("wechat", matched=6)
    text = sandbox_bills.wechat_bill(recon.WECHAT, bill_type, corpus.trades, corpus.refunds, lambda t: None)
    assert text is not None
    path = tmp_path / "b.csv"
    path.write_bytes(text.encode())
    bill = formats.parse(con, path, "wechat")
    assert bill.bill_type == bill_type
    kinds = {r["kind"] for r in rows(con, bill)}
    assert (
        kinds
        == {"SUCCESS": {"payment"}, "REFUND": {"refund", "revoke"}, "ALL": {"payment", "refund", "revoke"}}[
            bill_type
        ]
    )


def test_alipay_bare_detail_csv(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    with zipfile.ZipFile(ALIPAY_SAMPLE) as z:
        name = next(n for n in z.namelist() if n.endswith("_业务明细.csv"))
        data = z.read(name)
    path = tmp_path / "detail.csv"
    path.write_bytes(data)
    assert formats.parse(con, path, "alipay").rows == 13


# --------------------------------------------------------------------------- malformed files


def _wechat(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / "w.csv"
    path.write_bytes(text.encode(encoding))
    return path


def _expect(
    con: duckdb.DuckDBPyConnection, path: Path, fmt: str, code: str, line: int | None
) -> BillFormatError:
    with pytest.raises(BillFormatError) as err:
        formats.parse(con, path, fmt)
    assert err.value.code == code, err.value.message
    assert err.value.line == line, err.value.message
    assert err.value.file == path.name and err.value.reason
    assert err.value.details["line"] == line
    return err.value


def test_wechat_truncated(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    text = WECHAT_SAMPLE.read_text(encoding="utf-8")
    cut = text[: text.index("总交易单数")]  # summary gone
    _expect(con, _wechat(tmp_path, cut), "wechat", "bill_truncated", 15)
    _expect(con, _wechat(tmp_path, text[:1500]), "wechat", "bill_truncated", 7)


def test_wechat_wrong_encoding(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    text = WECHAT_SAMPLE.read_text(encoding="utf-8")
    _expect(con, _wechat(tmp_path, text, "gbk"), "wechat", "bill_encoding", 1)


def test_wechat_bad_bytes_inside(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    data = WECHAT_SAMPLE.read_bytes().replace("`商品,".encode(), b"`\xff\xfe,", 1)
    path = tmp_path / "w.csv"
    path.write_bytes(data)
    _expect(con, path, "wechat", "bill_encoding", 2)


def test_wechat_totals_disagree(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    text = WECHAT_SAMPLE.read_text(encoding="utf-8").replace("`369.76,`59.98", "`369.77,`59.98")
    err = _expect(con, _wechat(tmp_path, text), "wechat", "bill_totals_mismatch", 17)
    assert err.details["summary"] == 36977 and err.details["details_sum"] == 36976


def test_wechat_unknown_column(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    text = WECHAT_SAMPLE.read_text(encoding="utf-8").replace("费率备注", "优惠标签", 1)
    err = _expect(con, _wechat(tmp_path, text), "wechat", "bill_header", 1)
    assert err.details["column"] == "优惠标签"


def test_wechat_bad_value_and_short_row(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    text = WECHAT_SAMPLE.read_text(encoding="utf-8")
    bad_amount = text.replace("`12.50,`0.00,`0,`0,", "`12.5x,`0.00,`0,`0,", 1)
    err = _expect(con, _wechat(tmp_path, bad_amount), "wechat", "bill_row", 7)
    assert err.details["column"] == "应结订单金额"
    lines = text.split("\n")
    lines[4] = ",".join(lines[4].split(",")[:10])
    _expect(con, _wechat(tmp_path, "\n".join(lines)), "wechat", "bill_row", 5)
    lines = text.split("\n")
    lines.insert(3, "")
    _expect(con, _wechat(tmp_path, "\n".join(lines)), "wechat", "bill_row", 4)


def test_empty_file(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    _expect(con, _wechat(tmp_path, ""), "wechat", "bill_unreadable", None)


def _alipay_zip(tmp_path: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    out = io.BytesIO()
    with zipfile.ZipFile(ALIPAY_SAMPLE) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("_业务明细.csv"):
                data = edit(data)
            dst.writestr(info, data)
    path = tmp_path / "a.zip"
    path.write_bytes(out.getvalue())
    return path


def test_alipay_footer_totals_disagree(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = _alipay_zip(
        tmp_path, lambda d: d.replace("商家实收共543.68元".encode("gbk"), "商家实收共543.69元".encode("gbk"))
    )
    err = _expect_member(con, path, "bill_totals_mismatch", 20)
    assert err.details["footer"] == 54369 and err.details["details_sum"] == 54368


def _expect_member(
    con: duckdb.DuckDBPyConnection, path: Path, code: str, line: int | None
) -> BillFormatError:
    with pytest.raises(BillFormatError) as err:
        formats.parse(con, path, "alipay")
    assert err.value.code == code, err.value.message
    assert err.value.line == line, err.value.message
    assert err.value.file.startswith("a.zip!") and err.value.file.endswith("_业务明细.csv")
    return err.value


def test_alipay_truncated(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = _alipay_zip(tmp_path, lambda d: d[: d.index("#-----".encode("gbk"), 200)])
    _expect_member(con, path, "bill_truncated", 18)
    path = tmp_path / "cut.zip"
    path.write_bytes(ALIPAY_SAMPLE.read_bytes()[:700])
    with pytest.raises(BillFormatError) as err:
        formats.parse(con, path, "alipay")
    assert err.value.code == "bill_unreadable"


def test_alipay_wrong_encoding(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = _alipay_zip(tmp_path, lambda d: d.decode("gbk").encode("utf-8"))
    err = _expect_member(con, path, "bill_encoding", 1)
    assert "GBK" in err.reason


def test_alipay_unknown_column_and_bad_row(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = _alipay_zip(tmp_path, lambda d: d.replace("备注".encode("gbk"), "附言".encode("gbk"), 1))
    assert _expect_member(con, path, "bill_header", 5).details["column"] == "附言"
    path = _alipay_zip(tmp_path, lambda d: d.replace(b"2026-11-20 10:01:46", b"2026-13-20 10:01:46", 1))
    assert _expect_member(con, path, "bill_row", 8).details["column"] == "完成时间"


def test_alipay_summary_member_disagrees(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(ALIPAY_SAMPLE) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if "汇总" in info.filename:
                data = data.replace(b"\xba\xcf\xbc\xc6,,12,1,543.68", b"\xba\xcf\xbc\xc6,,12,1,543.60")
            dst.writestr(info, data)
    path = tmp_path / "a.zip"
    path.write_bytes(out.getvalue())
    with pytest.raises(BillFormatError) as err:
        formats.parse(con, path, "alipay")
    assert err.value.code == "bill_totals_mismatch" and err.value.line == 6 and "汇总" in err.value.file


# --------------------------------------------------------------------------- generic CSV


GENERIC = (
    "Order No,Txn,Type,Refund No,Amount,Paid At,Note\n"
    "A1,T1,SALE,,12.50,2026-11-20 10:00:00,x\n"
    "A1,T1,BACK,R1,2.50,2026-11-20 11:00:00,y\n"
)


def test_generic_csv_with_toml_and_json_mappings(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "g.csv"
    path.write_text(GENERIC, encoding="utf-8")
    toml = tmp_path / "m.toml"
    toml.write_text(
        'provider = "alipay"\nignore_columns = ["Note"]\n[columns]\n'
        'out_trade_no = "Order No"\ntrade_no = "Txn"\n'
        'kind = "Type"\nout_refund_no = "Refund No"\namount = "Amount"\ntime = "Paid At"\n'
        '[kinds]\npayment = ["SALE"]\nrefund = ["BACK"]\n',
        encoding="utf-8",
    )
    mapping = formats.load_mapping(toml)
    bill = formats.parse(con, path, "csv", mapping=mapping)
    got = rows(con, bill)
    assert [(r["kind"], r["amount"], r["out_refund_no"]) for r in got] == [
        ("payment", 1250, None),
        ("refund", 250, "R1"),
    ]
    assert bill.provider == "alipay" and bill.bill_date == date(2026, 11, 20)
    as_json = tmp_path / "m.json"
    as_json.write_text(
        json.dumps(
            {
                "provider": "alipay",
                "ignore_columns": ["Note"],
                "columns": mapping.columns,
                "kinds": {k: list(v) for k, v in mapping.kinds.items()},
            }
        ),
        encoding="utf-8",
    )
    assert formats.parse(duckdb.connect(), path, "csv", mapping=formats.load_mapping(as_json)).rows == 2


def test_generic_csv_rejects_unmapped_columns_and_bad_mappings(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    path = tmp_path / "g.csv"
    path.write_text(GENERIC, encoding="utf-8")
    mapping = formats.mapping_from_dict(
        {"provider": "wechat", "columns": {"out_trade_no": "Order No", "amount": "Amount", "time": "Paid At"}}
    )
    with pytest.raises(BillFormatError) as caught:
        formats.parse(con, path, "csv", mapping=mapping)
    err = caught.value
    assert err.code == "bill_header" and err.line == 1 and err.details["column"] == "Txn"
    for bad in (
        {},
        {"provider": "visa"},
        {"provider": "wechat", "columns": {"amount": "A"}},
        {"provider": "wechat", "columns": {"out_trade_no": "O", "amount": "A", "time": "T", "colour": "C"}},
    ):
        with pytest.raises(BillFormatError) as caught:
            formats.mapping_from_dict(bad)
        assert caught.value.code == "bill_mapping_invalid"
    with pytest.raises(BillFormatError) as caught:
        formats.parse(con, path, "csv")
    assert caught.value.code == "bill_mapping_invalid"
