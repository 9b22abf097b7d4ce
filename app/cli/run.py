"""``lockcore run`` and ``lockcore elect``: a command run under a lock, or while this
process leads an election (what ``etcdctl lock`` / ``consul lock`` and ``etcdctl elect``
give their users).

The lock is renewed in the background while the command runs and released when it exits;
the command's exit status is ``lockcore``'s. It gets the lock in its environment:
``LOCKCORE_LOCK_ID``, ``LOCKCORE_FENCING_TOKEN`` (``LOCKCORE_TERM`` too when elected), to
pass to what it writes. If the lock is lost meanwhile (Redis unreachable past the lease)
the command is sent SIGTERM at once, and ``lockcore`` exits 1 once it has ended.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from types import FrameType
from typing import Any

from lockcore import LEADER, Election, Held, LockConflict, LockLost, LockManager

from .common import CliError, redis_for

#: /v1's scopes: a lock taken here is one /v1 workers see and wait for, and the reverse.
SCOPE_PREFIX = "v1:"


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@contextmanager
def _manager(args: argparse.Namespace) -> Iterator[LockManager]:
    from ..services import lock_types

    with redis_for(args) as (client, settings):
        types = [*lock_types(settings), LEADER]
        yield LockManager(client, types, prefix=settings["KEY_PREFIX"])


def split_command(argv: list[str]) -> tuple[list[str], list[str]]:
    """``lockcore``'s own arguments, and the command after the first ``--`` (options may
    come anywhere before it)."""
    if "--" not in argv:
        return argv, []
    at = argv.index("--")
    return argv[:at], argv[at + 1 :]


def _command(args: argparse.Namespace) -> list[str]:
    if not args.argv:
        raise CliError("no command to run: give it after --, e.g. -- make deploy")
    return list(args.argv)


def _run_held(
    holding: Callable[[Callable[[Held], None]], AbstractContextManager[Held | list[Held]]],
    command: list[str],
    extra: Callable[[Held], dict[str, str]],
) -> int:
    """Run ``command`` while the hold ``holding(on_lost)`` makes holds its lock (or a
    multi-lock's locks); the command's exit status, or 1 if a lock was lost (the command
    then sent SIGTERM)."""
    child: list[subprocess.Popen[bytes]] = []
    lost = threading.Event()

    def on_lost(_: Held) -> None:
        lost.set()
        if child and child[0].poll() is None:
            child[0].terminate()

    def forward(signum: int, _: FrameType | None) -> None:
        if child and child[0].poll() is None:
            child[0].send_signal(signum)

    status = 1
    try:
        with holding(on_lost) as got:
            helds = got if isinstance(got, list) else [got]
            held = helds[0]
            env = {
                **os.environ,
                # a multi-lock's: space-separated, in the order of --lock
                "LOCKCORE_LOCK_ID": " ".join(h.lock.id for h in helds),
                "LOCKCORE_FENCING_TOKEN": " ".join(str(h.fencing_token) for h in helds),
                **extra(held),
            }
            previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
            try:
                child.append(subprocess.Popen(command, env=env))
                if any(h.lost.is_set() for h in helds):  # lost before the command started
                    on_lost(held)
                status = child[0].wait()
            finally:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
    except LockLost:
        lost.set()
    except FileNotFoundError as exc:
        raise CliError(f"cannot run {command[0]}: {exc.strerror}") from exc
    if lost.is_set():
        print("lockcore: the lock was lost while the command ran", file=sys.stderr)
        return 1
    return status


def run(args: argparse.Namespace) -> int:
    command = _command(args)
    if args.shared and args.type != "rw":
        raise CliError("--shared is for --type rw")
    if len(args.lock) > 1 and (args.wait is not None or args.type not in ("job", "rlock")):
        raise CliError("several --lock make a multi-lock: --type job or rlock, and no --wait")
    with _manager(args) as mgr:
        scope = SCOPE_PREFIX + args.scope

        def holding(
            on_lost: Callable[[Held], None],
        ) -> AbstractContextManager[Held | list[Held]]:
            if len(args.lock) > 1:  # a multi-lock: all or none, no wait
                return mgr.hold_all(
                    scope, args.type, args.lock, args.owner, ttl=args.ttl, on_lost=on_lost
                )
            return mgr.hold(
                scope,
                args.type,
                args.lock[0],
                args.owner,
                ttl=args.ttl,
                wait=args.wait,
                on_lost=on_lost,
                shared=args.shared,
            )

        try:
            return _run_held(holding, command, lambda held: {})
        except LockConflict as exc:
            holder = f" by {exc.holder.owner} (lock {exc.holder.id})" if exc.holder else ""
            raise CliError(f"{' '.join(args.lock)} is held{holder}") from exc


def elect(args: argparse.Namespace) -> int:
    command = _command(args)
    with _manager(args) as mgr:
        election = Election(mgr, args.name, scope=SCOPE_PREFIX + args.scope, ttl=args.ttl)

        def campaign(on_lost: Callable[[Held], None]) -> AbstractContextManager[Held]:
            return election.campaign(args.owner, wait=args.wait, on_lost=on_lost)

        try:
            return _run_held(
                campaign, command, lambda held: {"LOCKCORE_TERM": str(held.fencing_token)}
            )
        except LockConflict as exc:
            raise CliError(f"not elected within {args.wait} s") from exc


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "run",
        parents=[common],
        help="-- CMD: run a command under a lock (renewed while it runs, released after)",
    )
    p.add_argument(
        "--lock",
        required=True,
        action="append",
        help="the resource to lock (several: a multi-lock, all or none)",
    )
    p.add_argument("--scope", default="cli", help="the /v1 scope (default cli: v1:cli)")
    p.add_argument(
        "--type",
        default="job",
        choices=("job", "rlock", "rw", "permit"),
        help="the /v1 lock type (default job: exclusive; rw: a write lock, or a read lock "
        "with --shared; permit: one of LOCKCORE_V1_PERMITS)",
    )
    p.add_argument("--shared", action="store_true", help="with --type rw: a read lock")
    p.add_argument(
        "--wait", type=float, default=None, help="seconds to wait for the lock (default: none)"
    )
    p.add_argument("--ttl", type=float, default=30.0, help="lease in seconds (default 30)")
    p.add_argument("--owner", default=default_owner(), help="owner (default host:pid)")
    p.set_defaults(func=run, argv=[])

    p = sub.add_parser(
        "elect", parents=[common], help="-- CMD: run a command while this process leads an election"
    )
    p.add_argument("name", help="the election")
    p.add_argument(
        "--scope", default="elections", help="the /v1 scope (default elections: v1:elections)"
    )
    p.add_argument(
        "--wait", type=float, default=None, help="seconds to wait to lead (default: forever)"
    )
    p.add_argument("--ttl", type=float, default=15.0, help="lease in seconds (default 15)")
    p.add_argument("--owner", default=default_owner(), help="candidate (default host:pid)")
    p.set_defaults(func=elect, argv=[])
