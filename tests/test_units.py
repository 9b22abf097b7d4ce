"""An API is a unit: a fifth API, defined here and nowhere else, joins the service with
its routes, envelope, security scheme, lock type, setting and catalog part, by being
passed to ``create_app``."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Blueprint, current_app, jsonify, request
from marshmallow import Schema, fields
from werkzeug.exceptions import NotFound

from lockcore import LockConflict, LockType
from lockcore_service import create_app
from lockcore_service.apis import UNITS
from lockcore_service.auth import user_for_key
from lockcore_service.catalog import name_field
from lockcore_service.errors import ApiError
from lockcore_service.openapi import route
from lockcore_service.services import services
from lockcore_service.units import ApiUnit, CatalogPart

from .conftest import CATALOG, KEYS

# -- the extra API: a box office holds booths, one clerk at a time -------------------------

bp = Blueprint("tickets", __name__, url_prefix="/box-office")


class BoothSchema(Schema):
    id = name_field()
    clerks = fields.List(fields.String(), load_default=list)


def envelope(exc: ApiError) -> tuple[Any, int]:
    return jsonify({"problem": exc.message, "code": exc.status}), exc.status


@route(
    bp,
    "/booths/<booth>/hold",
    "POST",
    summary="Hold a booth",
    tag="Box office",
    security=[{"ClerkKey": []}],
    responses={200: ("Held", None)},
)
def hold(booth: str) -> Any:
    user = user_for_key(request.headers.get("X-Clerk-Key"))
    if user is None:
        raise ApiError(401, "Who are you?")
    entry = services().catalog.get("booths", booth)
    if entry is None:
        raise ApiError(404, f"No booth {booth}")
    if user.id not in entry["clerks"]:
        raise ApiError(403, "Not your booth")
    try:
        result = services().locks.acquire(f"tickets:{booth}", "booth", booth, user.id)
    except LockConflict as exc:
        raise ApiError(409, f"Held by {exc.holder.owner if exc.holder else 'someone'}") from exc
    lock = result.lock
    return jsonify({"token": lock.fencing_token, "ttl": current_app.config["TICKETS_TTL"]})


TICKETS = ApiUnit(
    "tickets",
    bp,
    envelope,
    {404: "Nothing here", 405: "Not like that"},
    security_schemes={"ClerkKey": {"type": "apiKey", "in": "header", "name": "X-Clerk-Key"}},
    settings={"TICKETS_TTL": (60.0, float)},
    lock_types=lambda config: [LockType("booth", default_ttl=config["TICKETS_TTL"])],
    catalog=CatalogPart(
        document={"booths": fields.List(fields.Nested(BoothSchema), load_default=list)},
        kinds={"booths": (BoothSchema, "id")},
        entities=lambda doc: {"booths": {b["id"]: b for b in doc["booths"]}},
    ),
)

BOOTHS = (
    CATALOG
    + """
booths:
  - {id: b1, clerks: [alice, bob]}
"""
)


@pytest.fixture
def tickets_app(service_client: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("LOCKCORE_TICKETS_TTL", "45")
    monkeypatch.setenv("LOCKCORE_TICKETS_DURABLE", "false")
    application = create_app(
        {"REDIS_CLIENT": service_client, "KEY_PREFIX": "t"}, apis=[*UNITS, TICKETS]
    )
    services_of(application).users.put(*admin_user())
    admin = {"Authorization": f"Bearer {KEYS['admin']}", "Content-Type": "application/yaml"}
    # the catalog document now has the unit's section (and the admin API takes it)
    loaded = application.test_client().put("/admin/catalog", data=BOOTHS, headers=admin)
    assert loaded.status_code == 200, loaded.json
    assert loaded.json["booths"] == 1
    return application


def clerk(name: str) -> dict[str, str]:
    return {"X-Clerk-Key": KEYS[name]}


def test_the_extra_api_serves_locks_of_its_own_type_with_its_setting(tickets_app: Any) -> None:
    web = tickets_app.test_client()
    first = web.post("/box-office/booths/b1/hold", headers=clerk("alice"))
    assert first.status_code == 200, first.json
    assert first.json["ttl"] == 45.0  # LOCKCORE_TICKETS_TTL, read as the unit declared it
    lock = services_of(tickets_app).locks.list("tickets:b1").locks[0]
    assert (lock.type, lock.owner, lock.fencing_token) == ("booth", "alice", first.json["token"])
    assert lock.remaining is not None and 40 < lock.remaining <= 45  # its type's TTL
    taken = web.post("/box-office/booths/b1/hold", headers=clerk("bob"))
    assert (taken.status_code, taken.json) == (409, {"problem": "Held by alice", "code": 409})


def services_of(application: Any) -> Any:
    return application.extensions["lockcore"]


def test_the_extra_api_answers_errors_in_its_own_envelope(tickets_app: Any) -> None:
    web = tickets_app.test_client()
    anonymous = web.post("/box-office/booths/b1/hold")
    assert (anonymous.status_code, anonymous.json) == (
        401,
        {"problem": "Who are you?", "code": 401},
    )
    stranger = web.post("/box-office/booths/b1/hold", headers=clerk("carol"))
    assert stranger.json == {"problem": "Not your booth", "code": 403}
    # no route: the envelope is chosen by the unit's URL prefix
    lost = web.get("/box-office/nowhere")
    assert (lost.status_code, lost.json) == (404, {"problem": "Nothing here", "code": 404})
    wrong = web.get("/box-office/booths/b1/hold")
    assert (wrong.status_code, wrong.json["code"]) == (405, 405)
    assert "POST" in wrong.headers["Allow"]
    # the other APIs keep theirs
    assert web.get("/locks/nowhere/else").json == {"error": 404, "message": "Not found"}


def test_the_extra_api_edits_its_catalog_part_through_the_admin_api(tickets_app: Any) -> None:
    web = tickets_app.test_client()
    admin = {"Authorization": f"Bearer {KEYS['admin']}"}
    put = web.put("/admin/catalog/booths/b2", json={"clerks": ["carol"]}, headers=admin)
    assert put.status_code == 200, put.json
    assert web.get("/admin/catalog", headers=admin).json["booths"]["b2"] == {
        "id": "b2",
        "clerks": ["carol"],
    }
    assert web.post("/box-office/booths/b2/hold", headers=clerk("carol")).status_code == 200


def test_the_extra_api_is_measured_and_documented(tickets_app: Any) -> None:
    web = tickets_app.test_client()
    web.post("/box-office/booths/b1/hold", headers=clerk("alice"))
    web.get("/box-office/nowhere")
    metrics = web.get("/metrics").get_data(as_text=True)
    assert 'lockcore_http_requests_total{api="tickets",status="200"}' in metrics
    assert 'lockcore_http_requests_total{api="tickets",status="404"}' in metrics
    document = web.get("/openapi.json").json
    assert "post" in document["paths"]["/box-office/booths/{booth}/hold"]
    assert document["components"]["securitySchemes"]["ClerkKey"]["name"] == "X-Clerk-Key"


def test_an_app_without_the_unit_knows_nothing_of_it(service_client: Any) -> None:
    plain = create_app({"REDIS_CLIENT": service_client, "KEY_PREFIX": "t"})
    web = plain.test_client()
    assert "TICKETS_TTL" not in plain.config
    lost = web.post("/box-office/booths/b1/hold")
    assert lost.json == {"error": {"status": 404, "message": NotFound.description}}
    document = web.get("/openapi.json").json
    assert "/box-office/booths/{booth}/hold" not in document["paths"]
    assert "ClerkKey" not in document["components"]["securitySchemes"]
    admin = {"Authorization": f"Bearer {KEYS['admin']}", "Content-Type": "application/yaml"}
    services_of(plain).users.put(*admin_user())
    refused = web.put("/admin/catalog", data=BOOTHS, headers=admin)
    assert refused.status_code == 400 and "booths" in refused.json["error"]["details"]


def admin_user() -> tuple[Any, str]:
    from lockcore_service.identity import User

    return User("admin", "Admin", "", frozenset({"sysadmin"})), KEYS["admin"]


def test_an_app_of_only_the_extra_unit_serves_no_other_api(service_client: Any) -> None:
    alone = create_app({"REDIS_CLIENT": service_client, "KEY_PREFIX": "t"}, apis=[TICKETS])
    web = alone.test_client()
    assert web.get("/locks?subject.courseId=c1").status_code == 404
    assert [t.name for t in services_of(alone).locks.types.values()] == ["booth"]
    assert sorted(services_of(alone).catalog.kinds) == ["booths"]
