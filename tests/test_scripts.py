"""The script layer: codes mirrored from Lua, replies mapped to errors in one place,
expanded scripts usable by other languages through plain EVAL."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from lockcore import (
    LockConflict,
    LockManager,
    LockNotFound,
    LockNotOwned,
    ReplyCode,
    UnexpectedReply,
)
from lockcore.keys import ScopeKeys, directory_key, slot_of_id
from lockcore.models import Lock
from lockcore.scripts import SCRIPT_NAMES, Call, Core, lua_dir, source

from .conftest import TYPES, redis7_binary
from .servers import Cluster


def test_reply_codes_mirror_the_lua_constants() -> None:
    lib = (lua_dir() / "_lib.lua").read_text()
    names, values = re.search(r"local (OK, CONFLICT[^=]*)= ([0-9, ]+)", lib).groups()  # type: ignore[union-attr]
    lua = dict(
        zip((n.strip() for n in names.split(",")), (int(v) for v in values.split(",")), strict=True)
    )
    assert lua == {code.name: code.value for code in ReplyCode}


def test_every_script_opens_with_its_contract_and_has_no_include_left() -> None:
    for name in SCRIPT_NAMES:
        raw = (lua_dir() / f"{name}.lua").read_text()
        assert raw.startswith(f"--[[\n{name}.lua: ")
        header, body = raw.split("]]", 1)
        assert "Returns" in header and "KEYS[1]" in header
        # every argument the script reads is described in its header
        used = set(re.findall(r"(?:KEYS|ARGV)\[\d+\]", body))
        assert used <= set(re.findall(r"(?:KEYS|ARGV)\[\d+\]", header)), name
        assert not any(line.startswith("--!include") for line in source(name).splitlines())


#: A holder as the scripts reply with it: its token, its record (see lua/_lib.lua).
TOKEN, RECORD = b"5", b"xe 31000 alice job:r 1000 0 30000 0 k=v"
LOCK_ID = "100000000000000005"


def core() -> Core:
    return Core(
        TYPES,
        prefix="t",
        event_maxlen=1000,
        retention=60.0,
        heartbeat=1.0,
        request_ttl=60.0,
        handoff=0.005,
    )


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ([1, 2000, 0, TOKEN, RECORD], LockConflict),
        ([3, 2000, 0, TOKEN, RECORD, b"s"], LockNotOwned),
        ([2, 2000, 1], LockNotFound),
        ([9, 2000, 0], UnexpectedReply),
        ([0, 2000], UnexpectedReply),
        (["x"], UnexpectedReply),
        (None, UnexpectedReply),
    ],
)
def test_replies_map_to_typed_errors(reply: object, error: type[Exception]) -> None:
    call = Call("release", [], [], "s", LOCK_ID)
    with pytest.raises(error) as info:
        core().check(reply, call)
    if error in (LockConflict, LockNotOwned):
        holder = info.value.holder  # type: ignore[attr-defined]
        assert (holder.owner, holder.fencing_token, holder.expires_at) == ("alice", 5, 31.0)
        assert (holder.id, holder.scope, holder.type, holder.resource) == (LOCK_ID, "s", "job", "r")
        assert dict(holder.metadata) == {"k": "v"}
        assert holder.remaining == 29.0


def test_a_conflict_of_an_acquire_names_the_holder_by_its_scopes_id() -> None:
    c = core()
    call = c.acquire(
        "s", "job", "r", "bob", ttl=None, metadata=None, expires_at=None, request_id=None
    )
    with pytest.raises(LockConflict) as info:
        c.acquired([1, 2000, 0, TOKEN, RECORD], call)
    holder = info.value.holder
    assert holder is not None and holder.owner == "alice"
    assert holder.id == f"{c.keys('s').id_prefix}{5:014d}"
    with pytest.raises(LockConflict) as kept:  # kept for an earlier waiter: no holder
        c.acquired([1, 2000, 0, b"", b""], call)
    assert kept.value.holder is None
    lock = Lock.from_record(TOKEN, RECORD, "s", 2000, "1")
    assert (lock.id, lock.acquired_at, lock.updated_at) == ("100000000000005", 1.0, 1.0)
    refreshed = Lock.from_record(TOKEN, b"xe 31000 alice job:r 1000 250 30000 0 ", "s", 2000, "1")
    assert refreshed.updated_at == 1.25  # the update time is kept as ms after acquired
    short = Lock.from_record(TOKEN, b"xe 31000 alice job:r 30000", "s", 2000, "1")
    assert (short.acquired_at, short.updated_at, short.expires_at) == (1.0, 1.0, 31.0)
    assert (short.owner, short.type, short.resource, dict(short.metadata)) == (
        "alice",
        "job",
        "r",
        {},
    )


def test_dumped_scripts_run_with_plain_eval(tmp_path: Path, real_server) -> None:  # type: ignore[no-untyped-def]
    subprocess.run(
        [sys.executable, "-m", "lockcore.scripts", "dump", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    client = real_server.client()
    client.flushall()
    keys = ScopeKeys.for_scope("native", "course:1")
    acquire = (tmp_path / "acquire.lua").read_text()
    get = (tmp_path / "get.lua").read_text()
    assert acquire == source("acquire")

    def take(owner: str) -> Any:
        # ARGV as acquire.lua's header describes them: <type>:<resource>, owner, ttl ms,
        # flags, metadata, max ttl ms, absolute expiry, retention ms, hand-off ms, id
        # prefix, event stream length (waiting and request id left off)
        return client.eval(
            acquire,
            2,
            keys.locks,
            keys.directory,
            "gadget:g1",
            owner,
            30000,
            "xe",
            "n=1",
            0,
            "",
            60000,
            5,
            keys.id_prefix,
            1000,
        )

    ok = take("alice")
    # A new lock made as asked: the short reply {OK, now, expired, token}
    assert len(ok) == 4 and ok[0] == 0 and ok[2] == 0
    token = int(ok[3])
    record = client.hget(keys.locks, token).decode()
    flags, expires, owner, field, acquired, updated, ttl, max_ttl, meta = record.split(" ")
    assert (flags, owner, field, ttl, max_ttl, meta) == (
        "xe",
        "alice",
        "gadget:g1",
        "30000",
        "0",
        "n=1",
    )
    assert int(expires) == int(acquired) + 30000 and acquired == str(ok[1])
    assert updated == "0"  # ms after acquired
    conflict = take("bob")
    assert conflict[0] == 1 and int(conflict[3]) == token and conflict[4].decode() == record
    lock_id = f"{keys.id_prefix}{token:014d}"
    # by id alone: the slot's directory gives the scope
    found = client.eval(
        get,
        1,
        directory_key("native", slot_of_id(lock_id)),  # type: ignore[arg-type]
        str(int(lock_id[-14:])),
        "",
    )
    assert found[0] == 0 and found[3:] == [str(token).encode(), record.encode(), b"course%3A1"]
    assert [e[1][b"event"] for e in client.xrange(keys.events)] == [b"acquired"]
    client.close()


def test_a_slot_that_holds_layout_1_locks_is_refused_with_a_clear_message(
    mgr: Any, redis_client: Any
) -> None:
    """Data written by lockcore 0.1 (one directory per slot, ``<p>:{#n}:ids``) is not read
    by layout 2: a new lock in such a slot is refused, naming the key and the procedure."""
    keys = mgr.core.keys("legacy")
    old = keys.directory[: -len(":D")] + ":ids"
    redis_client.hset(old, "100000000000001", "legacy")
    with pytest.raises(Exception) as refused:
        mgr.acquire("legacy", "job", "r1", "alice")
    assert old in str(refused.value) and "Migrating from layout 1" in str(refused.value)
    assert redis_client.hgetall(keys.locks) == {}  # nothing written
    redis_client.delete(old)  # drained and deleted: the slot works again
    assert mgr.acquire("legacy", "job", "r1", "alice").created


def test_scripts_run_as_one_function_library_where_the_server_has_functions(
    mgr: Any, redis_client: Any, backend: str
) -> None:
    """Redis 7 (and fakeredis): FCALL of the library, loaded on first use and again after
    the server lost it; Redis 6.2 (the bundled server, the Cluster): EVALSHA."""
    functions = backend in ("real7", "fake")
    loading = LockManager(redis_client, TYPES, prefix="t")
    loading.load_scripts()  # finds out whether the server has FUNCTION, before any call
    assert loading._scripts.functions is functions
    first = mgr.acquire("fn", "job", "r1", "alice").lock
    assert mgr._scripts.functions is functions
    if not functions:
        assert mgr.release(first, "alice").id == first.id
        return
    name = mgr._scripts.library
    libraries = redis_client.function_list()  # [[b"library_name", name, ...]]
    assert len(libraries) == 1 and name.encode() in libraries[0]
    redis_client.function_flush()  # a server restarted without its functions
    second = mgr.acquire("fn", "job", "r2", "alice").lock
    assert second.fencing_token > first.fencing_token
    assert mgr.release(first, "alice").id == first.id
    if backend == "real7":
        assert redis_client.info("commandstats")["cmdstat_fcall"]["calls"] >= 3


def _script_calls(client: Any) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name: stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("fcall", "evalsha")}


def test_evalsha_on_redis_7_when_functions_are_off(real7_server: Any) -> None:
    client = real7_server.client()
    client.flushall()
    mgr = LockManager(client, TYPES, prefix="t", functions=False)
    mgr.release(mgr.acquire("fn", "job", "r0", "alice").lock, "alice")  # scripts loaded
    client.config_resetstat()
    mgr.release(mgr.acquire("fn", "job", "r1", "alice").lock, "alice")
    assert mgr._scripts.functions is False
    assert _script_calls(client) == {"fcall": 0, "evalsha": 2}


def test_a_server_that_refuses_function_load_gets_evalsha(real7_server: Any) -> None:
    """An ACL that allows scripts but not FUNCTION (managed services do this): the first
    call finds no library, loading it is refused, and the manager goes on by EVALSHA."""
    admin = real7_server.client()
    admin.flushall()
    admin.function_flush()
    admin.acl_setuser(
        "nofunction",
        enabled=True,
        passwords=["+pw"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", "-function"],
    )
    try:
        client = redis.Redis(
            unix_socket_path=str(real7_server.socket_path), username="nofunction", password="pw"
        )
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.function_load(
                "#!lua name=probe\nredis.register_function('p', function() return 1 end)"
            )
        admin.config_resetstat()
        mgr = LockManager(client, TYPES, prefix="t")
        lock = mgr.acquire("fn", "job", "r1", "alice").lock
        assert mgr._scripts.functions is False
        assert mgr.release(lock, "alice").id == lock.id
        assert _script_calls(admin)["evalsha"] == 2
        client.close()
    finally:
        admin.acl_deluser("nofunction")


def test_functions_on_a_redis_7_cluster(tmp_path: Path) -> None:
    """The default on a Redis 7 Cluster: FCALL on every master, each loading the library
    on first use and again after losing it."""
    nodes = Cluster(tmp_path / "cluster", executable=redis7_binary(tmp_path)).start()
    try:
        client = nodes.client()
        assert client.info("server")  # every node answers
        versions = {
            info["redis_version"][0]
            for info in client.info("server", target_nodes=client.PRIMARIES).values()
        }
        assert versions == {"7"}
        mgr = LockManager(client, TYPES, prefix="t")
        locks = [mgr.acquire(f"scope-{n}", "job", "r", "alice").lock for n in range(12)]
        assert mgr._scripts.functions is True
        masters = {client.get_node_from_key(mgr.keys(lk.scope).locks).name for lk in locks}
        assert len(masters) == 3  # the scopes fall on every master
        for node in client.get_primaries():
            calls = _script_calls(client.get_redis_connection(node))
            assert calls["fcall"] >= 1 and calls["evalsha"] == 0, (node.name, calls)
        for node in client.get_primaries():  # masters restarted without their functions
            client.get_redis_connection(node).function_flush()
        for lock in locks:
            assert mgr.release(lock, "alice").id == lock.id
        assert [lk.owner for lk in mgr.list("scope-0").locks] == []
        client.close()
    finally:
        nodes.stop()


def test_the_dumped_library_loads_and_runs_with_plain_fcall(
    tmp_path: Path, real7_server: Any
) -> None:
    """What a consumer in another language does on Redis 7: FUNCTION LOAD the dumped
    library, FCALL its functions with the scripts' own KEYS and ARGV."""
    subprocess.run(
        [sys.executable, "-m", "lockcore.scripts", "dump", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    client = real7_server.client()
    client.flushall()
    client.function_flush()
    name = client.function_load((tmp_path / "library.lua").read_text())
    name = name.decode() if isinstance(name, bytes) else name
    keys = ScopeKeys.for_scope("native", "course:1")
    ok = client.fcall(
        f"{name}_acquire", 2, keys.locks, keys.directory, "gadget:g1", "alice", 30000, "x"
    )
    assert len(ok) == 4 and ok[0] == 0
    conflict = client.fcall(
        f"{name}_acquire", 2, keys.locks, keys.directory, "gadget:g1", "bob", 30000, "x"
    )
    assert conflict[0] == 1 and conflict[3] == ok[3]
    released = client.fcall(f"{name}_release", 1, keys.directory, ok[3], keys.scope, "alice", 0)
    assert released[0] == 0 and client.hget(keys.locks, ok[3]) is None
    client.close()
