"""Facts about the OpenAPI document, read from the document itself so that a new route is covered too."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from tillit.api.app import create_app

# POSTs answering 201 that need no Idempotency-Key, and why.
NATURALLY_IDEMPOTENT = {
    "/v1/reconciliation/bills": "an upload is deduplicated by the bill's sha256",
    "/v1/settlement/statements": "deduplicated by the file's sha256 and each line's own key",  # settle12
}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    # Building the document reads only the body limit from the container.
    app = create_app(SimpleNamespace(settings=SimpleNamespace(max_body_bytes=1024)))  # type: ignore[arg-type]
    return app.openapi()


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, ops in spec["paths"].items() for m, op in ops.items()]


def test_idempotency_key_required_with_limits_on_every_creating_post(spec: dict[str, Any]) -> None:
    creating = [
        (m, p, op)
        for m, p, op in operations(spec)
        if m == "POST" and "201" in op["responses"] and p not in NATURALLY_IDEMPOTENT
    ]
    assert len(creating) >= 8  # the check must have something to check
    for _m, path, op in creating:
        [key] = [p for p in op.get("parameters", []) if p["name"] == "Idempotency-Key"] or [None]
        assert key is not None and key["in"] == "header" and key["required"] is True, path
        text = json.dumps(key["schema"])
        assert '"maxLength": 255' in text and '"minLength": 1' in text and "pattern" in text, path


def test_every_integer_query_param_has_both_bounds(spec: dict[str, Any]) -> None:
    seen = 0
    for _m, path, op in operations(spec):
        for param in op.get("parameters", []):
            schema = param["schema"]
            branches = schema.get("anyOf", [schema])
            for branch in branches:
                if branch.get("type") == "integer":
                    seen += 1
                    assert "minimum" in branch and "maximum" in branch, (path, param["name"])
                    assert -(2**63) <= branch["minimum"] <= branch["maximum"] <= 2**63 - 1, (path, param)
    assert seen >= 5


def test_every_id_path_param_has_the_uuid_pattern(spec: dict[str, Any]) -> None:
    seen = 0
    for _m, path, op in operations(spec):
        for param in op.get("parameters", []):
            if param["in"] == "path" and param["name"].endswith("_id"):
                seen += 1
                assert param["required"] and param["schema"].get("pattern"), (path, param["name"])
                assert "[0-9a-fA-F]{8}" in param["schema"]["pattern"], (path, param["name"])
    assert seen >= 15
