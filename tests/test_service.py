"""The service's foundation: configuration, identities, catalog, admin API, errors,
health, OpenAPI, metrics and logs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from lockcore_service import create_app
from lockcore_service.identity import Users
from lockcore_service.openapi import openapi_path

from .conftest import KEYS, all_keys

# --- configuration -----------------------------------------------------------------------


def test_config_layers_defaults_env_then_override(
    monkeypatch: pytest.MonkeyPatch, service_client: Any
) -> None:
    monkeypatch.setenv("LOCKCORE_VERSAL_TTL", "42")
    monkeypatch.setenv("LOCKCORE_KEY_PREFIX", "fromenv")
    app = create_app({"REDIS_CLIENT": service_client, "KEY_PREFIX": "override"})
    assert app.config["VERSAL_TTL"] == 42.0
    assert app.config["KEY_PREFIX"] == "override"
    assert app.config["EVENT_MAXLEN"] == 1000
    assert app.extensions["lockcore"].locks.prefix == "override"
    assert app.extensions["lockcore"].locks.types["gadget"].default_ttl == 42.0


def test_a_bad_environment_value_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKCORE_VERSAL_TTL", "soon")
    with pytest.raises(ValueError, match="LOCKCORE_VERSAL_TTL"):
        create_app({"REDIS_CLIENT": object()})


# --- identities --------------------------------------------------------------------------


def test_api_keys_are_stored_only_as_hashes(app: Any, service_client: Any) -> None:
    users: Users = app.extensions["lockcore"].users
    key = users.add_key("carol")
    assert users.authenticate(key).id == "carol"  # type: ignore[union-attr]
    assert users.authenticate(key + "x") is None and users.authenticate("") is None
    dump = json.dumps(
        {
            k: {kk.decode(): vv.decode() for kk, vv in service_client.hgetall(k).items()}
            for k in all_keys(service_client)
            if service_client.type(k) == b"hash"
        }
    )
    for secret in [key, *KEYS.values()]:
        assert secret not in dump


def test_cli_adds_a_user_and_prints_a_working_key(real_server: Any) -> None:
    real_server.client().flushall()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lockcore_service.cli",
            "users",
            "add",
            "erin",
            "--name",
            "Erin",
            "--email",
            "erin@example.com",
            "--role",
            "sysadmin",
            "--redis-url",
            real_server.url,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    key = out.stdout.strip()
    user = Users(real_server.client(), "lockcore").authenticate(key)
    assert user is not None and user.id == "erin" and user.is_sysadmin


# --- catalog -----------------------------------------------------------------------------


def test_cli_loads_a_catalog_file(real_server: Any, tmp_path: Path) -> None:
    real_server.client().flushall()
    path = tmp_path / "catalog.json"
    path.write_text(
        json.dumps(
            {
                "courses": [{"key": "k1", "gadgets": ["a"], "roles": {"u": "editor"}}],
                "vidispine": {"collections": [{"id": "VX-9", "items": ["VX-1"]}]},
            }
        )
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lockcore_service.cli",
            "catalog",
            "load",
            str(path),
            "--redis-url",
            real_server.url,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    assert "1 courses" in out.stdout
    from lockcore_service.apis.versal import read_course
    from lockcore_service.catalog import Catalog

    catalog = Catalog(real_server.client(), "lockcore")
    course = read_course(catalog, "k1")
    assert course is not None and course.gadgets == {"a"} and course.role_of("u") == "editor"
    assert catalog.dump()["items"]["VX-1"]["collections"] == ["VX-9"]


def test_cli_refuses_an_invalid_catalog_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("courses:\n  - {key: k1, roles: {u: wizard}}\n")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lockcore_service.cli",
            "catalog",
            "load",
            str(path),
            "--redis-url",
            "redis://127.0.0.1:1",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2 and "wizard" not in out.stdout and "Must be one of" in out.stderr


def test_the_demo_catalog_is_valid() -> None:
    from lockcore_service.catalog import DEMO_CATALOG, parse_document

    doc = parse_document(DEMO_CATALOG.read_text())
    assert any("sysadmin" in u["roles"] for u in doc["users"])
    assert doc["courses"] and doc["workspaces"] and doc["rooms"] and doc["vidispine"]["items"]


# --- admin API ---------------------------------------------------------------------------


def bearer(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[user]}"}


def test_admin_api_needs_a_sysadmin(client: Any) -> None:
    response = client.get("/admin/catalog")
    assert response.status_code == 401 and response.get_json()["error"]["status"] == 401
    response = client.get("/admin/catalog", headers=bearer("alice"))
    assert response.status_code == 403 and "sysadmin" in response.get_json()["error"]["message"]
    assert client.get("/admin/catalog", headers=bearer("admin")).status_code == 200


def test_admin_edits_a_course_and_versal_sees_it(client: Any) -> None:
    response = client.put(
        "/admin/catalog/courses/c9",
        headers=bearer("admin"),
        json={"gadgets": ["x"], "roles": {"carol": "editor"}},
    )
    assert response.status_code == 200
    body = {"type": "gadget", "subject": {"courseId": "c9", "gadgetId": "x"}}
    assert client.post("/locks", json=body, headers={"SID": KEYS["carol"]}).status_code == 201
    assert client.delete("/admin/catalog/courses/c9", headers=bearer("admin")).status_code == 204
    assert client.post("/locks", json=body, headers={"SID": KEYS["carol"]}).status_code == 404


def test_admin_rejects_invalid_entities_with_details(client: Any) -> None:
    response = client.put(
        "/admin/catalog/courses/c9", headers=bearer("admin"), json={"roles": {"carol": "wizard"}}
    )
    assert response.status_code == 400
    assert "roles" in response.get_json()["error"]["details"]
    response = client.put("/admin/catalog/planets/p1", headers=bearer("admin"), json={})
    assert response.status_code == 404
    response = client.put("/admin/catalog", headers=bearer("admin"), data="courses: 5")
    assert response.status_code == 400 and "courses" in response.get_json()["error"]["details"]


def test_admin_replaces_the_catalog_and_creates_users(client: Any) -> None:
    response = client.put(
        "/admin/catalog", headers=bearer("admin"), data="courses: [{key: only, gadgets: [g]}]"
    )
    assert response.status_code == 200 and response.get_json()["courses"] == 1
    assert (
        client.get("/locks?subject.courseId=c1", headers={"SID": KEYS["admin"]}).status_code == 404
    )
    made = client.post(
        "/admin/users",
        headers=bearer("admin"),
        json={"id": "frank", "name": "Frank", "roles": ["sysadmin"]},
    )
    assert made.status_code == 201
    key = made.get_json()["api_key"]
    assert client.get("/locks?subject.courseId=only", headers={"SID": key}).status_code == 200


# --- Redis outages -----------------------------------------------------------------------


def dead_redis() -> redis.Redis:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))


def test_redis_unreachable_is_503_in_the_apis_envelope() -> None:
    app = create_app({"REDIS_CLIENT": dead_redis()})
    client = app.test_client()
    response = client.post("/locks", json={}, headers={"SID": "k"})
    assert response.status_code == 503
    body = response.get_json()
    assert body["error"] == 503 and "unavailable" in body["message"]
    assert "Traceback" not in response.get_data(as_text=True)
    response = client.get("/admin/catalog", headers={"X-API-Key": "k"})
    assert response.status_code == 503 and response.get_json()["error"]["status"] == 503


def test_health_and_readiness(client: Any) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["redis"] == "ok"
    from lockcore.scripts import SCRIPT_NAMES

    assert set(ready.get_json()["scripts"]) == set(SCRIPT_NAMES)
    assert {"acquire", "release", "refresh", "get", "list"} <= set(SCRIPT_NAMES)
    down = create_app({"REDIS_CLIENT": dead_redis()}).test_client()
    assert down.get("/healthz").status_code == 200
    assert down.get("/readyz").status_code == 503


# --- OpenAPI, metrics, logs --------------------------------------------------------------


def test_openapi_covers_every_endpoint(app: Any, client: Any) -> None:
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = openapi_path(rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method.lower()) in documented, (path, method)
    post = spec["paths"]["/locks"]["post"]
    schema_ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = spec["components"]["schemas"][schema_ref.split("/")[-1]]
    assert set(schema["required"]) == {"type", "subject"}


def test_the_openapi_document_is_valid_openapi_3(client: Any) -> None:
    from openapi_spec_validator import validate

    spec = client.get("/openapi.json").get_json()
    validate(spec)  # raises on any schema error
    assert len(spec["paths"]) > 40


def test_swagger_ui_is_served(client: Any) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and "swagger-ui" in page.get_data(as_text=True)


def test_metrics_count_requests_and_lock_operations(client: Any) -> None:
    body = {"type": "gadget", "subject": {"courseId": "c1", "gadgetId": "g1"}}
    client.post("/locks", json=body, headers={"SID": KEYS["alice"]})
    client.post("/locks", json=body, headers={"SID": KEYS["bob"]})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'lockcore_http_requests_total{api="versal",status="201"}' in text
    assert 'lockcore_http_requests_total{api="versal",status="403"}' in text
    assert 'lockcore_lock_operations_total{api="versal",result="acquired",type="gadget"}' in text
    assert 'lockcore_lock_operations_total{api="versal",result="conflict",type="gadget"}' in text
    assert 'lockcore_redis_call_seconds_count{operation="acquire"}' in text


def test_metrics_count_expired_locks(app: Any, client: Any) -> None:
    app.config["METRICS_CACHE"] = 0  # every scrape reads Redis (it counts expirations)

    def expired() -> float:
        wanted = 'lockcore_lock_expirations_total{api="versal",type="gadget"}'
        for line in client.get("/metrics").get_data(as_text=True).splitlines():
            if line.startswith(wanted):
                return float(line.split()[-1])
        return 0.0

    before = expired()
    app.extensions["lockcore"].locks.acquire("versal:course:c1", "gadget", "g1", "alice", ttl=0.02)
    time.sleep(0.05)
    body = {"type": "gadget", "subject": {"courseId": "c1", "gadgetId": "g1"}}
    assert client.post("/locks", json=body, headers={"SID": KEYS["bob"]}).status_code == 201
    assert expired() == before + 1


def test_logs_are_json_lines_with_the_request_id(client: Any, capfd: Any) -> None:
    capfd.readouterr()
    response = client.get("/healthz", headers={"X-Request-Id": "req-123"})
    assert response.headers["X-Request-Id"] == "req-123"
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line]
    assert any(
        e["request_id"] == "req-123" and e["path"] == "/healthz" and e["status"] == 200
        for e in lines
    )
    generated = client.get("/healthz").headers["X-Request-Id"]
    assert len(generated) == 32
