"""Bad input never gets a 500: every operation of the OpenAPI document, fuzzed by
schemathesis through the WSGI app (fakeredis, the demo catalog, sysadmin credentials for
every API so that requests get past authentication)."""

from __future__ import annotations

import fakeredis
import schemathesis
from schemathesis.checks import not_a_server_error

from app import create_app
from app.catalog import DEMO_CATALOG, parse_document

APP = create_app({"REDIS_CLIENT": fakeredis.FakeRedis(server=fakeredis.FakeServer())})
_services = APP.extensions["lockcore"]
_services.catalog.replace(parse_document(DEMO_CATALOG.read_text()), _services.users)

HEADERS = {"SID": "demo-admin-key", "Authorization": "Bearer demo-admin-key",
           "EDX-API-Key": "demo-admin-key", "User-Agent": "EDX-USER"}

schema = schemathesis.openapi.from_wsgi("/openapi.json", APP)
schema.config.generation.update(max_examples=15)


@schema.exclude(path_regex="^/admin/catalog$").parametrize()
def test_no_operation_answers_a_server_error(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=HEADERS, checks=[not_a_server_error])
