"""The README's curl walk-through works as written against a server started like `make run` does."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import Env

README = Path(__file__).resolve().parents[2] / "README.md"


def walkthrough() -> str:
    text = README.read_text()
    block = re.search(r"<!-- walkthrough:start -->\s*```bash\n(.*?)```", text, re.S)
    assert block, "README lost its walk-through"
    return block.group(1)


@pytest.mark.parametrize("env", ["sqlite"], indirect=True)
def test_readme_walkthrough(env: Env) -> None:
    keys = env.demo_keys()
    proc, base = env.serve()
    try:
        script = walkthrough()
        script = script.replace("tk_ter_paste_the_terminal_key_here", keys["terminal_key"])
        script = script.replace("http://127.0.0.1:8000", base)
        commands = re.split(r"\n(?=curl|export|#)", script)
        outputs = []
        for cmd in commands:
            if not cmd.strip().startswith("curl"):
                continue
            outputs.append(
                subprocess.run(
                    ["bash", "-c", "\n".join(c for c in commands if c.startswith("export")) + "\n" + cmd],
                    capture_output=True,
                    text=True,
                    timeout=30,
                ).stdout
            )
        for out in outputs:
            assert '"error"' not in out, out
        order = json.loads(outputs[-2])
        assert (order["status"], order["paid_amount"], order["refunded_amount"]) == ("paid", 6600, 1000)
        assert "idempotent-replayed: true" in outputs[3].lower()
        payment = json.loads(outputs[2])
        assert payment["change_due"] == 3400
        events = json.loads(outputs[-1])["data"]
        assert [e["to_status"] for e in events] == ["open", "captured", "paid", "succeeded"]
    finally:
        proc.terminate()
        proc.wait(timeout=15)
