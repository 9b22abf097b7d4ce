"""The list calls' query (``onlyEffective``, ``first``, ``number``, ``metadata``,
``username``, ``range``, ``entityTypes``) read into ``Filters``, and the paged
``DeletionLockListDocument`` answered through them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from flask import Response, request

from lockcore import Lock

from .documents import document, parse_instant
from .entities import ENTITY_TYPES
from .envelope import invalid, render


@dataclass
class Filters:
    only_effective: bool = False
    first: int = 1
    number: int = 100
    metadata: list[tuple[str, str]] = field(default_factory=list)
    users: set[str] | None = None
    low: float | None = None
    low_open: bool = False
    high: float | None = None
    high_open: bool = False
    types: tuple[str, ...] = ENTITY_TYPES

    @property
    def narrowing(self) -> bool:
        """Whether anything but paging and entity types filters the locks."""
        return bool(
            self.only_effective
            or self.metadata
            or self.users is not None
            or self.low is not None
            or self.high is not None
        )

    def accepts(self, lock: Lock) -> bool:
        if self.users is not None and lock.owner not in self.users:
            return False
        if any(lock.metadata.get(k) != v for k, v in self.metadata):
            return False
        expiry = lock.expires_at or 0.0
        if self.low is not None and (expiry < self.low or (self.low_open and expiry == self.low)):
            return False
        return not (
            self.high is not None
            and (expiry > self.high or (self.high_open and expiry == self.high))
        )


RANGE = re.compile(r"^([\[(])(.+?)\.\.(.+?)([\])])$")


def _boolean(name: str, value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise invalid(name, f"{name}: expected true or false, got '{value}'")
    return value.lower() == "true"


def _integer(name: str, value: str, minimum: int) -> int:
    if not re.fullmatch(r"\d+", value.strip()) or int(value) < minimum:
        raise invalid(name, f"{name}: expected an integer >= {minimum}, got '{value}'")
    return int(value)


def filters(allow_types: bool) -> Filters:
    args = request.args
    f = Filters()
    if "onlyEffective" in args:
        f.only_effective = _boolean("onlyEffective", args["onlyEffective"])
    if "first" in args:
        f.first = _integer("first", args["first"], 1)
    if "number" in args:
        f.number = _integer("number", args["number"], 0)
    for raw in args.getlist("metadata"):
        key, sep, value = raw.partition("=")
        if not sep or not key:
            raise invalid("metadata", f"metadata: expected key=value, got '{raw}'")
        f.metadata.append((key, value))
    names = args.get("username", args.get("user"))  # the seed's example says user=
    if names is not None:
        f.users = {n.strip() for n in names.split(",") if n.strip()}
    interval = args.get("range", args.get("expiry"))  # the seed's example says expiry=
    if interval is not None:
        _parse_range(f, interval)
    if "entityTypes" in args:
        if not allow_types:
            raise invalid("entityTypes", "entityTypes: only for GET /API/deletion-lock")
        wanted = [t.strip().lower() for t in args["entityTypes"].split(",") if t.strip()]
        unknown = [t for t in wanted if t not in (*ENTITY_TYPES, "all")]
        if unknown or not wanted:
            raise invalid(
                "entityTypes",
                f"entityTypes: unknown {', '.join(unknown) or '(none)'}"
                f"; valid: {', '.join(ENTITY_TYPES)}, all",
            )
        f.types = ENTITY_TYPES if "all" in wanted else tuple(t for t in ENTITY_TYPES if t in wanted)
    return f


def _parse_range(f: Filters, interval: str) -> None:
    match = RANGE.match(interval.strip())
    if not match:
        raise invalid(
            "range",
            f"range: '{interval}' is not one of [a..b] (a..b) [a..b) (a..b] (*..b] [a..*) (*..*)",
        )
    opening, low, high, closing = match.groups()
    if (low == "*" and opening != "(") or (high == "*" and closing != ")"):
        raise invalid("range", f"range: '{interval}': an open end '*' takes a round bracket")
    if low != "*":
        f.low, f.low_open = parse_instant(low, "range"), opening == "("
    if high != "*":
        f.high, f.high_open = parse_instant(high, "range"), closing == ")"
    if f.low is not None and f.high is not None and f.low > f.high:
        raise invalid("range", f"range: '{interval}' starts after it ends")


def listing(
    entries: Iterator[tuple[Lock, bool, bool]], f: Filters, total: int | None = None
) -> Response:
    """Page (first, number) over filtered entries, counting every hit."""
    page, hits = [], 0
    for lock, inherited, effective in entries:
        if (f.only_effective and not effective) or not f.accepts(lock):
            continue
        hits += 1
        if f.first <= hits < f.first + f.number:
            page.append(document(lock, inherited=inherited, effective=effective))
        elif total is not None and hits >= f.first + f.number:
            hits = total  # nothing narrows the listing: the count is known
            break
    return render("DeletionLockListDocument", {"hits": hits, "lock": page})
