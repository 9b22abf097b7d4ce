"""The documentation: docs/ code runs as written; /docs serves Swagger UI from the package
under a strict policy; every error answer of /openapi.json is typed, as sent."""

from __future__ import annotations

import base64
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


# --- the error answers' schemas ----------------------------------------------------------


def untyped(document: dict[str, Any]) -> set[str]:
    """Every schema reachable from an error answer (status >= 400) that says nothing of
    its content, where it is found: an object with neither properties, nor typed
    additionalProperties, nor a $ref (Swagger UI shows additionalProp1...), or no type at
    all (fields.Raw: Swagger UI shows "string")."""
    components = document["components"]["schemas"]
    found: set[str] = set()
    seen: set[str] = set()

    def walk(schema: dict[str, Any], where: str) -> None:
        if "$ref" in schema:
            name = schema["$ref"].removeprefix("#/components/schemas/")
            if name not in seen:
                seen.add(name)
                walk(components[name], name)
            return
        choices = [c for key in ("allOf", "anyOf", "oneOf") for c in schema.get(key, [])]
        for choice in choices:
            walk(choice, where)
        if "items" in schema:
            walk(schema["items"], f"{where}[]")
        for name, prop in schema.get("properties", {}).items():
            walk(prop, f"{where}.{name}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            walk(extra, f"{where}.*")
        typed = (
            choices
            or "enum" in schema
            or schema.get("properties")
            or (isinstance(extra, dict) and extra)
            or schema.get("type") not in (None, "object")
        )
        if not typed:
            found.add(where)

    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, answer in operation.get("responses", {}).items():
                if int(status) < 400:
                    continue
                for media, content in answer.get("content", {}).items():
                    assert "schema" in content, (method, path, status, media)
                    walk(content["schema"], f"{method} {path} {status} {media}")
    return found


def test_every_error_answer_is_typed(client: Any) -> None:
    document = client.get("/openapi.json").get_json()
    assert untyped(document) == set()


def test_the_walk_finds_untyped_schemas() -> None:
    def with_error(schema: dict[str, Any]) -> dict[str, Any]:
        answer = {"content": {"application/json": {"schema": schema}}}
        return {
            "paths": {"/x": {"get": {"responses": {"200": answer, "404": answer}}}},
            "components": {"schemas": {"E": {"type": "object", "properties": {"a": {}}}}},
        }

    assert untyped(with_error({"type": "object"})) == {"get /x 404 application/json"}
    assert untyped(with_error({"type": "object", "additionalProperties": True})) == {
        "get /x 404 application/json"
    }
    assert untyped(with_error({"$ref": "#/components/schemas/E"})) == {"E.a"}
    loose = {"type": "object", "properties": {"e": {"type": "object", "additionalProperties": {}}}}
    assert untyped(with_error(loose)) == {"get /x 404 application/json.e"}
    typed = {
        "type": "array",
        "items": {"type": "object", "additionalProperties": {"type": "string"}},
    }
    assert untyped(with_error(typed)) == set()


#: alice's credentials in each API (tests/conftest.py's catalog)
V1 = {"Authorization": "Bearer key-alice"}
EDX = {"EDX-API-Key": "key-alice", "User-Agent": "EDX-USER"}
DOCSPACE = {"Authorization": "Bearer key-alice"}
VIDISPINE = {
    "Authorization": "Basic " + base64.b64encode(b"alice:key-alice").decode(),
    "Accept": "application/json",
}

#: Errors of each API, as sent, with the operation that documents them: (method, URL,
#: request keywords, documented path, expected status).
WIRE_ERRORS: list[tuple[str, str, dict[str, Any], str, int]] = [
    ("POST", "/v1/locks", {"json": {"scope": "s", "resource": "r"}}, "/v1/locks", 401),
    (
        "POST",
        "/v1/multilocks",
        {
            "json": {"scope": "s", "resources": ["", "a", 3]},
            "headers": V1,
        },
        "/v1/multilocks",
        400,
    ),
    (
        "POST",
        "/v1/locks",
        {
            "json": {"scope": "s", "resource": "r", "metadata": {"a": 1}},
            "headers": V1,
        },
        "/v1/locks",
        400,
    ),
    (
        "POST",
        "/v1/locks",
        {
            "json": {"scope": "s", "resource": "held"},
            "headers": V1,
        },
        "/v1/locks",
        409,
    ),
    (
        "GET",
        "/v1/locks/nope",
        {"headers": V1},
        "/v1/locks/{lock_id}",
        404,
    ),
    ("GET", "/locks?subject.courseId=c9", {"headers": {"SID": "key-alice"}}, "/locks", 404),
    ("DELETE", "/locks/1", {}, "/locks/{lock_id}", 401),
    (
        "PUT",
        "/api/2.0/files/file/404/lock",
        {"json": {"lockFile": True}, "headers": DOCSPACE},
        "/api/2.0/files/file/{file_id}/lock",
        404,
    ),
    ("GET", "/api/2.0/files/file/123456", {}, "/api/2.0/files/file/{file_id}", 401),
    (
        "POST",
        "/api/3/action/lock_workspace",
        {"json": {}, "headers": EDX},
        "/api/3/action/lock_workspace",
        409,
    ),
    (
        "POST",
        "/api/3/action/check_workspace_lock",
        {
            "json": {"workspace_id": "ws-9"},
            "headers": EDX,
        },
        "/api/3/action/check_workspace_lock",
        404,
    ),
    (
        "POST",
        "/api/3/action/lock_workspace",
        {"json": {"workspace_id": "ws-1"}},
        "/api/3/action/lock_workspace",
        403,
    ),
    (
        "GET",
        "/API/deletion-lock/VX-99",
        {"headers": VIDISPINE},
        "/API/deletion-lock/{lock_id}",
        404,
    ),
    (
        "GET",
        "/API/deletion-lock?first=0",
        {"headers": VIDISPINE},
        "/API/deletion-lock",
        400,
    ),
    (
        "GET",
        "/API/deletion-lock",
        {"headers": {"Accept": "application/json"}},
        "/API/deletion-lock",
        401,
    ),
    (
        "POST",
        "/admin/users",
        {"json": {"id": 3}, "headers": {"Authorization": "Bearer key-admin"}},
        "/admin/users",
        400,
    ),
]


def test_errors_as_sent_match_their_documented_schemas(client: Any) -> None:
    from openapi_schema_validator import OAS30ReadValidator

    document = client.get("/openapi.json").get_json()
    bob = {"Authorization": "Bearer key-bob"}
    assert (
        client.post("/v1/locks", json={"scope": "s", "resource": "held"}, headers=bob).status_code
        == 201
    )
    for method, url, request, path, status in WIRE_ERRORS:
        answer = client.open(url, method=method, **request)
        assert answer.status_code == status, (method, url, answer.get_data(as_text=True))
        documented = document["paths"][path][method.lower()]["responses"][str(status)]
        schema = documented["content"][answer.mimetype]["schema"]
        validator = OAS30ReadValidator({**schema, "components": document["components"]})
        problems = [e.message for e in validator.iter_errors(answer.get_json())]
        assert problems == [], (method, url, answer.get_json())


def test_the_documented_error_codes_are_the_ones_sent() -> None:
    from lockcore_service.apis.native.common import CODES
    from lockcore_service.apis.native.schemas import ERROR_CODES

    # the envelope sends CODES' code of the status, or "error" for any other
    assert set(ERROR_CODES) == {*CODES.values(), "error"}
