"""The `powerdns` fixture is a usable peer for the dns_record role and the custom-domain check: what the role will
send (PATCH rrsets with REPLACE/DELETE) takes effect at once in what dnspython resolves through the server, and the
API answers errors the way the reference says (401/404 plain text, 422 JSON)."""

from __future__ import annotations

import secrets
from typing import Any

import dns.resolver
import pytest
import requests

from tests.powerdns import PowerDns, fqdn

pytestmark = pytest.mark.cluster

SITE_IP = "192.0.2.10"
OTHER_IP = "192.0.2.11"


@pytest.fixture
def zone(powerdns: PowerDns) -> str:
    """A new zone for this test only (the server lives for the session): `peer-<random>.test.`"""
    name = fqdn(f"peer-{secrets.token_hex(4)}.test")
    powerdns.create_zone(name)
    return name


def patch(powerdns: PowerDns, zone: str, *rrsets: dict[str, Any], key: str | None = None) -> requests.Response:
    headers = {"X-API-Key": powerdns.api_key if key is None else key}
    return requests.patch(powerdns.zone_url(zone), json={"rrsets": list(rrsets)}, headers=headers, timeout=10)


def replace(name: str, rtype: str, *contents: str, ttl: int = 60) -> dict[str, Any]:
    records = [{"content": content, "disabled": False} for content in contents]
    return {"name": name, "type": rtype, "ttl": ttl, "changetype": "REPLACE", "records": records}


def delete(name: str, rtype: str) -> dict[str, Any]:
    return {"name": name, "type": rtype, "changetype": "DELETE"}


def addresses(resolver: dns.resolver.Resolver, name: str, rtype: str = "A") -> list[str]:
    return sorted(rdata.to_text() for rdata in resolver.resolve(name, rtype))


def test_zone_has_soa_and_ns(powerdns, zone):
    resolver = powerdns.resolver()
    assert addresses(resolver, zone, "NS") == [f"ns1.{zone}"]
    soa = resolver.resolve(zone, "SOA")[0]
    assert (soa.mname.to_text(), soa.rname.to_text(), soa.minimum) == (f"ns1.{zone}", f"hostmaster.{zone}", 60)


def test_replace_resolves_and_is_idempotent(powerdns, zone):
    www = f"www.{zone}"
    assert patch(powerdns, zone, replace(www, "A", SITE_IP)).status_code == 204
    resolver = powerdns.resolver()
    assert addresses(resolver, www) == [SITE_IP]

    serial = requests.get(powerdns.zone_url(zone), headers=powerdns.headers, timeout=10).json()["serial"]
    again = patch(powerdns, zone, replace(www, "A", SITE_IP))
    assert again.status_code == 204
    assert addresses(resolver, www) == [SITE_IP]
    zone_now = requests.get(powerdns.zone_url(zone), headers=powerdns.headers, timeout=10).json()
    assert [rrset["records"] for rrset in zone_now["rrsets"] if rrset["name"] == www] == [
        [{"content": SITE_IP, "disabled": False}]
    ]
    assert zone_now["serial"] >= serial


def test_replace_changes_the_answer_at_once(powerdns, zone):
    """The API purges the packet cache of the zone, so a change is visible on the next query (no cache-ttl wait)."""
    www = f"www.{zone}"
    resolver = powerdns.resolver()
    patch(powerdns, zone, replace(www, "A", SITE_IP, OTHER_IP))
    assert addresses(resolver, www) == [SITE_IP, OTHER_IP]
    patch(powerdns, zone, replace(www, "A", OTHER_IP))
    assert addresses(resolver, www) == [OTHER_IP]


def test_delete_gives_nxdomain_and_is_idempotent(powerdns, zone):
    www = f"www.{zone}"
    patch(powerdns, zone, replace(www, "A", SITE_IP))
    resolver = powerdns.resolver()
    assert addresses(resolver, www) == [SITE_IP]

    assert patch(powerdns, zone, delete(www, "A")).status_code == 204
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve(www, "A")
    assert patch(powerdns, zone, delete(www, "A")).status_code == 204


def test_missing_type_at_existing_name_is_no_answer(powerdns, zone):
    """An A without AAAA: the check "AAAA absent or ours" sees NoAnswer, not NXDOMAIN."""
    www = f"www.{zone}"
    patch(powerdns, zone, replace(www, "A", SITE_IP))
    with pytest.raises(dns.resolver.NoAnswer):
        powerdns.resolver().resolve(www, "AAAA")


def test_cname_in_zone_is_followed(powerdns, zone):
    site, custom = f"site.{zone}", f"shop.{zone}"
    patch(powerdns, zone, replace(site, "A", SITE_IP), replace(custom, "CNAME", site))
    answer = powerdns.resolver().resolve(custom, "A")
    assert answer.canonical_name.to_text() == site
    assert sorted(rdata.to_text() for rdata in answer) == [SITE_IP]
    assert addresses(powerdns.resolver(), custom, "CNAME") == [site]


def test_cname_to_another_served_zone_is_followed(powerdns, zone):
    """A custom domain's zone and the site's zone on one server: PowerDNS adds the target's A from its other zone."""
    other = fqdn(f"peer-{secrets.token_hex(4)}.test")
    powerdns.create_zone(other)
    site, custom = f"site.{other}", f"shop.{zone}"
    patch(powerdns, other, replace(site, "A", SITE_IP))
    patch(powerdns, zone, replace(custom, "CNAME", site))
    answer = powerdns.resolver().resolve(custom, "A")
    assert answer.canonical_name.to_text() == site
    assert sorted(rdata.to_text() for rdata in answer) == [SITE_IP]


def test_cname_out_of_the_server_is_not_chased(powerdns, zone):
    """A target no zone of the server holds: the answer is the CNAME alone and dnspython's stub resolver does not
    chase it (NoAnswer). The custom-domain check must ask a recursive resolver, or read the CNAME itself and compare
    its target with the site's subdomain."""
    custom = f"shop.{zone}"
    patch(powerdns, zone, replace(custom, "CNAME", "site.example.net."))
    resolver = powerdns.resolver()
    assert addresses(resolver, custom, "CNAME") == ["site.example.net."]
    with pytest.raises(dns.resolver.NoAnswer):
        resolver.resolve(custom, "A")


@pytest.mark.parametrize("key", ["", "wrong-key"])
def test_unauthorized_is_plain_text(powerdns, zone, key):
    response = requests.get(powerdns.zone_url(zone), headers={"X-API-Key": key} if key else {}, timeout=10)
    assert response.status_code == 401
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.text == "Unauthorized"


def test_missing_zone_is_plain_text_404(powerdns):
    missing = fqdn(f"missing-{secrets.token_hex(4)}.test")
    for response in (
        requests.get(powerdns.zone_url(missing), headers=powerdns.headers, timeout=10),
        patch(powerdns, missing, replace(f"www.{missing}", "A", SITE_IP)),
    ):
        assert response.status_code == 404
        assert response.headers["Content-Type"].startswith("text/plain")
        assert response.text == "Not Found"


@pytest.mark.parametrize(
    ("rrset", "fragment"),
    [
        (replace("www.{zone}", "A", "192.0.2.300"), "unable to parse IP address"),
        (replace("www.elsewhere.test.", "A", SITE_IP), "out of zone"),
        (replace("www.{zone}", "A", SITE_IP) | {"changetype": "UPSERT"}, "Changetype not understood"),
    ],
    ids=["bad-content", "out-of-zone", "bad-changetype"],
)
def test_unprocessable_is_json(powerdns, zone, rrset, fragment):
    rrset = rrset | {"name": rrset["name"].format(zone=zone)}
    response = patch(powerdns, zone, rrset)
    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/json"
    assert fragment in response.json()["error"]


def test_cname_beside_other_data_is_refused(powerdns, zone):
    """PowerDNS enforces the CNAME rule itself (422), like Cloudflare does with its 81053."""
    www = f"www.{zone}"
    patch(powerdns, zone, replace(www, "A", SITE_IP))
    response = patch(powerdns, zone, replace(www, "CNAME", f"site.{zone}"))
    assert response.status_code == 422
    assert "CNAME" in response.json()["error"]
