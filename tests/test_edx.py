"""The EDX workspace lock API (seed 000), on fakeredis and a real redis-server."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from lockcore_service import create_app

from .conftest import KEYS

LOCKED_BY_ALICE = (
    "This workspace was locked by Alice Author (alice@example.com) and you "
    "cannot perform this action. It must be unlocked by the user who locked it."
)


def edx(user: str, header: str = "EDX-API-Key") -> dict[str, str]:
    return {header: KEYS[user], "User-Agent": "EDX-USER"}


def call(client: Any, name: str, user: str = "alice", **data: Any) -> Any:
    return client.post(f"/api/3/action/{name}", json=data, headers=edx(user))


def toggle(client: Any, user: str = "alice", ws: str = "ws-1", **extra: Any) -> Any:
    return call(client, "lock_workspace", user, workspace_id=ws, **extra)


def check(client: Any, user: str = "alice", ws: str = "ws-1") -> Any:
    return call(client, "check_workspace_lock", user, workspace_id=ws)


def assert_error(response: Any, status: int, kind: str, message: str | None = None) -> dict:
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert body["success"] is False
    assert body[
        "help"
    ] == "http://localhost/api/3/action/help_show?name=workspace_lock_api" or body[
        "help"
    ].startswith("http://localhost/api/3/action/help_show?name=")
    assert body["error"]["__type"] == kind
    if message is not None:
        assert body["error"]["message"] == message
    return body["error"]


# --- lock_workspace toggles --------------------------------------------------------------


def test_lock_then_unlock_with_the_same_call(client: Any) -> None:
    first = toggle(client)
    assert first.status_code == 200
    assert first.get_json() == {
        "help": "http://localhost/api/3/action/help_show?name=workspace_lock_api",
        "success": True,
        "result": {"is_locked": True},
    }
    second = toggle(client)
    assert second.get_json()["result"] == {"is_locked": False}
    assert toggle(client).get_json()["result"] == {"is_locked": True}


def test_notes_are_echoed_only_when_given(client: Any) -> None:
    assert toggle(client, notes="Freeze for review").get_json()["result"] == {
        "is_locked": True,
        "notes": "Freeze for review",
    }
    assert toggle(client, notes="ignored on unlock").get_json()["result"] == {"is_locked": False}


def test_form_data_is_accepted(client: Any) -> None:
    response = client.post(
        "/api/3/action/lock_workspace",
        headers=edx("alice"),
        data={"workspace_id": "ws-1", "notes": "via form"},
    )
    assert response.get_json()["result"] == {"is_locked": True, "notes": "via form"}
    assert check(client).get_json()["result"]["notes"] == "via form"


def test_a_workspace_can_be_named_instead_of_identified(client: Any) -> None:
    assert toggle(client, ws="Carbon Atlas").get_json()["result"]["is_locked"] is True
    assert check(client, ws="ws-1").get_json()["result"]["is_locked"] is True


# --- check_workspace_lock ----------------------------------------------------------------


def test_check_reports_who_when_and_notes(client: Any, service_client: Any) -> None:
    toggle(client, notes="NOTE")
    result = check(client, "carol").get_json()["result"]
    assert list(result) == ["is_locked", "locked_by", "date_locked", "notes"]
    assert result["is_locked"] is True
    assert result["locked_by"] == "Alice Author (alice@example.com)"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", result["date_locked"])
    server_now = datetime.fromtimestamp(service_client.time()[0], tz=timezone.utc)
    locked = datetime.strptime(result["date_locked"], "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc)
    assert 0 <= (server_now - locked).total_seconds() < 120
    assert result["notes"] == "NOTE"


def test_check_without_notes_gives_an_empty_string(client: Any) -> None:
    toggle(client)
    assert check(client).get_json()["result"]["notes"] == ""


def test_check_of_an_unlocked_workspace_says_only_that(client: Any) -> None:
    assert check(client).get_json()["result"] == {"is_locked": False}


def test_check_needs_access_to_the_workspace(client: Any) -> None:
    assert_error(check(client, "dave"), 403, "Authorization Error")
    assert check(client, "admin").status_code == 200


# --- roles -------------------------------------------------------------------------------


@pytest.mark.parametrize("user", ["carol", "dave"])
def test_only_sysadmins_and_workspace_admins_may_lock(client: Any, user: str) -> None:
    error = assert_error(toggle(client, user), 403, "Authorization Error")
    assert error["message"].startswith(
        "Access denied: only a System Administrator or an administrator of workspace 'ws-1'"
    )
    assert check(client).get_json()["result"] == {"is_locked": False}


def test_a_sysadmin_may_lock_any_workspace(client: Any) -> None:
    assert toggle(client, "admin").get_json()["result"]["is_locked"] is True
    assert check(client).get_json()["result"]["locked_by"] == (
        "EDX Administrator (admin@example.com)"
    )


def test_only_the_locking_admin_or_a_sysadmin_may_unlock(client: Any) -> None:
    toggle(client, "alice")
    error = assert_error(toggle(client, "bob"), 403, "Authorization Error")
    assert "the workspace administrator who locked it" in error["message"]
    assert "Alice Author (alice@example.com)" in error["message"]
    assert_error(toggle(client, "carol"), 403, "Authorization Error")
    assert check(client).get_json()["result"]["is_locked"] is True
    assert toggle(client, "admin").get_json()["result"] == {"is_locked": False}


def test_an_admin_may_not_unlock_a_sysadmins_lock(client: Any) -> None:
    toggle(client, "admin")
    assert_error(toggle(client, "alice"), 403, "Authorization Error")


# --- credentials -------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["X-CKAN-API-Key", "EDX-API-Key", "Authorization"])
def test_the_key_may_come_in_any_of_three_headers(client: Any, header: str) -> None:
    response = client.post(
        "/api/3/action/lock_workspace", json={"workspace_id": "ws-1"}, headers=edx("alice", header)
    )
    assert response.get_json()["result"]["is_locked"] is True


def test_the_user_agent_is_required_and_the_error_says_so(client: Any) -> None:
    response = client.post(
        "/api/3/action/lock_workspace",
        json={"workspace_id": "ws-1"},
        headers={"EDX-API-Key": KEYS["alice"], "User-Agent": "curl/8"},
    )
    error = assert_error(response, 403, "Authorization Error")
    assert "User-Agent: EDX-USER" in error["message"]


def test_missing_or_bad_keys_are_authorization_errors(client: Any) -> None:
    response = client.post(
        "/api/3/action/lock_workspace",
        json={"workspace_id": "ws-1"},
        headers={"User-Agent": "EDX-USER"},
    )
    assert "X-CKAN-API-Key" in assert_error(response, 403, "Authorization Error")["message"]
    response = client.post(
        "/api/3/action/lock_workspace",
        json={"workspace_id": "ws-1"},
        headers={"EDX-API-Key": "nope", "User-Agent": "EDX-USER"},
    )
    assert "not valid" in assert_error(response, 403, "Authorization Error")["message"]


# --- errors ------------------------------------------------------------------------------


def test_unknown_workspace_is_not_found(client: Any) -> None:
    assert_error(toggle(client, ws="nope"), 404, "Not Found Error")
    assert_error(check(client, ws="nope"), 404, "Not Found Error")


@pytest.mark.parametrize("data", [{}, {"workspace_id": ""}, {"workspace_id": None}])
def test_missing_workspace_id_is_a_validation_error(client: Any, data: dict) -> None:
    response = client.post("/api/3/action/lock_workspace", json=data, headers=edx("alice"))
    error = assert_error(response, 409, "Validation Error")
    assert error["workspace_id"] == ["Missing value"]


def test_malformed_json_is_400(client: Any) -> None:
    response = client.post(
        "/api/3/action/lock_workspace",
        data="{nope",
        content_type="application/json",
        headers=edx("alice"),
    )
    assert "JSON Error" in assert_error(response, 400, "Bad Request")["message"]
    response = client.post("/api/3/action/lock_workspace", json=[1], headers=edx("alice"))
    assert_error(response, 400, "Bad Request")


def test_get_on_an_action_and_unknown_actions_are_400(client: Any) -> None:
    assert_error(
        client.get("/api/3/action/lock_workspace", headers=edx("alice")), 400, "Bad Request"
    )
    error = assert_error(
        client.post("/api/3/action/drop_tables", json={}, headers=edx("alice")), 400, "Bad Request"
    )
    assert error["message"] == "Bad request - Action name not known: drop_tables"


# --- restricted features -----------------------------------------------------------------


def action_check(client: Any, user: str, action: str, ws: str = "ws-1") -> Any:
    return call(client, "workspace_action_check", user, workspace_id=ws, action=action)


def test_a_restricted_feature_is_refused_with_the_seeds_text(client: Any) -> None:
    toggle(client, "alice")
    for user in ("bob", "carol", "admin"):
        assert_error(
            action_check(client, user, "create_folder"), 409, "Validation Error", LOCKED_BY_ALICE
        )


def test_the_locker_has_no_restrictions(client: Any) -> None:
    toggle(client, "alice")
    result = action_check(client, "alice", "delete_resource").get_json()["result"]
    assert result["allowed"] is True and result["is_locked"] is True


def test_unrestricted_features_stay_allowed(client: Any) -> None:
    toggle(client, "alice")
    for feature in ("view_resource", "download_resource", "view_submission", "follow"):
        result = action_check(client, "carol", feature).get_json()["result"]
        assert result == {
            "allowed": True,
            "action": feature,
            "feature": result["feature"],
            "restricted": False,
            "is_locked": True,
        }


def test_everything_is_allowed_while_unlocked(client: Any) -> None:
    assert action_check(client, "carol", "create_folder").get_json()["result"]["allowed"]


def test_unknown_feature_lists_the_known_ones(client: Any) -> None:
    error = assert_error(action_check(client, "carol", "fly"), 409, "Validation Error")
    assert "create_folder" in error["message"] and "view_resource" in error["message"]
    assert "action" in error


def test_guarded_actions_are_refused_the_same_way(client: Any) -> None:
    toggle(client, "alice")
    response = client.post(
        "/api/3/action/create_folder",
        headers=edx("bob"),
        data={"workspace_id": "ws-1", "folder_name": "F", "parent_id": "p"},
    )
    error = assert_error(response, 409, "Validation Error", LOCKED_BY_ALICE)
    assert response.get_json()["help"].endswith("name=create_folder")
    assert error["message"] == LOCKED_BY_ALICE
    allowed = client.post(
        "/api/3/action/resource_show", headers=edx("bob"), data={"workspace_id": "ws-1"}
    )
    assert allowed.get_json()["result"]["allowed"] is True


def test_the_feature_table_is_data_with_the_seeds_restrictions() -> None:
    from lockcore_service.apis.edx import load_features

    table, _ = load_features()
    flags = [f.restricted for f in table.values()]
    assert flags == [True] * 5 + [False] * 3 + [True] * 8 + [
        True,
        False,
        False,
        True,
        True,
        False,
        True,
        True,
        True,
        True,
        True,
        True,
        True,
    ] + [True, False, False, False, False, False, True, True, True, True]


def test_an_override_file_changes_restrictions_globally_and_per_workspace(
    service_client: Any, tmp_path: Path
) -> None:
    from lockcore_service.catalog import parse_document

    from .conftest import CATALOG

    override = tmp_path / "features.yaml"
    override.write_text(
        "default: {create_folder: false}\nworkspaces: {ws-2: {view_resource: true}}\n"
    )
    app = create_app(
        {"REDIS_CLIENT": service_client, "KEY_PREFIX": "o", "EDX_FEATURES_OVERRIDE": str(override)}
    )
    services = app.extensions["lockcore"]
    services.catalog.replace(parse_document(CATALOG), services.users)
    client = app.test_client()
    toggle(client, "bob", "ws-1")
    toggle(client, "bob", "ws-2")
    assert action_check(client, "alice", "create_folder").get_json()["result"]["allowed"]
    assert action_check(client, "alice", "view_resource", "ws-1").status_code == 200
    assert_error(action_check(client, "admin", "view_resource", "ws-2"), 409, "Validation Error")


def test_a_bad_override_file_stops_the_service_at_startup(
    service_client: Any, tmp_path: Path
) -> None:
    override = tmp_path / "features.yaml"
    override.write_text("default: {teleport: true}\n")
    with pytest.raises(ValueError, match="teleport"):
        create_app({"REDIS_CLIENT": service_client, "EDX_FEATURES_OVERRIDE": str(override)})


# --- expiry ------------------------------------------------------------------------------


def test_workspace_locks_do_not_expire_by_default(
    app: Any, client: Any, service_client: Any
) -> None:
    toggle(client)
    lock = app.extensions["lockcore"].locks.list("edx:workspace:ws-1").locks[0]
    assert lock.expires_at is None
    assert (
        service_client.pttl(app.extensions["lockcore"].locks.keys("edx:workspace:ws-1").locks) == -1
    )


def test_a_configured_ttl_makes_them_expire(service_client: Any) -> None:
    from lockcore_service.catalog import parse_document

    from .conftest import CATALOG

    app = create_app({"REDIS_CLIENT": service_client, "KEY_PREFIX": "ttl", "EDX_TTL": 0.1})
    services = app.extensions["lockcore"]
    services.catalog.replace(parse_document(CATALOG), services.users)
    client = app.test_client()
    toggle(client)
    assert check(client).get_json()["result"]["is_locked"] is True
    time.sleep(0.15)
    assert check(client).get_json()["result"] == {"is_locked": False}
