"""The typed views that areas hand across (sales/views.py) are the shapes the API documents.

api/schemas.py describes the answers in OpenAPI with pydantic models; the areas build them as TypedDicts.
Both name the same fields in the same order, so a field added to one and not the other fails here."""

from __future__ import annotations

import json
from typing import Any, get_type_hints

import pytest
from pydantic import BaseModel

from tillit.api import schemas
from tillit.domain.messages import CashierMessage
from tillit.sales import views
from tillit.sales.views import SyncAnswer, encode_answers

PAIRS = [
    (views.LineView, schemas.LineOut),
    (views.PaymentView, schemas.PaymentOut),
    (views.RefundView, schemas.RefundOut),
    (views.OrderView, schemas.OrderOut),
    (views.EventView, schemas.EventOut),
    (views.ProductView, schemas.ProductOut),
]


# Fields the entry point adds to an area's view, because only it knows them (a signed link's host).
ADDED_BY_THE_API = {schemas.OrderOut: ["receipt_url"]}


@pytest.mark.parametrize(("view", "model"), PAIRS, ids=[v.__name__ for v, _ in PAIRS])
def test_view_has_the_fields_of_its_api_model_in_order(view: Any, model: type[BaseModel]) -> None:
    assert list(get_type_hints(view)) + ADDED_BY_THE_API.get(model, []) == list(model.model_fields)


def test_cashier_message_view_has_the_keys_of_the_domain_message() -> None:
    assert list(get_type_hints(views.CashierMessageView)) == list(CashierMessage("r", "e", "z").as_dict())


def test_sync_answers_encode_as_their_decoded_form_would() -> None:
    """The sync route splices each stored body in as bytes: the same JSON as encoding the decoded answer."""
    stored = json.dumps(
        {"id": "订单", "total": 2800, "lines": [{"n": 1}]}, separators=(",", ":"), ensure_ascii=False
    )
    answers = [
        SyncAnswer("k1", 201, False, stored.encode()),
        SyncAnswer("k2", 200, True, stored.encode()),
        SyncAnswer("k3", 404, error={"code": "order_not_found", "message": "无", "details": {"id": "x"}}),
    ]
    expected = {"results": [a.as_result() for a in answers]}
    assert encode_answers(answers) == json.dumps(expected, separators=(",", ":"), ensure_ascii=False).encode()
    assert json.loads(encode_answers(answers)) == expected
