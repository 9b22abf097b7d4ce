"""``json_response`` answers exactly what ``jsonify`` answers: the same bytes, headers and
status, for every value of the kinds it is for, and for anything else too (by falling
back to ``jsonify``)."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest
from flask import jsonify
from hypothesis import given, settings
from hypothesis import strategies as st

from lockcore_service import create_app
from lockcore_service.fastjson import json_response

APP = create_app({"REDIS_CLIENT": fakeredis.FakeRedis()})

SCALARS = (
    st.text()
    | st.text(alphabet=st.characters(max_codepoint=0x80))
    | st.integers()
    | st.integers(min_value=-(2**63), max_value=2**64)
    | st.booleans()
    | st.none()
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)


def same(value: Any) -> None:
    with APP.test_request_context():
        fast, slow = json_response(value), jsonify(value)
        assert fast.get_data() == slow.get_data()
        assert fast.status_code == slow.status_code
        assert sorted(fast.headers.items()) == sorted(slow.headers.items())


@settings(max_examples=400, derandomize=True, deadline=None)
@given(VALUES)
def test_the_same_answer_as_jsonify(value: Any) -> None:
    same(value)


@pytest.mark.parametrize(
    "value",
    [
        {
            "id": "12345678901234567",
            "type": "gadget",
            "subject": {"courseId": "c1", "gadgetId": "g1"},
            "ownerId": "alice",
            "expiresIn": 30000,
        },
        [],
        {},
        '\x00\x1f\x7f"\\/\b\f\n\r\t',
        "é",
        "\ud800",
        2**63,
        2**64,
        -(2**63) - 1,
        {"a": [1, None, True, False, "x"]},
    ],
)
def test_edge_cases(value: Any) -> None:
    same(value)


def test_an_app_that_indents_or_sorts_gets_jsonify_itself() -> None:
    app = create_app({"REDIS_CLIENT": fakeredis.FakeRedis()})
    value = {"b": 1, "a": [1, 2]}
    for change in ({"compact": False}, {"sort_keys": True}):
        for name, setting in change.items():
            setattr(app.json, name, setting)
        with app.test_request_context():
            assert json_response(value).get_data() == jsonify(value).get_data()
