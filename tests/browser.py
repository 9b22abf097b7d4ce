"""A real browser for the web pages (/console, /docs): Debian's chromium-headless-shell,
driven by Playwright's Python API pointed at that executable (no browser download), and
the service on a real HTTP server in a thread, over a real redis-server.

Pages must work offline: every request the page makes to anything but the service is
aborted and recorded (``offline_page``), and the tests assert there were none.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from werkzeug.serving import make_server

#: Debian's package chromium-headless-shell (installed by .ci/run).
CHROMIUM = shutil.which("chromium-headless-shell") or "/usr/bin/chromium-headless-shell"

#: What the browser needs on this machine: root (no sandbox), no GPU, and none of
#: Chromium's own background connections (the network is closed).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass
class LiveApp:
    """The Flask app served over HTTP on a free loopback port, in a thread."""

    app: Any
    url: str
    server: Any
    thread: threading.Thread

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def serve(app: Any) -> LiveApp:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return LiveApp(app, f"http://127.0.0.1:{server.server_port}", server, thread)


@dataclass
class OfflinePage:
    """A page whose requests leave the machine nowhere: those not to the service are
    aborted and kept in ``blocked``; console errors are kept in ``errors``."""

    page: Any
    base: str
    blocked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One browser per test module: Playwright's sync API runs an asyncio loop in this
    thread while it is open, which later modules' ``asyncio.run`` would trip over."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def offline_page(browser: Any, base: str) -> OfflinePage:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    result = OfflinePage(page, base)

    def route(route: Any) -> None:
        url = route.request.url
        if url.startswith(base + "/") or url == base:
            route.continue_()
        else:
            result.blocked.append(url)
            route.abort()

    context.route("**/*", route)
    page.on("pageerror", lambda exc: result.errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: result.errors.append(msg.text) if msg.type == "error" else None,
    )
    return result
