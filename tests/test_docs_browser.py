"""/docs in a real browser, offline: Swagger UI from the package's own files renders every
operation of /openapi.json, and "Try it out" takes a lock through /v1."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .browser import LiveApp, offline_page, serve

#: The methods an OpenAPI path item may have operations for.
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@pytest.fixture
def docs_app(real_server: Any) -> Iterator[tuple[LiveApp, str]]:
    """The service over a real redis-server, on a real HTTP port, and the /v1 key of a
    user made for the test."""
    from lockcore_service import create_app
    from lockcore_service.identity import User

    client = real_server.client()
    client.flushall()
    application = create_app({"REDIS_CLIENT": client, "KEY_PREFIX": "t"})
    users = application.extensions["lockcore"].users
    key = users.create(User("docs-reader", "Docs Reader", "docs@example.com")).key
    live = serve(application)
    yield live, key
    live.stop()
    client.close()


def operations(document: dict[str, Any]) -> int:
    return sum(1 for item in document["paths"].values() for method in item if method in METHODS)


def test_docs_render_offline_and_try_it_out_takes_a_lock(
    browser: Any, docs_app: tuple[LiveApp, str], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    live, key = docs_app
    document = live.app.test_client().get("/openapi.json").get_json()
    count = operations(document)
    assert count > 70

    offline = offline_page(browser, live.url)
    page = offline.page
    try:
        page.goto(live.url + "/docs")
        expect(page.locator(".opblock")).to_have_count(count)
        assert page.locator(".swagger-ui .info .title").inner_text().startswith("lockcore")

        # Authorize: the /v1 bearer key, in its scheme's form of the dialog.
        page.locator(".auth-wrapper button.authorize").click()
        form = page.locator(".auth-container").filter(has_text="V1Bearer")
        form.locator("input").fill(key)
        form.locator("button.authorize").click()
        expect(form.locator("button", has_text="Logout")).to_be_visible()
        form.locator("button.btn-done").click()
        expect(page.locator(".dialog-ux")).to_have_count(0)

        # POST /v1/locks: Try it out, type the body, Execute.
        operation = page.locator('.opblock[id$="-post_v1_locks"]')
        operation.locator(".opblock-summary").click()
        operation.locator("button.try-out__btn").click()
        body = {"scope": "docs", "resource": "report-7", "ttl": 60}
        operation.locator("textarea.body-param__text").fill(json.dumps(body))
        operation.locator("button.execute").click()
        live_response = operation.locator(".live-responses-table tbody .response")
        expect(live_response.locator(".response-col_status")).to_have_text(re.compile(r"^\s*201"))
        shown = live_response.locator(".response-col_description pre.microlight").first
        expect(shown).to_contain_text('"resource": "report-7"')
        lock = json.loads(shown.inner_text())
        live_response.scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / "docs.png"), full_page=False)
    finally:
        page.context.close()

    assert lock["scope"] == "docs" and lock["owner"] == "docs-reader"
    held = live.app.extensions["lockcore"].lock_under(lock["id"], "v1:")
    assert held is not None and held.resource == "report-7" and held.owner == "docs-reader"
    assert offline.blocked == []
    assert offline.errors == []
