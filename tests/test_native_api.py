"""The /v1 JSON API for workers in any language, on fakeredis and a real redis-server."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from .conftest import KEYS


def auth(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[user]}"}


def take(client: Any, user: str = "alice", **body: Any) -> Any:
    return client.post(
        "/v1/locks", json={"scope": "batch", "resource": "nightly", **body}, headers=auth(user)
    )


def test_acquire_get_refresh_release(client: Any) -> None:
    made = take(client, ttl=10, metadata={"host": "w1"})
    assert made.status_code == 201
    lock = made.get_json()
    assert set(lock) == {
        "id",
        "scope",
        "type",
        "resource",
        "owner",
        "fencing_token",
        "acquired_at",
        "expires_at",
        "expires_in",
        "metadata",
    }
    assert (lock["scope"], lock["resource"], lock["owner"]) == ("batch", "nightly", "alice")
    assert 9.9 < lock["expires_in"] <= 10 and lock["metadata"] == {"host": "w1"}
    assert client.get(f"/v1/locks/{lock['id']}", headers=auth("bob")).get_json()["id"] == lock["id"]
    refreshed = client.post(
        f"/v1/locks/{lock['id']}/refresh", json={"ttl": 60}, headers=auth("alice")
    ).get_json()
    assert refreshed["expires_in"] > 59 and refreshed["fencing_token"] == lock["fencing_token"]
    again = take(client)
    assert again.status_code == 200 and again.get_json()["id"] == lock["id"]
    released = client.delete(f"/v1/locks/{lock['id']}", headers=auth("alice"))
    assert released.status_code == 200
    assert client.get(f"/v1/locks/{lock['id']}", headers=auth("alice")).status_code == 404


def test_conflict_names_the_holder(client: Any) -> None:
    take(client, "alice")
    refused = take(client, "bob")
    assert refused.status_code == 409
    error = refused.get_json()["error"]
    assert error["code"] == "conflict" and error["holder"]["owner"] == "alice"


def test_long_poll_wakes_when_the_lock_is_released(client: Any, app: Any) -> None:
    lock = take(client, "alice").get_json()
    threading.Timer(
        0.2, lambda: app.test_client().delete(f"/v1/locks/{lock['id']}", headers=auth("alice"))
    ).start()
    started = time.monotonic()
    waited = take(client, "bob", wait=5)
    assert waited.status_code == 201 and waited.get_json()["owner"] == "bob"
    assert 0.15 < time.monotonic() - started < 2


def test_long_poll_times_out_with_409_and_is_bounded(client: Any) -> None:
    take(client, "alice")
    assert take(client, "bob", wait=0.2).status_code == 409
    too_long = take(client, "bob", wait=3600)
    assert too_long.status_code == 400 and "at most" in too_long.get_json()["error"]["message"]


def test_only_the_owner_refreshes_or_releases_and_sysadmins_force(client: Any) -> None:
    lock = take(client, "alice").get_json()
    assert (
        client.post(f"/v1/locks/{lock['id']}/refresh", json={}, headers=auth("bob")).status_code
        == 403
    )
    assert client.delete(f"/v1/locks/{lock['id']}", headers=auth("bob")).status_code == 403
    assert (
        client.delete(f"/v1/locks/{lock['id']}?force=true", headers=auth("bob")).status_code == 403
    )
    assert (
        client.delete(f"/v1/locks/{lock['id']}?force=true", headers=auth("admin")).status_code
        == 200
    )


def test_listing_pages_a_scope(client: Any) -> None:
    for n in range(5):
        take(client, "alice", resource=f"r{n}")
    take(client, "bob", resource="other")
    page = client.get(
        "/v1/scopes/batch/locks?limit=2&owner=alice", headers=auth("alice")
    ).get_json()
    assert len(page["locks"]) == 2 and page["cursor"]
    seen = [lk["resource"] for lk in page["locks"]]
    while page["cursor"]:
        page = client.get(
            f"/v1/scopes/batch/locks?limit=2&owner=alice&cursor={page['cursor']}",
            headers=auth("alice"),
        ).get_json()
        seen += [lk["resource"] for lk in page["locks"]]
    assert sorted(seen) == [f"r{n}" for n in range(5)]
    assert client.get("/v1/scopes/batch/locks?limit=zero", headers=auth("alice")).status_code == 400


def test_fencing_validation(client: Any) -> None:
    lock = take(client, "alice", ttl=0.05).get_json()
    check = {"scope": "batch", "resource": "nightly", "fencing_token": lock["fencing_token"]}
    assert client.post("/v1/validate", json=check, headers=auth("bob")).get_json() == {
        "valid": True
    }
    time.sleep(0.1)
    take(client, "bob")
    assert client.post("/v1/validate", json=check, headers=auth("bob")).get_json() == {
        "valid": False
    }


def test_product_api_locks_are_out_of_reach(client: Any, app: Any) -> None:
    gadget = (
        app.extensions["lockcore"].locks.acquire("versal:course:c1", "gadget", "g1", "alice").lock
    )
    assert client.get(f"/v1/locks/{gadget.id}", headers=auth("alice")).status_code == 404
    assert client.delete(f"/v1/locks/{gadget.id}", headers=auth("alice")).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"scope": "", "resource": "r"},
        {"scope": "s", "resource": "r", "ttl": -1},
        {"scope": "s", "resource": "r", "type": "gadget"},
        {"scope": "s", "resource": "r", "metadata": {"a": 1}},
    ],
)
def test_bad_requests_are_400_with_field_errors(client: Any, body: dict) -> None:
    response = client.post("/v1/locks", json=body, headers=auth("alice"))
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid"


def test_no_key_is_401(client: Any) -> None:
    response = client.post("/v1/locks", json={"scope": "s", "resource": "r"})
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthenticated"
