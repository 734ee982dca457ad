"""Production payment-provider adapters: WeChat Pay v2 micropay and Alipay 当面付 barcode payment.

Both implement :class:`tillit.domain.provider.PaymentProvider` (three-valued answers, explicit
timeouts, never raising for provider or transport trouble), plus ``download_bill`` for
reconciliation and, for Alipay, ``verify_notification``. The sandbox (``tillit sandbox``) is only
their endpoint in tests and the demo: point ``base_url`` / ``gateway_url`` at it.
"""

from tillit.adapters.providers.alipay import AlipayAccount, AlipayNotification, AlipayProvider
from tillit.adapters.providers.http import BillDownloadError
from tillit.adapters.providers.wechat import WeChatAccount, WeChatPayProvider

__all__ = [
    "AlipayAccount",
    "AlipayNotification",
    "AlipayProvider",
    "BillDownloadError",
    "WeChatAccount",
    "WeChatPayProvider",
]
