"""Provider wire signing and parsing (pure): the official WeChat test vector, Alipay RSA2, raw
member extraction, amounts without floats, payment-code routing and masking, secret-free reprs."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st

from tillit.adapters.providers import AlipayAccount, WeChatAccount
from tillit.adapters.providers.signing import (
    ResponseFormatError,
    XmlError,
    alipay_string_to_sign,
    fen_to_yuan,
    load_private_key,
    load_public_key,
    parse_wechat_xml,
    rsa2_sign,
    rsa2_verify,
    to_wechat_xml,
    top_level_members,
    wechat_sign,
    wechat_string_to_sign,
    wechat_verify,
    yuan_to_fen,
)
from tillit.domain.provider import detect_method, mask_code

# providers.md §1.1: the official example of the 安全规范 page.
VECTOR = {
    "appid": "wxd930ea5d5a258f4f",
    "mch_id": "10000100",
    "device_info": "1000",
    "body": "test",
    "nonce_str": "ibuaiVcKdpRxkhJA",
}
VECTOR_KEY = "192006250b4c09247ec02edce69f6a2d"
VECTOR_MD5 = "9A0A8659F005D6984697E2CA0A9CF3B7"
VECTOR_HMAC = "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"


def test_wechat_official_vector() -> None:
    assert wechat_string_to_sign(VECTOR) == (
        "appid=wxd930ea5d5a258f4f&body=test&device_info=1000&mch_id=10000100&nonce_str=ibuaiVcKdpRxkhJA"
    )
    assert wechat_sign(VECTOR, VECTOR_KEY, "MD5") == VECTOR_MD5
    assert wechat_sign(VECTOR, VECTOR_KEY, "HMAC-SHA256") == VECTOR_HMAC


def test_wechat_sign_skips_empty_fields_and_sign_itself() -> None:
    with_noise = {**VECTOR, "attach": "", "sign": "ANYTHING"}
    assert wechat_sign(with_noise, VECTOR_KEY, "MD5") == VECTOR_MD5
    with pytest.raises(ValueError):
        wechat_sign(VECTOR, VECTOR_KEY, "SHA1")


def test_wechat_verify() -> None:
    signed = {**VECTOR, "sign": VECTOR_MD5}
    assert wechat_verify(signed, VECTOR_KEY, "MD5")
    assert wechat_verify({**VECTOR, "sign": VECTOR_MD5.lower()}, VECTOR_KEY, "MD5")
    assert not wechat_verify(signed, VECTOR_KEY, "HMAC-SHA256")  # the declared algorithm only
    assert not wechat_verify({**signed, "body": "test2"}, VECTOR_KEY, "MD5")
    assert not wechat_verify({**signed, "new_field": "x"}, VECTOR_KEY, "MD5")  # extra fields are signed too
    assert not wechat_verify(VECTOR, VECTOR_KEY, "MD5")  # unsigned
    assert not wechat_verify(signed, "0" * 32, "MD5")


def test_wechat_xml_round_trip_and_cdata() -> None:
    fields = {"body": "a<b>&c]]>d 商品", "total_fee": "1", "empty": ""}
    assert parse_wechat_xml(to_wechat_xml(fields)) == fields
    parsed = parse_wechat_xml(b"<xml><a><![CDATA[ x&y ]]></a><b>1</b><c/></xml>")
    assert parsed == {"a": " x&y ", "b": "1", "c": ""}  # values are kept exactly, never stripped


@pytest.mark.parametrize(
    "body",
    [
        b'<!DOCTYPE xml [<!ENTITY e "boom">]><xml><a>&e;</a></xml>',
        b'<?xml version="1.0"?><!doctype xml SYSTEM "file:///etc/passwd"><xml/>',
        b"<root><a>1</a></root>",
        b"<xml><a><b>1</b></a></xml>",
        b"<xml><a>1</a><a>2</a></xml>",
        b"<xml>",
        b"",
    ],
)
def test_wechat_xml_refuses_dtds_and_odd_shapes(body: bytes) -> None:
    with pytest.raises(XmlError):
        parse_wechat_xml(body)


def _key_pair() -> tuple[rsa.RSAPrivateKey, str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return key, private_pem, public_pem


KEY, PRIVATE_PEM, PUBLIC_PEM = _key_pair()


def test_alipay_string_to_sign_includes_sign_type_and_skips_sign_and_empties() -> None:
    params = {
        "method": "alipay.trade.pay",
        "app_id": "2021",
        "sign_type": "RSA2",
        "sign": "x",
        "notify_url": "",
        "biz_content": '{"a":"1"}',
    }
    assert (
        alipay_string_to_sign(params)
        == 'app_id=2021&biz_content={"a":"1"}&method=alipay.trade.pay&sign_type=RSA2'
    )
    assert alipay_string_to_sign(params, exclude=("sign", "sign_type")) == (
        'app_id=2021&biz_content={"a":"1"}&method=alipay.trade.pay'
    )


def test_rsa2_is_sha256_with_rsa_pkcs1_v15() -> None:
    message = 'app_id=2021&biz_content={"subject":"商品"}&sign_type=RSA2'
    signature = rsa2_sign(message, load_private_key(PRIVATE_PEM))
    public = load_public_key(PUBLIC_PEM)
    assert rsa2_verify(message, signature, public)
    assert not rsa2_verify(message + " ", signature, public)
    assert not rsa2_verify(message, "not base64!", public)
    assert not rsa2_verify(message, base64.b64encode(b"x" * 256).decode(), public)
    # An independent implementation agrees (pycryptodome, as python-alipay-sdk uses).
    crypto_hash = pytest.importorskip("Cryptodome.Hash.SHA256")
    pkcs1 = pytest.importorskip("Cryptodome.Signature.PKCS1_v1_5")
    rsa_key = pytest.importorskip("Cryptodome.PublicKey.RSA")
    verifier = pkcs1.new(rsa_key.import_key(PUBLIC_PEM))
    assert verifier.verify(crypto_hash.new(message.encode()), base64.b64decode(signature))


def test_keys_load_from_bare_base64_as_the_alipay_console_shows_them() -> None:
    bare_private = "".join(PRIVATE_PEM.strip().splitlines()[1:-1])
    bare_public = "".join(PUBLIC_PEM.strip().splitlines()[1:-1])
    message = "a=1"
    assert rsa2_verify(
        message, rsa2_sign(message, load_private_key(bare_private)), load_public_key(bare_public)
    )
    pkcs1 = KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    assert load_private_key(pkcs1).private_numbers() == KEY.private_numbers()
    with pytest.raises(ValueError) as exc:
        load_private_key("MIIBsecretbutbroken")
    assert "MIIBsecret" not in str(exc.value)
    with pytest.raises(ValueError):
        load_public_key("garbage")


def test_top_level_members_keep_the_raw_text() -> None:
    body = (
        '{ "alipay_trade_pay_response" : {"code":"10000", "msg" : "Success","s":"\\u5546"} ,\n "sign":"abc" }'
    )
    members = top_level_members(body)
    assert members["alipay_trade_pay_response"][0] == '{"code":"10000", "msg" : "Success","s":"\\u5546"}'
    assert members["alipay_trade_pay_response"][1] == {"code": "10000", "msg": "Success", "s": "商"}
    assert members["sign"] == ('"abc"', "abc")
    decoy = '{"x":"\\"alipay_trade_pay_response\\":{}","alipay_trade_pay_response":{"code":"1"}}'
    assert top_level_members(decoy)["alipay_trade_pay_response"][0] == '{"code":"1"}'
    assert top_level_members("{}") == {}


@pytest.mark.parametrize(
    "text", ["", "[]", '{"a":1', '{"a":1}x', '{"a":1,"a":2}', '{"a" 1}', "{a:1}", '{"a":1,}']
)
def test_top_level_members_refuse_malformed_json(text: str) -> None:
    with pytest.raises(ResponseFormatError):
        top_level_members(text)


@pytest.mark.parametrize(
    ("fen", "yuan"),
    [(0, "0.00"), (1, "0.01"), (10, "0.10"), (1234, "12.34"), (100_000, "1000.00"), (-250, "-2.50")],
)
def test_fen_to_yuan(fen: int, yuan: str) -> None:
    assert fen_to_yuan(fen) == yuan
    assert yuan_to_fen(yuan) == fen


@pytest.mark.parametrize(("text", "fen"), [("12", 1200), ("12.3", 1230), ("0.01", 1), (" 7.00 ", 700)])
def test_yuan_to_fen_accepts_short_forms(text: str, fen: int) -> None:
    assert yuan_to_fen(text) == fen


@pytest.mark.parametrize("text", ["", "abc", "1.234", "1e2", "NaN", "Infinity", "+1.00", "1_000.00", "0.001"])
def test_yuan_to_fen_refuses_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        yuan_to_fen(text)


def test_fen_to_yuan_refuses_floats() -> None:
    with pytest.raises(TypeError):
        fen_to_yuan(12.34)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        fen_to_yuan(True)


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_yuan_round_trip(fen: int) -> None:
    assert yuan_to_fen(fen_to_yuan(fen)) == fen


@pytest.mark.parametrize(
    ("code", "method"),
    [
        ("134567890123456789", "wechat"),
        ("101234567890123456", "wechat"),
        ("151234567890123456", "wechat"),
        (" 134567890123456789\n", "wechat"),
        ("161234567890123456", None),  # 16 is neither
        ("13456789012345678", None),  # 17 digits
        ("281234567890123456", "alipay"),
        ("2512345678901234", "alipay"),  # 16 digits
        ("301234567890123456789012", "alipay"),  # 24 digits
        ("3012345678901234567890123", None),  # 25 digits
        ("311234567890123456", None),
        ("241234567890123456", None),
        ("13456789012345678a", None),
        ("１３４５６７８９０１２３４５６７８９", None),  # full-width digits are not ASCII
        ("", None),
    ],
)
def test_detect_method(code: str, method: str | None) -> None:
    assert detect_method(code) == method


def test_mask_code() -> None:
    assert mask_code("134567890123456789") == "1345**********6789"
    assert mask_code(" 281234567890123456 ") == "2812**********3456"
    assert mask_code("12345678") == "********"
    assert mask_code("123") == "***"
    assert mask_code("123456789") == "1234*6789"


def test_account_reprs_never_show_secrets() -> None:
    wechat = WeChatAccount(
        "wx1", "100", "S3CRETKEY" * 3 + "abcde", "https://x", cert_file="/k/c.pem", key_file="/k/k.pem"
    )
    assert "S3CRET" not in repr(wechat) and "S3CRET" not in str(wechat) and "/k/" not in repr(wechat)
    assert "wx1" in repr(wechat) and "100" in repr(wechat)
    alipay = AlipayAccount("2021", PRIVATE_PEM, PUBLIC_PEM, "https://gw")
    assert "PRIVATE" not in repr(alipay) and "PUBLIC" not in repr(alipay) and "2021" in repr(alipay)


def test_accounts_refuse_bad_settings() -> None:
    with pytest.raises(ValueError):
        WeChatAccount("wx1", "100", "k", "https://x", sign_type="SHA1")
    with pytest.raises(ValueError):
        WeChatAccount("wx1", "100", "", "https://x")
    with pytest.raises(ValueError):
        WeChatAccount("wx1", "100", "k", "https://x", timeout_s=0)
    with pytest.raises(ValueError):
        AlipayAccount("", PRIVATE_PEM, PUBLIC_PEM, "https://gw")
