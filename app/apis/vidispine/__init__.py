"""The Vidispine deletion lock API (seed 003): ``/API/.../deletion-lock``.

A deletion lock is a lockcore lock of type ``deletion-<entity type>`` (``multi``: many per
entity, each with its own expiry and metadata) on resource ``<entity id>``, all in scope
``vidispine``; its id is ``VX-<lockcore id>``. An entity's *effective* lock is the
unexpired lock with the latest expiry among its own and those it inherits: an item
inherits from every collection and library that contains it (per the catalog).

Bodies are XML (namespace ``http://xml.vidispine.com/schema/vidispine``, parsed with
defusedxml, which refuses DTDs and entities) or JSON, by ``Content-Type``; responses XML by
default, JSON when ``Accept`` asks for it. Credentials: HTTP Basic (user name and API key)
or ``Authorization: token <key>``; roles ``_deletion_lock_read`` for reads and
``_deletion_lock_write`` for changes (write implies read; a sysadmin has both).

The modules: ``envelope`` (XML or JSON answers, the error document), ``documents`` (a
lock's document, request bodies), ``filters`` (the list calls' query, paging),
``entities`` and ``locks`` (lockcore's side, reads and writes), ``credentials``,
``schemas`` (the OpenAPI side), ``views`` (the blueprint and its routes).
"""

from .credentials import READ, SECURITY, WRITE, caller
from .entities import ENTITY_TYPES, ID_PREFIX, SCOPE
from .envelope import NS, envelope, render
from .views import TAG, bp

__all__ = [
    "ENTITY_TYPES",
    "ID_PREFIX",
    "NS",
    "READ",
    "SCOPE",
    "SECURITY",
    "TAG",
    "WRITE",
    "bp",
    "caller",
    "envelope",
    "render",
]
