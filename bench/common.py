"""What every section of the benchmark shares: results (sections, targets), lock types,
Redis's own accounting (``INFO commandstats``), a client that counts its round trips,
and the charts."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from lockcore import LockType, embedded

ROOT = Path(__file__).resolve().parents[1]

#: Whether lockcore's managers call the scripts as a FUNCTION library (FCALL): set by
#: bench.run when the server is Redis 7+ (the setting a Redis 7 deployment would use).
FUNCTIONS = False


class Paths:
    """Where the charts go (``--charts``)."""

    charts = ROOT / "bench" / "charts"


def median(values: list[float]) -> float:
    return statistics.median(values)


# -- results ------------------------------------------------------------------------------


@dataclass
class Target:
    """One of the issue's targets: what is measured, the goal, the value, MET or MISSED.

    ``met`` is None when there is nothing to judge (the figure could not be measured)."""

    label: str
    goal: str
    shown: str
    met: bool | None
    section: str = ""

    @property
    def verdict(self) -> str:
        return {True: "MET", False: "MISSED", None: "n/a"}[self.met]

    @property
    def cell(self) -> str:
        """The verdict as a table cell."""
        return f"**{self.verdict}**"


def _shown(value: float, limit: float, digits: int) -> str:
    """``value`` rounded to ``digits``, or to more where rounding would hide on which side
    of ``limit`` it is (0.998 is not shown as 1.00 against a limit of 1)."""
    while digits < 4 and value != limit and f"{value:.{digits}f}" == f"{limit:.{digits}f}":
        digits += 1
    return f"{value:,.{digits}f}"


def at_most(
    label: str, value: float | None, limit: float, unit: str = "×", digits: int = 2
) -> Target:
    """A target met when ``value <= limit``."""
    if value is None:
        return Target(label, f"≤ {limit:g}{unit}", "—", None)
    return Target(label, f"≤ {limit:g}{unit}", _shown(value, limit, digits) + unit, value <= limit)


def at_least(
    label: str, value: float | None, limit: float, unit: str = "×", digits: int = 2
) -> Target:
    """A target met when ``value >= limit``."""
    if value is None:
        return Target(label, f"≥ {limit:g}{unit}", "—", None)
    return Target(label, f"≥ {limit:g}{unit}", _shown(value, limit, digits) + unit, value >= limit)


@dataclass
class Section:
    """One section of the report; ``chart`` is a PNG's absolute path."""

    title: str
    text: str
    table: list[list[str]]
    chart: str | None = None
    notes: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    summary: dict[str, float] = field(default_factory=dict)
    #: Whether ``table`` already shows each target in a row of its own (else the report
    #: adds a table of the targets under it).
    targets_in_table: bool = False


# -- lock types ---------------------------------------------------------------------------


def events_supported() -> bool:
    """Whether this lockcore makes events opt-in per lock type (``LockType(events=...)``).
    Before it does, every lock type publishes events."""
    return "events" in getattr(LockType, "__dataclass_fields__", {})


def lock_type(name: str, *, events: bool = False, **options: Any) -> LockType:
    """A lock type; with ``events``, one that publishes events where that is a choice."""
    if events and events_supported():
        options["events"] = True
    return LockType(name, **options)


def events_label(events: bool) -> str:
    if events_supported():
        return "events on" if events else "events off"
    return "events on (always)" if events else "events off (n/a: always on)"


# -- Redis's own accounting ---------------------------------------------------------------

#: Commands that run a script or function: the server time of one covers every command
#: the script runs (those are counted in commandstats too, under their own names).
SCRIPT_COMMANDS = ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro")
#: The bench's own bookkeeping, never part of a measured operation.
ADMIN_COMMANDS = ("config", "info", "echo", "monitor", "client", "hello", "ping")


def commandstats(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """``INFO commandstats`` as {command: (calls, usec)}; ``config|resetstat`` (Redis 7
    subcommands) reads as ``config``."""
    stats: dict[str, tuple[int, int]] = {}
    for key, value in client.info("commandstats").items():
        name = key.removeprefix("cmdstat_").split("|")[0].lower()
        calls, usec = stats.get(name, (0, 0))
        stats[name] = (calls + int(value["calls"]), usec + int(value["usec"]))
    return stats


@dataclass
class ServerTime:
    usec_per_op: float
    script_calls_per_op: float
    commands: str  #: which commands were counted


def server_time(stats: dict[str, tuple[int, int]], ops: int) -> ServerTime:
    """Redis's time per operation from one phase's commandstats (after CONFIG RESETSTAT).

    When the operations ran scripts, the scripts' time (it includes every command the
    scripts called, which commandstats also lists under their own names); else the time of
    every command but the bench's own."""
    scripts = {k: v for k, v in stats.items() if k in SCRIPT_COMMANDS}
    if scripts:
        counted = scripts
    else:
        counted = {k: v for k, v in stats.items() if k not in ADMIN_COMMANDS}
    usec = sum(u for _, u in counted.values())
    calls = sum(c for c, _ in scripts.values())
    return ServerTime(usec / ops, calls / ops, ", ".join(sorted(counted)) or "none")


def measure_server_time(client: redis.Redis, ops: int, run: Callable[[int], Any]) -> ServerTime:
    """CONFIG RESETSTAT, ``run(i)`` for i in range(ops), then the server time per op."""
    client.config_resetstat()
    for i in range(ops):
        run(i)
    return server_time(commandstats(client), ops)


class RoundTrips:
    """Counts what a client sends: each write to the socket is one round trip (a pipeline
    is one write)."""

    def __init__(self) -> None:
        self.writes = 0


def counting_client(url: str) -> tuple[redis.Redis, RoundTrips]:
    """A client whose connections count their writes."""
    client = redis.Redis.from_url(url)
    counter = RoundTrips()
    pool = client.connection_pool
    base = pool.connection_class

    class Counting(base):  # type: ignore[valid-type,misc]
        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            counter.writes += 1
            super().send_packed_command(command, check_health)

    pool.connection_class = Counting
    client.ping()  # connect now: the handshake is not an operation's
    counter.writes = 0
    return client, counter


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def settle(client: redis.Redis, longest: float = 3.0) -> int:
    """``used_memory`` once it stops moving (Redis rehashes its tables incrementally after
    a bulk load), waiting at most ``longest`` seconds."""
    deadline = time.monotonic() + longest
    last = used_memory(client)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = used_memory(client)
        if now == last:
            return now
        last = now
    return last


# -- charts -------------------------------------------------------------------------------


def bar_chart(name: str, title: str, labels: list[str], values: list[float]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    Paths.charts.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.barh(labels[::-1], values[::-1], color="#4a7ab5")
    ax.set_title(title)
    fig.tight_layout()
    path = Paths.charts / f"{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def line_chart(name: str, title: str, xs: list[int], series: dict[str, list[float]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    Paths.charts.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for label, ys in series.items():
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path = Paths.charts / f"{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} × {cpu}, Python {platform.python_version()}, {platform.system()}"


def stop_all(procs: Any, wait: float = 15.0) -> None:
    """SIGTERM every process, then wait for each (``wait`` s: a service drains first) and
    SIGKILL any still up."""
    embedded.stop_all(procs, wait)
