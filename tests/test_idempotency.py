"""Idempotency-Key on the create calls: a repeat returns the first outcome, never acts
again; on fakeredis and a real redis-server."""

from __future__ import annotations

from typing import Any

from .conftest import KEYS
from .test_vidispine import ALICE, JSON, future


def auth(user: str, key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {KEYS[user]}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


def take(client: Any, headers: dict[str, str], resource: str = "r") -> Any:
    return client.post("/v1/locks", json={"scope": "batch", "resource": resource}, headers=headers)


def kept_keys(app: Any) -> list[str]:
    client = app.extensions["lockcore"].client
    return [k.decode() for k in client.scan_iter(match="t:idem:*")]


def test_a_repeat_replays_the_first_answer(client: Any, app: Any) -> None:
    first = take(client, auth("alice", "k-1"))
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    again = take(client, auth("alice", "k-1"))
    assert again.status_code == 201  # as the first time, not "already yours" (200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    without_key = take(client, auth("alice"))
    assert without_key.status_code == 200  # a plain repeat does act: a refresh


def test_the_kept_answer_expires_and_is_not_readable_in_redis(client: Any, app: Any) -> None:
    lock = take(client, auth("alice", "k-2")).get_json()
    [key] = kept_keys(app)
    redis_client = app.extensions["lockcore"].client
    assert 0 < redis_client.pttl(key) <= app.config["IDEMPOTENCY_TTL"] * 1000
    stored = redis_client.get(key)
    assert lock["id"].encode() not in stored and b"alice" not in stored


def test_a_key_reused_for_another_request_is_422(client: Any) -> None:
    assert take(client, auth("alice", "k-3"), "r1").status_code == 201
    reused = take(client, auth("alice", "k-3"), "r2")
    assert reused.status_code == 422
    assert (
        reused.get_json()["error"]["message"] == "This Idempotency-Key was used for another request"
    )


def test_keys_of_two_callers_never_meet(client: Any) -> None:
    a = take(client, auth("alice", "same"), "ra").get_json()
    b = take(client, auth("bob", "same"), "rb").get_json()
    assert (a["owner"], b["owner"]) == ("alice", "bob") and a["id"] != b["id"]


def test_a_failed_request_is_not_kept(client: Any) -> None:
    held = take(client, auth("bob")).get_json()
    assert take(client, auth("alice", "k-4")).status_code == 409
    client.delete(f"/v1/locks/{held['id']}", headers=auth("bob"))
    assert take(client, auth("alice", "k-4")).status_code == 201


def test_a_malformed_key_is_refused_in_the_envelope(client: Any) -> None:
    for bad in ("", "x" * 256, "caf\u00e9"):
        response = client.post(
            "/v1/locks",
            json={"scope": "s", "resource": "r"},
            headers={**auth("alice"), "Idempotency-Key": bad},
        )
        assert response.status_code == 400, bad
        assert response.get_json()["error"]["code"] == "invalid"


def test_vidispine_create_with_a_key_makes_one_lock(client: Any, app: Any) -> None:
    body = {"expiryTime": future()}
    headers = {**ALICE, **JSON, "Idempotency-Key": "vx-1"}
    first = client.post("/API/item/VX-1/deletion-lock", json=body, headers=headers)
    again = client.post("/API/item/VX-1/deletion-lock", json=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.get_json()["id"] == first.get_json()["id"]
    assert app.extensions["lockcore"].locks.count("vidispine") == 1
    other = client.post(
        "/API/item/VX-1/deletion-lock",
        json=body,
        headers={**ALICE, **JSON, "Idempotency-Key": "vx-2"},
    )
    assert other.get_json()["id"] != first.get_json()["id"]
    assert app.extensions["lockcore"].locks.count("vidispine") == 2


def test_versal_lock_with_a_key_replays_the_first_answer(client: Any) -> None:
    body = {"type": "gadget", "subject": {"courseId": "c1", "gadgetId": "g1"}}
    headers = {"SID": KEYS["alice"], "Idempotency-Key": "v-1"}
    first = client.post("/locks", json=body, headers=headers)
    assert first.status_code == 201
    again = client.post("/locks", json=body, headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()


def test_a_lost_first_answer_still_finds_the_first_lock(client: Any, app: Any) -> None:
    body = {"expiryTime": future()}
    headers = {**ALICE, **JSON, "Idempotency-Key": "vx-lost"}
    first = client.post("/API/item/VX-1/deletion-lock", json=body, headers=headers)
    # The kept answer lost (as when Redis failed right after the lock was made): the
    # acquire's request id still finds the first lock instead of making a second one.
    for key in kept_keys(app):
        app.extensions["lockcore"].client.delete(key)
    again = client.post("/API/item/VX-1/deletion-lock", json=body, headers=headers)
    assert "Idempotent-Replayed" not in again.headers
    assert again.get_json()["id"] == first.get_json()["id"]
    assert app.extensions["lockcore"].locks.count("vidispine") == 1


def test_admin_user_creation_with_a_key_issues_one_key_and_keeps_it_unreadable(
    client: Any, app: Any
) -> None:
    headers = {**auth("admin"), "Idempotency-Key": "new-erin"}
    body = {"id": "erin", "name": "Erin"}
    first = client.post("/admin/users", json=body, headers=headers)
    again = client.post("/admin/users", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json()  # the same key, not a second one
    assert again.headers["Cache-Control"] == "no-store"
    assert again.headers["Idempotent-Replayed"] == "true"
    record = client.get("/admin/users/erin", headers=auth("admin")).get_json()
    assert record["key_ids"] == [first.get_json()["key_id"]]
    redis_client = app.extensions["lockcore"].client
    [kept] = kept_keys(app)
    assert first.get_json()["api_key"].encode() not in redis_client.get(kept)
    issued = [
        client.post("/admin/users/erin/keys", headers={**auth("admin"), "Idempotency-Key": "k"})
        for _ in range(2)
    ]
    assert issued[0].get_json() == issued[1].get_json()
    record = client.get("/admin/users/erin", headers=auth("admin")).get_json()
    assert len(record["key_ids"]) == 2


def edx_lock(client: Any, key: str) -> Any:
    return client.post(
        "/api/3/action/lock_workspace",
        json={"workspace_id": "ws-1"},
        headers={"Authorization": KEYS["alice"], "User-Agent": "EDX-USER", "Idempotency-Key": key},
    )


def test_an_edx_toggle_repeated_with_its_key_does_not_toggle_back(client: Any, app: Any) -> None:
    first = edx_lock(client, "t-1")
    assert first.get_json()["result"]["is_locked"] is True
    assert edx_lock(client, "t-1").get_json() == first.get_json()
    # Even when the first answer was lost, the repeat finds the lock its call made.
    for key in kept_keys(app):
        app.extensions["lockcore"].client.delete(key)
    again = edx_lock(client, "t-1")
    assert again.get_json()["result"]["is_locked"] is True
    assert edx_lock(client, "t-2").get_json()["result"]["is_locked"] is False  # a new call
