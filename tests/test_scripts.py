"""The script layer: codes mirrored from Lua, replies mapped to errors in one place,
expanded scripts usable by other languages through plain EVAL."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from lockcore import LockConflict, LockNotFound, LockNotOwned, ReplyCode, UnexpectedReply
from lockcore.keys import ScopeKeys
from lockcore.scripts import SCRIPT_NAMES, check, lua_dir, source


def test_reply_codes_mirror_the_lua_constants() -> None:
    lib = (lua_dir() / "_lib.lua").read_text()
    names, values = re.search(r"local (OK, CONFLICT[^=]*)= ([0-9, ]+)", lib).groups()  # type: ignore[union-attr]
    lua = dict(zip((n.strip() for n in names.split(",")),
                   (int(v) for v in values.split(",")), strict=True))
    assert lua == {code.name: code.value for code in ReplyCode}


def test_every_script_opens_with_its_contract_and_has_no_include_left() -> None:
    for name in SCRIPT_NAMES:
        raw = (lua_dir() / f"{name}.lua").read_text()
        assert raw.startswith(f"--[[\n{name}.lua: ")
        assert "Returns" in raw and "ARGV[" in raw
        assert not any(line.startswith("--!include") for line in source(name).splitlines())


HOLDER = ('{"id":"100000000000000005","type":"job","resource":"r","owner":"alice",'
          '"token":5,"acquired_at":1000,"expires_at":31000,"metadata":{}}')


@pytest.mark.parametrize(("reply", "error"), [
    ([1, 2000, 0, HOLDER], LockConflict),
    ([3, 2000, 0, HOLDER], LockNotOwned),
    ([2, 2000, 1], LockNotFound),
    ([9, 2000, 0], UnexpectedReply),
    ([0, 2000], UnexpectedReply),
    (["x"], UnexpectedReply),
    (None, UnexpectedReply),
])
def test_replies_map_to_typed_errors(reply: object, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        check(reply, "acquire", "s", "100000000000000005")
    if error in (LockConflict, LockNotOwned):
        holder = info.value.holder  # type: ignore[attr-defined]
        assert (holder.owner, holder.fencing_token, holder.expires_at) == ("alice", 5, 31.0)
        assert holder.remaining == 29.0


def test_dumped_scripts_run_with_plain_eval(tmp_path: Path, real_server) -> None:  # type: ignore[no-untyped-def]
    subprocess.run([sys.executable, "-m", "lockcore.scripts", "dump", str(tmp_path)],
                   check=True, capture_output=True)
    client = real_server.client()
    client.flushall()
    keys = ScopeKeys.for_scope("native", "course:1")
    acquire = (tmp_path / "acquire.lua").read_text()
    args = ["course:1", 100, 60000, "gadget", "g1"]
    tail = ["exclusive", "0", "30000", "0", "{}", keys.slot + 1]
    ok = client.eval(acquire, 8, *keys.all, *args, "alice", *tail)
    assert ok[0] == 0 and ok[2] == 0 and ok[5] == 1
    conflict = client.eval(acquire, 8, *keys.all, *args, "bob", *tail)
    assert conflict[0] == 1 and b'"owner":"alice"' in conflict[3]
    client.close()
