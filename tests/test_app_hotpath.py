"""The request path's shortcuts: each gives what the long way gave, and is taken.

- ``App.ensure_sync`` asks whether a hook or view is a coroutine function once per
  function, not on every request, and still hands ``async def`` functions to Flask;
- the Redis-latency histogram's children are kept per operation, and every lock call is
  still observed in them;
- the Versal release answers ``jsonify({})``'s bytes and headers;
- the body-size guard reads the declared length as ``request.content_length`` does.
"""

from __future__ import annotations

from typing import Any

import flask.app
import pytest
from flask import jsonify

from lockcore_service import App
from lockcore_service.observability import REDIS_LATENCY
from lockcore_service.services import _latency

from .conftest import KEYS

LOCK = {"type": "gadget", "subject": {"courseId": "c1", "gadgetId": "g1"}}


def sid(user: str) -> dict[str, str]:
    return {"SID": KEYS[user]}


def test_a_plain_function_is_checked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[Any] = []
    real = flask.app.iscoroutinefunction

    def counting(func: Any) -> bool:
        asked.append(func)
        return real(func)

    monkeypatch.setattr(flask.app, "iscoroutinefunction", counting)
    application = App(__name__)

    def view() -> str:
        return "ok"

    assert application.ensure_sync(view) is view
    assert application.ensure_sync(view) is view
    assert asked == [view]


def test_an_async_function_still_goes_to_async_to_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    application = App(__name__)
    wrapped: list[Any] = []

    def fake_async_to_sync(func: Any) -> Any:
        wrapped.append(func)
        return lambda *a, **k: "ran"

    monkeypatch.setattr(application, "async_to_sync", fake_async_to_sync)

    async def view() -> str:
        return "ok"

    assert application.ensure_sync(view)() == "ran"
    assert application.ensure_sync(view)() == "ran"
    assert wrapped == [view, view]  # never remembered as plain


def test_the_plain_functions_remembered_are_bounded() -> None:
    application = App(__name__)
    application.MAX_REMEMBERED = 3
    funcs = [lambda: None for _ in range(5)]
    for func in funcs:
        assert application.ensure_sync(func) is func
    assert len(application._plain) <= 3


def test_unhashable_callables_are_still_answered() -> None:
    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self) -> str:
            return "ok"

    application = App(__name__)
    func = Unhashable()
    assert application.ensure_sync(func) is func


def test_the_served_app_takes_the_shortcut(app: Any) -> None:
    assert isinstance(app, App)
    assert app.test_client().get("/healthz").status_code == 200
    assert app._plain  # the hooks and the view were remembered


def _latency_count(operation: str) -> float:
    for metric in REDIS_LATENCY.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count") and sample.labels.get("operation") == operation:
                return sample.value
    return 0.0


def test_latency_children_are_kept_and_still_observe(client: Any) -> None:
    assert _latency("acquire") is _latency("acquire")
    assert _latency.children[("acquire",)] is REDIS_LATENCY.labels("acquire")
    before = _latency_count("acquire")
    assert client.post("/locks", json=LOCK, headers=sid("alice")).status_code == 201
    assert _latency_count("acquire") == before + 1


def test_a_versal_release_answers_jsonify_bytes(app: Any, client: Any) -> None:
    lock = client.post("/locks", json=LOCK, headers=sid("alice")).get_json()
    got = client.delete(f"/locks/{lock['id']}", headers=sid("alice"))
    with app.app_context():
        expected = jsonify({})
    assert got.status_code == 200
    assert got.get_data() == expected.get_data()
    assert got.headers["Content-Type"] == expected.headers["Content-Type"]
    assert got.headers["Content-Length"] == expected.headers["Content-Length"]


def test_an_unknown_or_foreign_lock_is_still_its_404(client: Any) -> None:
    got = client.delete("/locks/12345", headers=sid("alice"))
    assert got.status_code == 404
    assert got.get_json() == {"error": 404, "message": "Lock '12345' not found"}


@pytest.mark.parametrize(
    "environ, refused",
    [
        ({"CONTENT_LENGTH": "2000"}, True),  # declared beyond the limit
        ({"CONTENT_LENGTH": "1000"}, False),
        ({"CONTENT_LENGTH": "2000", "HTTP_TRANSFER_ENCODING": "chunked"}, False),  # read later
        ({"CONTENT_LENGTH": "nonsense"}, False),  # werkzeug reads it as 0
    ],
)
def test_declared_body_lengths(service_client: Any, environ: dict[str, str], refused: bool) -> None:
    from lockcore_service import create_app

    application = create_app({"REDIS_CLIENT": service_client, "KEY_PREFIX": "t", "MAX_BODY": 1000})
    with application.test_request_context(environ_overrides=environ) as ctx:
        assert (
            ctx.request.content_length is not None and ctx.request.content_length > 1000
        ) == refused  # what it used to read
    got = application.test_client().get("/healthz", environ_overrides=environ)
    assert (got.status_code == 413) == refused


def test_request_ids_are_uuid4_hex_drawn_a_batch_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import uuid

    from lockcore_service import observability

    reads: list[int] = []
    real = os.urandom

    def counting(n: int) -> bytes:
        reads.append(n)
        return real(n)

    monkeypatch.setattr(observability.os, "urandom", counting)
    ids = observability.RandomIds()
    drawn = [ids() for _ in range(ids.BATCH * 2)]
    assert len(reads) == 2  # one read per batch, not one per id
    assert len(set(drawn)) == len(drawn)
    for rid in drawn:
        parsed = uuid.UUID(rid)
        assert parsed.hex == rid and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_a_forked_process_never_reuses_its_parents_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    from lockcore_service import observability

    ids = observability.RandomIds()
    first = ids()
    left = list(ids._local.pool)
    ids._forked()  # what os.register_at_fork runs in the child
    after = [ids() for _ in range(len(left))]
    assert first not in after and not set(left) & set(after)


def test_threads_draw_their_own_ids() -> None:
    import threading

    from lockcore_service import observability

    ids = observability.RandomIds()
    drawn: list[str] = []
    lock = threading.Lock()

    def draw() -> None:
        mine = [ids() for _ in range(100)]
        with lock:
            drawn.extend(mine)

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(drawn)) == 400


def test_a_request_without_an_id_gets_a_new_one_and_one_given_is_kept(client: Any) -> None:
    import uuid

    made = client.get("/healthz").headers["X-Request-Id"]
    assert uuid.UUID(made).version == 4 and len(made) == 32
    assert client.get("/healthz").headers["X-Request-Id"] != made
    assert client.get("/healthz", headers={"X-Request-Id": "abc"}).headers["X-Request-Id"] == "abc"
