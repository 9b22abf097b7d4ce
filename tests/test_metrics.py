"""/metrics answers operators' questions: each metric read from its exposition text before
and after an operation, on fakeredis and a real redis-server (and, last, under
``lockcore serve``'s gunicorn workers). Names and labels are a contract (dashboards,
alert rules): see ``lockcore_service.observability``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lockcore import EmbeddedRedis, Lock

from .conftest import CATALOG, KEYS
from .live import LiveService

V1 = "v1:"  # /v1's scopes live under this prefix


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: Any) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    return parse(response.get_data(as_text=True))


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in out, f"{key} twice"
            out[key] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def labelled(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (n, labels) in samples if n == name]


def until(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = condition()
        if got:
            return got
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def until_expired(client: Any, lock: Lock) -> None:
    """Until the server's clock is past the lock's expiry."""

    def past() -> bool:
        seconds, micros = client.time()
        return float(seconds) + micros / 1e6 > (lock.expires_at or 0.0)

    until(past)


def bearer(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[user]}"}


def make_app(redis_client: Any, **config: Any) -> Any:
    from lockcore_service import create_app
    from lockcore_service.catalog import parse_document

    application = create_app(
        {
            "REDIS_CLIENT": redis_client,
            "KEY_PREFIX": "t",
            "METRICS_CACHE": 0.0,  # every scrape reads Redis
            **config,
        }
    )
    services = application.extensions["lockcore"]
    services.catalog.replace(parse_document(CATALOG), services.users)
    return application


@pytest.fixture
def app(service_client: Any) -> Any:
    return make_app(service_client)


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


def v1_acquire(client: Any, user: str, resource: str, **body: Any) -> Any:
    return client.post(
        "/v1/locks", json={"scope": "s", "resource": resource, **body}, headers=bearer(user)
    )


HELD = "lockcore_locks_held"
OPS = "lockcore_lock_operations_total"
WAITERS = "lockcore_lock_waiters"
EXPIRED = "lockcore_lock_expirations_total"


# --- the gauges and counters of lock operations ------------------------------------------


def test_an_acquire_moves_the_held_gauge_and_counts_by_api_and_type(client: Any) -> None:
    before = scrape(client)
    assert v1_acquire(client, "alice", "r1").status_code == 201
    gadget = {"type": "gadget", "subject": {"courseId": "c1", "gadgetId": "g1"}}
    assert client.post("/locks", json=gadget, headers={"SID": KEYS["alice"]}).status_code == 201
    after = scrape(client)
    for api, type_ in (("native", "job"), ("versal", "gadget")):
        assert (
            value(after, HELD, api=api, type=type_) == value(before, HELD, api=api, type=type_) + 1
        )
        acquired = {"api": api, "type": type_, "result": "acquired"}
        assert value(after, OPS, **acquired) == value(before, OPS, **acquired) + 1
    # every configured type has its gauges, 0 when nothing is held
    assert value(after, HELD, api="native", type="permit") == 0
    assert {"api": "native", "type": "permit"} in labelled(after, HELD)
    assert {"api": "vidispine", "type": "permit"} not in labelled(after, HELD)
    assert value(after, "lockcore_redis_up") == 1
    assert value(after, "lockcore_metrics_scopes_truncated") == 0


def test_a_conflict_a_refresh_and_a_release_are_counted(client: Any) -> None:
    def ops(samples: Samples, result: str) -> float:
        return value(samples, OPS, api="native", type="job", result=result)

    before = scrape(client)
    lock = v1_acquire(client, "alice", "r1").get_json()
    assert v1_acquire(client, "bob", "r1").status_code == 409
    assert (
        client.post(f"/v1/locks/{lock['id']}/refresh", headers=bearer("alice")).status_code == 200
    )
    assert client.delete(f"/v1/locks/{lock['id']}", headers=bearer("bob")).status_code == 403
    middle = scrape(client)
    assert (
        value(middle, HELD, api="native", type="job")
        == value(before, HELD, api="native", type="job") + 1
    )
    assert client.delete(f"/v1/locks/{lock['id']}", headers=bearer("alice")).status_code == 200
    after = scrape(client)
    assert [ops(after, r) - ops(before, r) for r in ("conflict", "refreshed", "not_owned")] == [
        1,
        1,
        1,
    ]
    assert ops(after, "released") == ops(before, "released") + 1
    assert value(after, HELD, api="native", type="job") == value(
        before, HELD, api="native", type="job"
    )


def test_a_release_by_id_of_a_gone_lock_is_not_found_of_an_unknown_type(client: Any) -> None:
    versal = {"api": "versal", "type": "unknown", "result": "not_found"}
    before = scrape(client)
    gone = client.delete("/locks/100000000000042", headers={"SID": KEYS["alice"]})
    assert gone.status_code in (403, 404)
    after = scrape(client)
    assert value(after, OPS, **versal) == value(before, OPS, **versal) + 1


# --- expirations ---------------------------------------------------------------------------


def test_an_expired_lock_is_counted_once_at_the_scrape_and_no_longer_held(
    app: Any, client: Any, service_client: Any
) -> None:
    locks = app.extensions["lockcore"].locks
    labels = {"api": "native", "type": "job"}
    before = scrape(client)
    lock = locks.acquire(V1 + "s", "job", "r1", "alice", ttl=0.05).lock
    assert value(scrape(client), HELD, **labels) == value(before, HELD, **labels) + 1
    until_expired(service_client, lock)
    after = scrape(client)
    assert value(after, EXPIRED, **labels) == value(before, EXPIRED, **labels) + 1
    expired = {**labels, "result": "expired"}
    assert value(after, OPS, **expired) == value(before, OPS, **expired) + 1
    assert value(after, HELD, **labels) == value(before, HELD, **labels)
    # once: the next scrape finds nothing more
    assert value(scrape(client), EXPIRED, **labels) == value(after, EXPIRED, **labels)
    assert locks.list(V1 + "s").locks == ()


def test_an_expired_lock_an_acquire_removed_is_counted_by_its_type(
    app: Any, client: Any, service_client: Any
) -> None:
    locks = app.extensions["lockcore"].locks
    labels = {"api": "versal", "type": "gadget"}
    before = scrape(client)
    old = locks.acquire("versal:course:c1", "gadget", "g1", "alice", ttl=0.05).lock
    until_expired(service_client, old)
    body = {"type": "gadget", "subject": {"courseId": "c1", "gadgetId": "g1"}}
    assert client.post("/locks", json=body, headers={"SID": KEYS["bob"]}).status_code == 201
    after = scrape(client)
    assert value(after, EXPIRED, **labels) == value(before, EXPIRED, **labels) + 1
    assert value(after, HELD, **labels) == value(before, HELD, **labels) + 1  # bob's


def test_a_console_looking_at_a_scope_leaves_its_expirations_to_the_metrics(
    app: Any, client: Any, service_client: Any
) -> None:
    locks = app.extensions["lockcore"].locks
    labels = {"api": "native", "type": "job"}
    before = scrape(client)
    lock = locks.acquire(V1 + "s", "job", "r1", "alice", ttl=0.05).lock
    until_expired(service_client, lock)
    assert locks.scope_stats(V1 + "s").expired == {"job": 1}  # removed by this look
    after = scrape(client)
    assert value(after, EXPIRED, **labels) == value(before, EXPIRED, **labels) + 1


# --- waiting ---------------------------------------------------------------------------------


@pytest.fixture
def long_poll(client: Any) -> Iterator[Callable[..., dict[str, Any]]]:
    threads: list[threading.Thread] = []

    def start(user: str, resource: str, wait: float) -> dict[str, Any]:
        got: dict[str, Any] = {}

        def run() -> None:
            got["response"] = v1_acquire(client, user, resource, wait=wait)

        thread = threading.Thread(target=run, daemon=True)
        threads.append(thread)
        thread.start()
        return got

    yield start
    for thread in threads:
        thread.join(30)


def _sum(samples: Samples, name: str, **labels: str) -> float:
    return value(samples, name + "_sum", **labels)


def test_a_waiter_shows_in_the_gauge_and_its_wait_is_not_redis_latency(
    app: Any, client: Any, long_poll: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    locks = app.extensions["lockcore"].locks
    # The time the waiter spends parked in BLPOP, measured by the test.
    blocked: list[float] = []
    original = locks._scripts.wait_signal

    def timed(key: str, timeout: float) -> Any:
        started = time.perf_counter()
        try:
            return original(key, timeout)
        finally:
            blocked.append(time.perf_counter() - started)

    monkeypatch.setattr(locks._scripts, "wait_signal", timed)
    job = {"api": "native", "type": "job"}
    post = {"api": "native", "route": "/v1/locks", "method": "POST"}
    holder = v1_acquire(client, "alice", "r1").get_json()
    before = scrape(client)
    assert value(before, WAITERS, **job) == 0
    got = long_poll("bob", "r1", 20)
    until(lambda: value(scrape(client), WAITERS, **job) == 1)
    assert client.delete(f"/v1/locks/{holder['id']}", headers=bearer("alice")).status_code == 200
    until(lambda: "response" in got)
    assert got["response"].status_code == 201
    after = scrape(client)
    assert value(after, WAITERS, **job) == 0
    waited = {**job, "outcome": "acquired"}
    assert value(after, "lockcore_lock_wait_seconds_count", **waited) == (
        value(before, "lockcore_lock_wait_seconds_count", **waited) + 1
    )
    wait_s = _sum(after, "lockcore_lock_wait_seconds", **waited) - _sum(
        before, "lockcore_lock_wait_seconds", **waited
    )
    redis_s = _sum(after, "lockcore_redis_call_seconds", operation="acquire") - _sum(
        before, "lockcore_redis_call_seconds", operation="acquire"
    )
    request_s = _sum(after, "lockcore_http_request_seconds", **post) - _sum(
        before, "lockcore_http_request_seconds", **post
    )
    parked = sum(blocked)
    assert parked > 0
    # The time in line covers the time parked; the Redis calls' time is outside it (both
    # are parts of the request's time, which holds them apart).
    assert wait_s >= parked
    assert redis_s <= request_s - parked


def test_a_wait_that_ends_without_the_lock_is_a_timeout(client: Any) -> None:
    v1_acquire(client, "alice", "r1")
    labels = {"api": "native", "type": "job"}
    before = scrape(client)
    assert v1_acquire(client, "bob", "r1", wait=0.05).status_code == 409
    after = scrape(client)
    timeout = {**labels, "result": "timeout"}
    assert value(after, OPS, **timeout) == value(before, OPS, **timeout) + 1
    waited = {**labels, "outcome": "timeout"}
    assert value(after, "lockcore_lock_wait_seconds_count", **waited) == (
        value(before, "lockcore_lock_wait_seconds_count", **waited) + 1
    )
    conflict = {**labels, "result": "conflict"}
    assert value(after, OPS, **conflict) == value(before, OPS, **conflict)


# --- HTTP ------------------------------------------------------------------------------------


def test_http_latency_is_by_route_template(client: Any) -> None:
    lock = v1_acquire(client, "alice", "r1").get_json()
    get = {"api": "native", "route": "/v1/locks/<lock_id>", "method": "GET"}
    unmatched = {"api": "native", "route": "unmatched", "method": "GET"}
    before = scrape(client)
    assert client.get(f"/v1/locks/{lock['id']}", headers=bearer("alice")).status_code == 200
    assert client.get("/v1/no/such/thing").status_code == 404
    after = scrape(client)
    name = "lockcore_http_request_seconds_count"
    assert value(after, name, **get) == value(before, name, **get) + 1
    assert value(after, name, **unmatched) == value(before, name, **unmatched) + 1
    # the scrape itself is measured too
    assert value(after, name, api="ops", route="/metrics", method="GET") >= 1
    assert not any(lock["id"] in labels.get("route", "") for labels in labelled(after, name))


# --- the scrape's pass -----------------------------------------------------------------------


def test_the_pass_is_cached_for_metrics_cache_seconds(app: Any, client: Any) -> None:
    app.config["METRICS_CACHE"] = 3600.0
    job = {"api": "native", "type": "job"}
    before = value(scrape(client), HELD, **job)
    assert v1_acquire(client, "alice", "r1").status_code == 201
    assert value(scrape(client), HELD, **job) == before  # the cached pass
    app.config["METRICS_CACHE"] = 0.0
    assert value(scrape(client), HELD, **job) == before + 1


def test_the_pass_reads_at_most_metrics_max_scopes(app: Any, client: Any) -> None:
    for scope in ("a", "b", "c"):
        assert (
            client.post(
                "/v1/locks", json={"scope": scope, "resource": "r"}, headers=bearer("alice")
            ).status_code
            == 201
        )
    app.config["METRICS_MAX_SCOPES"] = 2
    cut = scrape(client)
    assert value(cut, "lockcore_metrics_scopes_truncated") == 1
    assert value(cut, HELD, api="native", type="job") == 2
    app.config["METRICS_MAX_SCOPES"] = 10
    whole = scrape(client)
    assert value(whole, "lockcore_metrics_scopes_truncated") == 0
    assert value(whole, HELD, api="native", type="job") == 3


def test_redis_down_is_redis_up_0_and_metrics_still_answer(server: EmbeddedRedis) -> None:
    application = make_app(server.client(socket_timeout=2, socket_connect_timeout=2))
    web = application.test_client()
    assert v1_acquire(web, "alice", "r1").status_code == 201
    up = scrape(web)
    assert value(up, "lockcore_redis_up") == 1
    assert value(up, HELD, api="native", type="job") == 1
    server.stop()
    try:
        down = scrape(web)  # answers 200 (scrape() checks)
        assert value(down, "lockcore_redis_up") == 0
        assert labelled(down, HELD) == []  # nothing known rather than zeros
        assert value(down, "lockcore_http_requests_total", api="ops", status="200") >= 1
    finally:
        server.start()
    back = until(lambda: (s := scrape(web)) and value(s, "lockcore_redis_up") == 1 and s)
    assert value(back, HELD, api="native", type="job") == 0  # (a server without persistence)


# --- under gunicorn: several workers ---------------------------------------------------------


@pytest.mark.slow
def test_served_gauges_are_never_summed_over_workers(tmp_path: Path) -> None:
    gadget = {"type": "gadget", "subject": {"courseId": "course-1", "gadgetId": "g1"}}
    with LiveService(tmp_path, workers=2, env={"LOCKCORE_METRICS_CACHE": "0"}) as service:
        made = service.request("POST", "/locks", json=gadget, headers={"SID": "demo-alice-key"})
        assert made.status_code == 201
        for _ in range(8):  # the workers take turns answering
            samples = parse(service.request("GET", "/metrics").text)
            assert value(samples, HELD, api="versal", type="gadget") == 1
            assert value(samples, "lockcore_redis_up") == 1
            # counters are summed over the workers: one acquire, once
            assert value(samples, OPS, api="versal", type="gadget", result="acquired") == 1


def test_on_a_cluster_the_pass_reads_the_scopes_of_every_master(cluster: Any) -> None:
    from redis.cluster import RedisCluster

    redis_client = cluster.client()
    redis_client.flushall(target_nodes=RedisCluster.PRIMARIES)
    try:
        web = make_app(redis_client).test_client()
        scopes = [f"s{n}" for n in range(12)]  # spread over the three masters' slots
        masters = {redis_client.get_node_from_key(f"t:{{v1%3A{s}}}:L").name for s in scopes}
        assert len(masters) > 1
        for scope in scopes:
            made = web.post(
                "/v1/locks", json={"scope": scope, "resource": "r"}, headers=bearer("alice")
            )
            assert made.status_code == 201
        samples = scrape(web)
        assert value(samples, HELD, api="native", type="job") == len(scopes)
        assert value(samples, "lockcore_redis_up") == 1
    finally:
        redis_client.close()
