"""Every error code the code can raise is listed in docs/errors.md (and nothing stale is listed)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RAISERS = {
    "statement_error",  # settle12
    "invalid",
    "conflict",
    "DomainError",
    "not_found",
    "error_response",
    "BillFormatError",
}
# Codes built from a pattern (f-strings): documented by pattern, expanded here.
PATTERNS = {
    "not_found": "{entity}_not_found",
}


def raised_codes() -> set[str]:
    codes: set[str] = set()
    for path in (ROOT / "src/tillit").rglob("*.py"):
        if "sandbox" in path.parts:
            continue  # the sandbox answers with the providers' own codes (docs/sandbox.md)
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name in RAISERS and node.args:
                    arg = (
                        node.args[0]
                        if name != "error_response"
                        else (node.args[1] if len(node.args) > 1 else None)
                    )
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        codes.add(arg.value if name != "not_found" else f"{arg.value}_not_found")
    from tillit.api.errors import HTTP_CODES
    from tillit.domain.alerts import ALERT
    from tillit.kernel.transitions import MACHINES  # sales machines and the fulfilment machine

    codes |= set(HTTP_CODES.values()) | {
        "malformed_json",
        "validation_error",
        "internal_error",
        "body_too_large",
    }
    codes |= {f"{m}_invalid_transition" for m in MACHINES} | {f"{m}_changed" for m in MACHINES}
    codes.add(f"{ALERT.name}_invalid_transition")  # monitoring: the alert machine (domain/alerts.py)
    codes.discard("http_error")
    return codes


def documented_codes() -> set[str]:
    text = (ROOT / "docs/errors.md").read_text()
    return set(re.findall(r"^\| `([a-z0-9_]+)` \|", text, flags=re.M))


def test_every_code_is_documented() -> None:
    missing = raised_codes() - documented_codes()
    assert not missing, f"add to docs/errors.md: {sorted(missing)}"


def test_no_stale_codes_documented() -> None:
    stale = documented_codes() - raised_codes()
    assert not stale, f"remove from docs/errors.md: {sorted(stale)}"
