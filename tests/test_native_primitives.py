"""The primitives on /v1: read-write (type rw, shared), reentrant (rlock), semaphores
(permit), elections (leader), multi-locks; on fakeredis and a real redis-server."""

from __future__ import annotations

import threading
from typing import Any

from .test_native_api import auth, take


def test_read_write_locks(client: Any) -> None:
    readers = [take(client, user, type="rw", shared=True) for user in ("alice", "bob")]
    assert [r.status_code for r in readers] == [201, 201]
    writer = take(client, "carol", type="rw")
    assert writer.status_code == 409
    assert writer.get_json()["error"]["holder"]["owner"] in ("alice", "bob")
    for r in readers:
        client.delete(f"/v1/locks/{r.get_json()['id']}", headers=auth(r.get_json()["owner"]))
    assert take(client, "carol", type="rw").status_code == 201
    assert take(client, "alice", type="rw", shared=True).status_code == 409


def test_a_reentrant_lock_needs_as_many_releases(client: Any) -> None:
    first = take(client, type="rlock").get_json()
    assert take(client, type="rlock").status_code == 200  # held once more
    url = f"/v1/locks/{first['id']}"
    assert client.delete(url, headers=auth("alice")).status_code == 200
    assert client.get(url, headers=auth("alice")).status_code == 200  # still held
    assert client.delete(url, headers=auth("alice")).status_code == 200
    assert client.get(url, headers=auth("alice")).status_code == 404


def test_permits_are_capped_by_the_setting(app: Any, client: Any) -> None:
    assert app.config["V1_PERMITS"] == 4
    made = [take(client, user, type="permit") for user in ("alice", "bob", "carol", "dave")]
    assert [m.status_code for m in made] == [201] * 4
    assert take(client, "admin", type="permit").status_code == 409


def test_an_election_on_v1(client: Any) -> None:
    url = "/v1/scopes/ops/elections/scheduler"
    assert client.get(url, headers=auth("alice")).get_json() == {"leader": None, "term": None}
    leader = client.post(
        "/v1/locks",
        json={"scope": "ops", "resource": "scheduler", "type": "leader"},
        headers=auth("alice"),
    ).get_json()
    seen = client.get(url, headers=auth("bob")).get_json()
    assert seen["term"] == leader["fencing_token"] and seen["leader"]["owner"] == "alice"
    # an observer waiting for the next term is woken by the resignation
    changed: list[Any] = []
    watcher = threading.Thread(
        target=lambda: changed.append(
            client.get(f"{url}?after={seen['term']}&wait=30", headers=auth("bob")).get_json()
        )
    )
    watcher.start()
    client.delete(f"/v1/locks/{leader['id']}", headers=auth("alice"))
    watcher.join(30)
    assert changed == [{"leader": None, "term": None}]
    assert client.get(f"{url}?wait=-1&after=1", headers=auth("bob")).status_code == 400


def test_multi_locks_on_v1(client: Any) -> None:
    body = {"scope": "batch", "resources": ["a", "b", "c"]}
    made = client.post("/v1/multilocks", json=body, headers=auth("alice"))
    assert made.status_code == 201
    locks = made.get_json()["locks"]
    assert [lk["resource"] for lk in locks] == ["a", "b", "c"]
    refused = client.post(
        "/v1/multilocks", json={"scope": "batch", "resources": ["c", "d"]}, headers=auth("bob")
    )
    assert refused.status_code == 409 and refused.get_json()["error"]["holder"]["resource"] == "c"
    assert take(client, "bob", resource="d").status_code == 201  # d was not taken
    ids = {"ids": [lk["id"] for lk in locks]}
    assert client.post("/v1/multilocks/release", json=ids, headers=auth("bob")).status_code == 403
    released = client.post("/v1/multilocks/release", json=ids, headers=auth("alice"))
    assert released.get_json() == {"released": 3}
    duplicates = client.post(
        "/v1/multilocks", json={"scope": "batch", "resources": ["a", "a"]}, headers=auth("alice")
    )
    assert duplicates.status_code == 400
