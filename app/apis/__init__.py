"""One module per lock API; each translates its documented shapes to lockcore and ends
with its ``UNIT`` (``lockcore_service.units.ApiUnit``). ``UNITS``: the APIs ``create_app`` serves by
default, and the only list of them."""

from __future__ import annotations

from . import docspace, edx, native, versal, vidispine

UNITS = (versal.UNIT, edx.UNIT, docspace.UNIT, vidispine.UNIT, native.UNIT)
