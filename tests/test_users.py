"""Users and API keys: no silent overwrite of an existing user, listing without keys,
issuing and revoking keys (admin API and ``lockcore users``), on fakeredis and a real
redis-server."""

from __future__ import annotations

import json
import subprocess
import threading
from typing import Any

import pytest

from lockcore_service.identity import KeyNotFound, User, UserExists, UserNotFound, Users, digest

from .conftest import KEYS
from .live import LOCKCORE


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


ADMIN = bearer(KEYS["admin"])


def authenticates(client: Any, key: str) -> bool:
    """Whether ``key`` gets past authentication (a /v1 read any user may make)."""
    status = client.get("/v1/scopes/batch/locks", headers=bearer(key)).status_code
    assert status in (200, 401)
    return status == 200


# --- admin API ---------------------------------------------------------------------------


def test_creating_an_existing_user_is_refused_and_changes_nothing(client: Any) -> None:
    response = client.post(
        "/admin/users",
        headers=ADMIN,
        json={"id": "alice", "name": "Mallory", "roles": ["sysadmin"]},
    )
    assert response.status_code == 409
    error = response.get_json()["error"]
    assert error["status"] == 409 and "alice" in error["message"]
    listed = {u["id"]: u for u in client.get("/admin/users", headers=ADMIN).get_json()}
    assert listed["alice"]["name"] == "Alice Author"
    assert "sysadmin" not in listed["alice"]["roles"]
    assert authenticates(client, KEYS["alice"])
    assert client.get("/admin/users", headers=bearer(KEYS["alice"])).status_code == 403


def test_a_new_user_gets_a_key_that_no_cache_may_keep(client: Any) -> None:
    made = client.post(
        "/admin/users",
        headers=ADMIN,
        json={"id": "frank", "name": "Frank", "email": "f@example.com"},
    )
    assert made.status_code == 201
    assert made.headers["Cache-Control"] == "no-store"
    body = made.get_json()
    assert body["id"] == "frank" and body["key_id"] == digest(body["api_key"])[:12]
    assert authenticates(client, body["api_key"])


def test_users_are_listed_with_key_ids_never_keys(client: Any) -> None:
    response = client.get("/admin/users", headers=ADMIN)
    assert response.status_code == 200
    users = response.get_json()
    assert [u["id"] for u in users] == sorted(KEYS)
    alice = next(u for u in users if u["id"] == "alice")
    assert alice == {
        "id": "alice",
        "name": "Alice Author",
        "email": "alice@example.com",
        "roles": ["_deletion_lock_write"],
        "key_ids": [digest(KEYS["alice"])[:12]],
    }
    text = response.get_data(as_text=True)
    assert not any(key in text or digest(key) in text for key in KEYS.values())
    one = client.get("/admin/users/alice", headers=ADMIN)
    assert one.status_code == 200 and one.get_json() == alice
    assert client.get("/admin/users/nobody", headers=ADMIN).status_code == 404


def test_a_revoked_key_stops_authenticating_at_once(client: Any) -> None:
    issued = client.post("/admin/users/carol/keys", headers=ADMIN)
    assert issued.status_code == 201 and issued.headers["Cache-Control"] == "no-store"
    key, key_id = issued.get_json()["api_key"], issued.get_json()["key_id"]
    assert authenticates(client, key)
    assert client.delete(f"/admin/users/carol/keys/{key_id}", headers=ADMIN).status_code == 204
    assert not authenticates(client, key)
    assert authenticates(client, KEYS["carol"])  # her other key still works
    carol = client.get("/admin/users/carol", headers=ADMIN).get_json()
    assert carol["key_ids"] == [digest(KEYS["carol"])[:12]]
    again = client.delete(f"/admin/users/carol/keys/{key_id}", headers=ADMIN)
    assert again.status_code == 404 and again.get_json()["error"]["status"] == 404


def test_revoking_every_key_of_a_user(client: Any) -> None:
    extra = client.post("/admin/users/bob/keys", headers=ADMIN).get_json()
    response = client.delete("/admin/users/bob/keys", headers=ADMIN)
    assert response.status_code == 200
    assert sorted(response.get_json()["revoked"]) == sorted(
        [digest(KEYS["bob"])[:12], extra["key_id"]]
    )
    assert not authenticates(client, KEYS["bob"]) and not authenticates(client, extra["api_key"])


def test_a_revoked_sysadmin_key_loses_the_admin_api(client: Any) -> None:
    second = client.post("/admin/users/admin/keys", headers=ADMIN).get_json()
    key_id = digest(KEYS["admin"])[:12]
    assert (
        client.delete(
            f"/admin/users/admin/keys/{key_id}", headers=bearer(second["api_key"])
        ).status_code
        == 204
    )
    assert client.get("/admin/users", headers=ADMIN).status_code == 401
    assert client.get("/admin/users", headers=bearer(second["api_key"])).status_code == 200


def test_keys_of_unknown_users_are_404s(client: Any) -> None:
    assert client.post("/admin/users/nobody/keys", headers=ADMIN).status_code == 404
    assert client.delete("/admin/users/nobody/keys/0123456789ab", headers=ADMIN).status_code == 404
    assert client.delete("/admin/users/nobody/keys", headers=ADMIN).status_code == 404


def test_user_routes_need_a_sysadmin(client: Any) -> None:
    for method, path in [
        ("get", "/admin/users"),
        ("post", "/admin/users/alice/keys"),
        ("delete", "/admin/users/alice/keys"),
    ]:
        assert getattr(client, method)(path).status_code == 401
        response = getattr(client, method)(path, headers=bearer(KEYS["alice"]))
        assert response.status_code == 403
    assert authenticates(client, KEYS["alice"])


# --- concurrent changes ------------------------------------------------------------------


@pytest.fixture
def users(real_server: Any) -> Users:
    client = real_server.client()
    client.flushall()
    return Users(client, "t")


def test_of_concurrent_creations_of_one_id_exactly_one_wins(users: Users) -> None:
    outcomes: list[str] = []

    def create(n: int) -> None:
        try:
            users.create(User("dup", f"Claimant {n}", roles=frozenset({"sysadmin"})))
            outcomes.append("created")
        except UserExists:
            outcomes.append("refused")

    threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["created"] + ["refused"] * 7
    record = users.record("dup")
    assert record is not None and len(record.key_ids) == 1


def test_concurrent_key_changes_lose_nothing(users: Users) -> None:
    users.put(User("u", "U"))
    doomed = [users.issue_key("u") for _ in range(4)]
    issued: list[str] = []

    def issue() -> None:
        issued.append(users.issue_key("u").key_id)

    def revoke(key_id: str) -> None:
        users.revoke("u", key_id=key_id)

    threads = [threading.Thread(target=issue) for _ in range(8)]
    threads += [threading.Thread(target=revoke, args=(k.key_id,)) for k in doomed]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    record = users.record("u")
    assert record is not None and sorted(record.key_ids) == sorted(issued)
    assert all(users.authenticate(k.key) is None for k in doomed)


def test_revoking_by_the_key_itself(users: Users) -> None:
    users.put(User("u", "U"))
    key = users.issue_key("u")
    with pytest.raises(KeyNotFound):
        users.revoke("u", key="not-a-key")
    assert users.revoke("u", key=key.key) == [key.key_id]
    assert users.authenticate(key.key) is None
    with pytest.raises(UserNotFound):
        users.revoke("nobody", every=True)


# --- lockcore users ----------------------------------------------------------------------


def cli(url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LOCKCORE, "users", *args, "--redis-url", url],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture
def url(real_server: Any) -> str:
    real_server.client().flushall()
    return str(real_server.url)


def test_cli_refuses_an_existing_id_with_one_line(url: str, real_server: Any) -> None:
    first = cli(url, "add", "root", "--name", "Root", "--role", "sysadmin")
    assert first.returncode == 0
    again = cli(url, "add", "root", "--name", "Mallory")
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr.count("\n") == 1 and "already exists" in again.stderr
    user = Users(real_server.client(), "lockcore").authenticate(first.stdout.strip())
    assert user is not None and user.name == "Root" and user.is_sysadmin


def test_cli_lists_users_with_key_ids_never_keys(url: str) -> None:
    key = cli(url, "add", "root", "--name", "Root", "--role", "sysadmin").stdout.strip()
    cli(url, "add", "bob", "--name", "Bob Builder")
    table = cli(url, "list")
    assert table.returncode == 0 and key not in table.stdout
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "EMAIL", "ROLES", "KEY", "IDS"]
    assert any(
        line.startswith("root") and "sysadmin" in line and digest(key)[:12] in line
        for line in lines
    )
    rows = json.loads(cli(url, "list", "--json").stdout)
    assert [(r["id"], r["roles"]) for r in rows] == [("bob", []), ("root", ["sysadmin"])]
    assert rows[1]["key_ids"] == [digest(key)[:12]]


def test_cli_revokes_keys_by_id_by_key_and_all(url: str, real_server: Any) -> None:
    users = Users(real_server.client(), "lockcore")
    first = cli(url, "add", "root", "--name", "Root").stdout.strip()
    second = cli(url, "issue-key", "root").stdout.strip()
    third = cli(url, "issue-key", "root").stdout.strip()
    assert all(users.authenticate(k) for k in (first, second, third))

    by_id = cli(url, "revoke-key", "root", digest(first)[:12])
    assert by_id.returncode == 0 and digest(first)[:12] in by_id.stdout
    assert users.authenticate(first) is None and users.authenticate(second) is not None
    by_key = cli(url, "revoke-key", "root", "--key", "-", stdin=second + "\n")
    assert by_key.returncode == 0 and users.authenticate(second) is None
    assert cli(url, "revoke-key", "root", "--all").returncode == 0
    assert users.authenticate(third) is None

    missing = cli(url, "revoke-key", "root", "0123456789ab")
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    unknown = cli(url, "revoke-key", "nobody", "--all")
    assert unknown.returncode == 1 and "nobody" in unknown.stderr
    assert cli(url, "revoke-key", "root").returncode == 2  # which key(s): required
