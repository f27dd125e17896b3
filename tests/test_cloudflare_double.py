"""The Cloudflare API v4 double (tests/cloudflare) behaves as the dns_record role will meet Cloudflare: each
behaviour checked over real HTTP with requests, from auth and the envelope to the duplicate and CNAME rules."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.cloudflare import ServedCloudflare, Zone

pytestmark = pytest.mark.cluster

SITE_IP = "203.0.113.10"
OTHER_IP = "203.0.113.11"


@pytest.fixture
def api(cloudflare: ServedCloudflare) -> Iterator[requests.Session]:
    """A session that sends the double's token (and ignores proxy settings from the environment)."""
    with requests.Session() as session:
        session.trust_env = False
        session.headers.update(cloudflare.headers)
        yield session


@pytest.fixture
def zone(cloudflare: ServedCloudflare) -> Zone:
    return cloudflare.add_zone("example.com")


def records_url(cloudflare: ServedCloudflare, zone: Zone, record_id: str = "") -> str:
    return f"{cloudflare.url}/zones/{zone.id}/dns_records" + (f"/{record_id}" if record_id else "")


def create(api: requests.Session, cloudflare, zone, **record: Any) -> requests.Response:
    return api.post(records_url(cloudflare, zone), json={"ttl": 1, "proxied": False} | record, timeout=10)


def created(api: requests.Session, cloudflare, zone, **record: Any) -> dict[str, Any]:
    response = create(api, cloudflare, zone, **record)
    assert response.status_code == 200, response.text
    return response.json()["result"]


def listed(api: requests.Session, cloudflare, zone, **params: Any) -> list[dict[str, Any]]:
    response = api.get(records_url(cloudflare, zone), params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["result"]


def error_of(response: requests.Response, status: int) -> dict[str, Any]:
    """The single error of an error answer, after checking the envelope around it."""
    assert response.status_code == status, response.text
    body = response.json()
    assert (body["success"], body["messages"], body["result"], len(body["errors"])) == (False, [], None, 1)
    return body["errors"][0]


# ---------------------------------------------------------------------------------------------------- auth


def test_token_verify(cloudflare, api):
    body = api.get(f"{cloudflare.url}/user/tokens/verify", timeout=10).json()
    assert body["success"] is True
    assert body["result"]["status"] == "active"
    wrong = requests.get(f"{cloudflare.url}/user/tokens/verify", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert error_of(wrong, 401)["code"] == 1000


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 400, 9106),
        ({"Authorization": "Bearer wrong-token-0123456789"}, 403, 10000),
        ({"Authorization": "Token abc"}, 400, 6003),
        ({"X-Auth-Key": "global-key", "X-Auth-Email": "a@example.com"}, 403, 10000),
    ],
    ids=["missing", "wrong-token", "not-bearer", "global-key"],
)
def test_auth_errors_are_in_the_envelope(cloudflare, zone, headers, status, code):
    for response in (
        requests.get(f"{cloudflare.url}/zones", params={"name": "example.com"}, headers=headers, timeout=10),
        requests.post(records_url(cloudflare, zone), json={"type": "A"}, headers=headers, timeout=10),
    ):
        assert error_of(response, status)["code"] == code
    assert cloudflare.state.records == {}


def test_auth_error_message(cloudflare):
    response = requests.get(f"{cloudflare.url}/zones", headers={"Authorization": "Bearer x"}, timeout=10)
    assert error_of(response, 403) == {"code": 10000, "message": "Authentication error"}


# --------------------------------------------------------------------------------------------------- zones


@pytest.mark.parametrize("name", ["example.com", "example.com.", "Example.COM"])
def test_find_zone_by_name(cloudflare, api, zone, name):
    cloudflare.add_zone("example.org")
    body = api.get(f"{cloudflare.url}/zones", params={"name": name}, timeout=10).json()
    assert body["success"] is True
    assert [(found["id"], found["name"], found["status"]) for found in body["result"]] == [
        (zone.id, "example.com", "active")
    ]
    assert body["result_info"] == {"page": 1, "per_page": 20, "count": 1, "total_count": 1, "total_pages": 1}


def test_unknown_zone_name_is_an_empty_list(cloudflare, api, zone):
    body = api.get(f"{cloudflare.url}/zones", params={"name": "example.net"}, timeout=10).json()
    assert (body["success"], body["result"], body["result_info"]["total_count"]) == (True, [], 0)


def test_unknown_zone_id(cloudflare, api):
    response = api.get(f"{cloudflare.url}/zones/{'0' * 32}/dns_records", timeout=10)
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == 7003
    assert api.get(f"{cloudflare.url}/zones/{'0' * 32}", timeout=10).status_code == 400


def test_a_zone_is_a_registered_domain_as_on_ordinary_plans(cloudflare, api):
    with pytest.raises(ValueError, match="providing the root domain and not any subdomains"):
        cloudflare.add_zone("sites.example.net")
    parent = cloudflare.add_zone("example.net")
    assert cloudflare.add_zone("example.co.uk").name == "example.co.uk"  # one label under a public suffix
    assert cloudflare.add_zone("lab.example.org", subdomain_setup=True).name == "lab.example.org"  # Enterprise

    body = api.get(f"{cloudflare.url}/zones", params={"name": "sites.example.net"}, timeout=10).json()
    assert (body["success"], body["result"]) == (True, [])
    # A name under the base zone lives in the registered domain's zone.
    record = created(api, cloudflare, parent, type="A", name="wp1.sites.example.net", content=SITE_IP)
    assert (record["name"], record["zone_name"]) == ("wp1.sites.example.net", "example.net")
    assert [found["id"] for found in listed(api, cloudflare, parent, name="wp1.sites.example.net")] == [record["id"]]


# ------------------------------------------------------------------------------------------------- records


def test_create_returns_the_stored_record(cloudflare, api, zone):
    record = created(api, cloudflare, zone, type="A", name="WWW.example.com.", content=SITE_IP, comment="site 1001")
    assert re.fullmatch(r"[0-9a-f]{32}", record["id"])
    assert {key: record[key] for key in ("zone_id", "zone_name", "name", "type", "content", "ttl", "proxied")} == {
        "zone_id": zone.id,
        "zone_name": "example.com",
        "name": "www.example.com",
        "type": "A",
        "content": SITE_IP,
        "ttl": 1,
        "proxied": False,
    }
    assert (record["proxiable"], record["comment"], record["tags"]) == (True, "site 1001", [])
    assert api.get(records_url(cloudflare, zone, record["id"]), timeout=10).json()["result"] == record


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("@", "example.com"),
        ("shop", "shop.example.com"),
        ("shop.example.com.", "shop.example.com"),
        ("www.other.org", "www.other.org.example.com"),  # not in the zone: taken as relative, as Cloudflare does
        ("*.Shop", "*.shop.example.com"),
    ],
)
def test_names_are_fully_qualified(cloudflare, api, zone, given, stored):
    assert created(api, cloudflare, zone, type="A", name=given, content=SITE_IP)["name"] == stored


def test_defaults_and_proxied_ttl(cloudflare, api, zone):
    response = api.post(records_url(cloudflare, zone), json={"type": "A", "name": "a", "content": SITE_IP}, timeout=10)
    assert (response.json()["result"]["ttl"], response.json()["result"]["proxied"]) == (1, False)
    proxied = created(api, cloudflare, zone, type="A", name="b", content=SITE_IP, ttl=300, proxied=True)
    assert (proxied["ttl"], proxied["proxied"]) == (1, True)
    assert created(api, cloudflare, zone, type="AAAA", name="c", content="2001:DB8:0:0::1", ttl=300)["content"] == (
        "2001:db8::1"
    )


def test_list_filters_are_exact(cloudflare, api, zone):
    www = created(api, cloudflare, zone, type="A", name="www", content=SITE_IP)
    created(api, cloudflare, zone, type="A", name="www2", content=SITE_IP)
    created(api, cloudflare, zone, type="A", name="@", content=SITE_IP)
    created(api, cloudflare, zone, type="TXT", name="www", content="v=spf1 -all")
    for name in ("www.example.com", "www.example.com.", "WWW.Example.Com"):
        assert [record["id"] for record in listed(api, cloudflare, zone, type="A", name=name)] == [www["id"]]
    assert len(listed(api, cloudflare, zone, name="www.example.com")) == 2
    assert listed(api, cloudflare, zone, type="A", name="www") == []  # a filter takes the full name
    assert [record["id"] for record in listed(api, cloudflare, zone, content=SITE_IP, name="www.example.com")] == [
        www["id"]
    ]


def test_round_robin_records_are_allowed(cloudflare, api, zone):
    created(api, cloudflare, zone, type="A", name="www", content=SITE_IP)
    created(api, cloudflare, zone, type="A", name="www", content=OTHER_IP)
    assert sorted(r["content"] for r in listed(api, cloudflare, zone, type="A", name="www.example.com")) == [
        SITE_IP,
        OTHER_IP,
    ]


def test_identical_record_is_81058(cloudflare, api, zone):
    created(api, cloudflare, zone, type="A", name="www", content=SITE_IP, ttl=300)
    error = error_of(create(api, cloudflare, zone, type="A", name="www.example.com", content=SITE_IP, ttl=300), 400)
    assert error == {"code": 81058, "message": "An identical record already exists."}


def test_same_content_other_settings_is_81057(cloudflare, api, zone):
    created(api, cloudflare, zone, type="A", name="www", content=SITE_IP, ttl=300)
    error = error_of(create(api, cloudflare, zone, type="A", name="www", content=SITE_IP, ttl=1), 400)
    assert error == {"code": 81057, "message": "Record already exists."}


@pytest.mark.parametrize(
    ("existing", "new", "code"),
    [
        ("A", "CNAME", 81053),
        ("AAAA", "CNAME", 81053),
        ("CNAME", "CNAME", 81053),
        ("CNAME", "A", 81054),
        ("CNAME", "AAAA", 81054),
    ],
)
def test_cname_beside_addresses_is_refused(cloudflare, api, zone, existing, new, code):
    contents = {"A": SITE_IP, "AAAA": "2001:db8::1", "CNAME": "site.example.net"}
    created(api, cloudflare, zone, type=existing, name="shop", content=contents[existing])
    error = error_of(
        create(api, cloudflare, zone, type=new, name="shop", content=contents[new].replace("site", "x")), 400
    )
    assert error["code"] == code
    assert "record with that host already exists" in error["message"]


def test_cname_beside_txt_is_allowed(cloudflare, api, zone):
    created(api, cloudflare, zone, type="TXT", name="shop", content="verification=1")
    assert created(api, cloudflare, zone, type="CNAME", name="shop", content="Site.Example.net.")["content"] == (
        "site.example.net"
    )


@pytest.mark.parametrize(
    ("record", "status", "code", "chain"),
    [
        ({"type": "A", "content": "not-an-ip"}, 400, 1004, 9005),
        ({"type": "A", "content": "2001:db8::1"}, 400, 1004, 9005),
        ({"type": "A", "content": "192.0.2.300"}, 400, 1004, 9005),
        ({"type": "AAAA", "content": SITE_IP}, 400, 1004, 9006),
        ({"type": "CNAME", "content": "not a host"}, 400, 1004, 9007),
        ({"type": "A", "content": SITE_IP, "ttl": 30}, 400, 1004, 9021),
        ({"type": "A", "content": SITE_IP, "name": ""}, 400, 1004, 9000),
        ({"type": "SPF", "content": "v=spf1"}, 400, 1004, 9020),
        ({"type": "TXT", "content": "x", "proxied": True}, 400, 9004, None),
    ],
    ids=["a-text", "a-v6", "a-range", "aaaa-v4", "cname", "ttl", "name", "type", "proxied-txt"],
)
def test_validation_errors(cloudflare, api, zone, record, status, code, chain):
    error = error_of(create(api, cloudflare, zone, **({"name": "www"} | record)), status)
    assert error["code"] == code
    if chain is not None:
        assert error["message"] == "DNS Validation Error"
        assert [link["code"] for link in error["error_chain"]] == [chain]
    assert cloudflare.state.records == {}


def test_patch_changes_only_what_it_names(cloudflare, api, zone):
    record = created(api, cloudflare, zone, type="A", name="www", content=SITE_IP, ttl=300, comment="keep")
    response = api.patch(records_url(cloudflare, zone, record["id"]), json={"content": OTHER_IP}, timeout=10)
    assert response.status_code == 200, response.text
    patched = response.json()["result"]
    assert (patched["id"], patched["content"], patched["ttl"], patched["comment"]) == (
        record["id"],
        OTHER_IP,
        300,
        "keep",
    )
    assert patched["modified_on"] > record["modified_on"]
    assert patched["created_on"] == record["created_on"]


def test_put_replaces_the_whole_record(cloudflare, api, zone):
    record = created(api, cloudflare, zone, type="A", name="www", content=SITE_IP, ttl=300, comment="gone")
    body = {"type": "A", "name": "www.example.com", "content": OTHER_IP}
    result = api.put(records_url(cloudflare, zone, record["id"]), json=body, timeout=10).json()["result"]
    assert (result["content"], result["ttl"], result["comment"], result["proxied"]) == (OTHER_IP, 1, None, False)
    incomplete = api.put(records_url(cloudflare, zone, record["id"]), json={"content": SITE_IP}, timeout=10)
    assert error_of(incomplete, 400)["code"] == 1004


def test_update_onto_an_identical_record_is_refused(cloudflare, api, zone):
    created(api, cloudflare, zone, type="A", name="www", content=SITE_IP)
    other = created(api, cloudflare, zone, type="A", name="www", content=OTHER_IP)
    response = api.patch(records_url(cloudflare, zone, other["id"]), json={"content": SITE_IP}, timeout=10)
    assert error_of(response, 400)["code"] == 81058
    same = api.patch(records_url(cloudflare, zone, other["id"]), json={"content": OTHER_IP}, timeout=10)
    assert same.status_code == 200  # a record is not a duplicate of itself


def test_delete_answers_the_id(cloudflare, api, zone):
    record = created(api, cloudflare, zone, type="A", name="www", content=SITE_IP)
    response = api.delete(records_url(cloudflare, zone, record["id"]), timeout=10)
    assert response.status_code == 200
    assert response.json() == {"success": True, "errors": [], "messages": [], "result": {"id": record["id"]}}
    assert listed(api, cloudflare, zone, type="A", name="www.example.com") == []


@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
def test_missing_record_is_81044(cloudflare, api, zone, method):
    body = {"type": "A", "name": "www", "content": SITE_IP}
    response = api.request(method, records_url(cloudflare, zone, "f" * 32), json=body, timeout=10)
    assert error_of(response, 404) == {"code": 81044, "message": "Record does not exist."}


def test_record_of_another_zone_is_missing(cloudflare, api, zone):
    other = cloudflare.add_zone("example.org")
    record = created(api, cloudflare, other, type="A", name="www", content=SITE_IP)
    assert error_of(api.delete(records_url(cloudflare, zone, record["id"]), timeout=10), 404)["code"] == 81044


def test_pagination(cloudflare, api, zone):
    for host in range(7):
        created(api, cloudflare, zone, type="A", name="www", content=f"203.0.113.{host + 1}")
    pages = [
        api.get(records_url(cloudflare, zone), params={"type": "A", "per_page": 5, "page": page}, timeout=10).json()
        for page in (1, 2, 3)
    ]
    assert [len(page["result"]) for page in pages] == [5, 2, 0]
    assert pages[1]["result_info"] == {"page": 2, "per_page": 5, "count": 2, "total_count": 7, "total_pages": 2}
    contents = {record["content"] for page in pages for record in page["result"]}
    assert len(contents) == 7
    default = api.get(records_url(cloudflare, zone), timeout=10).json()["result_info"]
    assert (default["per_page"], default["count"], default["total_pages"]) == (100, 7, 1)


def test_calls_are_recorded(cloudflare, api, zone):
    listed(api, cloudflare, zone, type="A", name="www.example.com")
    created(api, cloudflare, zone, type="A", name="www", content=SITE_IP)
    calls = [(call.method, call.path) for call in cloudflare.state.calls]
    assert calls == [("GET", f"/zones/{zone.id}/dns_records"), ("POST", f"/zones/{zone.id}/dns_records")]
    assert cloudflare.state.calls[0].query == {"type": "A", "name": "www.example.com"}
    assert cloudflare.state.calls[1].body["content"] == SITE_IP


def test_unknown_route_method_and_body(cloudflare, api, zone):
    assert error_of(api.get(f"{cloudflare.url}/nothing-here", timeout=10), 400)["code"] == 7000
    assert error_of(api.delete(records_url(cloudflare, zone), timeout=10), 405)["code"] == 10000
    malformed = api.post(records_url(cloudflare, zone), data="{not json", timeout=10)
    assert error_of(malformed, 400)["code"] == 6007
