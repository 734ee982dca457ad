"""Write the till's Babel catalogues (locales/*/LC_MESSAGES/messages.po) from one table.

Run after adding a cashier-page string: `.venv/bin/python tools/make_catalogues.py`. The en catalogue
maps every msgid to itself; tests/unit/test_till_i18n.py fails when a string of the page has no zh_CN
translation.
"""

from __future__ import annotations

from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import write_po

from tillit.till.web import REASONS

ZH = {
    "Add": "添加",
    "All sales synced": "全部销售已同步",
    "Amount": "金额",
    "Cancel sale": "取消交易",
    "Cancelled": "已取消",
    "Cancels": "取消",
    "Cash": "现金",
    "Cash float": "备用金",
    "Cash handed over": "实收现金",
    "Change": "找零",
    "Change: {change}": "找零：{change}",
    "Close shift": "交班",
    "Closed": "结束时间",
    "Counted cash": "清点现金",
    "Customer payment code": "顾客付款码",
    "Difference": "差额",
    "Discount": "折扣",
    "Due": "应付",
    "Expected cash": "应有现金",
    "Find": "查找",
    "Find a sale / refund": "查找交易 / 退款",
    "Item": "商品",
    "Keys": "快捷键",
    "New sale": "新交易",
    "Offline — cash only": "离线 — 仅收现金",
    "Online": "在线",
    "Open shift": "开班",
    "Opened": "开始时间",
    "Paid": "已付",
    "Pay cash": "现金收款",
    "Payment outcome unknown": "支付结果未知",
    "Price": "单价",
    "Print receipt": "打印小票",
    "Qty": "数量",
    "Reason": "原因",
    "Receipt": "小票",
    "Receipt number": "小票号",
    "Refund": "退款",
    "Refund {amount}: {status}": "退款 {amount}：{status}",
    "Refunds": "退款",
    "Sales": "销售",
    "Scan or type barcode, SKU or name": "扫描或输入条码、货号或名称",
    "Scan to pay": "扫码收款",
    "Sync problems": "同步问题",
    "Tendered": "实收",
    "Thank you": "谢谢惠顾",
    "Till": "收银台",
    "Total": "合计",
    "Waiting to sync": "等待同步",
    "Z report": "交班报表",
    "cash": "现金",
    "new sale": "新交易",
    "payment code": "付款码",
    "scan": "扫码",
    "{n} sales waiting to sync": "{n} 笔销售等待同步",
    "Printed to {where}": "已打印到 {where}",
    # statuses and reasons shown on the page
    "open": "进行中",
    "completed": "已完成",
    "cancelled": "已取消",
    "captured": "已收款",
    "pending": "处理中",
    "unknown": "确认中",
    "reversing": "撤销中",
    "failed": "失败",
    "reversed": "已撤销",
    "succeeded": "成功",
    "processing": "处理中",
    "customer_cancelled": "顾客取消",
    "cashier_cancelled": "收银员取消",
    "payment_failed": "支付失败",
    "timeout": "超时",
    "other": "其他",
    # refusals (web.REASONS)
    "Unknown barcode or SKU: {code}": "未知的条码或货号：{code}",
    "Quantity must be between 1 and 9999.": "数量必须在 1 到 9999 之间。",
    "The discount must be between 0 and the line amount.": "折扣必须在 0 到该行金额之间。",
    "Enter an amount in yuan, e.g. 12.50.": "请输入以元为单位的金额，例如 12.50。",
    "The amount must be more than 0 and at most the {due} due.": "金额必须大于 0 且不超过应付的 {due}。",
    "The cash handed over is less than the amount.": "实收现金少于收款金额。",
    "This code belongs to no supported provider: ask for a WeChat or Alipay payment code, or take cash.": "无法识别该付款码，请使用微信或支付宝付款码，或收取现金。",
    "The server cannot be reached: provider payments are unavailable. Take cash.": "无法连接服务器，暂不能扫码收款，请收取现金。",
    "A payment is in progress: wait for its result. Do not charge again.": "有一笔支付正在进行，请等待结果，勿重复收款。",
    "The sale is empty: scan an item first.": "交易为空，请先扫描商品。",
    "Payment has started: the items can no longer change.": "已开始收款，商品不能再修改。",
    "There is no sale in progress.": "当前没有进行中的交易。",
    "That line does not exist.": "该行不存在。",
    "A sale has at most 200 lines.": "一笔交易最多 200 行。",
    "Open a shift first.": "请先开班。",
    "A shift is already open.": "已经开班。",
    "Finish or cancel the sale in progress first.": "请先完成或取消当前交易。",
    "The shift cannot close yet. Waiting to sync: {unsynced}. Payment outcome unknown: {unknown}.": "暂不能交班。等待同步：{unsynced}。支付结果未知：{unknown}。",
    "Only a paid tender of a completed sale can be refunded.": "只能对已完成交易中已收款的支付退款。",
    "At most {refundable} can still be refunded.": "最多还可退 {refundable}。",
    "Choose a cancel reason.": "请选择取消原因。",
    "No sale with that receipt number.": "没有该小票号的交易。",
    # the counter (issue 17)
    "A percentage is between 0 and 100.": "百分比须在 0 到 100 之间。",
    "A price can only be lowered (catalogue price {price}).": "只能降低价格（目录价 {price}）。",
    "Above the store’s limit: a manager’s PIN is needed.": "超出门店限额：需要店长密码。",
    "All": "全部",
    "Approve": "批准",
    "At most {max} sales can be parked.": "最多可挂 {max} 单。",
    "Cancel": "取消",
    "Cancel reason": "取消原因",
    "Categories": "分类",
    "Choose quantity, discount or price first.": "请先选择数量、折扣或价格。",
    "Clear": "清除",
    "Customer display": "顾客屏",
    "Delete digit": "删除一位",
    "Enter": "确定",
    "Exact": "刚好",
    "Exact cash": "现金刚好",
    "Favourites": "常用",
    "Give the reason for the manager’s approval.": "请填写店长批准的原因。",
    "Hold (挂单)": "挂单",
    "Language": "语言",
    "Manager PIN": "店长密码",
    "Manager approval": "店长批准",
    "No parked sales.": "没有挂单。",
    "No product matches.": "没有匹配的商品。",
    "Note": "备注",
    "Note for the parked sale": "挂单备注",
    "Numpad": "数字键盘",
    "Numpad mode": "键盘模式",
    "Numpad value": "输入值",
    "Only {left} of that line can still be returned.": "该行最多还可退 {left} 件。",
    "Original tender": "原路退回",
    "Paid — thank you!": "支付成功，谢谢！",
    "Parked sales": "挂单列表",
    "Parked sales still open": "仍未取回的挂单",
    "Pick the lines and quantities to return.": "请选择要退的商品和数量。",
    "Please enter your payment password on your phone": "请在手机上输入支付密码",
    "Please show your WeChat or Alipay payment code": "请出示微信或支付宝付款码",
    "Products": "商品",
    "Quantity to return": "退货数量",
    "Quick cash": "快捷现金",
    "Recall": "取单",
    "Recall (取单)": "取单",
    "Refund to": "退款方式",
    "Refund to the original tender or in cash.": "请选择原路退回或现金退款。",
    "Remove": "删除",
    "Reprint": "补打小票",
    "Return": "退货",
    "Return items": "退货退款",
    "Returned": "已退",
    "Round down (抹零)": "抹零",
    "Rounding down (抹零) is off for this store.": "本店未开启抹零。",
    "Sale": "交易",
    "Scan for your e-receipt": "扫码获取电子小票",
    "Select line": "选择行",
    "Sold": "已售",
    "Tap a line first.": "请先点选一行。",
    "Tap a line, a mode, then the value": "点选一行、选择模式，再输入数值",
    "Tender": "支付方式",
    "That parked sale is no longer parked.": "该挂单已被取回。",
    "The total is already round.": "金额已是整数，无需抹零。",
    "WeChat / Alipay": "微信 / 支付宝",
    "Welcome to": "欢迎光临",
    "Your order": "您的订单",
    "Wrong manager PIN: {left} more tries before PIN entry locks.": "店长密码错误：再错 {left} 次将锁定密码输入。",
    "Too many wrong manager PINs: PIN entry is locked for {minutes} min.": "店长密码错误次数过多：密码输入已锁定 {minutes} 分钟。",
    "Manager approval needs the server once after the till starts: it has not been reached yet.": "收银台启动后需先连上服务器一次才能进行店长授权：尚未连上。",
    "hold": "挂单",
    "numpad": "数字键盘",
    "recall": "取单",
    "{n} items": "{n} 件",
    "Disc %": "折扣 %",
    "Disc ¥": "减价 ¥",
    "Order %": "整单 %",
    "Order ¥": "整单 ¥",
    "Order discount": "整单折扣",
    "Rounding (抹零)": "抹零",
    "WeChat Pay": "微信支付",
    "Alipay": "支付宝",
    "Sale #{n} parked.": "第 {n} 单已挂起。",
}


# Where the English words differ from the msgid (status and reason codes shown to the cashier).
EN = {
    "open": "in progress", "pending": "sending…", "unknown": "checking…", "reversing": "reversing…",
    "captured": "paid", "reversed": "reversed", "succeeded": "refunded", "processing": "refund processing",
    "customer_cancelled": "customer cancelled", "cashier_cancelled": "cashier cancelled",
    "payment_failed": "payment failed", "timeout": "timed out",
    "Hold (挂单)": "Hold", "Recall (取单)": "Recall", "Round down (抹零)": "Round down",
}


def main() -> None:
    root = Path(__file__).resolve().parents[1] / "src/tillit/till/locales"
    missing = [m for m in REASONS.values() if m not in ZH]
    assert not missing, f"translate: {missing}"
    for locale, table in (("zh_CN", ZH), ("en", {k: EN.get(k, k) for k in ZH})):
        catalog = Catalog(locale=locale, project="tillit", charset="utf-8")
        for msgid, text in sorted(table.items()):
            catalog.add(msgid, text)
        path = root / locale / "LC_MESSAGES" / "messages.po"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            write_po(fh, catalog, width=0, omit_header=False)
        print(f"wrote {path} ({len(table)} messages)")


if __name__ == "__main__":
    main()
