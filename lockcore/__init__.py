"""lockcore: a Redis-backed distributed lock manager; every change is one Lua script."""

from __future__ import annotations

from .aio import AsyncHeld, AsyncHold, AsyncLockManager
from .connect import Connection, connect
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
from .hold import Held, Hold, LockLost
from .manager import LockManager
from .models import FOREVER, AcquireResult, Lock, LockPage, LockType, Mode
from .scripts import ReplyCode

__all__ = [
    "AsyncHeld",
    "AsyncHold",
    "AsyncLockManager",
    "FOREVER",
    "AcquireResult",
    "Connection",
    "EmbeddedRedis",
    "Held",
    "Hold",
    "InvalidLockRequest",
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
    "UnexpectedReply",
    "WaitCancelled",
    "connect",
]
__version__ = "0.1.0"
