"""Vidispine deletion locks across a Cluster's masters: spread over shard scopes by
entity, read back exactly as one scope answers (order, pages, totals, effective locks).

Each test runs a *sharded* app beside a *single-scope* one (``VIDISPINE_SHARDS=1``: every
lock in the scope ``vidispine``, as before sharding) on the same backend, under other key
prefixes, and makes the same locks through both: on the 3-master Cluster (sharded by
default there), and on fakeredis and a real redis-server (sharded by the setting), to show
that the answers do not change.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import fakeredis
import pytest
from redis.cluster import RedisCluster

from lockcore.keys import encode

from .conftest import CATALOG
from .test_vidispine import ALICE, BOB, JSON, basic

ADMIN = basic("admin")

ITEMS = [f"VX-{n}" for n in range(1000, 1060)] + ["VX-1", "VX-1-b", "VX-10", "VX-1.5"]
COLLECTIONS = {f"C-{c}": ITEMS[c * 10 : c * 10 + 10] for c in range(6)}
LIBRARIES = {f"L-{c}": ITEMS[c * 20 : c * 20 + 20] + ["VX-1"] for c in range(3)}


def catalog_text() -> str:
    """The test catalog's users, with a bigger Vidispine part."""
    head = CATALOG.split("vidispine:\n")[0]
    lines = ["vidispine:", f"  items: [{', '.join(ITEMS)}]", "  collections:"]
    lines += [f"    - {{id: {c}, items: [{', '.join(i)}]}}" for c, i in COLLECTIONS.items()]
    lines += ["  libraries:"]
    lines += [f"    - {{id: {c}, items: [{', '.join(i)}]}}" for c, i in LIBRARIES.items()]
    return head + "\n".join(lines) + "\n"


def make_app(redis_client: Any, prefix: str, **config: Any) -> Any:
    from lockcore_service import create_app
    from lockcore_service.catalog import parse_document

    application = create_app({"REDIS_CLIENT": redis_client, "KEY_PREFIX": prefix, **config})
    services = application.extensions["lockcore"]
    services.catalog.replace(parse_document(catalog_text()), services.users)
    return application


class Pair:
    """A sharded app and a single-scope one on the same backend."""

    def __init__(self, redis_client: Any, sharded: dict[str, Any]) -> None:
        self.redis = redis_client
        self.sharded = make_app(redis_client, "s", **sharded)
        self.single = make_app(redis_client, "o", VIDISPINE_SHARDS=1)
        self.web = self.sharded.test_client()
        self.ref = self.single.test_client()

    def both(self, method: str, path: str, **kwargs: Any) -> tuple[Any, Any]:
        return (
            self.web.open(path, method=method, **kwargs),
            self.ref.open(path, method=method, **kwargs),
        )

    def create(self, path: str, expiry: str, user: dict[str, str], **meta: str) -> str:
        body: dict[str, Any] = {"expiryTime": expiry}
        if meta:
            body["metadata"] = {"field": [{"key": k, "value": v} for k, v in meta.items()]}
        made, ref = self.both("POST", f"{path}/deletion-lock", json=body, headers={**user, **JSON})
        assert made.status_code == ref.status_code == 200, made.get_data(as_text=True)
        assert same(made.get_json()) == same(ref.get_json())
        return str(made.get_json()["id"])


@pytest.fixture(params=["fake", "real", "cluster"])
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    if request.param == "fake":
        redis_client: Any = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        sharded: dict[str, Any] = {"VIDISPINE_SHARDS": 64}
    elif request.param == "real":
        redis_client = request.getfixturevalue("real_server").client()
        redis_client.flushall()
        sharded = {"VIDISPINE_SHARDS": 64}
    else:
        redis_client = request.getfixturevalue("cluster").client()
        redis_client.flushall(target_nodes=RedisCluster.PRIMARIES)
        sharded = {}  # a Cluster shards by default
    try:
        yield Pair(redis_client, sharded)
    finally:
        redis_client.close()


def post(web: Any, path: str, expiry: str, user: dict[str, str]) -> str:
    made = web.post(f"{path}/deletion-lock", json={"expiryTime": expiry}, headers={**user, **JSON})
    assert made.status_code == 200, made.get_data(as_text=True)
    return str(made.get_json()["id"])


def same(doc: dict[str, Any]) -> dict[str, Any]:
    """A lock document without what differs between two stores: its id, when it was made."""
    return {k: v for k, v in doc.items() if k not in ("id", "modified")}


def at(hours: float) -> str:
    base = datetime(2999, 1, 1, tzinfo=timezone.utc)  # far off: nothing expires mid-test
    return (base + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


def populate(pair: Pair) -> list[str]:
    """Many locks on many entities, the same through both apps; the sharded one's ids."""
    made = []
    for n, item in enumerate(ITEMS):
        for k in range(1 + n % 3):
            user = ALICE if (n + k) % 2 else ADMIN
            made.append(
                pair.create(f"/API/item/{item}", at(n % 7 + k * 3), user, k=str(k), n=str(n % 4))
            )
    for n, container in enumerate([*COLLECTIONS, *LIBRARIES]):
        kind = "collection" if container.startswith("C") else "library"
        made.append(pair.create(f"/API/{kind}/{container}", at(5.5 + n), ALICE, k="c"))
    return made


QUERIES = [
    "",
    "first=3&number=7",
    "first=50&number=25",
    "first=400",
    "number=0",
    "username=alice",
    "username=admin,alice&first=4&number=9",
    "username=bob",
    "onlyEffective=true",
    "onlyEffective=true&username=alice&first=2&number=5",
    "metadata=k=1",
    "metadata=n=2&username=admin",
    f"range=[{at(2)}..{at(6)})",
    f"range=(*..{at(3)}]&onlyEffective=true",
    "entityTypes=item,library&first=10&number=10",
    "entityTypes=collection,library",
]


def assert_same_listing(pair: Pair, path: str, query: str) -> dict[str, Any]:
    got, want = pair.both("GET", f"{path}?{query}", headers={**BOB, **JSON})
    assert got.status_code == want.status_code == 200, got.get_data(as_text=True)
    got_doc, want_doc = got.get_json(), want.get_json()
    assert got_doc["hits"] == want_doc["hits"], (path, query)
    assert [same(d) for d in got_doc["lock"]] == [same(d) for d in want_doc["lock"]], query
    return got_doc  # type: ignore[no-any-return]


def test_listings_and_checks_answer_as_one_scope_does(pair: Pair) -> None:
    made = populate(pair)
    assert assert_same_listing(pair, "/API/deletion-lock", "number=1000")["hits"] == len(made)
    for query in QUERIES:
        assert_same_listing(pair, "/API/deletion-lock", query)
    for kind in ("item", "collection", "library"):
        for query in ("", "first=5&number=3", "username=admin", "onlyEffective=true"):
            assert_same_listing(pair, f"/API/{kind}/deletion-lock", query)
    for entity in ("item/VX-1", "item/VX-1000", "item/VX-1033", "item/VX-1059", "library/L-1"):
        assert_same_listing(pair, f"/API/{entity}/deletion-lock", "")
        got, want = pair.both("GET", f"/API/{entity}/deletion-lock/check", headers={**BOB, **JSON})
        assert got.status_code == want.status_code
        if got.status_code == 409:
            assert same(got.get_json()) == same(want.get_json())


def test_locks_spread_over_every_master(pair: Pair) -> None:
    made = populate(pair)
    locks = pair.sharded.extensions["lockcore"].locks
    scopes = Counter(locks.get(lock_id.removeprefix("VX-")).scope for lock_id in made)
    assert "vidispine" not in scopes and len(scopes) > 32  # 73 entities over 64 shards
    if not isinstance(pair.redis, RedisCluster):
        return
    per_master = Counter(
        pair.redis.get_node_from_key(f"s:{{{encode(scope)}}}:L").name for scope in scopes.elements()
    )
    assert len(per_master) == 3, per_master
    assert min(per_master.values()) >= len(made) // 6, per_master  # no master idles
    print("deletion locks per master:", dict(per_master))
    # The single-scope app's locks are all on one master.
    ref = pair.single.extensions["lockcore"].locks
    assert {ref.get(d["id"].removeprefix("VX-")).scope for d in listed_all(pair.ref)} == {
        "vidispine"
    }


def listed_all(web: Any) -> list[dict[str, Any]]:
    doc = web.get("/API/deletion-lock?number=10000", headers={**BOB, **JSON}).get_json()
    return doc["lock"]  # type: ignore[no-any-return]


def test_the_shards_fall_evenly_on_three_masters(cluster: Any) -> None:
    from lockcore_service.apis.vidispine.shards import shard_scopes, slot_of_scope

    redis_client = cluster.client()
    try:
        slots = [slot_of_scope(scope) for scope in shard_scopes()]
        assert [slot // 256 for slot in slots] == list(range(64))
        for scope, slot in zip(shard_scopes(), slots, strict=True):
            assert redis_client.keyslot(f"s:{{{encode(scope)}}}:L") == slot
        masters = Counter(
            redis_client.get_node_from_key(f"s:{{{encode(scope)}}}:L").name
            for scope in shard_scopes()
        )
        # 64 ranges of 256 slots over 3 masters' ranges of ~5461: 21 each, give or take
        # the ranges that straddle a master's boundary.
        assert len(masters) == 3 and min(masters.values()) >= 20, masters
    finally:
        redis_client.close()


def test_an_item_inherits_across_slots_and_a_release_by_id_works(pair: Pair) -> None:
    from lockcore_service.apis.vidispine.shards import shard_of, slot_of_scope

    # An item and a collection and library of its whose shards are on other slots.
    item = next(
        i
        for i in ITEMS[:10]
        if len({slot_of_scope(shard_of(*e)) for e in (("item", i), ("collection", "C-0"))}) == 2
        and slot_of_scope(shard_of("library", "L-0")) != slot_of_scope(shard_of("item", i))
    )
    own = pair.create(f"/API/item/{item}", at(1), ALICE)
    in_collection = pair.create("/API/collection/C-0", at(2), ADMIN)
    in_library = pair.create("/API/library/L-0", at(3), ALICE)
    check = f"/API/item/{item}/deletion-lock/check"
    got = pair.web.get(check, headers={**BOB, **JSON})
    assert got.status_code == 409
    assert got.get_json()["id"] == in_library and got.get_json()["isInherited"] is True
    listing = assert_same_listing(pair, f"/API/item/{item}/deletion-lock", "")
    assert [d["id"] for d in listing["lock"]] == [own, in_collection, in_library]
    # Released by id alone (the id names its slot), then the collection's lock wins.
    assert pair.web.delete(f"/API/deletion-lock/{in_library}", headers=ALICE).status_code == 200
    assert pair.web.get(f"/API/deletion-lock/{in_library}", headers=BOB).status_code == 404
    got = pair.web.get(check, headers={**BOB, **JSON})
    assert got.status_code == 409 and got.get_json()["id"] == in_collection
    assert pair.web.delete(f"/API/deletion-lock/{in_collection}", headers=ALICE).status_code == 200
    assert pair.web.get(check, headers={**BOB, **JSON}).get_json()["id"] == own
    assert pair.web.delete(f"/API/deletion-lock/{own}", headers=ALICE).status_code == 200
    assert pair.web.get(check, headers={**BOB, **JSON}).status_code == 200
    assert pair.web.get("/API/deletion-lock", headers={**BOB, **JSON}).get_json()["hits"] == 0


def test_locks_of_the_one_scope_stay_seen_beside_the_shards(pair: Pair) -> None:
    """Locks made before sharding (in the scope ``vidispine``) are listed, merged in
    order, effective, updatable and releasable by id until they go."""
    locks = pair.sharded.extensions["lockcore"].locks
    far = datetime(2999, 1, 1, tzinfo=timezone.utc).timestamp()
    old = {
        item: locks.acquire(
            "vidispine", "deletion-item", item, "alice", expires_at=far + 3600 * 20
        ).lock
        for item in ("VX-1", "VX-1-b", "VX-1000", "VX-1059")
    }
    old_container = locks.acquire(
        "vidispine", "deletion-collection", "C-0", "admin", expires_at=far + 3600 * 30
    ).lock
    new = {item: post(pair.web, f"/API/item/{item}", at(12), ADMIN) for item in old}
    doc = pair.web.get("/API/deletion-lock?number=100", headers={**BOB, **JSON}).get_json()
    assert doc["hits"] == 9
    order = [(d["entityId"], d["id"]) for d in doc["lock"] if d["entityType"] == "Item"]
    encoded = sorted(old, key=lambda i: encode(i) + ":")
    assert [entity for entity, _ in order] == [i for i in encoded for _ in (1, 2)]
    effective = {d["entityId"]: d["id"] for d in doc["lock"] if d["isEffective"]}
    assert effective == {
        **{i: "VX-" + lock.id for i, lock in old.items()},
        "C-0": "VX-" + old_container.id,
    }
    got = pair.web.get("/API/item/VX-1000/deletion-lock/check", headers={**BOB, **JSON})
    assert got.get_json()["id"] == "VX-" + old_container.id
    by_owner = pair.web.get("/API/deletion-lock?username=alice", headers={**BOB, **JSON})
    assert {d["id"] for d in by_owner.get_json()["lock"]} == {"VX-" + lk.id for lk in old.values()}
    put = pair.web.put(
        f"/API/deletion-lock/VX-{old['VX-1'].id}",
        json={"expiryTime": at(1)},
        headers={**ALICE, **JSON},
    )
    assert put.status_code == 200 and put.get_json()["isEffective"] is False
    for lock in (*old.values(), old_container):
        assert pair.web.delete(f"/API/deletion-lock/VX-{lock.id}", headers=ALICE).status_code == 200
    doc = pair.web.get("/API/deletion-lock", headers={**BOB, **JSON}).get_json()
    assert doc["hits"] == 4 and {d["id"] for d in doc["lock"]} == set(new.values())


def test_a_check_reads_twice_before_it_answers_deletable(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hand-over between two scopes' reads (the first read saw neither lock) is caught
    by the second read."""
    from lockcore_service.apis.vidispine import views

    handed = pair.create("/API/collection/C-0", at(2), ALICE)
    real, reads = views.entity_locks, []

    def first_misses(e: Any) -> Any:
        reads.append(e)
        return [] if len(reads) == 1 else real(e)

    monkeypatch.setattr(views, "entity_locks", first_misses)
    got = pair.web.get("/API/item/VX-1000/deletion-lock/check", headers={**BOB, **JSON})
    assert got.status_code == 409 and got.get_json()["id"] == handed and len(reads) == 2
    reads.clear()
    got = pair.web.get("/API/item/VX-1059/deletion-lock/check", headers={**BOB, **JSON})
    assert got.status_code == 200 and len(reads) == 2


def test_the_username_filter_reads_the_owners_locks_not_every_lock(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .test_vidispine import Spy

    locks = pair.sharded.extensions["lockcore"].locks
    for n in range(600):
        locks.acquire("vidispine", "deletion-item", f"VX-{1000 + n % 50}", "alice", ttl=600)
    mine = {post(pair.web, f"/API/item/{item}", at(1), ADMIN) for item in ("VX-1", "VX-10")}
    spy = Spy(locks, monkeypatch)
    doc = pair.web.get("/API/deletion-lock?username=admin", headers={**BOB, **JSON}).get_json()
    assert doc["hits"] == 2 and {d["id"] for d in doc["lock"]} == mine
    # the owner's index range, a round trip per entity type; then its 2 entities
    assert spy.calls == 4 + 1 and spy.fetched == 2 + 2


def test_the_shard_setting_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from lockcore_service import create_app

    def app_with(raw: str) -> Any:
        monkeypatch.setenv("LOCKCORE_VIDISPINE_SHARDS", raw)
        return create_app({"REDIS_CLIENT": fakeredis.FakeRedis(server=fakeredis.FakeServer())})

    assert app_with("64").config["VIDISPINE_SHARDS"] == 64
    assert app_with("1").config["VIDISPINE_SHARDS"] == 1
    with pytest.raises(ValueError, match="LOCKCORE_VIDISPINE_SHARDS='7'"):
        app_with("7")
