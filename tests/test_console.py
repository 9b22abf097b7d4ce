"""The operator console: its JSON API (fakeredis and a real server), then the page itself
in a real browser (Debian's chromium-headless-shell through Playwright) over a real
redis-server, with the network cut off."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from .browser import offline_page, serve
from .conftest import CATALOG, KEYS

ROOT = Path(__file__).resolve().parents[1]


def auth(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[user]}"}


def acquire(client: Any, user: str, scope: str, resource: str, **extra: Any) -> dict[str, Any]:
    response = client.post(
        "/v1/locks", json={"scope": scope, "resource": resource, **extra}, headers=auth(user)
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()  # type: ignore[no-any-return]


# --- the API the page reads ----------------------------------------------------------------


def test_the_page_and_its_assets_are_served_by_the_app_with_a_strict_policy(client: Any) -> None:
    page = client.get("/console")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "/console/static/console.js" in html and "/console/static/console.css" in html
    assert "http" not in html.replace("http-equiv", "")  # nothing from elsewhere
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    for name, mimetype in (("console.js", "text/javascript"), ("console.css", "text/css")):
        asset = client.get(f"/console/static/{name}")
        assert asset.status_code == 200 and asset.mimetype == mimetype
        assert asset.get_data() == (ROOT / "app" / "console" / "static" / name).read_bytes()
    missing = client.get("/console/static/secrets.py")
    assert missing.status_code == 404
    assert missing.get_json() == {"error": {"status": 404, "message": "No such file: secrets.py"}}


def test_signing_in_says_who_the_key_is_and_refuses_a_bad_key(client: Any) -> None:
    assert client.get("/console/api/me", headers=auth("admin")).get_json() == {
        "id": "admin",
        "name": "EDX Administrator",
        "sysadmin": True,
    }
    assert client.get("/console/api/me", headers=auth("carol")).get_json()["sysadmin"] is False
    for headers in ({}, {"Authorization": "Bearer nope"}):
        refused = client.get("/console/api/me", headers=headers)
        assert refused.status_code == 401
        assert "API key" in refused.get_json()["error"]["message"]


def test_scopes_with_live_locks_by_what_each_caller_may_see(client: Any, app: Any) -> None:
    acquire(client, "alice", "build", "r1")
    acquire(client, "alice", "build", "r2")
    gone = acquire(client, "alice", "gone", "r1")
    assert client.delete(f"/v1/locks/{gone['id']}", headers=auth("alice")).status_code == 200
    # a Versal gadget lock: another API's scope
    app.extensions["lockcore"].locks.acquire("versal:course:c1", "gadget", "g1", "alice")
    as_admin = client.get("/console/api/scopes", headers=auth("admin")).get_json()
    scopes = {row["scope"]: row["locks"] for row in as_admin["scopes"]}
    # v1:gone's hash is kept (retention) but holds no live lock
    assert scopes == {"v1:build": 2, "versal:course:c1": 1}
    assert as_admin["truncated"] is False
    as_carol = client.get("/console/api/scopes", headers=auth("carol")).get_json()
    assert [row["scope"] for row in as_carol["scopes"]] == ["v1:build"]


def test_a_scope_snapshot_has_its_locks_waiters_the_server_time_and_the_newest_event(
    client: Any, app: Any
) -> None:
    lock = acquire(client, "alice", "build", "r1", metadata={"job": "42"})
    body = client.get("/console/api/scopes/v1:build", headers=auth("carol")).get_json()
    assert [(x["id"], x["owner"], x["metadata"]) for x in body["locks"]] == [
        (lock["id"], "alice", {"job": "42"})
    ]
    assert body["waiters"] == []
    services = app.extensions["lockcore"]
    seconds, micros = services.client.time()
    assert abs(body["now"] - (int(seconds) + int(micros) / 1e6)) < 60
    newest = services.client.xrevrange(services.locks.keys("v1:build").events, count=1)
    assert body["last_event"] == newest[0][0].decode()
    # another API's scope: sysadmins only
    refused = client.get("/console/api/scopes/versal:course:c1", headers=auth("carol"))
    assert refused.status_code == 403 and "sysadmin" in refused.get_json()["error"]["message"]
    shown = client.get("/console/api/scopes/versal:course:c1", headers=auth("admin"))
    assert shown.status_code == 200 and shown.get_json()["locks"] == []


def read_events(response: Any, count: int) -> list[tuple[str, dict[str, Any]]]:
    """The first ``count`` ``lock`` events of an event-stream response (then closed)."""
    events: list[tuple[str, dict[str, Any]]] = []
    buffer = ""
    try:
        for chunk in response.response:
            buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line[:8])
                if fields.get("event") == "lock":
                    events.append((fields["id"], json.loads(fields["data"])))
                    if len(events) == count:
                        return events
    finally:
        response.close()
    return events


def test_the_event_feed_resumes_after_the_id_it_is_given(client: Any, app: Any) -> None:
    first = acquire(client, "alice", "build", "r1")
    body = client.get("/console/api/scopes/v1:build", headers=auth("carol")).get_json()
    second = acquire(client, "bob", "build", "r2")
    assert client.delete(f"/v1/locks/{first['id']}", headers=auth("alice")).status_code == 200
    response = client.get(
        f"/console/api/scopes/v1:build/events?after={body['last_event']}",
        headers=auth("carol"),
        buffered=False,
    )
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    events = read_events(response, 2)
    assert [(e["event"], e["id"], e["owner"]) for _, e in events] == [
        ("acquired", second["id"], "bob"),
        ("released", first["id"], "alice"),
    ]
    assert events[0][1]["time"].endswith("Z") and isinstance(events[0][1]["token"], int)
    # Last-Event-ID (what a reconnecting client sends) resumes after that event
    again = client.get(
        "/console/api/scopes/v1:build/events",
        headers={**auth("carol"), "Last-Event-ID": events[0][0]},
        buffered=False,
    )
    assert [e["event"] for _, e in read_events(again, 1)] == ["released"]
    bad = client.get("/console/api/scopes/v1:build/events?after=nope", headers=auth("carol"))
    assert bad.status_code == 400 and "event id" in bad.get_json()["error"]["message"]
    other = client.get("/console/api/scopes/versal:course:c1/events", headers=auth("carol"))
    assert other.status_code == 403


def test_open_feeds_are_capped_per_process_and_a_closed_one_frees_its_place(app: Any) -> None:
    app.extensions["console_feeds"] = threading.BoundedSemaphore(1)
    client = app.test_client()
    first = client.get("/console/api/scopes/v1:x/events", headers=auth("carol"), buffered=False)
    assert first.status_code == 200
    refused = client.get("/console/api/scopes/v1:x/events", headers=auth("carol"))
    assert refused.status_code == 503 and "feeds" in refused.get_json()["error"]["message"]
    first.close()
    again = client.get("/console/api/scopes/v1:x/events", headers=auth("carol"), buffered=False)
    assert again.status_code == 200
    again.close()


def test_only_a_sysadmin_may_force_a_release(client: Any, app: Any) -> None:
    lock = acquire(client, "alice", "build", "r1")
    refused = client.post(f"/console/api/locks/{lock['id']}/release", headers=auth("carol"))
    assert refused.status_code == 403
    assert refused.get_json()["error"]["message"] == "Only a sysadmin may force a release"
    assert client.get(f"/v1/locks/{lock['id']}", headers=auth("alice")).status_code == 200
    done = client.post(f"/console/api/locks/{lock['id']}/release", headers=auth("admin"))
    assert done.status_code == 200
    assert done.get_json()["released"]["id"] == lock["id"] and done.get_json()["by"] == "admin"
    assert client.get(f"/v1/locks/{lock['id']}", headers=auth("alice")).status_code == 404
    services = app.extensions["lockcore"]
    entries = services.client.xrevrange(services.locks.keys("v1:build").events, count=1)
    fields = {k.decode(): v.decode() for k, v in entries[0][1].items()}
    assert fields["event"] == "released" and fields["by"] == "admin"
    for unknown in (lock["id"], "not-a-lock"):
        missing = client.post(f"/console/api/locks/{unknown}/release", headers=auth("admin"))
        assert missing.status_code == 404


# --- the page, in a real browser ------------------------------------------------------------


@pytest.fixture
def live(real_server: Any) -> Iterator[Any]:
    from lockcore_service import create_app
    from lockcore_service.catalog import parse_document

    client = real_server.client()
    client.flushall()
    application = create_app({"REDIS_CLIENT": client, "KEY_PREFIX": "t", "REDIS_TIMEOUT": 2.0})
    services = application.extensions["lockcore"]
    services.catalog.replace(parse_document(CATALOG), services.users)
    served = serve(application)
    yield served
    served.stop()
    client.close()


def sign_in(browser: Any, base: str, user: str) -> Any:
    offline = offline_page(browser, base)
    page = offline.page
    page.goto(base + "/console")
    page.fill("#key", KEYS[user])
    page.click("#sign-in-form button")
    page.wait_for_selector("#main:not([hidden])")
    return offline


def test_the_console_in_a_browser(browser: Any, live: Any, tmp_path: Path) -> None:
    http = requests.Session()
    base = live.url

    def v1(method: str, path: str, user: str, **kwargs: Any) -> Any:
        response = http.request(method, base + path, headers=auth(user), timeout=10, **kwargs)
        assert response.status_code < 300, response.text
        return response.json()

    held = v1("POST", "/v1/locks", "alice", json={"scope": "build", "resource": "main"})
    offline = sign_in(browser, base, "admin")
    page = offline.page
    assert page.text_content("#who-name") == "EDX Administrator"
    page.click('#scopes button[data-scope="v1:build"]')
    row = f'#locks tr[data-id="{held["id"]}"]'
    page.wait_for_selector(row)
    assert page.text_content(f"{row} .owner") == "alice"
    assert page.text_content(f"{row} .token") == str(held["fencing_token"])
    # the time left counts down by the server's clock
    first = float(page.text_content(f"{row} .left").split()[0])
    # (a function, not an expression: the page's CSP forbids eval)
    page.wait_for_function(
        f"() => parseFloat(document.querySelector('{row} .left').textContent) < {first}"
    )
    page.wait_for_selector("#feed-state.live")

    # another client acquires: the lock appears without a reload, with its event
    other = v1(
        "POST",
        "/v1/locks",
        "bob",
        json={"scope": "build", "resource": "docs", "metadata": {"job": "7"}},
    )
    other_row = f'#locks tr[data-id="{other["id"]}"]'
    page.wait_for_selector(other_row)
    assert page.text_content(f"{other_row} .owner") == "bob"
    page.wait_for_selector(f'#feed li[data-event="acquired"][data-id="{other["id"]}"]')
    page.wait_for_function(
        f"() => document.querySelector('{other_row} .meta')?.textContent === 'job=7'"
    )
    # someone waits for it: the page shows one waiter on that resource
    waited: dict[str, Any] = {}

    def wait_for_docs() -> None:
        waited.update(
            v1(
                "POST",
                "/v1/locks",
                "carol",
                json={"scope": "build", "resource": "docs", "wait": 30},
            )
        )

    waiter = threading.Thread(target=wait_for_docs)
    waiter.start()
    page.wait_for_function(
        f"() => document.querySelector('{other_row} .waiting')?.textContent === '1'"
    )
    page.screenshot(path=str(tmp_path / "console.png"), full_page=True)
    if os.environ.get("LOCKCORE_SCREENSHOT"):  # how docs/console.png is made
        page.screenshot(path=os.environ["LOCKCORE_SCREENSHOT"], full_page=True)

    # released by its owner: it disappears, and the waiter's lock appears
    v1("DELETE", f"/v1/locks/{other['id']}", "bob")
    page.wait_for_selector(other_row, state="detached")
    page.wait_for_selector(f'#feed li[data-event="released"][data-id="{other["id"]}"]')
    waiter.join(timeout=30)
    assert waited["owner"] == "carol"
    handed = f'#locks tr[data-id="{waited["id"]}"]'
    page.wait_for_selector(handed)
    assert page.text_content(f"{handed} .owner") == "carol"
    page.wait_for_function(
        f"() => document.querySelector('{handed} .waiting')?.textContent === '0'"
    )

    # force-released by the sysadmin, after confirming
    questions: list[str] = []

    def confirm(dialog: Any) -> None:
        questions.append(dialog.message)
        dialog.accept()

    page.on("dialog", confirm)
    page.click(f"{row} button.release")
    page.wait_for_selector(row, state="detached")
    released = page.wait_for_selector(f'#feed li[data-event="released"][data-id="{held["id"]}"]')
    assert "by admin" in released.text_content()
    assert questions and "alice" in questions[0]
    gone = http.get(f"{base}/v1/locks/{held['id']}", headers=auth("alice"), timeout=10)
    assert gone.status_code == 404
    assert offline.blocked == [] and offline.errors == []
    page.context.close()


def test_the_console_in_a_browser_for_someone_not_a_sysadmin(
    browser: Any, live: Any, tmp_path: Path
) -> None:
    base = live.url
    held = requests.post(
        base + "/v1/locks",
        json={"scope": "build", "resource": "main"},
        headers=auth("alice"),
        timeout=10,
    ).json()
    offline = sign_in(browser, base, "carol")
    page = offline.page
    assert page.text_content("#who-role") == "reader"
    page.click('#scopes button[data-scope="v1:build"]')
    row = f'#locks tr[data-id="{held["id"]}"]'
    page.wait_for_selector(row)
    assert page.query_selector(f"{row} button.release") is None
    # the API refuses the page's own call, whatever the page shows
    status = page.evaluate(
        """async ([id, key]) => (await fetch(`/console/api/locks/${id}/release`,
              {method: "POST", headers: {Authorization: "Bearer " + key}})).status""",
        [held["id"], KEYS["carol"]],
    )
    assert status == 403
    assert requests.get(f"{base}/v1/locks/{held['id']}", headers=auth("alice"), timeout=10).ok
    # a wrong key: the sign-in form says so
    wrong = offline_page(browser, base)
    wrong.page.goto(base + "/console")
    wrong.page.fill("#key", "not-a-key")
    wrong.page.click("#sign-in-form button")
    wrong.page.wait_for_function(
        "() => document.querySelector('#sign-in-error').textContent !== ''"
    )
    assert "API key" in wrong.page.text_content("#sign-in-error")
    assert offline.blocked == [] and wrong.blocked == []
    page.context.close()
    wrong.page.context.close()
