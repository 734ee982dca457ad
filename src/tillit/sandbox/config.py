"""Sandbox configuration: the merchants it knows, starting wallets and behaviour knobs (TOML)."""

from __future__ import annotations

import secrets
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tillit.sandbox.money import parse_rate

PROVIDERS = ("wechat", "alipay")

#: Alipay's async notification resend schedule after the first attempt (providers.md §2.6):
#: 4m, 10m, 10m, 1h, 2h, 6h, 15h.
ALIPAY_RETRY_SECONDS: tuple[int, ...] = (240, 600, 600, 3600, 7200, 21600, 54000)


class ConfigError(ValueError):
    """The configuration file is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class WechatMerchant:
    """A WeChat Pay v2 merchant: requests are signed with ``api_key`` (MD5 or HMAC-SHA256)."""

    appid: str
    mch_id: str
    api_key: str
    fee_rate_ppm: int
    name: str = "Tillit Test Store"


@dataclass(frozen=True)
class AlipayMerchant:
    """An Alipay open-platform app.

    ``app_public_key`` verifies the app's RSA2 requests; the sandbox signs responses and
    notifications with ``sandbox_private_key`` (clients verify with ``sandbox_public_key``, their
    "Alipay public key"). ``pid`` is the merchant's 2088… partner id used in bills.
    """

    app_id: str
    pid: str
    app_public_key: str
    sandbox_private_key: str
    sandbox_public_key: str
    fee_rate_ppm: int
    stores: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WalletSpec:
    """A customer wallet created on first start if no wallet of that provider and name exists."""

    provider: str
    name: str
    balance_fen: int
    password: str = "123456"
    always_password: bool = False
    funding: str = ""  # engine.FUNDING: WeChat bank_type / Alipay fund_channel; '' = the default


@dataclass(frozen=True)
class Behaviour:
    """Provider behaviour knobs; all durations are sandbox-clock seconds."""

    password_threshold_fen: int = 100_000  # WeChat: a password above 1000 yuan (providers.md §1.2)
    code_ttl_seconds: int = 60
    wechat_pending_timeout_seconds: int = 45  # WeChat auto-revokes unpaid micropay at 45 s
    alipay_pending_timeout_seconds: int = 45
    reverse_while_paying: str = "userpaying"  # or "revoke"
    wechat_refund_min_interval_seconds: int = 60
    wechat_refund_processing_seconds: int = 0
    max_refunds: int = 50
    bill_ready_after_seconds: int = 10 * 3600  # bills for day D from 10:00 on D+1
    bill_url_ttl_seconds: int = 30
    notify_retry_seconds: tuple[int, ...] = ALIPAY_RETRY_SECONDS
    clock_speed: float = 1.0
    seed: int | None = None


@dataclass(frozen=True)
class SandboxConfig:
    """Everything the sandbox needs to know before it starts."""

    wechat: tuple[WechatMerchant, ...] = ()
    alipay: tuple[AlipayMerchant, ...] = ()
    wallets: tuple[WalletSpec, ...] = ()
    behaviour: Behaviour = Behaviour()

    def wechat_merchant(self, mch_id: str) -> WechatMerchant | None:
        """The WeChat merchant with this ``mch_id``, if configured."""
        return next((m for m in self.wechat if m.mch_id == mch_id), None)

    def alipay_merchant(self, app_id: str) -> AlipayMerchant | None:
        """The Alipay app with this ``app_id``, if configured."""
        return next((m for m in self.alipay if m.app_id == app_id), None)


def _req(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in table:
        raise ConfigError(f"{where}: missing '{key}'")
    value = table[key]
    if kind is int and isinstance(value, bool):
        raise ConfigError(f"{where}: '{key}' must be an integer")
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: '{key}' must be {kind.__name__}")
    return value


def _rate(table: dict[str, Any], where: str) -> int:
    try:
        return parse_rate(str(table.get("fee_rate", "0.60%")))
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def parse_config(data: dict[str, Any]) -> SandboxConfig:
    """Build a :class:`SandboxConfig` from parsed TOML; raise :class:`ConfigError` on bad input."""
    wechat = []
    for i, table in enumerate(data.get("wechat", [])):
        where = f"wechat[{i}]"
        key = _req(table, "api_key", str, where)
        if len(key) != 32:
            raise ConfigError(f"{where}: api_key must be 32 characters")
        wechat.append(
            WechatMerchant(
                appid=_req(table, "appid", str, where),
                mch_id=_req(table, "mch_id", str, where),
                api_key=key,
                fee_rate_ppm=_rate(table, where),
                name=str(table.get("name", "Tillit Test Store")),
            )
        )
    alipay = []
    for i, table in enumerate(data.get("alipay", [])):
        where = f"alipay[{i}]"
        pid = _req(table, "pid", str, where)
        if not (pid.startswith("2088") and len(pid) == 16 and pid.isdigit()):
            raise ConfigError(f"{where}: pid must be 16 digits starting 2088")
        merchant = AlipayMerchant(
            app_id=_req(table, "app_id", str, where),
            pid=pid,
            app_public_key=_req(table, "app_public_key", str, where),
            sandbox_private_key=_req(table, "sandbox_private_key", str, where),
            sandbox_public_key=_req(table, "sandbox_public_key", str, where),
            fee_rate_ppm=_rate(table, where),
            stores={str(k): str(v) for k, v in dict(table.get("stores", {})).items()},
        )
        try:
            serialization.load_pem_public_key(merchant.app_public_key.encode())
            serialization.load_pem_private_key(merchant.sandbox_private_key.encode(), None)
            serialization.load_pem_public_key(merchant.sandbox_public_key.encode())
        except ValueError as exc:
            raise ConfigError(f"{where}: unreadable PEM key: {exc}") from exc
        alipay.append(merchant)
    wallets = []
    for i, table in enumerate(data.get("wallets", [])):
        where = f"wallets[{i}]"
        provider = _req(table, "provider", str, where)
        if provider not in PROVIDERS:
            raise ConfigError(f"{where}: provider must be one of {PROVIDERS}")
        balance = _req(table, "balance_fen", int, where)
        if balance < 0:
            raise ConfigError(f"{where}: balance_fen must be >= 0")
        password = str(table.get("password", "123456"))
        if not (password.isdigit() and len(password) == 6):
            raise ConfigError(f"{where}: password must be 6 digits")
        wallets.append(
            WalletSpec(
                provider=provider,
                name=_req(table, "name", str, where),
                balance_fen=balance,
                password=password,
                always_password=bool(table.get("always_password", False)),
                funding=str(table.get("funding", "")),
            )
        )
    raw = dict(data.get("sandbox", {}))
    defaults = Behaviour()
    known = set(Behaviour.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"sandbox: unknown settings {sorted(unknown)}")
    if "notify_retry_seconds" in raw:
        raw["notify_retry_seconds"] = tuple(int(x) for x in raw["notify_retry_seconds"])
    if "clock_speed" in raw:
        raw["clock_speed"] = float(raw["clock_speed"])
    for name, value in raw.items():
        default = getattr(defaults, name)
        if isinstance(default, int) and not isinstance(default, bool) and not isinstance(value, int):
            raise ConfigError(f"sandbox: '{name}' must be an integer")
    behaviour = Behaviour(**raw)
    if behaviour.reverse_while_paying not in ("userpaying", "revoke"):
        raise ConfigError("sandbox: reverse_while_paying must be 'userpaying' or 'revoke'")
    if behaviour.clock_speed < 0:
        raise ConfigError("sandbox: clock_speed must be >= 0")
    return SandboxConfig(tuple(wechat), tuple(alipay), tuple(wallets), behaviour)


def load_config(path: Path) -> SandboxConfig:
    """Read and validate a sandbox TOML file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(
            f"config file not found: {path} (create one with 'tillit sandbox init-config')"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return parse_config(data)


@dataclass(frozen=True)
class RsaPair:
    """A PEM-encoded RSA key pair (PKCS#8 private key, SubjectPublicKeyInfo public key)."""

    private_pem: str
    public_pem: str


def generate_rsa_pair(bits: int = 2048) -> RsaPair:
    """A fresh RSA key pair for RSA2 (SHA256withRSA) signing."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return RsaPair(private_pem, public_pem)


def example_config_text(bits: int = 2048) -> str:
    """A complete working config with freshly generated keys (what ``init-config`` writes)."""
    api_key = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))
    app = generate_rsa_pair(bits)
    sandbox = generate_rsa_pair(bits)
    return f'''# Tillit payment sandbox configuration (generated by `tillit sandbox init-config`).
# Durations are sandbox-clock seconds; money is integer fen (1 yuan = 100 fen).

[sandbox]
clock_speed = 1.0                  # sandbox seconds per real second
password_threshold_fen = 100000    # payments above this need the customer's password
code_ttl_seconds = 60              # payment codes expire after this
wechat_pending_timeout_seconds = 45
alipay_pending_timeout_seconds = 45
reverse_while_paying = "userpaying"   # WeChat reverse during the password step: USERPAYING + recall=Y
wechat_refund_min_interval_seconds = 60
bill_ready_after_seconds = 36000   # the bill for day D is ready at 10:00 on D+1
# seed = 42                        # fix the fault sequence

[[wechat]]
appid = "wx2421b1c4370ec43b"
mch_id = "10000100"
api_key = "{api_key}"
fee_rate = "0.38%"

[[alipay]]
app_id = "2021000000000001"
pid = "2088102177846880"
fee_rate = "0.38%"
stores = {{ S001 = "一号店" }}
# The app's key pair: the sandbox verifies requests with app_public_key. app_private_key is not
# read by the sandbox; give it to your client (python-alipay-sdk: app_private_key_string).
app_public_key = """
{app.public_pem}"""
app_private_key = """
{app.private_pem}"""
# The sandbox's own signing pair: responses and notifications are signed with sandbox_private_key;
# clients verify with sandbox_public_key (python-alipay-sdk: alipay_public_key_string).
sandbox_private_key = """
{sandbox.private_pem}"""
sandbox_public_key = """
{sandbox.public_pem}"""

[[wallets]]
provider = "wechat"
name = "张三"
balance_fen = 500000
password = "123456"

[[wallets]]
provider = "alipay"
name = "李四"
balance_fen = 500000
password = "123456"
'''
