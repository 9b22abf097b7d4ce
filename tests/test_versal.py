"""The Versal course gadget lock API (seed 004), on fakeredis and a real redis-server."""

from __future__ import annotations

import time
from typing import Any

import pytest

from .conftest import KEYS


def sid(user: str) -> dict[str, str]:
    return {"SID": KEYS[user]}


def lock_body(course: Any = "c1", gadget: Any = "g1") -> dict[str, Any]:
    return {"type": "gadget", "subject": {"courseId": course, "gadgetId": gadget}}


def take(client: Any, user: str = "alice", course: Any = "c1", gadget: Any = "g1") -> Any:
    return client.post("/locks", json=lock_body(course, gadget), headers=sid(user))


def listing(client: Any, user: str = "alice", course: str = "c1") -> Any:
    return client.get("/locks", query_string={"subject.courseId": course}, headers=sid(user))


def assert_error(response: Any, status: int, message: str) -> None:
    assert response.status_code == status
    assert response.get_json() == {"error": status, "message": message}


# --- POST /locks -------------------------------------------------------------------------


def test_lock_returns_201_with_a_resource_lock(client: Any) -> None:
    response = take(client)
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"id", "type", "subject", "ownerId", "expiresIn"}
    assert isinstance(body["id"], str) and -(2**63) <= int(body["id"]) < 2**63
    assert body["type"] == "gadget"
    assert body["subject"] == {"courseId": "c1", "gadgetId": "g1"}
    assert body["ownerId"] == "alice"
    assert 29_000 < body["expiresIn"] <= 30_000


def test_numeric_ids_are_accepted(client: Any) -> None:
    assert take(client, gadget=7).get_json()["subject"]["gadgetId"] == "7"


def test_lock_held_by_another_user_is_refused(client: Any) -> None:
    take(client, "alice")
    assert_error(take(client, "bob"), 403, "Resource locked")


def test_relocking_your_own_gadget_returns_the_same_lock(client: Any) -> None:
    first = take(client).get_json()
    time.sleep(0.01)
    again = take(client)
    assert again.status_code == 201
    assert again.get_json()["id"] == first["id"]


def test_a_new_lock_releases_the_users_previous_one(client: Any) -> None:
    first = take(client, gadget="g1").get_json()
    second = take(client, gadget="g2").get_json()
    assert [lk["id"] for lk in listing(client).get_json()] == [second["id"]]
    assert take(client, "bob", gadget="g1").status_code == 201
    assert_error(
        client.delete(f"/locks/{first['id']}", headers=sid("alice")),
        404,
        f"Lock '{first['id']}' not found",
    )


def test_locks_in_another_course_are_independent(client: Any) -> None:
    c1 = take(client, course="c1").get_json()
    take(client, course="c2")
    assert [lk["id"] for lk in listing(client, course="c1").get_json()] == [c1["id"]]


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (None, "JSON"),
        ([1, 2], "JSON object"),
        ({"subject": {"courseId": "c1", "gadgetId": "g1"}}, "type"),
        ({"type": "lesson", "subject": {"courseId": "c1", "gadgetId": "g1"}}, "type"),
        ({"type": "gadget"}, "subject"),
        ({"type": "gadget", "subject": {"courseId": "c1"}}, "subject.gadgetId"),
        ({"type": "gadget", "subject": {"courseId": True, "gadgetId": "g1"}}, "subject.courseId"),
        ({"type": "gadget", "subject": {"courseId": "", "gadgetId": "g1"}}, "subject.courseId"),
        ({"type": "gadget", "subject": "c1"}, "subject"),
    ],
)
def test_bad_requests_say_what_is_wrong(client: Any, body: Any, what: str) -> None:
    if body is None:
        response = client.post(
            "/locks", data="{not json", headers=sid("alice"), content_type="application/json"
        )
    else:
        response = client.post("/locks", json=body, headers=sid("alice"))
    assert response.status_code == 400
    payload = response.get_json()
    assert payload["error"] == 400
    assert payload["message"].startswith("Bad request: ") and what in payload["message"]


def test_unknown_course_and_gadget_are_404(client: Any) -> None:
    assert_error(take(client, course="nope"), 404, "Course 'nope' not found")
    assert_error(take(client, gadget="zz"), 404, "Gadget 'zz' not found")


@pytest.mark.parametrize("user", ["carol", "dave"])
def test_only_course_editors_may_lock(client: Any, user: str) -> None:
    assert_error(take(client, user), 403, "Insufficient permissions")


def test_a_sysadmin_may_lock_in_any_course(client: Any) -> None:
    assert take(client, "admin").status_code == 201


@pytest.mark.parametrize("headers", [{}, {"SID": ""}, {"SID": "wrong"}])
def test_missing_or_bad_sid_is_401(client: Any, headers: dict[str, str]) -> None:
    assert_error(
        client.post("/locks", json=lock_body(), headers=headers), 401, "Invalid credentials"
    )
    assert_error(
        client.get("/locks?subject.courseId=c1", headers=headers), 401, "Invalid credentials"
    )
    assert_error(client.delete("/locks/1", headers=headers), 401, "Invalid credentials")


# --- GET /locks --------------------------------------------------------------------------


def test_members_list_the_courses_gadget_locks(client: Any) -> None:
    a = take(client, "alice", gadget="g1").get_json()
    b = take(client, "bob", gadget="g2").get_json()
    listed = listing(client, "carol")
    assert listed.status_code == 200
    assert sorted(listed.get_json(), key=lambda x: x["id"]) == sorted(
        [
            {**a, "expiresIn": pytest.approx(a["expiresIn"], abs=2000)},
            {**b, "expiresIn": pytest.approx(b["expiresIn"], abs=2000)},
        ],
        key=lambda x: x["id"],
    )


def test_expires_in_counts_down(client: Any) -> None:
    take(client)
    first = listing(client).get_json()[0]["expiresIn"]
    time.sleep(0.05)
    assert listing(client).get_json()[0]["expiresIn"] < first


def test_listing_an_empty_course_is_an_empty_array(client: Any) -> None:
    response = listing(client)
    assert response.status_code == 200 and response.get_json() == []


def test_listing_needs_the_course_parameter(client: Any) -> None:
    response = client.get("/locks", headers=sid("alice"))
    assert response.status_code == 400 and "subject.courseId" in response.get_json()["message"]


def test_listing_errors(client: Any) -> None:
    assert_error(listing(client, course="nope"), 404, "Course 'nope' not found")
    assert_error(listing(client, "dave"), 403, "Insufficient permissions")
    assert listing(client, "admin").status_code == 200


# --- DELETE /locks/{id} ------------------------------------------------------------------


def test_unlock_returns_200_and_an_empty_object(client: Any) -> None:
    lock = take(client).get_json()
    response = client.delete(f"/locks/{lock['id']}", headers=sid("alice"))
    assert response.status_code == 200 and response.get_json() == {}
    assert listing(client).get_json() == []


def test_unlocking_another_users_lock_is_refused(client: Any) -> None:
    lock = take(client, "alice").get_json()
    assert_error(
        client.delete(f"/locks/{lock['id']}", headers=sid("bob")), 403, "Insufficient permissions"
    )
    assert [lk["id"] for lk in listing(client).get_json()] == [lock["id"]]


def test_a_sysadmin_may_unlock_any_lock(client: Any) -> None:
    lock = take(client, "alice").get_json()
    assert client.delete(f"/locks/{lock['id']}", headers=sid("admin")).status_code == 200
    assert listing(client).get_json() == []


@pytest.mark.parametrize("lock_id", ["123", "abc", "9223372036854775807", "100000000000000001"])
def test_unknown_lock_is_404(client: Any, lock_id: str) -> None:
    assert_error(
        client.delete(f"/locks/{lock_id}", headers=sid("alice")), 404, f"Lock '{lock_id}' not found"
    )


def test_another_apis_lock_is_not_a_versal_lock(app: Any, client: Any) -> None:
    locks = app.extensions["lockcore"].locks
    other = locks.acquire("versal:course:c1", "gadget", "g1", "alice")  # a real one
    foreign = locks.acquire("elsewhere", "gadget", "x", "alice")
    assert client.delete(f"/locks/{foreign.lock.id}", headers=sid("alice")).status_code == 404
    assert locks.get(foreign.lock.id).owner == "alice"  # untouched
    assert client.delete(f"/locks/{foreign.lock.id}", headers=sid("admin")).status_code == 404
    assert client.delete(f"/locks/{other.lock.id}", headers=sid("alice")).status_code == 200


def test_expired_lock_disappears(app: Any, client: Any) -> None:
    app.extensions["lockcore"].locks.acquire("versal:course:c1", "gadget", "g1", "alice", ttl=0.1)
    assert len(listing(client).get_json()) == 1
    time.sleep(0.15)
    assert listing(client).get_json() == []
    assert take(client, "bob").status_code == 201


def test_wrong_method_and_unknown_path_keep_the_envelope(client: Any) -> None:
    assert_error(client.put("/locks", headers=sid("alice")), 405, "Method not allowed")
    assert_error(client.get("/locks/1/2", headers=sid("alice")), 404, "Not found")


# --- the Versal request, checked without the schema ---------------------------------------

REQUESTS: list[Any] = [
    {"type": "gadget", "subject": {"courseId": "c1", "gadgetId": "g1"}},
    {"type": "gadget", "subject": {"courseId": "c1", "gadgetId": "g1", "x": 1}, "y": 2},
    {"type": "gadget", "subject": {"courseId": 7, "gadgetId": "g1"}},
    {"type": "gadget", "subject": {"courseId": "c1", "gadgetId": True}},
    {"type": "gadget", "subject": {"courseId": " ", "gadgetId": "g1"}},
    {"type": "gadget", "subject": {"courseId": "", "gadgetId": "g1"}},
    {"type": "gadget", "subject": {"courseId": "c" * 513, "gadgetId": "g1"}},
    {"type": "gadget", "subject": {"courseId": "\ud800", "gadgetId": "g1"}},
    {"type": "gadget", "subject": {"courseId": None, "gadgetId": "g1"}},
    {"type": "gadget", "subject": {"gadgetId": "g1"}},
    {"type": "gadget", "subject": ["c1", "g1"]},
    {"type": "gadget", "subject": None},
    {"type": "gadget"},
    {"type": "Gadget", "subject": {"courseId": "c1", "gadgetId": "g1"}},
    {"type": ["gadget"], "subject": {"courseId": "c1", "gadgetId": "g1"}},
    {"subject": {"courseId": "c1", "gadgetId": "g1"}},
    {},
]


@pytest.mark.parametrize("data", REQUESTS)
def test_the_usual_lock_request_is_read_as_the_schema_reads_it(data: Any) -> None:
    import fakeredis
    from marshmallow import ValidationError

    from lockcore_service import create_app
    from lockcore_service.apis import versal

    with create_app({"REDIS_CLIENT": fakeredis.FakeRedis()}).app_context():
        try:
            expected: Any = versal.LockRequestSchema().load(data)
        except ValidationError as exc:
            expected = exc.messages
        try:
            got: Any = versal.lock_request(data)
        except ValidationError as exc:
            got = exc.messages
    assert got == expected


def test_a_resource_lock_is_what_its_schema_dumps(app: Any) -> None:
    locks = app.extensions["lockcore"].locks
    from lockcore_service.apis import versal

    lock = locks.acquire("versal:course:c1", "gadget", "g1", "alice").lock
    built = versal.resource_lock(lock)
    assert built == versal.ResourceLockSchema().dump(
        {
            "id": lock.id,
            "type": lock.type,
            "subject": {"courseId": "c1", "gadgetId": lock.resource},
            "ownerId": lock.owner,
            "expiresIn": built["expiresIn"],
        }
    )
    assert list(built) == ["id", "type", "subject", "ownerId", "expiresIn"]
