"""The HTTP server behind ``lockcore serve``: gunicorn, configured for waiting requests.

Only ``run`` is used by the CLI; everything about workers, timeouts and the SIGTERM drain
lives here.
"""

from __future__ import annotations

from typing import Any


def run(host: str, port: int, workers: int) -> None:
    """Serve ``create_app()`` with gunicorn until SIGTERM/SIGINT."""
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("accesslog", None)
            self.cfg.set("graceful_timeout", 5)
            self.cfg.set("child_exit", _child_exit)

        def load(self) -> Any:
            from . import create_app

            return create_app()

    Server().run()


def _child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
