"""Independent bill parsers for the tests: by header name, as providers.md §1.6/§2.7 prescribe."""

from __future__ import annotations

import io
import zipfile


def parse_wechat(text: str) -> tuple[list[dict[str, str]], dict[str, str]]:
    """Detail rows and the summary row of a WeChat bill (one leading backquote stripped per field)."""
    lines = text.split("\r\n")
    assert lines[-1] == "", "bill must end with CRLF"
    lines = lines[:-1]
    header = lines[0].split(",")
    summary_header = lines[-2].split(",")
    rows = []
    for line in lines[1:-2]:
        cells = line.split(",")
        assert all(c.startswith("`") for c in cells), line
        rows.append(dict(zip(header, (c[1:] for c in cells), strict=True)))
    summary_cells = lines[-1].split(",")
    assert all(c.startswith("`") for c in summary_cells)
    return rows, dict(zip(summary_header, (c[1:] for c in summary_cells), strict=True))


def parse_alipay(data: bytes) -> tuple[dict[str, list[str]], list[dict[str, str]], list[dict[str, str]]]:
    """(raw GBK lines per member, detail rows, summary rows) of an Alipay bill ZIP."""
    members: dict[str, list[str]] = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            raw = archive.read(info)
            text = raw.decode("gbk")
            assert text.endswith("\r\n")
            members[info.filename] = text.split("\r\n")[:-1]
    detail_name = next(n for n in members if n.endswith("_业务明细.csv"))
    summary_name = next(n for n in members if n.endswith("_业务明细(汇总).csv"))

    def table(lines: list[str]) -> list[dict[str, str]]:
        body = [line for line in lines if not line.startswith("#")]
        header = body[0].split(",")
        return [dict(zip(header, (c.strip() for c in line.split(",")), strict=True)) for line in body[1:]]

    return members, table(members[detail_name]), table(members[summary_name])
