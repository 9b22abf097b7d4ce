"""The ONLYOFFICE DocSpace file lock API (seeds 001, 002), on fakeredis and a real server."""

from __future__ import annotations

import time
from typing import Any

import pytest

from lockcore_service import create_app

from .conftest import KEYS

FILE = "/api/2.0/files/file/123456"
EDIT_FLAGS = {
    "Comment",
    "FillForms",
    "Review",
    "Edit",
    "Delete",
    "CustomFilter",
    "EditHistory",
    "Rename",
    "Move",
    "Duplicate",
    "Convert",
}


def bearer(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[user]}"}


def lock(client: Any, user: str, value: Any = True, file: str = FILE) -> Any:
    return client.put(f"{file}/lock", json={"lockFile": value}, headers=bearer(user))


def view(client: Any, user: str, file: str = FILE) -> dict[str, Any]:
    response = client.get(file, headers=bearer(user))
    assert response.status_code == 200
    return response.get_json()["response"]  # type: ignore[no-any-return]


def assert_error(response: Any, status: int, message: str) -> None:
    assert response.status_code == status
    body = response.get_json()
    assert body["status"] == 1 and body["statusCode"] == status
    assert body["error"]["message"] == message and body["error"]["type"]


# --- the envelope and the file -----------------------------------------------------------


def test_lock_returns_the_file_in_docspaces_envelope(client: Any) -> None:
    response = lock(client, "alice")
    assert response.status_code == 200
    body = response.get_json()
    assert list(body) == ["response", "count", "links", "status", "statusCode"]
    assert body["count"] == 1 and body["status"] == 0 and body["statusCode"] == 200
    assert body["links"] == [{"href": f"http://localhost{FILE}/lock", "action": "PUT"}]
    dto = body["response"]
    assert dto["id"] == 123456 and dto["title"] == "report.docx" and dto["locked"] is True
    assert "lockedBy" not in dto  # the locker does not see their own name
    assert dto["security"]["Edit"] is True and dto["security"]["Lock"] is True


def test_locked_is_present_only_when_true(client: Any) -> None:
    assert "locked" not in view(client, "alice")
    lock(client, "alice")
    lock(client, "alice", False)
    assert "locked" not in view(client, "alice") and "lockedBy" not in view(client, "bob")


def test_others_see_who_locked_it_and_lose_edit_flags(client: Any) -> None:
    lock(client, "alice")
    for user in ("bob", "carol", "dave"):
        dto = view(client, user)
        assert dto["locked"] is True and dto["lockedBy"] == "Alice Author"
        assert not any(dto["security"][flag] for flag in EDIT_FLAGS)
        assert dto["security"]["Read"] and dto["security"]["Download"]
        assert dto["security"]["Copy"]


def test_security_flags_follow_the_access_level(client: Any) -> None:
    carol = view(client, "carol")["security"]
    assert carol["Edit"] is True and carol["Lock"] is False and carol["Delete"] is False
    dave = view(client, "dave")["security"]
    assert dave["Read"] is True and dave["Edit"] is False and dave["Comment"] is False
    bob = view(client, "bob")["security"]
    assert bob["Lock"] is True and bob["Edit"] is True


def test_a_room_manager_keeps_the_lock_flag_on_others_locks(client: Any) -> None:
    lock(client, "bob")
    assert view(client, "alice")["security"]["Lock"] is True
    assert view(client, "alice")["security"]["Edit"] is False


# --- who may lock and unlock -------------------------------------------------------------


def test_a_content_creator_locks_an_unlocked_file_and_unlocks_their_own(client: Any) -> None:
    assert lock(client, "bob").status_code == 200
    assert view(client, "alice")["lockedBy"] == "Bob Builder"
    response = lock(client, "bob", False)
    assert response.status_code == 200 and "locked" not in response.get_json()["response"]


def test_a_content_creator_may_not_touch_someone_elses_lock(client: Any) -> None:
    lock(client, "alice")
    assert_error(
        lock(client, "bob", False), 403, "You do not have enough permissions to edit the file"
    )
    assert_error(
        lock(client, "bob", True), 403, "You do not have enough permissions to edit the file"
    )
    assert view(client, "carol")["lockedBy"] == "Alice Author"


def test_a_room_manager_unlocks_someone_elses_lock(client: Any) -> None:
    lock(client, "bob")
    response = lock(client, "alice", False)
    assert response.status_code == 200 and "locked" not in response.get_json()["response"]


@pytest.mark.parametrize("user", ["carol", "dave"])
def test_other_access_levels_may_not_lock_or_unlock(client: Any, user: str) -> None:
    assert_error(lock(client, user), 403, "You do not have enough permissions to edit the file")
    lock(client, "alice")
    assert_error(
        lock(client, user, False), 403, "You do not have enough permissions to edit the file"
    )


def test_no_access_at_all_is_403(client: Any) -> None:
    assert_error(
        lock(client, "alice", file="/api/2.0/files/file/900"),
        403,
        "You do not have enough permissions to edit the file",
    )
    assert_error(
        client.get("/api/2.0/files/file/900", headers=bearer("alice")),
        403,
        "You do not have enough permissions to edit the file",
    )


def test_a_sysadmin_acts_as_a_room_manager(client: Any) -> None:
    lock(client, "bob")
    assert lock(client, "admin", False).status_code == 200


def test_locking_twice_and_unlocking_an_unlocked_file_are_idempotent(app: Any, client: Any) -> None:
    first = lock(client, "bob").get_json()["response"]
    again = lock(client, "bob")
    assert again.status_code == 200 and again.get_json()["response"] == first
    locks = app.extensions["lockcore"].locks.list("docspace:room:room-1").locks
    assert len(locks) == 1
    lock(client, "bob", False)
    response = lock(client, "bob", False)
    assert response.status_code == 200 and "locked" not in response.get_json()["response"]


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": KEYS["alice"]}]
)
def test_missing_or_bad_token_is_401(client: Any, headers: dict[str, str]) -> None:
    response = client.put(f"{FILE}/lock", json={"lockFile": True}, headers=headers)
    assert response.status_code == 401
    body = response.get_json()
    assert body["status"] == 1 and body["statusCode"] == 401
    assert body["error"]["type"] == "AuthenticationException"
    assert client.get(FILE, headers=headers).status_code == 401


def test_unknown_file_is_404(client: Any) -> None:
    for response in (
        lock(client, "alice", file="/api/2.0/files/file/404404"),
        client.get("/api/2.0/files/file/404404", headers=bearer("alice")),
        client.get("/api/2.0/files/file/404404/protectusers", headers=bearer("alice")),
    ):
        assert_error(response, 404, "The required file was not found")


@pytest.mark.parametrize(
    "body", [{}, {"lockFile": "true"}, {"lockFile": 1}, {"lockFile": None}, [True]]
)
def test_lock_file_must_be_a_boolean(client: Any, body: Any) -> None:
    response = client.put(f"{FILE}/lock", json=body, headers=bearer("alice"))
    assert response.status_code == 400
    assert "lockFile" in response.get_json()["error"]["message"]
    assert response.get_json()["statusCode"] == 400


def test_malformed_json_is_400(client: Any) -> None:
    response = client.put(
        f"{FILE}/lock", data="{", content_type="application/json", headers=bearer("alice")
    )
    assert response.status_code == 400 and response.get_json()["status"] == 1


# --- protectusers ------------------------------------------------------------------------


def test_protect_users_lists_the_others_with_their_access(client: Any) -> None:
    response = client.get(f"{FILE}/protectusers", headers=bearer("alice"))
    assert response.status_code == 200
    body = response.get_json()
    assert body["count"] == 3 and body["statusCode"] == 200
    assert body["response"] == [
        {
            "id": "bob",
            "name": "Bob Builder",
            "email": "bob@example.com",
            "hasAccess": True,
            "access": "ContentCreator",
        },
        {
            "id": "carol",
            "name": "Carol Reader",
            "email": "carol@example.com",
            "hasAccess": True,
            "access": "Editor",
        },
        {
            "id": "dave",
            "name": "Dave Outsider",
            "email": "dave@example.com",
            "hasAccess": True,
            "access": "Viewer",
        },
    ]


# --- edit check --------------------------------------------------------------------------


def test_edit_check_refuses_while_someone_else_holds_the_lock(client: Any) -> None:
    assert client.get(f"{FILE}/edit-check", headers=bearer("carol")).get_json()["response"] == {
        "canEdit": True
    }
    lock(client, "alice")
    response = client.get(f"{FILE}/edit-check", headers=bearer("carol"))
    assert_error(response, 403, "The file is currently locked by another user")
    assert client.get(f"{FILE}/edit-check", headers=bearer("alice")).status_code == 200


def test_edit_check_refuses_readers(client: Any) -> None:
    assert_error(
        client.get(f"{FILE}/edit-check", headers=bearer("dave")),
        403,
        "You do not have enough permissions to edit the file",
    )


# --- expiry ------------------------------------------------------------------------------


def test_file_locks_do_not_expire_by_default(app: Any, client: Any) -> None:
    lock(client, "alice")
    (held,) = app.extensions["lockcore"].locks.list("docspace:room:room-1").locks
    assert held.expires_at is None


def test_a_configured_ttl_makes_them_expire(service_client: Any) -> None:
    from lockcore_service.catalog import parse_document

    from .conftest import CATALOG

    app = create_app({"REDIS_CLIENT": service_client, "KEY_PREFIX": "ttl", "DOCSPACE_TTL": 0.1})
    services = app.extensions["lockcore"]
    services.catalog.replace(parse_document(CATALOG), services.users)
    client = app.test_client()
    lock(client, "alice")
    assert view(client, "bob")["locked"] is True
    time.sleep(0.15)
    assert "locked" not in view(client, "bob")
