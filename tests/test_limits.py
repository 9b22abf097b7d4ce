"""Bounded, validated input: every API answers bad or oversized input with its own 4xx, in
its own envelope, never a 5xx; failed authentications are rate-limited per address.
On fakeredis and a real redis-server (the ``service_client`` fixture)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest

from lockcore import InvalidLockRequest, LockManager, connect
from lockcore_service import create_app
from lockcore_service.catalog import parse_document

from .conftest import CATALOG, KEYS, all_keys

DEEP = "[" * 100_000 + "]" * 100_000
JSON_TYPE = {"Content-Type": "application/json"}


def make_app(service_client: Any, **settings: Any) -> Any:
    application = create_app({"REDIS_CLIENT": service_client, "KEY_PREFIX": "t", **settings})
    services = application.extensions["lockcore"]
    services.catalog.replace(parse_document(CATALOG), services.users)
    return application


@pytest.fixture
def client_with(service_client: Any) -> Callable[..., Any]:
    """A test client of an app with these settings, on the parametrized Redis."""
    return lambda **settings: make_app(service_client, **settings).test_client()


# --- each API: how to call it, and its error envelope -----------------------------------


def basic(user: str, key: str | None = None) -> str:
    return "Basic " + base64.b64encode(f"{user}:{key or KEYS[user]}".encode()).decode()


def v1_error(r: Any, status: int) -> None:
    assert r.status_code == status and set(r.get_json()["error"]) >= {"code", "message"}


def versal_error(r: Any, status: int) -> None:
    assert r.status_code == status and r.get_json()["error"] == status


def edx_error(r: Any, status: int) -> None:
    body = r.get_json()
    assert r.status_code == status and body["success"] is False and "__type" in body["error"]


def docspace_error(r: Any, status: int) -> None:
    body = r.get_json()
    assert r.status_code == status and body["status"] == 1 and body["statusCode"] == status


def vidispine_error(r: Any, status: int) -> None:
    assert r.status_code == status and r.mimetype == "application/json"
    ((kind, detail),) = r.get_json().items()
    assert "explanation" in detail


def admin_error(r: Any, status: int) -> None:
    assert r.status_code == status and r.get_json()["error"]["status"] == status


#: name -> (method, path, headers for user "who" with key "key", envelope check)
APIS: dict[str, tuple[str, str, Callable[[str, str], dict[str, str]], Any]] = {
    "v1": ("POST", "/v1/locks", lambda who, key: {"Authorization": f"Bearer {key}"}, v1_error),
    "versal": ("POST", "/locks", lambda who, key: {"SID": key}, versal_error),
    "edx": (
        "POST",
        "/api/3/action/lock_workspace",
        lambda who, key: {"X-CKAN-API-Key": key, "User-Agent": "EDX-USER"},
        edx_error,
    ),
    "docspace": (
        "PUT",
        "/api/2.0/files/file/123456/lock",
        lambda who, key: {"Authorization": f"Bearer {key}"},
        docspace_error,
    ),
    "vidispine": (
        "POST",
        "/API/item/VX-1/deletion-lock",
        lambda who, key: {"Authorization": basic(who, key), "Accept": "application/json"},
        vidispine_error,
    ),
    "admin": (
        "POST",
        "/admin/users",
        lambda who, key: {"Authorization": f"Bearer {key}"},
        admin_error,
    ),
}


def call(client: Any, api: str, who: str = "admin", key: str | None = None, **kwargs: Any) -> Any:
    method, path, headers, _ = APIS[api]
    return client.open(
        path,
        method=method,
        headers={**headers(who, key or KEYS[who]), **kwargs.pop("headers", {})},
        **kwargs,
    )


def assert_envelope(api: str, response: Any, status: int) -> None:
    APIS[api][3](response, status)


def stored(service_client: Any) -> list[str]:
    """The lock keys in Redis (users, catalog and the limiter's counters aside)."""
    return [
        k
        for k in all_keys(service_client)
        if not any(part in k for part in ("{users}", "catalog", "auth-failures"))
    ]


# --- nesting, surrogates, types, encodings -----------------------------------------------


@pytest.mark.parametrize("api", sorted(APIS))
def test_json_nested_100k_deep_is_a_400_in_the_apis_envelope(client: Any, api: str) -> None:
    response = call(client, api, data=DEEP, headers=JSON_TYPE)
    assert_envelope(api, response, 400)


def test_a_deeply_nested_catalog_document_is_a_400_in_the_admin_envelope(client: Any) -> None:
    response = client.put(
        "/admin/catalog", data=DEEP, headers={"Authorization": "Bearer key-admin", **JSON_TYPE}
    )
    admin_error(response, 400)
    assert "nested too deeply" in str(response.get_json()["error"]["details"])


#: A lone surrogate, as JSON writes it: valid JSON syntax, but no text (no UTF-8 form).
SURROGATE = "\\ud800"

LONE_SURROGATES = {
    "v1 resource": ("v1", f'{{"scope": "s", "resource": "{SURROGATE}"}}'),
    "v1 scope": ("v1", f'{{"scope": "{SURROGATE}", "resource": "r"}}'),
    "v1 metadata": ("v1", f'{{"scope": "s", "resource": "r", "metadata": {{"k": "{SURROGATE}"}}}}'),
    "versal gadgetId": (
        "versal",
        f'{{"type": "gadget", "subject": {{"courseId": "c1", "gadgetId": "{SURROGATE}"}}}}',
    ),
    "edx workspace_id": ("edx", f'{{"workspace_id": "{SURROGATE}"}}'),
    "vidispine metadata": (
        "vidispine",
        f'{{"expiryTime": "2999-01-01T00:00:00Z", '
        f'"metadata": {{"field": [{{"key": "{SURROGATE}", '
        f'"value": "v"}}]}}}}',
    ),
}


@pytest.mark.parametrize("case", sorted(LONE_SURROGATES))
def test_a_lone_surrogate_in_a_name_or_metadata_is_a_400_and_stores_nothing(
    client: Any, service_client: Any, case: str
) -> None:
    api, body = LONE_SURROGATES[case]
    response = call(client, api, data=body, headers=JSON_TYPE)
    assert_envelope(api, response, 400)
    assert stored(service_client) == []


def test_the_core_refuses_text_without_a_utf8_form(mgr: LockManager) -> None:
    for bad in (
        {"resource": "\ud800"},
        {"scope": "s\udfff"},
        {"metadata": {"k": "\ud800"}},
        {"metadata": {"\ud800": "v"}},
    ):
        args = {"scope": "s", "resource": "r", "metadata": None, **bad}
        with pytest.raises(InvalidLockRequest, match="surrogate"):
            mgr.acquire(args["scope"], "job", args["resource"], "o", metadata=args["metadata"])
    lock = mgr.acquire("s", "job", "r", "o").lock
    with pytest.raises(InvalidLockRequest, match="surrogate"):
        mgr.refresh(lock, "o", metadata={"note": "\ud800"})
    assert mgr.get(lock.id).metadata == {}


@pytest.mark.parametrize("entity_type", [5, ["item"], {"item": 1}, True])
def test_a_vidispine_entity_type_that_is_not_a_string_is_a_400(
    client: Any, entity_type: Any
) -> None:
    response = client.post(
        "/API/deletion-lock",
        json={"expiryTime": "2999-01-01T00:00:00Z", "entityType": entity_type, "entityId": "VX-1"},
        headers={"Authorization": basic("alice"), "Accept": "application/json"},
    )
    vidispine_error(response, 400)
    assert response.get_json()["invalidInput"]["context"] == "entityType"


@pytest.mark.parametrize("encoding", ["UTF-7", "shift_jis", "euc-jp", "x-no-such-encoding"])
def test_xml_declaring_an_encoding_expat_cannot_read_is_a_400(client: Any, encoding: str) -> None:
    document = (
        f'<?xml version="1.0" encoding="{encoding}"?><DeletionLockDocument xmlns='
        '"http://xml.vidispine.com/schema/vidispine"><expiryTime>2999-01-01T00:00:00Z'
        "</expiryTime></DeletionLockDocument>"
    )
    response = client.post(
        "/API/item/VX-1/deletion-lock",
        data=document.encode(),
        headers={
            "Authorization": basic("alice"),
            "Content-Type": "application/xml",
            "Accept": "application/json",
        },
    )
    vidispine_error(response, 400)
    assert "encoding" in response.get_json()["invalidInput"]["explanation"]


# --- Vidispine expiries past what a date holds -------------------------------------------


def test_an_expiry_in_the_year_10000_utc_is_a_400_and_stores_nothing(
    client: Any, service_client: Any
) -> None:
    response = client.post(
        "/API/collection/VX-10/deletion-lock",
        json={"expiryTime": "9999-12-31T23:59:59-14:00"},
        headers={"Authorization": basic("alice"), "Accept": "application/json"},
    )
    vidispine_error(response, 400)
    assert "9999" in response.get_json()["invalidInput"]["explanation"]
    assert stored(service_client) == []


def test_every_read_survives_a_stored_lock_past_the_year_9999(app: Any, client: Any) -> None:
    # Written as an older version (or another client of the store) could have.
    far = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc).timestamp() + 14 * 3600
    lock = (
        app.extensions["lockcore"]
        .locks.acquire("vidispine", "deletion-collection", "VX-10", "alice", expires_at=far)
        .lock
    )
    headers = {"Authorization": basic("bob"), "Accept": "application/json"}
    last = "9999-12-31T23:59:59.999+00:00"

    listing = client.get("/API/deletion-lock", headers=headers)
    assert listing.status_code == 200 and listing.get_json()["lock"][0]["expiryTime"] == last
    inherited = client.get("/API/item/VX-1/deletion-lock", headers=headers)
    assert inherited.status_code == 200
    assert inherited.get_json()["lock"][0]["isInherited"] is True
    for entity in ("item/VX-1", "collection/VX-10"):
        check = client.get(f"/API/{entity}/deletion-lock/check", headers=headers)
        assert check.status_code == 409 and check.get_json()["expiryTime"] == last
    one = client.get(f"/API/deletion-lock/VX-{lock.id}", headers=headers)
    assert one.status_code == 200 and one.get_json()["isEffective"] is True


# --- sizes -------------------------------------------------------------------------------


def test_a_body_over_the_default_limit_is_a_413(client: Any, service_client: Any) -> None:
    body = json.dumps({"scope": "s", "resource": "r", "metadata": {"k": "x" * (2 << 20)}})
    response = call(client, "v1", data=body, headers=JSON_TYPE)
    v1_error(response, 413)
    assert response.get_json()["error"]["code"] == "too_large"
    assert stored(service_client) == []


@pytest.mark.parametrize("api", sorted(APIS))
def test_a_body_over_max_body_is_a_413_in_the_apis_envelope(client_with: Any, api: str) -> None:
    small = client_with(MAX_BODY=1000)
    assert_envelope(api, call(small, api, data="{" + " " * 1000 + "}", headers=JSON_TYPE), 413)


def test_a_chunked_body_without_a_length_meets_the_same_limit(client_with: Any) -> None:
    small = client_with(MAX_BODY=1000)
    body = json.dumps({"scope": "s", "resource": "r", "metadata": {"k": "x" * 2000}})
    response = call(
        small,
        "v1",
        input_stream=io.BytesIO(body.encode()),
        headers=JSON_TYPE,
        environ_overrides={"wsgi.input_terminated": True},
    )
    v1_error(response, 413)


def acquire_v1(client: Any, **body: Any) -> Any:
    return call(client, "v1", json={"scope": "s", "resource": "r", **body})


def test_v1_metadata_is_bounded_in_entries_and_bytes(client: Any, service_client: Any) -> None:
    too_many = {f"k{i}": "v" for i in range(65)}
    assert acquire_v1(client, metadata=too_many).status_code == 400
    too_big = {"k": "é" * 8192}  # 16 KiB of UTF-8 and a key: one byte over
    response = acquire_v1(client, metadata=too_big)
    assert response.status_code == 400 and "bytes" in response.get_json()["error"]["message"]
    assert stored(service_client) == []
    at_the_limit = {f"k{i:02}": "v" * 250 for i in range(64)}  # 64 entries, 16192 bytes
    assert acquire_v1(client, metadata=at_the_limit).status_code == 201


def test_metadata_limits_are_settings(client_with: Any) -> None:
    strict = client_with(MAX_METADATA_ENTRIES=2, MAX_METADATA_BYTES=10)
    assert acquire_v1(strict, metadata={"a": "1", "b": "2", "c": "3"}).status_code == 400
    assert acquire_v1(strict, metadata={"a": "12345678901"}).status_code == 400
    assert acquire_v1(strict, metadata={"a": "1", "b": "2"}).status_code == 201


def test_vidispine_metadata_is_bounded_when_replaced_and_key_by_key(client_with: Any) -> None:
    strict = client_with(MAX_METADATA_ENTRIES=2)
    headers = {"Authorization": basic("alice"), "Accept": "application/json"}
    fields = [{"key": k, "value": "v"} for k in ("a", "b", "c")]
    refused = strict.post(
        "/API/item/VX-1/deletion-lock",
        headers=headers,
        json={"expiryTime": "2999-01-01T00:00:00Z", "metadata": {"field": fields}},
    )
    vidispine_error(refused, 400)
    created = strict.post(
        "/API/item/VX-1/deletion-lock",
        headers=headers,
        json={"expiryTime": "2999-01-01T00:00:00Z", "metadata": {"field": fields[:2]}},
    )
    lock_id = created.get_json()["id"]
    meta = f"/API/deletion-lock/{lock_id}/metadata"
    vidispine_error(strict.put(meta, headers=headers, json={"field": fields}), 400)
    vidispine_error(strict.put(f"{meta}/c", headers=headers, data="v"), 400)
    assert strict.put(f"{meta}/b", headers=headers, data="w").status_code == 200
    assert strict.get(meta, headers=headers).get_json()["field"] == [
        {"key": "a", "value": "v"},
        {"key": "b", "value": "w"},
    ]


def test_name_length_is_a_setting_in_every_api(client_with: Any, service_client: Any) -> None:
    strict = client_with(MAX_NAME_LENGTH=8)
    long = "n" * 9
    v1_error(acquire_v1(strict, resource=long), 400)
    versal_error(
        call(
            strict,
            "versal",
            json={"type": "gadget", "subject": {"courseId": "c1", "gadgetId": long}},
        ),
        400,
    )
    edx_error(call(strict, "edx", json={"workspace_id": long}), 409)
    vidispine_error(
        strict.post(
            "/API/deletion-lock",
            json={"expiryTime": "2999-01-01T00:00:00Z", "entityType": "item", "entityId": long},
            headers={"Authorization": basic("alice"), "Accept": "application/json"},
        ),
        400,
    )
    assert stored(service_client) == []


def test_edx_notes_length_is_a_setting(client_with: Any, service_client: Any) -> None:
    strict = client_with(MAX_NOTES_LENGTH=5)
    response = call(strict, "edx", json={"workspace_id": "ws-1", "notes": "123456"})
    edx_error(response, 409)
    assert response.get_json()["error"]["notes"] == ["notes may be at most 5 characters"]
    assert stored(service_client) == []
    assert call(strict, "edx", json={"workspace_id": "ws-1", "notes": "12345"}).get_json()[
        "result"
    ] == {"is_locked": True, "notes": "12345"}


# --- failed authentications --------------------------------------------------------------

#: The status each API answers a wrong key with.
REFUSED = {"v1": 401, "versal": 401, "edx": 403, "docspace": 401, "vidispine": 401, "admin": 401}


@pytest.mark.parametrize("api", sorted(APIS))
def test_failed_authentications_past_the_limit_get_429_with_retry_after(
    client_with: Any, api: str
) -> None:
    limited = client_with(AUTH_FAILURE_LIMIT="3/minute")
    for _ in range(3):
        assert_envelope(api, call(limited, api, key="wrong-key", json={}), REFUSED[api])
    blocked = call(limited, api, key="wrong-key", json={})
    assert_envelope(api, blocked, 429)
    assert 1 <= int(blocked.headers["Retry-After"]) <= 60
    # Blocked means blocked: a right key learns nothing until the window ends.
    assert_envelope(api, call(limited, api, json={}), 429)


def test_another_address_is_not_blocked(client_with: Any) -> None:
    limited = client_with(AUTH_FAILURE_LIMIT="2/minute")
    for _ in range(3):
        call(limited, "v1", key="wrong-key", json={})
    assert call(limited, "v1", json={}).status_code == 429
    other = call(
        limited,
        "v1",
        json={"scope": "s", "resource": "r"},
        environ_base={"REMOTE_ADDR": "192.0.2.7"},
    )
    assert other.status_code == 201


def test_x_forwarded_for_names_the_client_only_behind_trusted_proxies(client_with: Any) -> None:
    def fail(app: Any, forwarded_for: str) -> int:
        return call(
            app, "v1", key="wrong-key", json={}, headers={"X-Forwarded-For": forwarded_for}
        ).status_code

    direct = client_with(AUTH_FAILURE_LIMIT="2/minute")
    # Without a trusted proxy the header is the caller's invention: one address.
    assert [fail(direct, f"198.51.100.{i}") for i in range(3)] == [401, 401, 429]
    proxied = client_with(AUTH_FAILURE_LIMIT="2/minute", TRUSTED_PROXIES=1, KEY_PREFIX="proxied")
    assert [fail(proxied, "203.0.113.1") for _ in range(3)] == [401, 401, 429]
    assert fail(proxied, "203.0.113.2") == 401


def test_successful_calls_never_count(client_with: Any) -> None:
    limited = client_with(AUTH_FAILURE_LIMIT="2/minute")
    for i in range(20):
        assert acquire_v1(limited, resource=f"r{i}").status_code == 201
    assert call(limited, "v1", key="wrong-key", json={}).status_code == 401
    assert call(limited, "v1", key="wrong-key", json={}).status_code == 401
    assert call(limited, "v1", key="wrong-key", json={}).status_code == 429


def test_the_count_is_in_redis_and_holds_across_app_instances(
    client_with: Any, service_client: Any
) -> None:
    first, second = (client_with(AUTH_FAILURE_LIMIT="2/minute") for _ in range(2))
    for _ in range(2):
        assert call(first, "versal", key="wrong-key", json={}).status_code == 401
    assert any(k.startswith("t:") and "auth-failures" in k for k in all_keys(service_client))
    versal_error(call(second, "versal", json={}), 429)


def test_probes_and_the_document_are_never_limited(client_with: Any) -> None:
    limited = client_with(AUTH_FAILURE_LIMIT="1/minute")
    for _ in range(2):
        call(limited, "v1", key="wrong-key", json={})
    assert call(limited, "v1", json={}).status_code == 429
    assert limited.get("/healthz").status_code == 200
    assert limited.get("/openapi.json").status_code == 200


def test_a_malformed_limit_fails_at_startup(service_client: Any) -> None:
    with pytest.raises(ValueError):
        make_app(service_client, AUTH_FAILURE_LIMIT="a great many")


# --- HTTP errors keep their headers ------------------------------------------------------


def test_a_method_not_allowed_is_a_405_with_allow_in_the_apis_envelope(client: Any) -> None:
    response = client.open("/v1/locks", method="TRACE")
    v1_error(response, 405)
    assert "POST" in response.headers["Allow"]
    ckan = client.put("/api/3/action/lock_workspace", headers={"User-Agent": "EDX-USER"})
    edx_error(ckan, 405)
    assert "POST" in ckan.headers["Allow"]
    # A GET on an action stays CKAN's 400.
    edx_error(client.get("/api/3/action/lock_workspace"), 400)


def test_put_or_delete_on_a_deletion_check_is_a_405_not_a_lock_lookup(client: Any) -> None:
    response = client.delete(
        "/API/item/VX-1/deletion-lock/check",
        headers={"Authorization": basic("alice"), "Accept": "application/json"},
    )
    vidispine_error(response, 405)
    assert "DELETE" not in response.headers["Allow"]


def test_the_count_works_on_a_cluster(cluster: Any) -> None:
    connection = connect(f"redis+cluster://127.0.0.1:{cluster.ports[0]}", socket_timeout=2.0)
    connection.client.flushall(target_nodes="primaries")
    application = create_app(
        {"REDIS_CLIENT": connection.client, "KEY_PREFIX": "t", "AUTH_FAILURE_LIMIT": "2/minute"}
    )
    services = application.extensions["lockcore"]
    services.catalog.replace(parse_document(CATALOG), services.users)
    limited = application.test_client()
    try:
        for _ in range(2):
            assert call(limited, "versal", key="wrong-key", json={}).status_code == 401
        versal_error(call(limited, "versal", json={}), 429)
    finally:
        connection.close()
