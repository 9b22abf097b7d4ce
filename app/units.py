"""What one API brings to the service, declared in one place.

Each API module ends with an ``ApiUnit``: its blueprint and error envelope, the URL prefix
whose unknown URLs answer in that envelope, its OpenAPI security schemes, its lock types,
its ``LOCKCORE_*`` settings and its part of the catalog. ``create_app`` loops over the
units it is given (``lockcore_service.apis.UNITS`` by default); nothing else lists the
APIs by name, so adding an API is adding one module (``tests/test_units.py`` builds an
app with one more).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask
from marshmallow import Schema, fields

from lockcore import LockType

from .errors import Envelope, register_envelope

if TYPE_CHECKING:
    from .catalog import Catalog

#: A setting: (default, parser of the ``LOCKCORE_<NAME>`` environment variable's text).
Setting = tuple[Any, Callable[[str], Any]]

#: The catalog document's sections as kind -> id -> entity.
Entities = dict[str, dict[str, dict[str, Any]]]


def flag(raw: str) -> bool:
    """A boolean setting: 1, true, yes or on (any case) is true."""
    return raw.strip().lower() in ("1", "true", "yes", "on")


def until_unlocked(name: str, setting: str) -> Callable[[Mapping[str, Any]], list[LockType]]:
    """Lock types of one exclusive type that lasts until unlocked, unless the setting
    ``setting`` gives it a lease in seconds (0: no expiry)."""

    def lock_types(config: Mapping[str, Any]) -> list[LockType]:
        ttl = config[setting]
        return [LockType(name, default_ttl=ttl or None, allow_no_expiry=not ttl)]

    return lock_types


@dataclass(frozen=True)
class CatalogPart:
    """What one API keeps in the catalog (see ``lockcore_service.catalog``).

    ``document``: the catalog document's top-level fields it reads. ``kinds``: the kinds
    of entity an admin edits one by one, kind -> (schema of one entity, its id field).
    ``entities``: the document's sections as kind -> id -> entity, including kinds derived
    from the others: ``derived`` (shown in a dump) and ``indexes`` (lookups only).
    ``on_put`` / ``on_delete``: keep derived kinds in step when one entity changes;
    ``on_put`` returns the entity to store.
    """

    document: Mapping[str, fields.Field[Any]]
    kinds: Mapping[str, tuple[type[Schema], str]]
    entities: Callable[[dict[str, Any]], Entities]
    derived: tuple[str, ...] = ()
    indexes: tuple[str, ...] = ()
    on_put: Callable[[Catalog, str, dict[str, Any]], dict[str, Any]] | None = None
    on_delete: Callable[[Catalog, str, str], None] | None = None


@dataclass(frozen=True)
class ApiUnit:
    """One API family of the service.

    ``name`` names its settings (``<NAME>_DURABLE`` is added to ``settings``: its lock
    types' changes wait for replicas when set). ``prefix``: URLs under it that match no
    route still answer in ``envelope`` (default: the blueprint's ``url_prefix``).
    ``lock_types(config)``: its lock types, given the app's settings (each gets the
    service's ``EVENTS`` setting and its own ``<NAME>_DURABLE``). ``setup(app)`` runs
    once per app, after the settings are loaded (e.g. to read a file they name).
    """

    name: str
    blueprint: Blueprint
    envelope: Envelope
    http_messages: Mapping[int, str] = field(default_factory=dict)
    prefix: str | None = None
    security_schemes: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    settings: Mapping[str, Setting] = field(default_factory=dict)
    lock_types: Callable[[Mapping[str, Any]], list[LockType]] = lambda config: []
    catalog: CatalogPart | None = None
    setup: Callable[[Flask], None] | None = None
    #: whether ``<NAME>_DURABLE`` is one of its settings (not for units with no lock types)
    durable: bool = True

    def __post_init__(self) -> None:
        # Once per blueprint, when the unit is declared: Flask refuses error handlers on a
        # blueprint once an app has registered it, and tests build many apps.
        register_envelope(self.blueprint, self.envelope, dict(self.http_messages))

    @property
    def url_prefix(self) -> str:
        return self.prefix if self.prefix is not None else self.blueprint.url_prefix or ""

    @property
    def durable_setting(self) -> str:
        return f"{self.name.upper()}_DURABLE"

    def all_settings(self) -> dict[str, Setting]:
        extra: dict[str, Setting] = {self.durable_setting: (False, flag)} if self.durable else {}
        return {**extra, **self.settings}


def default_units() -> tuple[ApiUnit, ...]:
    """The service's own endpoints and its four APIs plus ``/v1`` (imported late: the API
    modules import most of the service)."""
    from .apis import UNITS

    return UNITS


class Units:
    """The units one app serves (``app.extensions["lockcore_units"]``)."""

    def __init__(self, units: tuple[ApiUnit, ...]) -> None:
        names = [unit.blueprint.name for unit in units]
        if len(set(names)) != len(names):
            raise ValueError(f"two units share a blueprint name: {names}")
        self.all = units
        #: units with a URL prefix, longest first: the most specific prefix wins
        self.by_prefix = sorted(
            (unit for unit in units if unit.url_prefix), key=lambda u: -len(u.url_prefix)
        )

    def settings(self) -> dict[str, Setting]:
        out: dict[str, Setting] = {}
        for unit in self.all:
            out.update(unit.all_settings())
        return out

    def lock_types(self, config: Mapping[str, Any]) -> list[LockType]:
        """Every unit's lock types, each with the service's ``EVENTS`` setting (a type
        that needs its events, an election's, keeps them) and its unit's
        ``<NAME>_DURABLE``."""
        events = bool(config.get("EVENTS", True))
        return [
            replace(
                lock_type,
                events=events or lock_type.events,
                durable=bool(config.get(unit.durable_setting, False)),
            )
            for unit in self.all
            for lock_type in unit.lock_types(config)
        ]

    def catalog_parts(self) -> list[CatalogPart]:
        return [unit.catalog for unit in self.all if unit.catalog is not None]

    def unit_of(self, path: str) -> ApiUnit | None:
        """The unit whose URL prefix ``path`` is under."""
        for unit in self.by_prefix:
            prefix = unit.url_prefix
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return unit
        return None
