"""What the API tests publish in the session's PowerDNS (a pytest plugin): setdomain checks a domain's DNS, and every
API test's configuration (the `env` fixture) asks only this server, so no test ever queries the system's resolver.

- `dns_resolvers` (session): publishes DOMAIN_ZONES once and gives the PROXMOXWP_DNS_RESOLVERS value.
- `dns_records` (per test): a zone of the test's own where it publishes A, AAAA and CNAME records (DnsRecords).

A name no zone of the server holds gets REFUSED, which the API answers as `503 dns_unavailable`.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import pytest

from tests.powerdns import PowerDns, PowerDnsError, fqdn

SITE_IP = "203.0.113.10"  # the public_ip the API tests create their sites with

# Zones whose apex and every name below (a wildcard) point to SITE_IP: the domains the API tests attach.
DOMAIN_ZONES = (
    "example.com",
    "example.org",
    "xn--bcher-kva.example",
    "1.2.3.example",
    "xn--r8jz45g.jp",
    "notsites.example.net",
    "sites.example.network",
    "a" * 63 + ".com",
)


def ensure_zone(powerdns: PowerDns, name: str) -> None:
    """Create the zone unless it exists: zones live for the session and another test may have made it."""
    with powerdns.session() as session:
        if session.get(powerdns.zone_url(name), timeout=10).status_code == 200:
            return
    try:
        powerdns.create_zone(name)
    except PowerDnsError:
        with powerdns.session() as session:
            if session.get(powerdns.zone_url(name), timeout=10).status_code != 200:
                raise


def patch(powerdns: PowerDns, zone: str, rrsets: list[dict[str, Any]]) -> None:
    with powerdns.session() as session:
        response = session.patch(powerdns.zone_url(zone), json={"rrsets": rrsets}, timeout=10)
    if response.status_code != 204:
        raise PowerDnsError(f"publishing in {zone}: HTTP {response.status_code} {response.text}")


def rrset(name: str, rtype: str, contents: Sequence[str], ttl: int = 60) -> dict[str, Any]:
    """REPLACE the name's records of that type with `contents`, or DELETE them when there are none."""
    if not contents:
        return {"name": fqdn(name), "type": rtype, "changetype": "DELETE"}
    records = [{"content": content, "disabled": False} for content in contents]
    return {"name": fqdn(name), "type": rtype, "ttl": ttl, "changetype": "REPLACE", "records": records}


class DnsRecords:
    """A zone `dv-<random>.test` of one test; `publish` sets what a name under it resolves to."""

    def __init__(self, powerdns: PowerDns) -> None:
        self.powerdns = powerdns
        self.zone = f"dv-{secrets.token_hex(4)}.test"
        powerdns.create_zone(self.zone)

    def name(self, label: str) -> str:
        return f"{label}.{self.zone}"

    def publish(self, name: str, *, a: Sequence[str] = (), aaaa: Sequence[str] = (), cname: str | None = None) -> str:
        """Make `name` have exactly these records (the types not given are removed); returns the name."""
        wanted = {"A": list(a), "AAAA": list(aaaa), "CNAME": [fqdn(cname)] if cname else []}
        # removals first, in their own request: PowerDNS refuses a CNAME beside other data at the name
        removals = [rrset(name, rtype, []) for rtype, contents in wanted.items() if not contents]
        additions = [rrset(name, rtype, contents) for rtype, contents in wanted.items() if contents]
        for rrsets in (removals, additions):
            if rrsets:
                patch(self.powerdns, self.zone, rrsets)
        return name


@pytest.fixture(scope="session")
def dns_resolvers(powerdns: PowerDns) -> str:
    for zone in DOMAIN_ZONES:
        ensure_zone(powerdns, zone)
        patch(powerdns, zone, [rrset(zone, "A", [SITE_IP]), rrset(f"*.{zone}", "A", [SITE_IP])])
    host, port = powerdns.dns_address
    return f"{host}:{port}"


@pytest.fixture
def dns_records(powerdns: PowerDns) -> DnsRecords:
    return DnsRecords(powerdns)
