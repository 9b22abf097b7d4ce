"""Locks' events as JSON, one shape for every reader (``lockcore locks watch --json``, the
console's live feed): numbers as numbers, times in seconds to the ms, and ``time``, the
change's instant in ISO-8601 UTC."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from lockcore.keys import event_from_entry


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def iso(seconds: float) -> str:
    """An instant as ISO-8601 UTC, to the millisecond."""
    stamp = datetime.fromtimestamp(seconds, timezone.utc)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_json(stream: str, entry_id: Any, fields: dict[Any, Any]) -> dict[str, Any]:
    """The entry ``entry_id`` of the event stream ``stream`` as an event (see
    docs/redis-layout.md, Events)."""
    raw = event_from_entry(stream, text(entry_id), {text(k): text(v) for k, v in fields.items()})
    event: dict[str, Any] = dict(raw)
    at = int(raw.get("at", "0")) / 1000
    event["at"] = at
    event["time"] = iso(at)
    if raw.get("token", "").isdigit():
        event["token"] = int(raw["token"])
    if "expires_at" in raw:
        expires = int(raw["expires_at"] or 0)
        event["expires_at"] = expires / 1000 if expires else None
    return event
