"""lockcore: a Redis-backed distributed lock manager; every change is one Lua script."""

from __future__ import annotations

from .embedded import EmbeddedRedis
from .exceptions import (
    InvalidLockRequest,
    LockConflict,
    LockError,
    LockNotFound,
    LockNotOwned,
    UnexpectedReply,
)
from .manager import LockManager
from .models import FOREVER, AcquireResult, Lock, LockPage, LockType, Mode
from .scripts import ReplyCode

__all__ = [
    "FOREVER",
    "AcquireResult",
    "EmbeddedRedis",
    "InvalidLockRequest",
    "Lock",
    "LockConflict",
    "LockError",
    "LockManager",
    "LockNotFound",
    "LockNotOwned",
    "LockPage",
    "LockType",
    "Mode",
    "ReplyCode",
    "UnexpectedReply",
]
__version__ = "0.1.0"
