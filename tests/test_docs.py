"""The documentation's code runs as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def code_block(path: Path) -> str:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)[0]


def test_the_fencing_example_refuses_the_stale_writer(real_server: Any) -> None:
    client = real_server.client()
    client.flushall()
    namespace: dict[str, Any] = {}
    exec(compile(code_block(ROOT / "docs" / "fencing.md"), "fencing.md", "exec"), namespace)
    assert namespace["demo"](client) == "fenced"
    client.close()


# --- /docs: Swagger UI from the package's files ------------------------------------------


def test_docs_load_swagger_ui_from_the_service_under_a_strict_policy(client: Any) -> None:
    page = client.get("/docs")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "//" not in re.sub(r"<!doctype html>", "", html)  # no absolute URL: no CDN
    assert re.findall(r'<script src="([^"]+)"', html) == [
        "docs/swagger-ui-bundle.js",
        "docs/swagger-initializer.js",
    ]
    assert "<script>" not in html  # no inline script
    policy = dict(
        part.strip().split(" ", 1) for part in page.headers["Content-Security-Policy"].split(";")
    )
    assert policy == {
        "default-src": "'none'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": "'self' data:",
        "connect-src": "'self'",
        "frame-ancestors": "'none'",
    }


def test_swagger_uis_files_are_the_packages_and_cached(client: Any) -> None:
    import swagger_ui_bundle  # type: ignore[import-untyped]

    installed = Path(swagger_ui_bundle.swagger_ui_path)
    for name, mimetype in [
        ("swagger-ui-bundle.js", "text/javascript"),
        ("swagger-ui.css", "text/css"),
        ("favicon-32x32.png", "image/png"),
    ]:
        with client.get(f"/docs/{name}") as answer:  # a file's answer: closed after use
            assert answer.status_code == 200 and answer.mimetype == mimetype, name
            assert answer.get_data() == (installed / name).read_bytes()
            assert answer.cache_control.public and answer.cache_control.max_age == 86400
            etag = answer.headers["ETag"]
        with client.get(f"/docs/{name}", headers={"If-None-Match": etag}) as again:
            assert again.status_code == 304
    initializer = client.get("/docs/swagger-initializer.js")
    assert initializer.mimetype == "text/javascript" and initializer.headers["ETag"]
    assert 'url: "openapi.json"' in initializer.get_data(as_text=True)
    # only the files the page loads: not the bundle's other files, nothing outside it
    for name in ["index.html", "swagger-ui.js.map", "..%2F__init__.py", "nothing.js"]:
        assert client.get(f"/docs/{name}").status_code == 404, name
