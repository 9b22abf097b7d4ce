"""Deployment safety: the demo's well-known keys only in a local demo, security headers,
no internals in /readyz, a valid /metrics, one-line CLI errors, and a ``lockcore serve``
that restarts its embedded Redis and leaves no temporary directories behind."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import yaml

from lockcore import EmbeddedRedis
from lockcore_service import create_app
from lockcore_service.catalog import Catalog
from lockcore_service.cli import demo_allowed, load_demo_if_empty, parser, redacted
from lockcore_service.identity import User, Users

from .live import LOCKCORE, LiveService

ROOT = Path(__file__).resolve().parents[1]


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# --- the demo catalog --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "embedded", "host", "allowed"),
    [
        (None, True, "127.0.0.1", True),
        (None, True, "localhost", True),
        (None, True, "::1", True),
        (None, True, "0.0.0.0", False),
        (None, True, "::", False),
        (None, True, "192.168.1.5", False),
        (None, True, "lockcore.example.com", False),
        (None, False, "127.0.0.1", False),  # an external Redis may be shared, outlive the demo
        (True, False, "0.0.0.0", True),  # asked for
        (False, True, "127.0.0.1", False),  # refused
    ],
)
def test_the_demo_is_loaded_only_locally_unless_asked_for(
    requested: bool | None, embedded: bool, host: str, allowed: bool
) -> None:
    assert demo_allowed(requested, embedded=embedded, host=host) is allowed


def test_the_demo_is_never_loaded_over_real_users(real_server: Any) -> None:
    client = real_server.client()
    client.flushall()
    Users(client, "lockcore").create(User("root", "Root", roles=frozenset({"sysadmin"})))
    assert load_demo_if_empty(client) is None
    assert Users(client, "lockcore").authenticate("demo-admin-key") is None
    client.flushall()
    loaded = load_demo_if_empty(client)
    assert loaded is not None and ("admin", "EDX Administrator", "demo-admin-key") in loaded


@pytest.mark.slow
def test_serve_on_an_external_redis_loads_the_demo_only_with_demo_flag(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis") as store:
        url = ["--redis-url", store.url]
        with LiveService(tmp_path / "a", *url, workers=1) as plain:
            refused = plain.request(
                "GET", "/admin/users", headers={"Authorization": "Bearer demo-admin-key"}
            )
            assert refused.status_code == 401
        assert "demo-admin-key" not in plain.output
        assert "lockcore users add ID --name NAME --role sysadmin" in plain.output
        assert not Users(store.client(), "lockcore").exist()
        assert Catalog(store.client(), "lockcore").is_empty()

        with LiveService(tmp_path / "b", *url, "--demo", workers=1) as demo:
            allowed = demo.request(
                "GET", "/admin/users", headers={"Authorization": "Bearer demo-admin-key"}
            )
            assert allowed.status_code == 200
        assert "demo-admin-key" in demo.output


def test_docker_never_loads_the_demo() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = next(line for line in dockerfile.splitlines() if line.startswith("CMD"))
    assert "--no-demo" in cmd and "0.0.0.0" in cmd
    assert "\nUSER " in dockerfile  # not root
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        if service.get("build") == ".":
            assert "--no-demo" in service["command"], name
            assert service["environment"]["LOCKCORE_REDIS_URL"]


# --- HTTP hardening ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/healthz", "/locks", "/admin/users", "/openapi.json", "/metrics", "/no/such/page"]
)
def test_every_answer_carries_security_headers(client: Any, path: str) -> None:
    headers = client.get(path).headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"


def test_swagger_ui_may_load_its_scripts_but_not_be_framed(client: Any) -> None:
    from lockcore_service.openapi import DOCS_CSP

    headers = client.get("/docs").headers
    # its scripts, styles and data from the service only (no CDN), never framed
    assert headers["Content-Security-Policy"] == DOCS_CSP
    assert "script-src 'self'" in DOCS_CSP and "frame-ancestors 'none'" in DOCS_CSP
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_readyz_does_not_leak_the_redis_error_or_socket_path(tmp_path: Path) -> None:
    socket = tmp_path / "gone.sock"
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis(unix_socket_path=str(socket), retry=Retry(NoBackoff(), 0))
    response = create_app({"REDIS_CLIENT": client}).test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_data(as_text=True)
    assert str(tmp_path) not in body and "gone.sock" not in body
    assert "Error" not in body and "connecting" not in body
    assert response.get_json() == {
        "status": "unavailable",
        "message": response.get_json()["message"],
    }


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ('{"users": [{"id": "\\ud800", "name": "Lone"}]}', "not valid Unicode"),
        ("[" * 5_000 + "]" * 5_000, "nested too deeply"),
    ],
)
def test_a_catalog_redis_cannot_store_is_a_400(client: Any, document: str, reason: str) -> None:
    response = client.put(
        "/admin/catalog", data=document, headers={"Authorization": "Bearer key-admin"}
    )
    assert response.status_code == 400
    assert reason in response.get_json()["error"]["details"]["_document"][0]


def test_a_json_catalog_may_escape_characters_as_surrogate_pairs(client: Any) -> None:
    response = client.put(
        "/admin/catalog",
        data='{"courses": [{"key": "\\ud83d\\ude00"}]}',
        headers={"Authorization": "Bearer key-admin"},
    )
    assert response.status_code == 200
    courses = client.get("/admin/catalog", headers={"Authorization": "Bearer key-admin"})
    assert list(courses.get_json()["courses"]) == ["\U0001f600"]


def test_metrics_content_type_is_valid(client: Any) -> None:
    content_type = client.get("/metrics").headers["Content-Type"]
    assert content_type.startswith("text/plain")
    assert content_type.count("charset") == 1


# --- the command line --------------------------------------------------------------------


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LOCKCORE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://example.invalid/0", "scheme"),
        ("redis://127.0.0.1:notaport/0", "Port"),
        ("redis://127.0.0.1:1/0", "127.0.0.1:1"),  # nothing listens on port 1
    ],
)
def test_cli_reports_a_bad_or_unreachable_redis_in_one_line(url: str, says: str) -> None:
    out = run("users", "list", "--redis-url", url)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("lockcore: ")
    assert says in out.stderr and "Traceback" not in out.stderr


def test_cli_never_prints_a_redis_password() -> None:
    out = run("locks", "list", "s", "--redis-url", "redis://:hunter2@127.0.0.1:1/0")
    assert out.returncode == 1 and "hunter2" not in out.stderr and "***" in out.stderr
    assert redacted("redis://u:pw@h:1/0") == "redis://u:***@h:1/0"
    assert redacted("unix:///tmp/r.sock") == "unix:///tmp/r.sock"


def test_a_bad_appendfsync_stops_serve_in_one_line(tmp_path: Path) -> None:
    out = run("serve", "--port", "1", env={"LOCKCORE_APPENDFSYNC": "sometimes"}, cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip() == (
        "lockcore: LOCKCORE_APPENDFSYNC='sometimes': must be one of everysec, always"
    )
    assert not (tmp_path / "lockcore-data").exists()  # nothing was started


def test_version_comes_from_the_package_metadata() -> None:
    from importlib.metadata import version

    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"lockcore {version('lockcore')}"


def test_every_option_of_every_command_has_help() -> None:
    def walk(p: argparse.ArgumentParser, where: str) -> list[str]:
        missing = []
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    missing += walk(child, f"{where} {name}")
            elif not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{where}: {'/'.join(action.option_strings) or action.dest}")
        return missing

    assert walk(parser(), "lockcore") == []


# --- lockcore serve: supervision and clean-up --------------------------------------------


@pytest.mark.slow
def test_serve_restarts_a_killed_embedded_redis_and_cleans_up(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    alice = {"SID": "demo-alice-key"}
    body = {"type": "gadget", "subject": {"courseId": "course-1", "gadgetId": "g1"}}
    pid_file = tmp_path / "svc" / "lockcore-data" / "redis.pid"
    with LiveService(tmp_path / "svc", workers=1, env={"TMPDIR": str(tmp)}) as svc:
        assert [p.name for p in tmp.iterdir() if p.name.startswith("lockcore-metrics-")]
        lock = svc.request("POST", "/locks", json=body, headers=alice).json()
        assert svc.request("GET", "/readyz").status_code == 200
        old_pid = int(pid_file.read_text())
        os.kill(old_pid, signal.SIGKILL)

        def recovered() -> bool:
            try:
                ready = svc.request("GET", "/readyz").status_code == 200
            except requests.RequestException:
                return False
            return ready and int(pid_file.read_text() or 0) != old_pid

        wait_for(recovered)
        listed = svc.request("GET", "/locks?subject.courseId=course-1", headers=alice)
        assert [lk["id"] for lk in listed.json()] == [lock["id"]]  # the AOF was replayed
        data = tmp_path / "svc" / "lockcore-data"
        assert oct(data.stat().st_mode & 0o777) == oct(0o700)
        assert oct((data / "appendonly.aof").stat().st_mode & 0o777) == oct(0o600)
    assert not any(p.name.startswith("lockcore-metrics-") for p in tmp.iterdir())
    assert not (tmp_path / "svc" / "lockcore-data" / "redis.sock").exists()
