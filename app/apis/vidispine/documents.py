"""Vidispine's documents: a lock as a ``DeletionLockDocument`` (``document``), and the
request bodies read into values, XML (parsed with defusedxml, which refuses DTDs and
entities) or JSON by ``Content-Type``, within the service's limits or a 400."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from flask import request

from lockcore import Lock

from ...limits import check_metadata, check_name, request_json
from .entities import ID_PREFIX
from .envelope import NS, invalid


def iso(seconds: float) -> str:
    # Any stored instant reads back, even one past what a datetime holds (written before
    # parse_instant refused those, or by another client of the store): it shows as the
    # last representable moment rather than failing every answer that includes it.
    try:
        moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        moment = (
            datetime.max.replace(tzinfo=timezone.utc)
            if seconds > 0
            else datetime.min.replace(tzinfo=timezone.utc)
        )
    return moment.isoformat(timespec="milliseconds")


def parse_instant(text: str, context: str) -> float:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise invalid(
            context,
            f"{context}: '{text}' is not an ISO 8601 date and time "
            "(write '+' in an offset as %2B in a URL)",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        moment.astimezone(timezone.utc)
    except OverflowError:
        raise invalid(
            context, f"{context}: '{text}' is outside the years 1 to 9999 (UTC)"
        ) from None
    return moment.timestamp()


def document(lock: Lock, *, inherited: bool = False, effective: bool = False) -> dict[str, Any]:
    etype = lock.type.removeprefix("deletion-")
    return {
        "id": ID_PREFIX + lock.id,
        "user": lock.owner,
        "expiryTime": iso(lock.expires_at or 0),
        "modified": iso(lock.updated_at or lock.acquired_at),
        "entityType": etype.capitalize(),
        "entityId": lock.resource,
        "isExpired": False,  # expired locks are gone from every answer
        "isInherited": inherited,
        "isEffective": effective,
        "metadata": {"field": [{"key": k, "value": v} for k, v in sorted(lock.metadata.items())]},
    }


@dataclass
class Body:
    expiry: float | None = None
    metadata: dict[str, str] | None = None
    entity_type: str | None = None
    entity_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _xml_fields(element: Any) -> dict[str, str]:
    out = {}
    for f in element.findall(f"{{{NS}}}field") + element.findall("field"):
        key = f.findtext(f"{{{NS}}}key") or f.findtext("key")
        value = f.findtext(f"{{{NS}}}value") or f.findtext("value") or ""
        if not key:
            raise invalid("metadata", "metadata: every field needs a key")
        out[key] = value
    return bounded(out)


def bounded(metadata: dict[str, str]) -> dict[str, str]:
    """Metadata within the service's limits (entries, size, valid text), or 400."""
    problem = check_metadata(metadata)
    if problem:
        raise invalid("metadata", problem)
    return metadata


def _json_fields(value: Any) -> dict[str, str]:
    items = value.get("field", []) if isinstance(value, dict) else None
    if not isinstance(items, list):
        raise invalid("metadata", 'metadata: expected {"field": [{"key", "value"}]}')
    out = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not item["key"]:
            raise invalid("metadata", "metadata: every field needs a string key")
        out[item["key"]] = "" if item.get("value") is None else str(item["value"])
    return bounded(out)


def is_xml() -> bool:
    return request.mimetype in ("application/xml", "text/xml")


def parse_xml(root_name: str) -> Any:
    try:
        root = SafeET.fromstring(request.get_data(), forbid_dtd=True)
    except (ET.ParseError, DefusedXmlException) as exc:
        raise invalid(
            "body", f"body: not acceptable XML ({exc.__class__.__name__}: {exc})"
        ) from None
    except (ValueError, LookupError) as exc:
        # expat reads single-byte encodings only: UTF-7, Shift JIS, EUC-JP or an unknown
        # name in the declaration are refused here.
        raise invalid(
            "body",
            f"body: the XML declares an encoding this service does not read ({exc}); send UTF-8",
        ) from None
    if root.tag not in (f"{{{NS}}}{root_name}", root_name):
        raise invalid("body", f"body: expected a {root_name}")
    return root


def parse_json() -> Any:
    try:
        data = request_json()
    except ValueError as exc:
        raise invalid("body", f"body: not acceptable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise invalid(
            "body", "body: expected a JSON object (or XML with Content-Type application/xml)"
        )
    return data


def lock_body(require_expiry: bool) -> Body:
    """A DeletionLockDocument from the request, XML or JSON."""
    body = Body()
    if is_xml():
        root = parse_xml("DeletionLockDocument")

        def text(name: str) -> str | None:
            found: str | None = root.findtext(f"{{{NS}}}{name}")
            return found if found is not None else root.findtext(name)

        expiry, body.entity_type, body.entity_id = (
            text("expiryTime"),
            text("entityType"),
            text("entityId"),
        )
        meta = root.find(f"{{{NS}}}metadata")
        meta = meta if meta is not None else root.find("metadata")
        body.metadata = _xml_fields(meta) if meta is not None else None
    else:
        data = parse_json()
        expiry, body.entity_type, body.entity_id = (
            data.get("expiryTime"),
            data.get("entityType"),
            data.get("entityId"),
        )
        if expiry is not None and not isinstance(expiry, str):
            raise invalid("expiryTime", "expiryTime: expected an ISO 8601 string")
        for name in ("entityType", "entityId"):
            if data.get(name) is not None and not isinstance(data[name], str):
                raise invalid(name, f"{name}: expected a string")
        body.metadata = _json_fields(data["metadata"]) if "metadata" in data else None
    if body.entity_id:
        problem = check_name(body.entity_id, "entityId")
        if problem:
            raise invalid("entityId", problem)
    if expiry:
        body.expiry = parse_instant(expiry, "expiryTime")
    elif require_expiry:
        raise invalid("expiryTime", "expiryTime is required: every deletion lock expires")
    return body


def metadata_body() -> dict[str, str]:
    if is_xml():
        root = parse_xml("MetadataDocument")
        return _xml_fields(root)
    return _json_fields(parse_json())
