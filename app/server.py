"""The HTTP server behind ``lockcore serve``: gunicorn, configured so that waiting costs
no worker.

Worker model: gunicorn's ``gthread`` workers (``--workers`` processes, ``--threads``
threads each). A ``/v1`` long poll (``wait``) parks its thread in a Redis BLPOP; the
worker's main loop keeps accepting connections, answering gunicorn's heartbeat and
handing requests to the free threads, so ``/healthz`` and ordinary lock calls are served
beside any number of waiters up to the waiter cap. The cap (``LOCKCORE_V1_MAX_WAITERS``,
per process, by default the threads less a reserve of ``RESERVED_THREADS``) keeps threads
free for everything else: a wait beyond it is answered 503 at once instead of queueing.
A connection that sends nothing is held by the main loop's poller, not by a thread (the
gthread worker hands a connection to a thread only once data arrives). Why not ``sync``:
one waiter would hold a whole process. Why not gevent: monkey-patching the process after
redis-py and ssl are imported is fragile, and threads are enough for long polls capped
by count.

Timeouts: gunicorn's worker ``timeout`` is always longer than the longest allowed wait
plus the Redis timeout (a gthread worker's heartbeat does not depend on its requests, but
the margin holds under any worker class).

The drain (SIGTERM, what Kubernetes and docker send): each worker sets ``draining()``;
every waiting request notices it within one heartbeat (at most a second), leaves the line
and answers 503 in its API's envelope (or returns the lock if it got it meanwhile);
requests in progress finish; then the process exits, within ``graceful_timeout``.
SIGINT and SIGQUIT stop at once.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

#: Threads of each worker that waiting requests may never take.
RESERVED_THREADS = 32

_DRAINING = threading.Event()


def draining() -> threading.Event:
    """Set once this process has been asked to stop (SIGTERM): waits give up their place."""
    return _DRAINING


def settings(workers: int, threads: int) -> dict[str, Any]:
    """gunicorn's settings for the service's configuration (``LOCKCORE_*``)."""
    from . import config

    conf = config.load()
    longest_wait = conf["V1_MAX_WAIT"] + 2 * conf["REDIS_TIMEOUT"]
    return {
        "worker_class": "gthread",
        "workers": workers,
        "threads": threads,
        "timeout": max(30, int(longest_wait) + 10),
        # A waiter needs at most a heartbeat (1 s) to notice the drain, and one Redis call
        # to leave the line.
        "graceful_timeout": int(conf["REDIS_TIMEOUT"]) + 5,
        "accesslog": None,
        # gunicorn's control socket (``gunicornc``) would be made in $HOME (in the image:
        # the data directory); the service does not use it.
        "control_socket_disable": True,
        "logconfig_dict": logconfig(conf["LOG_LEVEL"]),
        "logger_class": logger_class(),
        "post_worker_init": _post_worker_init,
        "child_exit": _child_exit,
    }


def logconfig(level: str) -> dict[str, Any]:
    """gunicorn's logging (its ``logconfig_dict``, applied in the master and inherited by
    the workers): every logger, gunicorn's own (its error log: "Listening at", "Booting
    worker"...) included, writes the service's JSON lines to stderr, through the root
    logger's one handler. The service's own request lines come from the ``lockcore``
    logger's handler (``observability.setup_logging``), not through the root."""
    from .observability import JsonFormatter, StderrHandler

    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"json": {"()": StderrHandler, "formatter": "json"}},
        "root": {"level": level, "handlers": ["json"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": True},
        },
    }


def logger_class() -> type:
    """gunicorn's logger, whose access log stays off unless ``accesslog`` is set
    (gunicorn turns it on with any ``logconfig_dict``; the service logs each request
    itself, with more: its API, route, user, scope and lock id)."""
    from gunicorn.glogging import Logger

    class JsonLinesLogger(Logger):  # type: ignore[misc]
        @property
        def access_log_enabled(self) -> bool:
            return bool(self.cfg.accesslog)

        def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
            if self.cfg.accesslog:
                super().access(resp, req, environ, request_time)

    return JsonLinesLogger


def max_waiters(threads: int) -> int:
    return max(1, threads - RESERVED_THREADS)


def run(host: str, port: int, workers: int, threads: int = 128) -> None:
    """Serve ``create_app()`` with gunicorn until SIGTERM/SIGINT."""
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            for name, value in settings(workers, threads).items():
                self.cfg.set(name, value)

        def load(self) -> Any:
            from . import create_app

            override = {}
            if "LOCKCORE_V1_MAX_WAITERS" not in os.environ:
                override["V1_MAX_WAITERS"] = max_waiters(threads)
            return create_app(override)

    Server().run()


def _post_worker_init(worker: Any) -> None:
    """Runs in each worker after gunicorn installed its signal handlers: SIGTERM also
    starts the drain."""
    graceful_stop = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: Any) -> None:
        _DRAINING.set()
        if callable(graceful_stop):
            graceful_stop(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def _child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
