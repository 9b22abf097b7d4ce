"""lockcore: a Redis-backed distributed lock manager; every change is one Lua script."""

from __future__ import annotations

from importlib import metadata as _metadata

from .aio import AsyncHeld, AsyncHold, AsyncLockManager
from .connect import DEFAULT_DATA_DIR, Connection, connect
from .election import LEADER, AsyncElection, Election
from .embedded import EmbeddedRedis
from .exceptions import (
    InvalidLockRequest,
    LockConflict,
    LockError,
    LockNotDurable,
    LockNotFound,
    LockNotOwned,
    UnexpectedReply,
    WaitCancelled,
)
from .hold import Held, Hold, HoldAll, LockLost
from .manager import DEFAULT_PREFIX, LockManager
from .models import FOREVER, AcquireResult, Lock, LockPage, LockType, Mode, ScopeStats
from .scripts import ReplyCode

__all__ = [
    "AsyncElection",
    "AsyncHeld",
    "AsyncHold",
    "AsyncLockManager",
    "DEFAULT_DATA_DIR",
    "DEFAULT_PREFIX",
    "FOREVER",
    "AcquireResult",
    "Connection",
    "Election",
    "EmbeddedRedis",
    "Held",
    "Hold",
    "HoldAll",
    "InvalidLockRequest",
    "LEADER",
    "Lock",
    "LockConflict",
    "LockError",
    "LockLost",
    "LockManager",
    "LockNotDurable",
    "LockNotFound",
    "LockNotOwned",
    "LockPage",
    "LockType",
    "Mode",
    "ReplyCode",
    "ScopeStats",
    "UnexpectedReply",
    "WaitCancelled",
    "connect",
]

try:  # one version, pyproject.toml's, as installed
    __version__ = _metadata.version("lockcore")
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
