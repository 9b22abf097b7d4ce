"""The Vidispine deletion lock API (seed 003), on fakeredis and a real redis-server."""

from __future__ import annotations

import base64
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from .conftest import KEYS

NS = "{http://xml.vidispine.com/schema/vidispine}"
JSON = {"Accept": "application/json"}

SEED_XML = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<DeletionLockDocument xmlns="http://xml.vidispine.com/schema/vidispine">
  <expiryTime>2021-09-12T10:40:14.546+02:00</expiryTime>
  <metadata>
    <field>
      <key>workflow</key>
      <value>production</value>
    </field>
  </metadata>
</DeletionLockDocument>
"""


def basic(user: str, key: str | None = None) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{key or KEYS[user]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


ALICE = basic("alice")  # _deletion_lock_write
BOB = basic("bob")  # _deletion_lock_read


def future(seconds: float = 3600) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat()


def create(
    client: Any,
    path: str = "/API/item/VX-1",
    expiry: str | None = None,
    user: dict[str, str] = ALICE,
    **metadata: str,
) -> dict[str, Any]:
    body: dict[str, Any] = {"expiryTime": expiry or future()}
    if metadata:
        body["metadata"] = {"field": [{"key": k, "value": v} for k, v in metadata.items()]}
    response = client.post(f"{path}/deletion-lock", json=body, headers={**user, **JSON})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()  # type: ignore[no-any-return]


def listed(client: Any, path: str, query: str = "") -> dict[str, Any]:
    response = client.get(f"{path}?{query}", headers={**BOB, **JSON})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()  # type: ignore[no-any-return]


def ids(doc: dict[str, Any]) -> list[str]:
    return [lock["id"] for lock in doc["lock"]]


def assert_invalid(response: Any, context: str) -> None:
    assert response.status_code == 400, response.get_data(as_text=True)
    error = response.get_json()["invalidInput"]
    assert error["context"] == context and context in error["explanation"]


# --- creating, reading, documents --------------------------------------------------------


def test_the_seeds_xml_example_posted_verbatim(client: Any) -> None:
    body = SEED_XML.replace("2021-09-12", str(datetime.now(timezone.utc).year + 1) + "-09-12")
    response = client.post(
        "/API/item/VX-3/deletion-lock", data=body, content_type="application/xml", headers=ALICE
    )
    assert response.status_code == 200
    assert response.mimetype == "application/xml"  # XML by default, as the product
    root = ET.fromstring(response.data)
    assert root.tag == f"{NS}DeletionLockDocument"
    assert root.findtext(f"{NS}id").startswith("VX-")  # type: ignore[union-attr]
    assert root.findtext(f"{NS}user") == "alice"
    assert root.findtext(f"{NS}entityType") == "Item"
    assert root.findtext(f"{NS}entityId") == "VX-3"
    assert root.findtext(f"{NS}expiryTime").endswith("08:40:14.546+00:00")  # type: ignore[union-attr]
    assert root.findtext(f"{NS}isExpired") == "false"
    assert root.findtext(f"{NS}isEffective") == "true"
    field = root.find(f"{NS}metadata/{NS}field")
    assert field is not None and field.findtext(f"{NS}key") == "workflow"
    assert field.findtext(f"{NS}value") == "production"


def test_the_seeds_example_as_is_is_refused_for_its_past_expiry(client: Any) -> None:
    response = client.post(
        "/API/item/VX-3/deletion-lock",
        data=SEED_XML,
        content_type="application/xml",
        headers={**ALICE, **JSON},
    )
    assert_invalid(response, "expiryTime")
    assert "past" in response.get_json()["invalidInput"]["explanation"]


def test_json_documents_have_every_field(client: Any) -> None:
    doc = create(client, workflow="production", group="movie")
    assert set(doc) == {
        "id",
        "user",
        "expiryTime",
        "modified",
        "entityType",
        "entityId",
        "isExpired",
        "isInherited",
        "isEffective",
        "metadata",
    }
    assert doc["metadata"] == {
        "field": [{"key": "group", "value": "movie"}, {"key": "workflow", "value": "production"}]
    }
    assert datetime.fromisoformat(doc["expiryTime"]).utcoffset() == timedelta(0)
    again = client.get(f"/API/deletion-lock/{doc['id']}", headers={**BOB, **JSON}).get_json()
    assert again["id"] == doc["id"] and again["isEffective"] is True


def test_every_entity_type_and_the_storage_file_path(client: Any) -> None:
    for path in (
        "/API/item/VX-2",
        "/API/collection/VX-10",
        "/API/library/VX-20",
        "/API/file/VX-30",
        "/API/storage/VX-5/file/VX-30",
    ):
        doc = create(client, path)
        assert doc["entityId"] == path.rsplit("/", 1)[1]
        assert doc["id"] in ids(listed(client, f"{path}/deletion-lock"))
    assert listed(client, "/API/file/VX-30/deletion-lock")["hits"] == 2


def test_create_through_the_type_and_global_endpoints_names_the_entity(client: Any) -> None:
    body = {"expiryTime": future(), "entityType": "item", "entityId": "VX-2"}
    made = client.post("/API/deletion-lock", json=body, headers={**ALICE, **JSON})
    assert made.status_code == 200 and made.get_json()["entityId"] == "VX-2"
    typed = client.post("/API/item/deletion-lock", json=body, headers={**ALICE, **JSON})
    assert typed.status_code == 200
    assert_invalid(
        client.post("/API/deletion-lock", json={"expiryTime": future()}, headers={**ALICE, **JSON}),
        "entityId",
    )
    assert_invalid(
        client.post("/API/collection/deletion-lock", json=body, headers={**ALICE, **JSON}),
        "entityId",
    )


@pytest.mark.parametrize(
    ("body", "context"),
    [
        ({}, "expiryTime"),
        ({"expiryTime": "tomorrow"}, "expiryTime"),
        ({"expiryTime": 5}, "expiryTime"),
        ({"expiryTime": future(), "metadata": {"field": [{"value": "x"}]}}, "metadata"),
        ({"expiryTime": future(), "metadata": "x"}, "metadata"),
    ],
)
def test_bad_documents_are_400(client: Any, body: dict, context: str) -> None:
    response = client.post("/API/item/VX-1/deletion-lock", json=body, headers={**ALICE, **JSON})
    assert_invalid(response, context)


@pytest.mark.parametrize(
    "body",
    [
        "<DeletionLockDocument",  # not XML
        "<Other xmlns='http://xml.vidispine.com/schema/vidispine'/>",
        """<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>
    <DeletionLockDocument><expiryTime>&lol2;</expiryTime></DeletionLockDocument>""",
        """<?xml version="1.0"?><!DOCTYPE x [<!ENTITY ext SYSTEM "file:///etc/passwd">]>
    <DeletionLockDocument><expiryTime>&ext;</expiryTime></DeletionLockDocument>""",
    ],
)
def test_xml_that_is_malformed_or_declares_entities_is_refused(client: Any, body: str) -> None:
    response = client.post(
        "/API/item/VX-1/deletion-lock",
        data=body,
        content_type="application/xml",
        headers={**ALICE, **JSON},
    )
    assert_invalid(response, "body")


def test_update_and_delete(client: Any) -> None:
    doc = create(client, workflow="a")
    later = future(7200)
    put = client.put(
        f"/API/deletion-lock/{doc['id']}",
        headers={**ALICE, **JSON},
        json={"expiryTime": later, "metadata": {"field": [{"key": "stage", "value": "final"}]}},
    )
    assert put.status_code == 200
    updated = put.get_json()
    assert updated["metadata"] == {"field": [{"key": "stage", "value": "final"}]}
    assert (
        abs(
            datetime.fromisoformat(updated["expiryTime"]).timestamp()
            - datetime.fromisoformat(later).timestamp()
        )
        < 0.01
    )
    path = f"/API/item/VX-1/deletion-lock/{doc['id']}"
    assert (
        client.put(path, json={"expiryTime": future(60)}, headers={**ALICE, **JSON}).status_code
        == 200
    )
    assert client.delete(path, headers=ALICE).status_code == 200
    assert client.get(path, headers=BOB).status_code == 404
    assert client.delete(f"/API/deletion-lock/{doc['id']}", headers=ALICE).status_code == 404


def test_an_entity_path_only_reaches_its_own_locks(client: Any) -> None:
    doc = create(client, "/API/collection/VX-10")
    wrong = f"/API/item/VX-1/deletion-lock/{doc['id']}"
    assert client.get(wrong, headers=BOB).status_code == 404
    assert client.delete(wrong, headers=ALICE).status_code == 404
    assert (
        client.get(f"/API/collection/VX-10/deletion-lock/{doc['id']}", headers=BOB).status_code
        == 200
    )


def test_unknown_entities_and_locks_are_404(client: Any) -> None:
    for method, path in (
        ("GET", "/API/item/VX-404/deletion-lock"),
        ("POST", "/API/item/VX-404/deletion-lock"),
        ("GET", "/API/storage/VX-6/file/VX-30/deletion-lock"),
        ("GET", "/API/deletion-lock/VX-1"),
        ("GET", "/API/deletion-lock/nope"),
        ("GET", "/API/deletion-lock/VX-100000000000000001/metadata"),
    ):
        response = client.open(
            path, method=method, json={"expiryTime": future()}, headers={**ALICE, **JSON}
        )
        assert response.status_code == 404, path
        assert "notFound" in response.get_json()


# --- metadata sub-resources --------------------------------------------------------------


def test_metadata_sub_resources(client: Any) -> None:
    doc = create(client, workflow="production")
    base = f"/API/deletion-lock/{doc['id']}/metadata"
    assert client.get(base, headers={**BOB, **JSON}).get_json() == {
        "field": [{"key": "workflow", "value": "production"}]
    }
    assert client.put(f"{base}/group", data="movie", headers=ALICE).status_code == 200
    assert client.get(f"{base}/group", headers=BOB).get_data(as_text=True) == "movie"
    replaced = client.put(
        base, headers={**ALICE, **JSON}, json={"field": [{"key": "only", "value": "this"}]}
    )
    assert replaced.get_json() == {"field": [{"key": "only", "value": "this"}]}
    assert client.delete(f"{base}/only", headers=ALICE).status_code == 200
    assert client.get(f"{base}/only", headers=BOB).status_code == 404
    entity_base = f"/API/item/VX-1/deletion-lock/{doc['id']}/metadata"
    assert client.get(entity_base, headers={**BOB, **JSON}).get_json() == {"field": []}
    xml = (
        "<MetadataDocument xmlns='http://xml.vidispine.com/schema/vidispine'><field>"
        "<key>k</key><value>v</value></field></MetadataDocument>"
    )
    assert (
        client.put(entity_base, data=xml, content_type="application/xml", headers=ALICE).status_code
        == 200
    )
    got = client.get(f"/API/deletion-lock/{doc['id']}", headers={**BOB, **JSON}).get_json()
    assert got["metadata"] == {"field": [{"key": "k", "value": "v"}]}
    assert got["expiryTime"] == doc["expiryTime"]  # metadata changes keep the expiry


# --- effective locks and inheritance -----------------------------------------------------


def test_the_effective_lock_is_the_latest_expiry_own_or_inherited(client: Any) -> None:
    own = create(client, "/API/item/VX-1", future(100))
    collection = create(client, "/API/collection/VX-10", future(500))
    create(client, "/API/collection/VX-11", future(300))
    library = create(client, "/API/library/VX-20", future(200))
    create(client, "/API/item/VX-2", future(900))  # another item: not inherited
    doc = listed(client, "/API/item/VX-1/deletion-lock")
    assert doc["hits"] == 4
    by_id = {lock["id"]: lock for lock in doc["lock"]}
    assert by_id[own["id"]]["isInherited"] is False
    assert by_id[library["id"]]["isInherited"] is True
    assert [lock["id"] for lock in doc["lock"] if lock["isEffective"]] == [collection["id"]]
    effective = listed(client, "/API/item/VX-1/deletion-lock", "onlyEffective=true")
    assert ids(effective) == [collection["id"]] and effective["lock"][0]["isInherited"]
    assert ids(listed(client, "/API/item/VX-3/deletion-lock", "onlyEffective=true")) == []


def test_the_deletion_check(client: Any) -> None:
    free = client.get("/API/item/VX-1/deletion-lock/check", headers={**BOB, **JSON})
    assert free.status_code == 200 and free.get_json()["deletable"] is True
    inherited = create(client, "/API/collection/VX-11")
    blocked = client.get("/API/item/VX-1/deletion-lock/check", headers={**BOB, **JSON})
    assert blocked.status_code == 409
    assert blocked.get_json()["id"] == inherited["id"]
    assert blocked.get_json()["isInherited"] is True
    assert (
        client.get("/API/item/VX-2/deletion-lock/check", headers=BOB).status_code == 200
    )  # not in VX-11


# --- list filters ------------------------------------------------------------------------


def test_paging_with_first_and_number(client: Any) -> None:
    made = [create(client, expiry=future(100 + n))["id"] for n in range(7)]
    page = listed(client, "/API/item/VX-1/deletion-lock", "first=3&number=2")
    assert page["hits"] == 7 and len(page["lock"]) == 2
    everything = ids(listed(client, "/API/item/VX-1/deletion-lock"))
    assert sorted(everything) == sorted(made)
    assert ids(page) == everything[2:4]
    assert (
        ids(listed(client, "/API/deletion-lock", "first=6&number=100"))
        == ids(listed(client, "/API/deletion-lock"))[5:]
    )
    assert listed(client, "/API/deletion-lock", "number=0") == {"hits": 7, "lock": []}


def test_metadata_filters_must_all_match(client: Any) -> None:
    both = create(client, workflow="production", group="movie")["id"]
    create(client, workflow="production", group="series")
    create(client, workflow="draft", group="movie")
    doc = listed(
        client, "/API/deletion-lock", "metadata=workflow%3Dproduction&metadata=group%3Dmovie"
    )
    assert ids(doc) == [both] and doc["hits"] == 1
    assert (
        listed(client, "/API/item/VX-1/deletion-lock", "metadata=workflow=production")["hits"] == 2
    )


def test_username_filter_takes_a_comma_list(client: Any, app: Any) -> None:
    create(client)
    create(client, user=basic("admin"))
    assert listed(client, "/API/deletion-lock", "username=alice")["hits"] == 1
    assert listed(client, "/API/deletion-lock", "username=alice,admin")["hits"] == 2
    assert listed(client, "/API/deletion-lock", "user=admin")["hits"] == 1  # the seed's alias
    assert listed(client, "/API/deletion-lock", "username=nobody")["hits"] == 0


def instant(seconds_from_now: float) -> str:
    moment = datetime.now(timezone.utc) + timedelta(seconds=seconds_from_now)
    return moment.isoformat(timespec="milliseconds").replace("+", "%2B")


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        ("[{a}..{c}]", ["A", "B", "C"]),
        ("({a}..{c})", ["B"]),
        ("[{a}..{c})", ["A", "B"]),
        ("({a}..{c}]", ["B", "C"]),
        ("(*..{b}]", ["A", "B"]),
        ("[{b}..*)", ["B", "C", "D"]),
        ("(*..*)", ["A", "B", "C", "D"]),
    ],
)
def test_every_range_form(client: Any, interval: str, expected: list[str]) -> None:
    made = {}
    for name, offset in (("A", 1000), ("B", 2000), ("C", 3000), ("D", 4000)):
        doc = create(client, expiry=future(offset))
        made[doc["id"]] = name
    docs = listed(client, "/API/deletion-lock", "number=10")["lock"]
    bounds = {made[d["id"]]: d["expiryTime"].replace("+", "%2B") for d in docs}
    query = "range=" + interval.format(a=bounds["A"], b=bounds["B"], c=bounds["C"])
    got = sorted(made[d["id"]] for d in listed(client, "/API/deletion-lock", query)["lock"])
    assert got == expected
    # the seed's own spelling of the parameter
    alias = "expiry=" + interval.format(a=bounds["A"], b=bounds["B"], c=bounds["C"])
    assert listed(client, "/API/deletion-lock", alias)["hits"] == len(expected)


def test_entity_types_filter(client: Any) -> None:
    item = create(client, "/API/item/VX-1")["id"]
    coll = create(client, "/API/collection/VX-10")["id"]
    lib = create(client, "/API/library/VX-20")["id"]
    assert ids(listed(client, "/API/deletion-lock", "entityTypes=item")) == [item]
    assert sorted(
        ids(listed(client, "/API/deletion-lock", "entityTypes=collection,library"))
    ) == sorted([coll, lib])
    assert listed(client, "/API/deletion-lock", "entityTypes=all")["hits"] == 3
    assert listed(client, "/API/deletion-lock")["hits"] == 3
    assert ids(listed(client, "/API/collection/deletion-lock")) == [coll]


def test_only_effective_in_the_global_listing(client: Any) -> None:
    create(client, "/API/item/VX-1", future(100))
    latest = create(client, "/API/item/VX-1", future(200))["id"]
    other = create(client, "/API/item/VX-2", future(50))["id"]
    doc = listed(client, "/API/deletion-lock", "onlyEffective=true")
    assert sorted(ids(doc)) == sorted([latest, other]) and doc["hits"] == 2


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("onlyEffective=maybe", "onlyEffective"),
        ("first=0", "first"),
        ("first=x", "first"),
        ("number=-1", "number"),
        ("metadata=novalue", "metadata"),
        ("range=[2020-01-01..2021-01-01", "range"),
        ("range=[*..2021-01-01]", "range"),
        ("range=[2021-01-01..soon]", "range"),
        ("range=[2021-01-01T00:00:00 02:00..*)", "range"),
        ("range=[2022-01-01..2021-01-01]", "range"),
        ("entityTypes=planet", "entityTypes"),
    ],
)
def test_malformed_filters_are_400_naming_the_parameter(
    client: Any, query: str, param: str
) -> None:
    response = client.get(f"/API/deletion-lock?{query}", headers={**BOB, **JSON})
    assert_invalid(response, param)


def test_entity_listings_take_no_entity_types(client: Any) -> None:
    response = client.get("/API/item/VX-1/deletion-lock?entityTypes=item", headers={**BOB, **JSON})
    assert_invalid(response, "entityTypes")


# --- expiry ------------------------------------------------------------------------------


def test_an_expired_lock_disappears_everywhere_and_its_storage_is_reclaimed(
    app: Any, client: Any, service_client: Any
) -> None:
    doc = create(client, "/API/collection/VX-10", future(1.5))
    keeper = create(client, "/API/item/VX-2", future(3600))
    raw_id = doc["id"].removeprefix("VX-")
    assert client.get("/API/item/VX-1/deletion-lock/check", headers=BOB).status_code == 409
    # Until the server's clock passes the expiry (polled: a loaded machine may be slow).
    deadline = time.monotonic() + 30
    while client.get(f"/API/deletion-lock/{doc['id']}", headers=BOB).status_code != 404:
        assert time.monotonic() < deadline, "the lock never expired"
        time.sleep(0.05)
    assert listed(client, "/API/item/VX-1/deletion-lock")["hits"] == 0
    assert ids(listed(client, "/API/deletion-lock")) == [keeper["id"]]
    assert client.get("/API/item/VX-1/deletion-lock/check", headers=BOB).status_code == 200
    keys = app.extensions["lockcore"].locks.keys("vidispine")
    token = str(int(raw_id[-14:]))
    # New locks in the scope sweep what expired: every 64th looks at a batch of the scope.
    for _ in range(200):
        if service_client.hget(keys.locks, token) is None:
            break
        create(client, "/API/item/VX-3")
    assert service_client.hget(keys.locks, token) is None
    assert service_client.zscore(keys.base + "X", token) is None
    assert service_client.zrangebylex(keys.multi_index, "-", "+") != []
    assert all(
        not m.decode().endswith(":" + token)
        for m in service_client.zrangebylex(keys.multi_index, "-", "+")
    )


# --- credentials and roles ---------------------------------------------------------------


def test_no_or_bad_credentials_are_401(client: Any) -> None:
    for headers in (
        {},
        basic("alice", "wrong"),
        basic("bob", KEYS["alice"]),
        {"Authorization": "Basic !!!"},
        {"Authorization": "token nope"},
    ):
        response = client.get("/API/deletion-lock", headers={**headers, **JSON})
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_token_auth_works(client: Any) -> None:
    response = client.get("/API/deletion-lock", headers={"Authorization": "token key-bob"})
    assert response.status_code == 200


def test_roles_decide_reads_and_writes(client: Any) -> None:
    assert (
        client.post(
            "/API/item/VX-1/deletion-lock", json={"expiryTime": future()}, headers={**BOB, **JSON}
        ).status_code
        == 403
    )
    assert client.get("/API/deletion-lock", headers=basic("carol")).status_code == 403
    doc = create(client)  # alice: write, which includes read
    assert client.get(f"/API/deletion-lock/{doc['id']}", headers=ALICE).status_code == 200
    assert client.delete(f"/API/deletion-lock/{doc['id']}", headers=BOB).status_code == 403
    assert create(client, user=basic("admin"))["user"] == "admin"  # sysadmin: both


def test_errors_are_xml_by_default(client: Any) -> None:
    response = client.get("/API/item/VX-404/deletion-lock", headers=BOB)
    assert response.status_code == 404 and response.mimetype == "application/xml"
    root = ET.fromstring(response.data)
    assert root.tag == f"{NS}ExceptionDocument"
    assert root.find(f"{NS}notFound/{NS}id").text == "VX-404"  # type: ignore[union-attr]


# --- scale -------------------------------------------------------------------------------


class Spy:
    """Counts the lock store's round trips that list locks (a ``list`` call, or pipelined
    ``list`` scripts of several scopes: the API reads every scope a deletion lock may be
    in at once) and the locks they bring back."""

    def __init__(self, locks: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.fetched = 0
        original, original_many = locks.list, locks._run_many

        def counting(*args: Any, **kwargs: Any) -> Any:
            page = original(*args, **kwargs)
            self.calls += 1
            self.fetched += len(page.locks)
            return page

        def counting_many(calls: Any) -> Any:
            replies = original_many(calls)
            pages = [raw for call, raw in zip(calls, replies, strict=True) if call.script == "list"]
            if pages:
                self.calls += 1
                self.fetched += sum((len(raw) - 4) // 2 for raw in pages)
            return replies

        monkeypatch.setattr(locks, "list", counting)
        monkeypatch.setattr(locks, "_run_many", counting_many)


def commands(service_client: Any) -> int:
    if not hasattr(service_client, "info") or "fake" in type(service_client).__module__:
        return 0
    stats = service_client.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k != "cmdstat_info")


def test_an_entitys_listing_costs_the_same_however_many_locks_are_elsewhere(
    app: Any, client: Any, service_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    locks = app.extensions["lockcore"].locks
    # Every request reads its user, catalog entry and failure count from Redis: what the
    # process remembers expires after AUTH_CACHE_TTL, which filling 1,000 locks may outlast
    # on a loaded machine, and the command counts would then differ for that reason alone.
    app.extensions["lockcore"].users.cache_ttl = 0
    app.extensions["lockcore"].catalog.cache_ttl = 0
    app.extensions["auth_failure_limit"].ttl = 0
    app.extensions["auth_failure_limit"]._clear.clear()
    for n in range(3):
        locks.acquire(
            "vidispine", "deletion-item", "VX-2", "alice", ttl=600, metadata={"n": str(n)}
        )
    listed(client, "/API/item/VX-2/deletion-lock")  # loads the scripts once
    costs = []
    for others in (10, 1000):
        while locks.count("vidispine", multi=True) < others + 3:
            locks.acquire("vidispine", "deletion-item", "VX-3", "alice", ttl=600)
        spy = Spy(locks, monkeypatch)
        before = commands(service_client)
        assert listed(client, "/API/item/VX-2/deletion-lock")["hits"] == 3
        costs.append((spy.calls, spy.fetched, commands(service_client) - before))
        monkeypatch.undo()
    assert costs[0] == costs[1]
    assert costs[0][1] == 3  # only the entity's own locks were read


def test_the_global_listing_pages_without_loading_everything(
    app: Any, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    locks = app.extensions["lockcore"].locks
    for n in range(1200):
        locks.acquire("vidispine", "deletion-item", f"VX-{n % 3 + 1}", "alice", ttl=600)
    spy = Spy(locks, monkeypatch)
    doc = listed(client, "/API/deletion-lock", "first=11&number=5")
    assert doc["hits"] == 1200 and len(doc["lock"]) == 5
    assert spy.calls == 1 and spy.fetched <= 500


def test_admin_edits_of_containers_change_what_items_inherit(client: Any) -> None:
    admin = {"Authorization": f"Bearer {KEYS['admin']}"}
    inherited = create(client, "/API/collection/VX-10")
    assert client.get("/API/item/VX-3/deletion-lock/check", headers=BOB).status_code == 200
    assert (
        client.put(
            "/admin/catalog/collections/VX-10", headers=admin, json={"items": ["VX-3"]}
        ).status_code
        == 200
    )
    assert client.get("/API/item/VX-3/deletion-lock/check", headers=BOB).status_code == 409
    assert client.get("/API/item/VX-2/deletion-lock/check", headers=BOB).status_code == 200
    assert client.delete("/admin/catalog/collections/VX-10", headers=admin).status_code == 204
    assert client.get("/API/item/VX-3/deletion-lock/check", headers=BOB).status_code == 200
    assert inherited["entityId"] == "VX-10"
