"""What a process remembers between requests, and for how long (``AUTH_CACHE_TTL``): the
users of keys it accepted, catalog entries, and that an address is not blocked. A change
made elsewhere (another process: here another app on the same Redis) takes effect within
the bound; one made through the same app at once. The bound is tested with a clock the
test moves, never by waiting. On fakeredis and a real redis-server."""

from __future__ import annotations

from typing import Any

import pytest

from lockcore_service import create_app
from lockcore_service.apis.docspace import read_docfile
from lockcore_service.apis.edx import read_workspace
from lockcore_service.apis.versal import read_course
from lockcore_service.catalog import Catalog, parse_document
from lockcore_service.identity import User, Users, digest

from .conftest import CATALOG, KEYS


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_app(
    service_client: Any, clock: Clock | None = None, load: bool = False, **settings: Any
) -> Any:
    """An app ("a process") on the shared Redis; its caches read ``clock``."""
    application = create_app({"REDIS_CLIENT": service_client, "KEY_PREFIX": "t", **settings})
    services = application.extensions["lockcore"]
    if load:
        services.catalog.replace(parse_document(CATALOG), services.users)
    if clock is not None:
        services.users.clock = clock
        services.catalog.clock = clock
        application.extensions["auth_failure_limit"].clock = clock
    return application


def sid(key: str) -> dict[str, str]:
    return {"SID": key}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def versal_list(client: Any, key: str, course: str = "c1") -> int:
    return int(client.get(f"/locks?subject.courseId={course}", headers=sid(key)).status_code)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def admin(service_client: Any) -> Any:
    """The process where the administrator makes changes."""
    return make_app(service_client, load=True).test_client()


@pytest.fixture
def other(service_client: Any, clock: Clock, admin: Any) -> Any:
    """Another process, remembering for 1 s of ``clock``."""
    return make_app(service_client, clock, AUTH_CACHE_TTL=1.0).test_client()


# --- keys --------------------------------------------------------------------------------


def test_a_key_revoked_elsewhere_stops_working_within_the_bound(
    admin: Any, other: Any, clock: Clock
) -> None:
    key = admin.post("/admin/users/carol/keys", headers=bearer(KEYS["admin"])).get_json()
    assert versal_list(other, key["api_key"]) == 200  # remembered from now on
    gone = admin.delete(f"/admin/users/carol/keys/{key['key_id']}", headers=bearer(KEYS["admin"]))
    assert gone.status_code == 204
    assert versal_list(admin, key["api_key"]) == 401  # where it was revoked: at once
    clock.now += 0.5
    assert versal_list(other, key["api_key"]) == 200  # elsewhere: within the bound
    clock.now += 0.6
    assert versal_list(other, key["api_key"]) == 401  # past it: gone everywhere
    assert versal_list(other, KEYS["carol"]) == 200  # her other key still works


def test_with_no_bound_a_revoked_key_stops_working_everywhere_at_once(
    service_client: Any, admin: Any, clock: Clock
) -> None:
    other = make_app(service_client, clock, AUTH_CACHE_TTL=0).test_client()
    assert versal_list(other, KEYS["carol"]) == 200
    admin.delete("/admin/users/carol/keys", headers=bearer(KEYS["admin"]))
    assert versal_list(other, KEYS["carol"]) == 401


def test_a_role_taken_elsewhere_is_lost_within_the_bound(
    service_client: Any, admin: Any, other: Any, clock: Clock
) -> None:
    assert other.get("/admin/users", headers=bearer(KEYS["admin"])).status_code == 200
    users = Users(service_client, "t")
    users.put(User("admin", "EDX Administrator", "admin@example.com"))  # no longer sysadmin
    clock.now += 1.1
    assert other.get("/admin/users", headers=bearer(KEYS["admin"])).status_code == 403


def test_unknown_keys_are_never_remembered(service_client: Any, admin: Any, other: Any) -> None:
    """A failed key is read again each time (and counted each time); a key issued
    elsewhere works at once."""
    users = Users(service_client, "t")
    key = "lc_issued-by-hand"
    assert versal_list(other, key) == 401
    users.put(User("carol", "Carol Reader", "carol@example.com"), key)
    assert versal_list(other, key) == 200


def test_a_lookup_that_read_before_a_change_here_is_not_remembered(service_client: Any) -> None:
    """A revocation made through this object while a lookup of the same key was reading
    Redis: the lookup may answer with what it read, but never remembers it."""
    clock = Clock()
    users = Users(service_client, "t", cache_ttl=60.0, clock=clock)
    key = users.create(User("erin", "Erin")).key
    read = users._authenticate

    def racing(**kwargs: Any) -> Any:
        raw = read(**kwargs)
        users.revoke("erin", every=True)  # lands between the read and remembering it
        return raw

    users._authenticate = racing
    assert users.authenticate(key) is not None
    users._authenticate = read
    assert users.authenticate(key) is None


def test_the_memory_of_keys_is_bounded(service_client: Any) -> None:
    users = Users(service_client, "t", cache_ttl=60.0)
    users._memo.MAX_REMEMBERED = 3
    keys = [users.create(User(f"u{n}", f"U {n}")).key for n in range(5)]
    for key in keys:
        assert users.authenticate(key) is not None
    assert len(users._memo._known) <= 3
    assert digest(keys[-1]) in users._memo._known


# --- the catalog -------------------------------------------------------------------------


def test_a_course_role_taken_elsewhere_is_lost_within_the_bound(
    service_client: Any, admin: Any, other: Any, clock: Clock
) -> None:
    assert versal_list(other, KEYS["carol"]) == 200  # a learner may list
    course = {"key": "c1", "gadgets": ["g1"], "roles": {"alice": "editor"}}
    assert admin.put(
        "/admin/catalog/courses/c1", json=course, headers=bearer(KEYS["admin"])
    ).status_code in (200, 201, 204)
    assert versal_list(admin, KEYS["carol"]) == 403  # where it changed: at once
    assert versal_list(other, KEYS["carol"]) == 200  # elsewhere: within the bound
    clock.now += 1.1
    assert versal_list(other, KEYS["carol"]) == 403


def test_catalog_changes_through_the_same_object_apply_at_once(service_client: Any) -> None:
    catalog = Catalog(service_client, "t", cache_ttl=60.0)
    catalog.replace(parse_document(CATALOG))
    assert read_course(catalog, "c1") is not None and read_course(catalog, "c1").role_of("carol")
    catalog.put_entity("courses", {"key": "c1", "gadgets": [], "roles": {}})
    assert read_course(catalog, "c1").role_of("carol") is None
    catalog.delete_entity("courses", "c1")
    assert read_course(catalog, "c1") is None
    assert read_workspace(catalog, "ws-1") is not None and read_docfile(catalog, "900") is not None
    catalog.replace(parse_document("users: []"))
    assert read_workspace(catalog, "ws-1") is None and read_docfile(catalog, "900") is None


def test_entities_not_found_are_never_remembered(service_client: Any) -> None:
    catalog = Catalog(service_client, "t", cache_ttl=60.0)
    elsewhere = Catalog(service_client, "t")
    assert read_course(catalog, "new") is None
    elsewhere.put_entity("courses", {"key": "new", "gadgets": ["g"], "roles": {}})
    assert read_course(catalog, "new") is not None


# --- failed authentications --------------------------------------------------------------


class CountingStorage:
    """The limit's storage, counting the reads of a count."""

    def __init__(self, storage: Any) -> None:
        self.storage, self.gets = storage, 0

    def get(self, key: str) -> int:
        self.gets += 1
        return int(self.storage.get(key))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.storage, name)


def counting(application: Any) -> CountingStorage:
    limit = application.extensions["auth_failure_limit"]
    limit.storage = CountingStorage(limit.storage)
    limit.strategy.storage = limit.storage
    return limit.storage


def test_successful_calls_read_no_failure_count_within_the_bound(
    service_client: Any, clock: Clock
) -> None:
    application = make_app(service_client, clock, load=True, AUTH_CACHE_TTL=1.0)
    storage = counting(application)
    client = application.test_client()
    for _ in range(5):
        assert versal_list(client, KEYS["carol"]) == 200
    assert storage.gets == 1
    clock.now += 1.1
    assert versal_list(client, KEYS["carol"]) == 200
    assert storage.gets == 2


def test_an_address_blocked_elsewhere_is_refused_here_within_the_bound(
    service_client: Any, admin: Any, clock: Clock
) -> None:
    here = make_app(
        service_client, clock, AUTH_CACHE_TTL=1.0, AUTH_FAILURE_LIMIT="2/minute"
    ).test_client()
    elsewhere = make_app(service_client, AUTH_FAILURE_LIMIT="2/minute").test_client()
    assert versal_list(here, KEYS["carol"]) == 200
    for _ in range(2):
        assert versal_list(elsewhere, "wrong-key") == 401
    assert versal_list(elsewhere, KEYS["carol"]) == 429
    clock.now += 1.1
    blocked = here.get("/locks?subject.courseId=c1", headers=sid(KEYS["carol"]))
    assert blocked.status_code == 429 and blocked.get_json()["error"] == 429


def test_a_failure_here_refuses_the_next_call_here_at_once(
    service_client: Any, admin: Any, clock: Clock
) -> None:
    here = make_app(
        service_client, clock, AUTH_CACHE_TTL=60.0, AUTH_FAILURE_LIMIT="2/minute"
    ).test_client()
    assert versal_list(here, KEYS["carol"]) == 200  # clear, remembered for 60 s
    assert versal_list(here, "wrong-key") == 401
    assert versal_list(here, "wrong-key") == 401
    assert versal_list(here, KEYS["carol"]) == 429


def test_the_failure_count_keeps_its_redis_key_and_retry_after_tells_the_window(
    service_client: Any, admin: Any
) -> None:
    """The key Flask-Limiter wrote (processes of both versions share one count), and
    Retry-After is what is left of the window."""
    here = make_app(service_client, AUTH_FAILURE_LIMIT="1/minute").test_client()
    assert versal_list(here, "wrong-key") == 401
    key = "t:LIMITER/auth-failures/127.0.0.1/global/1/1/minute"
    assert int(service_client.get(key)) == 1
    service_client.expire(key, 20)
    blocked = here.get("/locks?subject.courseId=c1", headers=sid(KEYS["carol"]))
    assert blocked.status_code == 429
    assert 1 <= int(blocked.headers["Retry-After"]) <= 20
    assert (
        f"try again in {blocked.headers['Retry-After']} seconds" in (blocked.get_json()["message"])
    )
