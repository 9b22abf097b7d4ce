"""The core contract, on fakeredis, a real redis-server and a real 3-master Cluster."""

from __future__ import annotations

import asyncio
import copy
import pickle
import time
from dataclasses import replace
from typing import Any

import pytest
from redis.crc import key_slot

from lockcore import (
    FOREVER,
    AsyncLockManager,
    InvalidLockRequest,
    LockConflict,
    LockManager,
    LockNotFound,
    LockNotOwned,
    LockType,
    Mode,
)
from lockcore.keys import event_from_entry

from .conftest import FUNCTIONS, TYPES, all_keys

SCOPE = "course:42"

#: The same types with events and the owner index on, so a scope has every kind of key.
EVENT_TYPES = [replace(t, events=True, index_owner=True) for t in TYPES]


@pytest.fixture
def emgr(redis_client: Any, backend: str) -> LockManager:
    """Like ``mgr``, on types that record events (and index owners)."""
    return LockManager(
        redis_client,
        EVENT_TYPES,
        prefix="t",
        event_maxlen=50,
        retention=60.0,
        functions=backend in FUNCTIONS,
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def events(client: Any, mgr: LockManager, scope: str = SCOPE) -> list[dict[str, str]]:
    stream = mgr.keys(scope).events
    return [
        event_from_entry(stream, _text(entry_id), {_text(k): _text(v) for k, v in fields.items()})
        for entry_id, fields in client.xrange(stream)
    ]


def scope_keys(client: Any, mgr: LockManager, scope: str = SCOPE) -> list[str]:
    """Every key of the scope that exists (not the slot's directory)."""
    return [k for k in all_keys(client) if k.startswith(mgr.keys(scope).base)]


def records(client: Any, mgr: LockManager, scope: str = SCOPE) -> dict[str, str]:
    """The fields of the scope's hash that are not bookkeeping (``!...``)."""
    raw = client.hgetall(mgr.keys(scope).locks)
    return {_text(k): _text(v) for k, v in raw.items() if not _text(k).startswith("!")}


def server_ms(client: Any) -> float:
    seconds, micros = client.time()
    return seconds * 1000 + micros / 1000


# --- acquire -----------------------------------------------------------------------------


def test_acquire_returns_a_lock_with_every_field(mgr: LockManager, redis_client: Any) -> None:
    before = server_ms(redis_client)
    result = mgr.acquire(SCOPE, "job", "j1", "alice", ttl=5, metadata={"notes": "hi"})
    lock = result.lock
    assert result.created and result.replaced is None
    assert (lock.scope, lock.type, lock.resource, lock.owner) == (SCOPE, "job", "j1", "alice")
    assert -(2**63) <= int(lock.id) < 2**63
    assert lock.fencing_token > 0
    assert before - 5 <= lock.acquired_at * 1000 <= server_ms(redis_client) + 5
    assert lock.expires_at == pytest.approx(lock.acquired_at + 5, abs=0.002)
    assert dict(lock.metadata) == {"notes": "hi"}
    # keys outlive the lock by the retention (60 s), rounded up to a step of a minute
    keys = mgr.keys(SCOPE)
    assert all_keys(redis_client) == sorted([keys.locks, keys.directory])
    assert scope_keys(redis_client, mgr) == [keys.locks]
    assert 5 + 60 - 0.1 < redis_client.pttl(keys.locks) / 1000 <= 5 + 120
    # the record is stored under the fencing token, the resource points to it
    assert records(redis_client, mgr)["job:j1"] == str(lock.fencing_token)
    assert records(redis_client, mgr)[str(lock.fencing_token)].split(" ")[2] == "alice"


def test_a_lock_can_be_hashed_pickled_and_copied(mgr: LockManager) -> None:
    """Locks go into sets and dicts, to other processes (pickle) and through deepcopy;
    their metadata stays read-only (it is a mapping proxy, which has neither hash nor
    pickle of its own)."""
    with_meta = mgr.acquire(SCOPE, "job", "j1", "alice", metadata={"k": "v"}).lock
    plain = mgr.acquire(SCOPE, "job", "j2", "alice").lock
    twin = copy.copy(with_meta)
    assert {with_meta, twin, plain} == {with_meta, plain} and {with_meta: 1}[twin] == 1
    for lock in (with_meta, plain):
        for copied in (pickle.loads(pickle.dumps(lock)), copy.deepcopy(lock), copy.copy(lock)):
            assert copied == lock and hash(copied) == hash(lock)
            assert dict(copied.metadata) == dict(lock.metadata)
            with pytest.raises(TypeError):
                copied.metadata["k"] = "changed"  # type: ignore[index]
        mgr.release(pickle.loads(pickle.dumps(lock)), "alice")  # as another process would
        with pytest.raises(LockNotFound):
            mgr.get(lock.id)


def test_ids_are_int64_strings_unique_and_resolve_to_their_scope(mgr: LockManager) -> None:
    ids = set()
    for n in range(20):
        scope = f"scope-{n}"
        lock = mgr.acquire(scope, "job", "r", "alice").lock
        assert str(int(lock.id)) == lock.id and int(lock.id) < 2**63
        assert mgr.scope_of(lock.id) == scope
        ids.add(lock.id)
    assert len(ids) == 20


def test_conflict_names_the_holder(mgr: LockManager) -> None:
    held = mgr.acquire(SCOPE, "job", "j1", "alice", metadata={"email": "a@x"}).lock
    with pytest.raises(LockConflict) as info:
        mgr.acquire(SCOPE, "job", "j1", "bob")
    holder = info.value.holder
    assert (holder.owner, holder.id, holder.expires_at) == ("alice", held.id, held.expires_at)
    assert dict(holder.metadata) == {"email": "a@x"}
    assert mgr.get(held.id).owner == "alice"


def test_same_owner_reacquire_refreshes_the_same_lock(mgr: LockManager) -> None:
    first = mgr.acquire(SCOPE, "job", "j1", "alice", ttl=1).lock
    again = mgr.acquire(SCOPE, "job", "j1", "alice", ttl=5, metadata={"n": "2"})
    assert not again.created
    assert (again.lock.id, again.lock.fencing_token) == (first.id, first.fencing_token)
    assert again.lock.expires_at > first.expires_at + 3
    assert dict(again.lock.metadata) == {"n": "2"}
    assert len(mgr.list(SCOPE).locks) == 1


def test_one_per_owner_replaces_the_previous_lock_in_the_scope(
    emgr: LockManager, redis_client: Any
) -> None:
    mgr = emgr
    old = mgr.acquire(SCOPE, "gadget", "g1", "alice").lock
    other_scope = mgr.acquire("course:7", "gadget", "g1", "alice").lock
    result = mgr.acquire(SCOPE, "gadget", "g2", "alice")
    assert result.replaced is not None and result.replaced.id == old.id
    with pytest.raises(LockNotFound):
        mgr.get(old.id)
    assert mgr.get(other_scope.id).resource == "g1"
    assert [lk.resource for lk in mgr.list(SCOPE).locks] == ["g2"]
    # g1 is free again for another owner
    assert mgr.acquire(SCOPE, "gadget", "g1", "bob").created
    kinds = [(e["event"], e["id"]) for e in events(redis_client, mgr)]
    assert ("replaced", old.id) in kinds and ("acquired", result.lock.id) in kinds


def test_conflict_does_not_release_the_owners_previous_lock(mgr: LockManager) -> None:
    mgr.acquire(SCOPE, "gadget", "g2", "bob")
    mine = mgr.acquire(SCOPE, "gadget", "g1", "alice").lock
    with pytest.raises(LockConflict):
        mgr.acquire(SCOPE, "gadget", "g2", "alice")
    assert mgr.get(mine.id).owner == "alice"


def test_multi_type_holds_many_locks_per_resource(mgr: LockManager) -> None:
    a = mgr.acquire(SCOPE, "deletion", "item-1", "alice", ttl=30).lock
    b = mgr.acquire(SCOPE, "deletion", "item-1", "alice", ttl=60).lock
    c = mgr.acquire(SCOPE, "deletion", "item-1", "bob", ttl=FOREVER).lock
    assert len({a.id, b.id, c.id}) == 3
    assert c.expires_at is None
    listed = mgr.list(SCOPE, type="deletion", resource="item-1").locks
    assert sorted(lk.id for lk in listed) == sorted([a.id, b.id, c.id])


def test_type_rules_are_enforced(mgr: LockManager) -> None:
    with pytest.raises(InvalidLockRequest, match="unknown lock type"):
        mgr.acquire(SCOPE, "nope", "r", "alice")
    with pytest.raises(InvalidLockRequest, match="must expire"):
        mgr.acquire(SCOPE, "job", "r", "alice", ttl=FOREVER)
    for bad in (0, -1, float("nan"), "5", True):
        with pytest.raises(InvalidLockRequest):
            mgr.acquire(SCOPE, "job", "r", "alice", ttl=bad)
    for scope, resource, owner in (
        ("", "r", "a"),
        (SCOPE, "", "a"),
        (SCOPE, "r", ""),
        (None, "r", "a"),
        (SCOPE, 5, "a"),
    ):
        with pytest.raises(InvalidLockRequest):
            mgr.acquire(scope, "job", resource, owner)  # type: ignore[arg-type]


def test_acquire_ttl_is_capped_at_the_types_maximum(mgr: LockManager) -> None:
    lock = mgr.acquire(SCOPE, "job", "j1", "alice", ttl=3600).lock
    assert lock.expires_at == pytest.approx(lock.acquired_at + 20, abs=0.002)


def test_lock_without_expiry_keeps_its_keys(emgr: LockManager, redis_client: Any) -> None:
    mgr = emgr
    lock = mgr.acquire(SCOPE, "file", "f1", "alice").lock
    assert lock.expires_at is None and lock.remaining is None
    keys = mgr.keys(SCOPE)
    made = [keys.locks, keys.directory, keys.events, keys.owner_index]
    assert all_keys(redis_client) == sorted(made)
    for key in made:
        assert redis_client.pttl(key) == -1


def test_keys_live_as_long_as_their_longest_lock(emgr: LockManager, redis_client: Any) -> None:
    mgr = emgr
    keys = mgr.keys(SCOPE)
    mgr.acquire(SCOPE, "job", "short", "alice", ttl=1)
    long = mgr.acquire(SCOPE, "gadget", "long", "alice", ttl=60).lock
    made = scope_keys(redis_client, mgr)
    assert made == sorted([keys.locks, keys.events, keys.owner_index])
    for key in made:
        assert redis_client.pttl(key) / 1000 > 60 + 60 - 0.1
    forever = mgr.acquire(SCOPE, "file", "f", "bob").lock
    assert {redis_client.pttl(k) for k in made} == {-1}
    mgr.release(forever, "bob")
    for key in made:
        assert 0 < redis_client.pttl(key) / 1000 <= 60 + 120
    mgr.release(long, "alice")
    assert redis_client.exists(keys.locks) == 1


def test_keys_made_after_the_scope_emptied_get_a_lifetime(
    emgr: LockManager, redis_client: Any
) -> None:
    mgr = emgr
    old = mgr.acquire(SCOPE, "job", "j1", "alice", ttl=0.03).lock
    time.sleep(0.06)
    # a call that fails on an emptied scope
    with pytest.raises(InvalidLockRequest):
        mgr.acquire(SCOPE, "job", "j2", "bob", expires_at=old.acquired_at - 1)
    mgr.acquire(SCOPE, "job", "j1", "bob", ttl=5)  # removes the expired lock on its way
    made = scope_keys(redis_client, mgr)
    keys = mgr.keys(SCOPE)
    assert made == sorted([keys.locks, keys.events, keys.owner_index])
    for key in made:
        assert redis_client.pttl(key) > 0, key


def test_index_keys_made_after_the_scopes_first_lock_get_a_lifetime(
    emgr: LockManager, redis_client: Any
) -> None:
    mgr = emgr
    keys = mgr.keys(SCOPE)
    mgr.acquire(SCOPE, "job", "j1", "alice", ttl=5)
    # a multi type's first lock makes the scope's multi-type indexes
    mgr.acquire(SCOPE, "deletion", "d1", "alice", ttl=5)
    made = scope_keys(redis_client, mgr)
    assert keys.multi_index in made
    for key in made:
        assert redis_client.pttl(key) > 0, key


# --- fencing -----------------------------------------------------------------------------


def test_fencing_tokens_grow_across_release_and_expiry(mgr: LockManager) -> None:
    tokens = []
    for n in range(3):
        lock = mgr.acquire(SCOPE, "job", "j1", f"owner{n}").lock
        tokens.append(lock.fencing_token)
        mgr.release(lock.id, f"owner{n}")
    lock = mgr.acquire(SCOPE, "job", "j1", "x", ttl=0.02).lock
    tokens.append(lock.fencing_token)
    time.sleep(0.05)
    tokens.append(mgr.acquire(SCOPE, "job", "j1", "y").lock.fencing_token)
    assert tokens == sorted(set(tokens))


def test_fencing_tokens_grow_even_after_the_scopes_keys_are_lost(
    emgr: LockManager, redis_client: Any
) -> None:
    mgr = emgr
    first = mgr.acquire(SCOPE, "job", "j1", "alice").lock
    for key in scope_keys(redis_client, mgr):
        redis_client.delete(key)
    assert records(redis_client, mgr) == {}
    second = mgr.acquire(SCOPE, "job", "j1", "bob").lock
    assert second.fencing_token > first.fencing_token
    assert int(second.id) > int(first.id)


def test_fencing_tokens_grow_even_after_every_key_is_lost(
    emgr: LockManager, redis_client: Any
) -> None:
    mgr = emgr
    first = mgr.acquire(SCOPE, "job", "j1", "alice").lock
    for key in all_keys(redis_client):  # the slot's directory (its counter) too
        redis_client.delete(key)
    # With the counter lost, the clock is the floor: a block per 10 ms (documented bound).
    started = server_ms(redis_client)
    while server_ms(redis_client) < started + 20:
        time.sleep(0.005)
    second = mgr.acquire(SCOPE, "job", "j1", "bob").lock
    assert second.fencing_token > first.fencing_token
    assert int(second.id) > int(first.id)


# --- release, refresh, get --------------------------------------------------------------


def test_release_by_owner_removes_every_trace(emgr: LockManager, redis_client: Any) -> None:
    mgr = emgr
    lock = mgr.acquire(SCOPE, "job", "j1", "alice").lock
    released = mgr.release(lock.id, "alice")
    assert released.id == lock.id
    with pytest.raises(LockNotFound):
        mgr.get(lock.id)
    keys = mgr.keys(SCOPE)
    # the hash keeps only its bookkeeping; the owner index is gone; the events stay
    assert all_keys(redis_client) == sorted([keys.locks, keys.events, keys.directory])
    assert records(redis_client, mgr) == {}
    for key in (keys.locks, keys.events):  # 10 s lease + 60 s retention, up to a minute
        assert 0 < redis_client.pttl(key) <= 130_000
    assert mgr.acquire(SCOPE, "job", "j1", "bob").created


@pytest.mark.parametrize("events", [False, True])
def test_a_one_per_owner_lock_keeps_its_owner_pointer_exactly_while_it_lives(
    redis_client: Any, backend: str, events: bool
) -> None:
    # The scripts' common case (before the helpers) makes and removes the pointer too.
    mgr = LockManager(
        redis_client,
        [LockType("gadget", one_per_owner=True, events=events, default_ttl=30.0)],
        prefix="t",
        functions=backend in FUNCTIONS,
    )
    mgr.acquire(SCOPE, "gadget", "warm", "zed")  # the scope's first lock takes a block
    lock = mgr.acquire(SCOPE, "gadget", "g1", "alice").lock
    hash_key = mgr.keys(SCOPE).locks
    assert _text(redis_client.hget(hash_key, "!ogadget:alice")) == str(lock.fencing_token)
    mgr.release(lock, "alice")
    assert redis_client.hget(hash_key, "!ogadget:alice") is None
    first = mgr.acquire(SCOPE, "gadget", "g2", "alice").lock
    second = mgr.acquire(SCOPE, "gadget", "g3", "alice")
    assert second.replaced is not None and second.replaced.id == first.id
    with pytest.raises(LockNotFound):
        mgr.get(first.id)
    if events:
        kinds = [e["event"] for e in _events_of(redis_client, mgr) if e["owner"] == "alice"]
        assert kinds == ["acquired", "released", "acquired", "replaced", "acquired"]


def test_a_record_takes_the_short_form_exactly_while_it_says_the_same(
    redis_client: Any, backend: str
) -> None:
    # flags expires owner field ttl: acquired = expires - ttl, never updated, no max ttl,
    # no metadata. Anything else is written in full; both read back the same.
    mgr = LockManager(
        redis_client,
        [
            LockType("plain", default_ttl=30.0),
            LockType("capped", default_ttl=30.0, max_ttl=60.0),
            LockType("many", mode=Mode.MULTI, default_ttl=30.0),
        ],
        prefix="t",
        functions=backend in FUNCTIONS,
    )
    mgr.acquire(SCOPE, "plain", "warm", "zed")  # the scope's first lock takes a block

    def words(lock: Any) -> list[str]:
        return _text(redis_client.hget(mgr.keys(SCOPE).locks, str(lock.fencing_token))).split(" ")

    fresh = mgr.acquire(SCOPE, "plain", "r1", "alice").lock  # the scripts' common case
    assert len(words(fresh)) == 5 and words(fresh)[4] == "30000"
    asked = mgr.acquire(SCOPE, "plain", "r2", "alice", request_id="q1").lock  # general case
    multi = mgr.acquire(SCOPE, "many", "r3", "alice").lock
    assert len(words(asked)) == 5 and len(words(multi)) == 5
    for lock in (fresh, asked, multi):
        got = mgr.get(lock.id)
        assert (got.acquired_at, got.updated_at, got.expires_at, dict(got.metadata)) == (
            lock.acquired_at,
            lock.acquired_at,
            lock.expires_at,
            {},
        )
    listed = {lk.id: lk for lk in mgr.list(SCOPE).locks}
    assert listed[fresh.id].acquired_at == fresh.acquired_at
    tagged = mgr.acquire(SCOPE, "plain", "r4", "alice", metadata={"k": "v"}).lock
    capped = mgr.acquire(SCOPE, "capped", "r5", "alice").lock
    assert len(words(tagged)) == 9 and len(words(capped)) == 9
    assert dict(mgr.get(tagged.id).metadata) == {"k": "v"}
    # A refresh keeps the acquisition time the short form implied.
    refreshed = mgr.refresh(fresh, "alice", 45)
    assert refreshed.acquired_at == fresh.acquired_at
    assert refreshed.expires_at > fresh.expires_at
    assert mgr.get(fresh.id).acquired_at == fresh.acquired_at
    assert mgr.release(refreshed, "alice").id == fresh.id
    assert {mgr.release(asked, "alice").id, mgr.release(multi, "alice").id} == {asked.id, multi.id}


def _events_of(client: Any, mgr: LockManager) -> list[dict[str, str]]:
    return [
        {_text(k): _text(v) for k, v in fields.items()}
        for _, fields in client.xrange(mgr.keys(SCOPE).events)
    ]


def test_release_of_another_owners_lock_is_refused(mgr: LockManager) -> None:
    lock = mgr.acquire(SCOPE, "job", "j1", "alice").lock
    with pytest.raises(LockNotOwned) as info:
        mgr.release(lock.id, "bob")
    assert info.value.holder.owner == "alice"
    assert mgr.get(lock.id).owner == "alice"


def test_release_by_id_within_a_family_of_scopes(mgr: LockManager) -> None:
    """``scope_prefix``: by bare id, in one call, only a lock whose scope starts with it
    (an API that owns a family of scopes); another scope's lock is not found, and stays."""
    mine = mgr.acquire("course:7/a b", "job", "j1", "alice").lock
    other = mgr.acquire("edx:7", "job", "j1", "alice").lock
    with pytest.raises(LockNotFound):
        mgr.release(other.id, "alice", scope_prefix="course:")
    assert mgr.get(other.id).owner == "alice"
    with pytest.raises(LockNotOwned):
        mgr.release(mine.id, "bob", scope_prefix="course:")
    released = mgr.release(mine.id, "alice", scope_prefix="course:")
    assert (released.id, released.scope) == (mine.id, "course:7/a b")
    with pytest.raises(LockNotFound):
        mgr.get(mine.id)
    with pytest.raises(LockNotFound):  # gone: not found, whatever the prefix
        mgr.release(mine.id, "alice", scope_prefix="")


def test_forced_release_by_an_administrator(emgr: LockManager, redis_client: Any) -> None:
    mgr = emgr
    lock = mgr.acquire(SCOPE, "job", "j1", "alice").lock
    mgr.release(lock.id, "admin", force=True)
    with pytest.raises(LockNotFound):
        mgr.get(lock.id)
    assert events(redis_client, mgr)[-1]["by"] == "admin"


@pytest.mark.parametrize(
    "lock_id",
    [
        "",
        "abc",
        "0",
        "-5",
        "12",
        "99999999999999999999",
        "9223372036854775807",
        "1700000000000000001",
        "1.5",
    ],
)
def test_unknown_or_malformed_ids_are_not_found(mgr: LockManager, lock_id: str) -> None:
    for call in (mgr.get, lambda i: mgr.release(i, "a"), lambda i: mgr.refresh(i, "a")):
        with pytest.raises(LockNotFound):
            call(lock_id)


def test_release_of_an_expired_lock_is_not_found(mgr: LockManager) -> None:
    lock = mgr.acquire(SCOPE, "job", "j1", "alice", ttl=0.02).lock
    time.sleep(0.05)
    with pytest.raises(LockNotFound):
        mgr.release(lock, "alice")


def test_refresh_extends_and_is_capped(emgr: LockManager, redis_client: Any) -> None:
    mgr = emgr
    lock = mgr.acquire(SCOPE, "job", "j1", "alice", ttl=1).lock
    longer = mgr.refresh(lock.id, "alice", 15)
    assert longer.expires_at == pytest.approx(longer.as_of + 15, abs=0.002)
    capped = mgr.refresh(lock.id, "alice", 999)
    assert capped.expires_at == pytest.approx(capped.as_of + 20, abs=0.002)
    own_lease = mgr.refresh(lock.id, "alice")
    assert own_lease.expires_at == pytest.approx(own_lease.as_of + 1, abs=0.002)
    assert own_lease.fencing_token == lock.fencing_token
    assert [e["event"] for e in events(redis_client, mgr)][-3:] == ["refreshed"] * 3


def test_refresh_of_another_owners_lock_is_refused(mgr: LockManager) -> None:
    lock = mgr.acquire(SCOPE, "job", "j1", "alice", ttl=1).lock
    with pytest.raises(LockNotOwned):
        mgr.refresh(lock.id, "bob", 5)
    assert mgr.get(lock.id).expires_at == lock.expires_at
    with pytest.raises(InvalidLockRequest):
        mgr.refresh(lock.id, "alice", -1)


def test_refresh_keeps_an_expiring_lock_alive(mgr: LockManager) -> None:
    lock = mgr.acquire(SCOPE, "job", "j1", "alice", ttl=0.5).lock
    assert lock.expires_at is not None
    # refreshed every 0.05 s (a stall of up to a lease is tolerated) until the server's
    # clock is half a lease past the first lease's end
    while server_now(mgr.client) < lock.expires_at + 0.25:
        time.sleep(0.05)
        mgr.refresh(lock, "alice", 0.5)
    assert mgr.get(lock.id).owner == "alice"


def test_time_comes_from_the_server_not_the_client(
    mgr: LockManager, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "time", lambda: 0.0)
    monkeypatch.setattr(time, "monotonic", lambda: 0.0)
    lock = mgr.acquire(SCOPE, "job", "j1", "alice", ttl=2).lock
    seconds, _ = redis_client.time()
    assert abs(lock.acquired_at - seconds) < 2
    assert lock.remaining == pytest.approx(2, abs=0.01)


def server_now(client: Any) -> float:
    """The Redis server's clock (what expiry follows), in seconds."""
    seconds, micros = client.time()
    return int(seconds) + int(micros) / 1e6


def until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def until_server_past(client: Any, instant: float | None) -> None:
    """Until the server's clock is past ``instant`` (a lock's expiry)."""
    assert instant is not None
    until(lambda: server_now(client) > instant)


# --- expiry ------------------------------------------------------------------------------


def test_expired_lock_is_gone_from_get_and_list_before_any_cleanup(mgr: LockManager) -> None:
    lock = mgr.acquire(SCOPE, "job", "j1", "alice", ttl=0.5).lock
    assert [lk.id for lk in mgr.list(SCOPE).locks] == [lock.id]
    until_server_past(mgr.client, lock.expires_at)
    assert mgr.list(SCOPE).locks == ()
    assert mgr.list(SCOPE, owner="alice").locks == ()
    with pytest.raises(LockNotFound):
        mgr.get(lock.id)


def test_expired_lock_frees_the_resource_and_is_announced(
    emgr: LockManager, redis_client: Any
) -> None:
    mgr = emgr
    old = mgr.acquire(SCOPE, "job", "j1", "alice", ttl=0.03).lock
    time.sleep(0.06)
    new = mgr.acquire(SCOPE, "job", "j1", "bob").lock
    assert new.fencing_token > old.fencing_token
    expired = [e for e in events(redis_client, mgr) if e["event"] == "expired"]
    assert [e["id"] for e in expired] == [old.id]
    assert set(records(redis_client, mgr)) == {str(new.fencing_token), "job:j1"}
    assert records(redis_client, mgr)["job:j1"] == str(new.fencing_token)
    owners = redis_client.zrange(mgr.keys(SCOPE).owner_index, 0, -1)
    assert [_text(m) for m in owners] == [f"bob:job:{new.fencing_token}"]


def test_calls_report_how_many_expired_locks_they_removed(redis_client: Any) -> None:
    noticed: list[int] = []

    class Counting(LockManager):
        def expired_noticed(self, count: int) -> None:
            noticed.append(count)

    mgr = Counting(redis_client, TYPES, prefix="t")
    for n in range(3):
        mgr.acquire(SCOPE, "job", f"j{n}", "alice", ttl=0.02)
    time.sleep(0.05)
    # each acquire meets the expired holder of its resource and removes it
    for n in range(3):
        mgr.acquire(SCOPE, "job", f"j{n}", "bob")
    assert noticed == [1, 1, 1]
    assert len(records(redis_client, mgr)) == 6  # bob's three: record and resource


def test_expired_locks_nobody_meets_are_swept(redis_client: Any) -> None:
    noticed: list[int] = []

    class Counting(LockManager):
        def expired_noticed(self, count: int) -> None:
            noticed.append(count)

    mgr = Counting(redis_client, TYPES, prefix="t")
    gone = [mgr.acquire(SCOPE, "job", f"j{n}", "alice", ttl=0.02).lock for n in range(3)]
    gone.append(mgr.acquire(SCOPE, "deletion", "d", "alice", ttl=0.02).lock)
    time.sleep(0.05)
    # other resources only: the sweep that runs along new locks removes them
    for n in range(200):
        lock = mgr.acquire(SCOPE, "job", f"other{n}", "bob").lock
        mgr.release(lock, "bob")
        if sum(noticed) >= len(gone):
            break
    assert sum(noticed) == len(gone)
    assert records(redis_client, mgr) == {}
    assert redis_client.zcard(mgr.keys(SCOPE).multi_index) == 0


def test_storage_of_expired_locks_is_reclaimed_by_key_expiry(redis_client: Any) -> None:
    # (lifetimes of a few tenths of a second: the first check has that much room)
    short = LockManager(redis_client, EVENT_TYPES, prefix="t", retention=0.3)
    short.acquire(SCOPE, "job", "j1", "alice", ttl=0.3)
    short.acquire(SCOPE, "deletion", "d1", "alice", ttl=0.3)
    assert len(scope_keys(redis_client, short)) == 5
    # only the slot's directory, which keeps the fencing tokens growing, stays
    until(lambda: all_keys(redis_client) == [short.keys(SCOPE).directory])


# --- listing -----------------------------------------------------------------------------


def test_list_filters_by_owner_type_and_resource(mgr: LockManager) -> None:
    mgr.acquire(SCOPE, "job", "j1", "alice")
    mgr.acquire(SCOPE, "job", "j2", "bob")
    mgr.acquire(SCOPE, "file", "j1", "alice")
    mgr.acquire(SCOPE, "deletion", "j1", "bob")
    mgr.acquire("other", "job", "j3", "alice")

    def ids(**kw: Any) -> list[tuple[str, str, str]]:
        return sorted((lk.type, lk.resource, lk.owner) for lk in mgr.list(SCOPE, **kw).locks)

    assert len(ids()) == 4
    assert ids(owner="alice") == [("file", "j1", "alice"), ("job", "j1", "alice")]
    assert ids(type="job") == [("job", "j1", "alice"), ("job", "j2", "bob")]
    assert ids(type="job", resource="j1") == [("job", "j1", "alice")]
    assert ids(owner="bob", type="deletion") == [("deletion", "j1", "bob")]
    assert ids(owner="bob", type="job", resource="j1") == []
    assert ids(resource="j1") == [
        ("deletion", "j1", "bob"),
        ("file", "j1", "alice"),
        ("job", "j1", "alice"),
    ]
    with pytest.raises(InvalidLockRequest):
        mgr.list(SCOPE, limit=0)


def test_list_pages_with_a_cursor(mgr: LockManager) -> None:
    made = {mgr.acquire(SCOPE, "deletion", f"r{n:02}", "alice").lock.id for n in range(25)}
    seen: list[str] = []
    page = mgr.list(SCOPE, limit=10)
    pages = 1
    while True:
        seen += [lk.id for lk in page.locks]
        if page.cursor is None:
            break
        page = mgr.list(SCOPE, limit=10, cursor=page.cursor)
        pages += 1
    assert sorted(seen) == sorted(made) and len(seen) == 25
    assert pages in (3, 4)
    assert {lk.id for lk in mgr.iter_locks(SCOPE, owner="alice", limit=7)} == made


def _many_scopes(mgr: Any) -> list[tuple[str, dict[str, Any]]]:
    """Locks in three scopes (on a Cluster, three slots); the queries list_many is asked."""
    for n in range(4):
        mgr.acquire("many:a", "deletion", f"r{n}", "alice")
        mgr.acquire("many:b", "deletion", "r", "bob" if n % 2 else "alice")
    mgr.acquire("many:b", "job", "j", "carol")
    return [
        ("many:a", {}),
        ("many:b", {"type": "deletion", "resource": "r"}),
        ("many:b", {"owner": "carol"}),
        ("many:none", {}),
        ("many:a", {"type": "deletion"}),
    ]


def test_list_many_and_count_many_answer_as_list_and_count_in_one_round_trip(
    mgr: LockManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    queries = _many_scopes(mgr)
    singles = [mgr.list(scope, limit=3, **filters) for scope, filters in queries]
    counts = [mgr.count(scope, multi=True) for scope in ("many:a", "many:b", "many:none")]

    def no_single_call(*_args: Any) -> Any:
        raise AssertionError("a call of its own, not the pipelined round trip")

    monkeypatch.setattr(mgr, "_run", no_single_call)
    pages = mgr.list_many(queries, limit=3)
    assert [[lk.id for lk in p.locks] for p in pages] == [
        [lk.id for lk in p.locks] for p in singles
    ]
    assert [p.cursor is None for p in pages] == [p.cursor is None for p in singles]
    assert mgr.count_many(["many:a", "many:b", "many:none"]) == counts == [4, 4, 0]
    assert mgr.list_many([]) == [] and mgr.count_many([]) == []
    with pytest.raises(InvalidLockRequest):
        mgr.list_many([("many:a", {})], limit=0)


def test_the_asyncio_sibling_lists_and_counts_many_the_same(
    mgr: LockManager, make_async_client: Any
) -> None:
    queries = _many_scopes(mgr)

    async def main() -> tuple[list[Any], list[int]]:
        client = make_async_client()
        amgr = AsyncLockManager(client, TYPES, prefix="t")
        try:
            pages = await amgr.list_many(queries, limit=3)
            return pages, await amgr.count_many(["many:a", "many:b", "many:none"])
        finally:
            await client.aclose()

    pages, counts = asyncio.run(main())
    assert [[lk.id for lk in p.locks] for p in pages] == [
        [lk.id for lk in p.locks] for p in mgr.list_many(queries, limit=3)
    ]
    assert counts == mgr.count_many(["many:a", "many:b", "many:none"]) == [4, 4, 0]


def test_list_skips_many_expired_locks_without_losing_live_ones(mgr: LockManager) -> None:
    for n in range(40):
        mgr.acquire(SCOPE, "deletion", f"r{n:02}", "alice", ttl=0.02)
    live = mgr.acquire(SCOPE, "deletion", "zz", "alice").lock
    time.sleep(0.05)
    assert [lk.id for lk in mgr.iter_locks(SCOPE, limit=5)] == [live.id]


# --- events ------------------------------------------------------------------------------


def test_every_change_is_recorded_in_the_stream(emgr: LockManager, redis_client: Any) -> None:
    mgr = emgr
    a = mgr.acquire(SCOPE, "gadget", "g1", "alice", ttl=5).lock
    mgr.acquire(SCOPE, "gadget", "g1", "alice", ttl=5)
    b = mgr.acquire(SCOPE, "gadget", "g2", "alice").lock
    mgr.refresh(b.id, "alice", 10)
    mgr.release(b.id, "alice")
    c = mgr.acquire(SCOPE, "job", "j", "bob", ttl=0.02).lock
    time.sleep(0.04)
    mgr.acquire(SCOPE, "job", "j", "carol")
    got = [(e["event"], e["id"]) for e in events(redis_client, mgr)]
    assert got[:7] == [
        ("acquired", a.id),
        ("refreshed", a.id),
        ("replaced", a.id),
        ("acquired", b.id),
        ("refreshed", b.id),
        ("released", b.id),
        ("acquired", c.id),
    ]
    assert got[7] == ("expired", c.id)
    first = events(redis_client, mgr)[0]
    assert first["scope"] == SCOPE and first["type"] == "gadget" and first["owner"] == "alice"
    assert int(first["token"]) == a.fencing_token


def test_event_stream_is_capped(emgr: LockManager, redis_client: Any) -> None:
    mgr = emgr
    lock = mgr.acquire(SCOPE, "job", "j1", "alice").lock
    for _ in range(400):
        mgr.refresh(lock.id, "alice")
    assert redis_client.xlen(mgr.keys(SCOPE).events) < 200


def test_no_events_for_types_without_them(mgr: LockManager, redis_client: Any) -> None:
    lock = mgr.acquire(SCOPE, "job", "j1", "alice").lock
    mgr.refresh(lock, "alice")
    mgr.release(lock, "alice")
    assert redis_client.exists(mgr.keys(SCOPE).events) == 0


def test_changes_are_published_live(emgr: LockManager, redis_client: Any, backend: str) -> None:
    mgr = emgr
    pubsub = redis_client.pubsub()
    pubsub.subscribe(mgr.keys(SCOPE).events)
    deadline = time.monotonic() + 5
    while pubsub.get_message(timeout=0.1) is None and time.monotonic() < deadline:
        pass  # the subscribe confirmation
    lock = mgr.acquire(SCOPE, "job", "j1", "alice").lock
    mgr.release(lock.id, "alice")
    got: list[str] = []
    while len(got) < 2 and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.2)
        if message and message["type"] == "message":
            got.append(_text(message["data"]))  # the id of the stream entry
    pubsub.close()
    stream = mgr.keys(SCOPE).events
    published = [
        event_from_entry(
            stream,
            entry_id,
            {
                _text(k): _text(v)
                for k, v in redis_client.xrange(stream, entry_id, entry_id)[0][1].items()
            },
        )
        for entry_id in got
    ]
    assert [(e["event"], e["id"]) for e in published] == [
        ("acquired", lock.id),
        ("released", lock.id),
    ]


# --- key layout --------------------------------------------------------------------------

WEIRD = ["a:b", "{x}", "}{", "with space", "ünïcødé ✓", "%41", "a%3Ab", ":", "{", "}"]


def test_names_with_any_bytes_neither_collide_nor_escape(mgr: LockManager) -> None:
    made = {}
    for scope in WEIRD:
        for resource in WEIRD:
            lock = mgr.acquire(scope, "job", resource, resource).lock
            made[lock.id] = (scope, resource)
    assert len(made) == len(WEIRD) ** 2
    for lock_id, (scope, resource) in made.items():
        lock = mgr.get(lock_id)
        assert (lock.scope, lock.resource, lock.owner) == (scope, resource, resource)
    for scope in WEIRD:
        listed = mgr.list(scope, owner="a:b").locks
        assert [(lk.scope, lk.resource) for lk in listed] == [(scope, "a:b")]
        assert len(mgr.list(scope, type="job", resource="{").locks) == 1


def test_a_scopes_keys_share_one_hash_slot(mgr: LockManager) -> None:
    for scope in WEIRD + [SCOPE]:
        keys = mgr.keys(scope)
        every = [
            keys.locks,
            keys.directory,
            keys.events,
            keys.multi_index,
            keys.owner_index,
            keys.base + "X",
            keys.waiter_signal("t1"),
            keys.queue("job:r"),
            keys.request("req-1"),
        ]
        assert {key_slot(k.encode()) for k in every} == {keys.slot}
        assert keys.locks.startswith("t:{") and "}" not in keys.locks[3 : -len("}:L")]
        assert mgr.acquire(scope, "job", "r", "alice").lock.id.startswith(keys.id_prefix)


# --- absolute expiry, metadata changes, counting -----------------------------------------


def test_acquire_until_an_absolute_server_time(mgr: LockManager, redis_client: Any) -> None:
    now = server_ms(redis_client) / 1000
    lock = mgr.acquire(SCOPE, "deletion", "item-1", "alice", expires_at=now + 40).lock
    assert lock.expires_at == pytest.approx(now + 40, abs=0.01)
    capped = mgr.acquire(SCOPE, "job", "j1", "alice", expires_at=now + 3600).lock
    assert capped.expires_at == pytest.approx(capped.acquired_at + 20, abs=0.01)


def test_an_expiry_in_the_past_is_refused(mgr: LockManager, redis_client: Any) -> None:
    now = server_ms(redis_client) / 1000
    with pytest.raises(InvalidLockRequest, match="not in the future"):
        mgr.acquire(SCOPE, "deletion", "item-1", "alice", expires_at=now - 1)
    lock = mgr.acquire(SCOPE, "deletion", "item-1", "alice").lock
    with pytest.raises(InvalidLockRequest):
        mgr.refresh(lock, "alice", expires_at=now - 1)
    assert mgr.get(lock.id).expires_at == lock.expires_at


def test_refresh_to_an_absolute_time(mgr: LockManager, redis_client: Any) -> None:
    lock = mgr.acquire(SCOPE, "deletion", "item-1", "alice").lock
    target = server_ms(redis_client) / 1000 + 10
    moved = mgr.refresh(lock, "alice", expires_at=target)
    assert moved.expires_at == pytest.approx(target, abs=0.01)
    assert moved.updated_at >= lock.updated_at


def test_refresh_merges_replaces_and_removes_metadata(mgr: LockManager) -> None:
    lock = mgr.acquire(
        SCOPE, "deletion", "item-1", "alice", metadata={"workflow": "production", "group": "movie"}
    ).lock
    merged = mgr.refresh(lock, "alice", metadata={"group": None, "stage": "final"})
    assert dict(merged.metadata) == {"workflow": "production", "stage": "final"}
    assert merged.expires_at == lock.expires_at  # a metadata change keeps the expiry
    replaced = mgr.refresh(lock, "alice", metadata={"only": "this"}, replace_metadata=True)
    assert dict(mgr.get(lock.id).metadata) == {"only": "this"} == dict(replaced.metadata)
    emptied = mgr.refresh(lock, "alice", metadata={"only": None})
    assert dict(emptied.metadata) == {}


def test_count_sees_only_live_locks(mgr: LockManager) -> None:
    assert mgr.count(SCOPE) == 0
    brief = mgr.acquire(SCOPE, "deletion", "a", "alice", ttl=0.5).lock
    for n in range(3):
        mgr.acquire(SCOPE, "deletion", "b", f"user{n}")
    assert mgr.count(SCOPE) == 4
    until_server_past(mgr.client, brief.expires_at)
    assert mgr.count(SCOPE) == 3


def test_a_repeated_request_id_returns_the_first_lock_instead_of_acting(
    mgr: LockManager, redis_client: Any
) -> None:
    first = mgr.acquire("s", "deletion", "r", "alice", request_id="req-1")
    again = mgr.acquire("s", "deletion", "r", "alice", request_id="req-1")
    assert (again.lock.id, again.created) == (first.lock.id, True)
    assert mgr.count("s") == 1
    other = mgr.acquire("s", "deletion", "r", "alice", request_id="req-2")
    assert other.lock.id != first.lock.id and mgr.count("s") == 2
    remembered = mgr.keys("s").base + "i:req-1"
    assert 0 < redis_client.pttl(remembered) <= 86400_000  # remembered, not forever
    mgr.release(first.lock, "alice")
    with pytest.raises(LockNotFound):  # its lock is gone: the repeat does not act again
        mgr.acquire("s", "deletion", "r", "alice", request_id="req-1")
    assert mgr.count("s") == 1


def test_a_repeated_request_id_on_an_exclusive_lock_keeps_its_first_outcome(
    mgr: LockManager,
) -> None:
    first = mgr.acquire("s", "job", "r", "alice", request_id="a")
    refreshed = mgr.acquire("s", "job", "r", "alice", request_id="b")
    assert refreshed.lock.id == first.lock.id and not refreshed.created
    assert mgr.acquire("s", "job", "r", "alice", request_id="a").created
    assert not mgr.acquire("s", "job", "r", "alice", request_id="b").created


@pytest.mark.parametrize("bad", ["", "a b", "{x}", "x" * 129, 7])
def test_request_ids_are_checked(mgr: LockManager, bad: Any) -> None:
    with pytest.raises(InvalidLockRequest):
        mgr.acquire("s", "job", "r", "alice", request_id=bad)
