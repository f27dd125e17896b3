"""The role dns_record (module proxmoxwp.hosting.proxmoxwp_dns_record) against a real PowerDNS Authoritative server
and the Cloudflare double: records appear, change and disappear as the flows say, a second run changes nothing, and
dnspython resolves what the role wrote."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dns.resolver
import pytest
import requests
from role_runs import run_role
from sites import load_client_module

pytestmark = pytest.mark.cluster

WRITES = {"POST", "PATCH", "PUT", "DELETE"}


def play(tmp_path: Path, operation: str, check: bool = False, verbosity: int = 0, **variables):
    run = run_role(tmp_path, "dns_record", operation, check=check, verbosity=verbosity, **variables)
    return run, run.changed


@pytest.fixture
def pdns_site(powerdns, tmp_path):
    zone = f"z{secrets.token_hex(4)}.proxmoxwp.test"
    powerdns.create_zone(zone)
    dns_settings = {
        "provider": "powerdns",
        "powerdns": {"api_url": powerdns.api_url.split("/api/")[0], "api_key": powerdns.api_key},
        "ttl": 60,
    }
    return {"proxmoxwp_dns": dns_settings, "proxmoxwp_base_zone": zone, "dns_record_name": f"s42.{zone}"}


def answers(powerdns, name: str, record_type: str) -> list[str]:
    try:
        return sorted(r.to_text() for r in powerdns.resolver().resolve(name, record_type))
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []


def test_powerdns_records_appear_change_and_disappear(powerdns, pdns_site, tmp_path):
    name = pdns_site["dns_record_name"]
    first, changed = play(tmp_path, "present", dns_record_addresses=["203.0.113.10"], **pdns_site)
    assert first.returncode == 0, first.stdout[-2000:]
    assert changed == 1  # one looped task: the A set made, the AAAA set already absent
    assert answers(powerdns, name, "A") == ["203.0.113.10"]

    again, changed = play(tmp_path, "present", dns_record_addresses=["203.0.113.10"], **pdns_site)
    assert again.returncode == 0 and changed == 0

    moved, changed = play(tmp_path, "present", dns_record_addresses=["203.0.113.20", "2001:db8::1"], **pdns_site)
    assert moved.returncode == 0 and changed == 1
    assert answers(powerdns, name, "A") == ["203.0.113.20"]
    assert answers(powerdns, name, "AAAA") == ["2001:db8::1"]

    removed, changed = play(tmp_path, "absent", **pdns_site)
    assert removed.returncode == 0 and changed == 1
    assert answers(powerdns, name, "A") == [] and answers(powerdns, name, "AAAA") == []

    gone, changed = play(tmp_path, "absent", **pdns_site)
    assert gone.returncode == 0 and changed == 0


def test_check_mode_changes_nothing(powerdns, pdns_site, tmp_path):
    run, changed = play(tmp_path, "present", check=True, dns_record_addresses=["203.0.113.10"], **pdns_site)
    assert run.returncode == 0 and changed > 0
    assert answers(powerdns, pdns_site["dns_record_name"], "A") == []


def test_records_written_at_once_by_several_sites_all_land(powerdns, pdns_site):
    """Real PowerDNS on gsqlite3 answers 500 "database is locked" to one of two writes that meet: the client sends
    the PATCH again (REPLACE is idempotent), so sites created side by side all get their records."""
    dns = load_client_module("proxmoxwp_dns")
    zone = pdns_site["proxmoxwp_base_zone"]
    writers, sites = 8, 64

    def publish(n: int) -> str:
        client = dns.PowerDns(powerdns.api_url.split("/api/")[0], powerdns.api_key)
        client.replace(client.zone(zone), dns.record_set(f"w{n}.{zone}", "A", 60, [f"203.0.113.{n}"]))
        return f"w{n}.{zone}"

    with ThreadPoolExecutor(writers) as pool:
        names = list(pool.map(publish, range(1, sites + 1)))
    assert [answers(powerdns, name, "A") for name in names] == [[f"203.0.113.{n}"] for n in range(1, sites + 1)]


def test_a_wrong_api_key_fails_with_the_servers_reason_and_no_secret(powerdns, pdns_site, tmp_path):
    pdns_site["proxmoxwp_dns"]["powerdns"]["api_key"] = "wrong-key-0123456789"
    run, _ = play(tmp_path, "present", verbosity=3, dns_record_addresses=["203.0.113.10"], **pdns_site)
    assert run.returncode != 0
    assert "HTTP 401" in run.stdout
    assert "wrong-key-0123456789" not in run.stdout + run.stderr


def test_powerdns_records_of_a_base_zone_inside_the_zone_go_into_the_zone(powerdns, pdns_site, tmp_path):
    zone = pdns_site["proxmoxwp_base_zone"]
    site = {**pdns_site, "proxmoxwp_base_zone": f"sites.{zone}", "dns_record_name": f"s43.sites.{zone}"}

    refused, _ = play(tmp_path, "present", dns_record_addresses=["203.0.113.10"], **site)
    assert refused.returncode != 0  # the zone defaults to the base zone, which PowerDNS does not have
    assert f"has no zone sites.{zone}. Is it {zone} or proxmoxwp.test? Set the zone" in refused.stdout

    site["proxmoxwp_dns"] = {**site["proxmoxwp_dns"], "zone": zone}
    made, changed = play(tmp_path, "present", dns_record_addresses=["203.0.113.10"], **site)
    assert made.returncode == 0 and changed == 1, made.stdout[-2000:]
    assert answers(powerdns, f"s43.sites.{zone}", "A") == ["203.0.113.10"]
    with powerdns.session() as session:
        rrsets = session.get(powerdns.zone_url(zone), timeout=10).json()["rrsets"]
    assert [(r["name"], r["type"]) for r in rrsets if r["type"] == "A"] == [(f"s43.sites.{zone}.", "A")]


def test_a_name_outside_the_zone_is_refused(pdns_site, tmp_path):
    pdns_site["dns_record_name"] = "s42.elsewhere.test"
    run, _ = play(tmp_path, "present", dns_record_addresses=["203.0.113.10"], **pdns_site)
    assert run.returncode != 0
    assert "is not in the zone" in run.stdout


@pytest.fixture
def cf_site(cloudflare):
    # A Cloudflare zone is a registered domain: the sites' base zone is a name inside it (docs/edge.md).
    zone = cloudflare.add_zone("proxmoxwp.test")
    dns_settings = {
        "provider": "cloudflare",
        "cloudflare": {"api_url": cloudflare.url, "api_token": cloudflare.token},
        "zone": zone.name,
    }
    base_zone = f"sites.{zone.name}"
    site = {"proxmoxwp_dns": dns_settings, "proxmoxwp_base_zone": base_zone, "dns_record_name": f"s7.{base_zone}"}
    return zone, site


def cf_records(cloudflare, zone, name: str) -> list[tuple[str, str]]:
    response = requests.get(
        f"{cloudflare.url}/zones/{zone.id}/dns_records", params={"name": name}, headers=cloudflare.headers, timeout=10
    )
    return sorted((r["type"], r["content"]) for r in response.json()["result"])


def test_cloudflare_records_are_upserted_among_several_per_name(cloudflare, cf_site, tmp_path):
    zone, site = cf_site
    name = site["dns_record_name"]
    # A stray record at the name (an earlier address): several A records per name are allowed, so it must go.
    stray = {"type": "A", "name": name, "content": "198.51.100.7", "ttl": 300, "proxied": False}
    requests.post(f"{cloudflare.url}/zones/{zone.id}/dns_records", json=stray, headers=cloudflare.headers, timeout=10)

    first, _ = play(tmp_path, "present", dns_record_addresses=["203.0.113.10"], **site)
    assert first.returncode == 0, first.stdout[-2000:]
    assert cf_records(cloudflare, zone, name) == [("A", "203.0.113.10")]  # in the parent zone proxmoxwp.test

    writes_before = sum(call.method in WRITES for call in cloudflare.state.calls)
    again, changed = play(tmp_path, "present", dns_record_addresses=["203.0.113.10"], **site)
    assert again.returncode == 0 and changed == 0
    assert sum(call.method in WRITES for call in cloudflare.state.calls) == writes_before

    # The zone may also be given by its id, as Cloudflare's dashboard shows it.
    site["proxmoxwp_dns"]["zone"] = zone.id
    removed, changed = play(tmp_path, "absent", **site)
    assert removed.returncode == 0 and changed == 1
    assert cf_records(cloudflare, zone, name) == []
    gone, changed = play(tmp_path, "absent", **site)
    assert gone.returncode == 0 and changed == 0


@pytest.mark.parametrize(
    ("zone", "says"),
    [
        # left unset, the zone is the base zone: not a Cloudflare zone
        (None, "Cloudflare has no zone sites.proxmoxwp.test for this API token (a Cloudflare zone is a registered "
               "domain, not a name under one). Is it proxmoxwp.test? Set the zone that holds the records"),
        ("0123456789abcdef0123456789abcdef", "Cloudflare has no zone with the id 0123456789abcdef0123456789abcdef"),
    ],
)  # fmt: skip
def test_cloudflare_a_zone_it_does_not_have_fails_and_writes_nothing(cloudflare, cf_site, tmp_path, zone, says):
    _zone, site = cf_site
    if zone is None:
        del site["proxmoxwp_dns"]["zone"]
    else:
        site["proxmoxwp_dns"]["zone"] = zone
    run, _ = play(tmp_path, "present", dns_record_addresses=["203.0.113.10"], **site)
    assert run.returncode != 0
    assert says in run.stdout
    assert not [call for call in cloudflare.state.calls if call.method in WRITES]


def test_cloudflare_a_wrong_token_fails_with_its_error_code(cloudflare, cf_site, tmp_path):
    _zone, site = cf_site
    site["proxmoxwp_dns"]["cloudflare"]["api_token"] = "not-the-token-0123456789"
    run, _ = play(tmp_path, "present", verbosity=3, dns_record_addresses=["203.0.113.10"], **site)
    assert run.returncode != 0
    assert "(10000)" in run.stdout
    assert "not-the-token-0123456789" not in run.stdout + run.stderr
