"""Bills parse back to exactly the trades made, with the providers' exact layout and right totals."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

from tests.sandbox.billparse import parse_alipay, parse_wechat
from tests.sandbox.conftest import Sandbox
from tillit.sandbox.signing import parse_wechat_xml, to_wechat_xml, wechat_sign

SAMPLES = Path(__file__).resolve().parents[1] / "data"  # copies of shared/data


def _download(sb: Sandbox, bill_date: str, **extra: str) -> bytes:
    from tests.sandbox.conftest import APPID, MCH_ID, WECHAT_KEY

    fields = {"appid": APPID, "mch_id": MCH_ID, "nonce_str": "n", "bill_date": bill_date, **extra}
    fields["sign"] = wechat_sign(fields, WECHAT_KEY)
    return bytes(sb.client.post("/pay/downloadbill", content=to_wechat_xml(fields).encode()).content)


def test_wechat_bill_matches_trades_and_totals(sandbox: Sandbox) -> None:
    wallet = sandbox.wallet("wechat", 1_000_000)
    made = {"W1": 3999, "W2": 1250, "W3": 260, "W4": 8800}
    for n, (out_trade_no, fen) in enumerate(made.items()):
        sandbox.advance(600)
        answer = sandbox.micropay(
            out_trade_no, fen, sandbox.code(wallet["id"]), device_info="T001", attach=f"n={n}"
        )
        assert answer["result_code"] == "SUCCESS"
    sandbox.advance(60)
    sandbox.wechat(
        "/secapi/pay/refund", out_trade_no="W1", out_refund_no="RW1", total_fee=3999, refund_fee=1999
    )
    sandbox.wechat("/secapi/pay/reverse", out_trade_no="W3")  # a reversed payment stays in the bill
    not_yet = parse_wechat_xml(_download(sandbox, "20261120"))
    assert not_yet["return_msg"] == "No Bill Exist"
    sandbox.advance(86400 + 3600)
    text = _download(sandbox, "20261120").decode("utf-8")
    sample_header = (SAMPLES / "wechat_all_20261120.csv").read_bytes().decode("utf-8").split("\r\n")[0]
    assert text.split("\r\n")[0] == sample_header
    rows, summary = parse_wechat(text)
    payments = [r for r in rows if r["交易状态"] == "SUCCESS"]
    assert {r["商户订单号"]: r["订单金额"] for r in payments} == {
        "W1": "39.99",
        "W2": "12.50",
        "W3": "2.60",
        "W4": "88.00",
    }
    assert {r["手续费"] for r in payments} == {"0.15196", "0.04750", "0.00988", "0.33440"}
    assert all(r["费率"] == "0.38%" and r["设备号"] == "T001" and r["特约商户号"] == "0" for r in rows)
    refunds = [r for r in rows if r["交易状态"] in ("REFUND", "REVOKED")]
    assert [(r["商户订单号"], r["交易状态"], r["退款金额"], r["手续费"]) for r in refunds] == [
        ("W1", "REFUND", "19.99", "-0.07596"),
        ("W3", "REVOKED", "2.60", "-0.00988"),
    ]
    assert rows[1]["商户订单号"] == "W1" and rows[1]["交易状态"] == "REFUND"  # grouped after its payment
    assert summary == {
        "总交易单数": "6",
        "应结订单总金额": "143.09",
        "退款总金额": "22.59",
        "充值券退款总金额": "0.00",
        "手续费总金额": "0.45790",
        "订单总金额": "143.09",
        "申请退款总金额": "22.59",
    }
    ok_text = _download(sandbox, "20261120", bill_type="SUCCESS").decode()
    ok_rows, ok_summary = parse_wechat(ok_text)
    assert len(ok_rows) == 4 and ok_summary["订单总金额"] == "143.09" and len(ok_rows[0]) == 20
    refund_rows, _ = parse_wechat(_download(sandbox, "20261120", bill_type="REFUND").decode())
    assert len(refund_rows) == 2 and len(refund_rows[0]) == 29
    assert gzip.decompress(_download(sandbox, "20261120", tar_type="GZIP")).decode() == text
    assert parse_wechat_xml(_download(sandbox, "20261119"))["return_msg"] == "No Bill Exist"
    assert parse_wechat_xml(_download(sandbox, "2026-11-19"))["return_code"] == "FAIL"


def test_alipay_bill_matches_trades_layout_and_totals(sandbox: Sandbox) -> None:
    wallet = sandbox.wallet("alipay", 1_000_000, name="张三")
    made = {"A1": "12.50", "A2": "39.99", "A3": "156.00", "A4": "1.00"}
    for out_trade_no, amount in made.items():
        sandbox.advance(600)
        biz = {
            "out_trade_no": out_trade_no,
            "scene": "bar_code",
            "auth_code": sandbox.code(wallet["id"]),
            "subject": "商品",
            "total_amount": amount,
            "store_id": "S001",
            "operator_id": "T001",
            "terminal_id": "T001",
        }
        assert sandbox.alipay("alipay.trade.pay", biz)["code"] == "10000"
    sandbox.alipay(
        "alipay.trade.refund", {"out_trade_no": "A1", "refund_amount": "12.50", "out_request_no": "RA1"}
    )
    sandbox.advance(86400 + 3600)
    url = sandbox.alipay(
        "alipay.data.dataservice.bill.downloadurl.query", {"bill_type": "trade", "bill_date": "2026-11-20"}
    )["bill_download_url"]
    data = sandbox.client.get(url).content
    members, detail, summary = parse_alipay(data)

    with zipfile.ZipFile(SAMPLES / "alipay_trade_20261120.csv.zip") as sample_zip:
        sample = {
            i.filename.split("_", 2)[2]: sample_zip.read(i).decode("gbk").split("\r\n")
            for i in sample_zip.infolist()
        }
    for name, lines in members.items():
        suffix = name.split("_", 2)[2]
        ours = [line for line in lines if line.startswith("#---") or not line.startswith("#")][:2]
        theirs = [line for line in sample[suffix] if line.startswith("#---") or not line.startswith("#")][:2]
        assert ours == theirs, suffix  # identical section marker and column header
        assert name.startswith("20881021778468800156_20261120_")

    assert [
        (r["商户订单号"], r["业务类型"], r["订单金额（元）"], r["服务费（元）"], r["退款批次号/请求号"])
        for r in detail
    ] == [
        ("A1", "交易", "12.50", "-0.05", ""),
        ("A1", "退款", "-12.50", "0.00", "RA1"),
        ("A2", "交易", "39.99", "-0.15", ""),
        ("A3", "交易", "156.00", "-0.59", ""),
        ("A4", "交易", "1.00", "0.00", ""),
    ]
    assert detail[0]["对方账户"] == "*三(138***@qq.com)" and detail[0]["门店名称"] == "一号店"
    detail_lines = members[next(n for n in members if n.endswith("_业务明细.csv"))]
    raw_first = next(line for line in detail_lines if line.startswith(detail[0]["支付宝交易号"]))
    assert raw_first.startswith(detail[0]["支付宝交易号"] + "\t,A1\t,交易\t,商品,")
    assert "#交易合计：4笔，商家实收共209.49元，商家优惠共0.00元" in detail_lines
    assert "#退款合计：1笔，商家实收退款共-12.50元，商家优惠退款共0.00元" in detail_lines
    assert detail_lines[-1] == "#导出时间：[2026年11月21日 10:00:00]"
    total = next(r for r in summary if r["门店编号"] == "合计")
    assert total == {
        "门店编号": "合计",
        "门店名称": "",
        "交易订单总笔数": "4",
        "退款订单总笔数": "1",
        "订单金额（元）": "209.49",
        "商家实收（元）": "196.99",
        "支付宝优惠（元）": "0.00",
        "商家优惠（元）": "0.00",
        "卡消费金额（元）": "0.00",
        "服务费（元）": "-0.79",
        "分润（元）": "0.00",
        "实收净额（元）": "196.20",
    }


def test_alipay_empty_day_still_has_a_bill(sandbox: Sandbox) -> None:
    sandbox.advance(3 * 86400)
    url = sandbox.alipay(
        "alipay.data.dataservice.bill.downloadurl.query", {"bill_type": "trade", "bill_date": "2026-11-21"}
    )["bill_download_url"]
    _members, detail, summary = parse_alipay(sandbox.client.get(url).content)
    assert detail == [] and [r["门店编号"] for r in summary] == ["合计"]
    assert zipfile.is_zipfile(io.BytesIO(sandbox.client.get(url).content))
