"""A local mailbox for the demo: a real SMTP server (aiosmtpd, installed with the dev extras that
`make run` installs) on 127.0.0.1 that writes every message it accepts to ``<dir>/<n>-<to>.eml``.

Read the mail with ``ls var/mail`` and ``cat var/mail/*.eml`` (or open a file in a mail client).
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class MailDir:
    """The aiosmtpd handler: one .eml file per accepted message, written atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._n = itertools.count(len(list(directory.glob("*.eml"))) + 1)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        to = re.sub(r"[^A-Za-z0-9@._-]", "_", ",".join(envelope.rcpt_tos))[:80]
        path = self.directory / f"{next(self._n):04d}-{to}.eml"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(envelope.content)
        tmp.replace(path)
        return "250 OK"


def start_mailbox(directory: Path, host: str = "127.0.0.1", port: int = 8025) -> Controller:
    controller = Controller(MailDir(directory), hostname=host, port=port)
    controller.start()
    return controller
