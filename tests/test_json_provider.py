"""The API's JSON encoder (api/json_provider.py): orjson, answering what Flask's own encoder answered."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from flask import Flask

from api.json_provider import OrjsonProvider


@dataclasses.dataclass
class Point:
    x: int
    label: str


VALUES = {
    "text": 'bücher.example <b> "quoted" \u2028',
    "numbers": [0, -1, 2**63 - 1, 1.5, 1e-7],
    "nested": {"b": [True, False, None], "a": {}},
    "moment": datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC),
    "day": date(2026, 3, 4),
    "decimal": Decimal("12.50"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "dataclass": Point(1, "one"),
    "int keys": {1: "one", 2: "two"},
}


def apps() -> tuple[Flask, Flask]:
    ours, flasks = Flask("ours"), Flask("flasks")
    ours.json = OrjsonProvider(ours)
    return ours, flasks


@pytest.mark.parametrize("sort_keys", [False, True])
def test_an_answer_means_what_flasks_own_encoder_made_of_it(sort_keys):
    ours, flasks = apps()
    ours.json.sort_keys = flasks.json.sort_keys = sort_keys
    with ours.app_context():
        answered = ours.json.response(VALUES)
        text = ours.json.dumps(VALUES)
    with flasks.app_context():
        expected = flasks.json.response(VALUES)
    assert answered.mimetype == "application/json"
    assert answered.get_data().endswith(b"\n") and not answered.get_data().endswith(b"\n\n")
    assert json.loads(answered.get_data()) == json.loads(expected.get_data()) == json.loads(text)
    keys = list(json.loads(answered.get_data()))
    assert keys == (sorted(VALUES) if sort_keys else list(VALUES))
    assert "bücher".encode() in answered.get_data()  # UTF-8, not escaped


def test_what_orjson_cannot_encode_goes_to_the_standard_library():
    ours, _ = apps()
    with ours.app_context():
        assert json.loads(ours.json.response({"big": 2**70}).get_data()) == {"big": 2**70}
        with pytest.raises(TypeError, match="not JSON serializable"):
            ours.json.response({"what": object()})


def test_people_get_it_indented_as_flask_does():
    ours, _ = apps()
    ours.json.compact = False
    with ours.app_context():
        assert ours.json.response({"a": 1}).get_data() == b'{\n  "a": 1\n}\n'
