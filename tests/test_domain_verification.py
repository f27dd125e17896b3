"""setdomain attaches a custom domain only when its DNS points to the site (docs/domain-verification.md).

Through the HTTP API, with the session's PowerDNS as the only resolver (the `env` fixture): records are published in
a zone of the test's own (`dns_records`), then setdomain is asked. A refusal changes nothing in the database.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from api.config import ConfigError, load_settings, resolver_address
from api.domain_dns import Found, points_to_site
from api.jobs.engine import claim, finish
from api.models import Base, JobState
from lab.ports import free_port
from tests.published_dns import SITE_IP

pytestmark = pytest.mark.db

OTHER_IP = "198.51.100.7"
SITE_IPV6 = "2001:db8:10::10"
SUBDOMAIN = "wp17.sites.example.net"  # site 17 in the tests' inventory


def table_rows(runtime) -> dict[str, list[tuple]]:
    with runtime.db.engine.connect() as connection:
        return {
            table.name: [tuple(row) for row in connection.execute(table.select().order_by(*table.primary_key))]
            for table in Base.metadata.sorted_tables
        }


def make_site(api, runtime, service_id: int = 17, public_ip: str = SITE_IP, plan: str = "basic") -> None:
    """An active site, its creation recorded as a worker records it."""
    body = {"service_id": service_id, "email": "owner@example.com", "plan": plan, "public_ip": public_ip}
    created = api.post("/create-site", body)
    assert created.status_code == 202, created.get_json()
    job_id = created.get_json()["job_id"]
    assert claim(runtime, job_id)
    finish(runtime, job_id, JobState.SUCCEEDED, stats={"vmid": 100000 + service_id})


def attach(api, domain: str, service_id: int = 17) -> dict:
    answer = api.post("/action/setdomain", {"service_id": service_id, "domain": domain})
    assert answer.status_code == 202, answer.get_json()
    body = answer.get_json()
    assert body["domain"] == domain and body["domain_state"] == "pending" and isinstance(body["job_id"], int)
    return body


def refused(api, runtime, domain: str, status: int, code: str, service_id: int = 17) -> dict:
    """setdomain is refused with that status and code, and nothing changes: no domain row, no job, same quota."""
    before = table_rows(runtime)
    quota = api.get("/status", service_id=service_id).get_json()["quotas"]["domains"]
    answer = api.post("/action/setdomain", {"service_id": service_id, "domain": domain})
    body = answer.get_json()
    assert answer.status_code == status, body
    assert body["success"] is False and body["code"] == code, body
    error = body["error"]
    assert error[0].isupper() and error.endswith(".") and "\n" not in error and "Traceback" not in error, body
    assert table_rows(runtime) == before, "a refused setdomain changed the database"
    assert api.get("/status", service_id=service_id).get_json()["quotas"]["domains"] == quota
    return body


@pytest.fixture
def site(api, runtime) -> None:
    make_site(api, runtime)


# ---- accepted ----------------------------------------------------------------------------------------------------


def test_our_a_record_is_accepted(api, runtime, site, dns_records):
    domain = dns_records.publish(dns_records.name("shop"), a=[SITE_IP])
    body = attach(api, domain)
    job = api.get(f"/jobs/{body['job_id']}").get_json()["job"]
    assert job["kind"] == "domain_add" and job["params"]["domain"] == domain
    assert api.get("/status", service_id=17).get_json()["quotas"]["domains"]["used"] == 1


def test_a_cname_to_the_sites_subdomain_is_accepted(api, runtime, dns_records):
    make_site(api, runtime, plan="premium")
    # The subdomain is in no zone of this server: PowerDNS answers the CNAME alone, which is enough.
    direct = dns_records.publish(dns_records.name("www"), cname=SUBDOMAIN)
    attach(api, direct)
    # A chain through another name of the customer's reaches the subdomain too.
    hop = dns_records.publish(dns_records.name("hop"), cname=SUBDOMAIN)
    attach(api, dns_records.publish(dns_records.name("shop"), cname=hop))


def test_a_cname_to_another_name_with_our_address_is_accepted(api, runtime, site, dns_records):
    target = dns_records.publish(dns_records.name("lb"), a=[SITE_IP])
    attach(api, dns_records.publish(dns_records.name("shop"), cname=target))


def test_an_ipv6_site_is_verified_by_aaaa(api, runtime, dns_records):
    make_site(api, runtime, public_ip=SITE_IPV6, plan="premium")
    # our address written in another spelling is still ours
    attach(api, dns_records.publish(dns_records.name("v6"), aaaa=["2001:DB8:10:0::10"]))

    stray_a = dns_records.publish(dns_records.name("both"), a=[SITE_IP], aaaa=[SITE_IPV6])
    body = refused(api, runtime, stray_a, 422, "dns_not_pointing")
    assert body["expected"] == {"AAAA": SITE_IPV6, "CNAME": SUBDOMAIN}
    assert body["found"] == {"A": [SITE_IP], "AAAA": [SITE_IPV6], "CNAME": []}

    only_a = dns_records.publish(dns_records.name("v4"), a=[SITE_IP])
    refused(api, runtime, only_a, 422, "dns_not_pointing")


# ---- refused -----------------------------------------------------------------------------------------------------


def test_an_a_record_pointing_elsewhere_is_refused(api, runtime, site, dns_records):
    domain = dns_records.publish(dns_records.name("shop"), a=[OTHER_IP])
    body = refused(api, runtime, domain, 422, "dns_not_pointing")
    assert body["found"] == {"A": [OTHER_IP], "AAAA": [], "CNAME": []}
    assert body["expected"] == {"A": SITE_IP, "CNAME": SUBDOMAIN}
    assert domain in body["error"] and OTHER_IP in body["error"] and SITE_IP in body["error"], body
    assert api.get("/action/getdomain", service_id=17).get_json()["domains"] == []


def test_one_of_several_a_records_elsewhere_is_refused(api, runtime, site, dns_records):
    domain = dns_records.publish(dns_records.name("shop"), a=[SITE_IP, OTHER_IP])
    body = refused(api, runtime, domain, 422, "dns_not_pointing")
    assert sorted(body["found"]["A"]) == sorted([SITE_IP, OTHER_IP])
    assert "only" in body["error"]


def test_a_stray_aaaa_beside_our_a_is_refused(api, runtime, site, dns_records):
    domain = dns_records.publish(dns_records.name("shop"), a=[SITE_IP], aaaa=["2001:db8::1"])
    body = refused(api, runtime, domain, 422, "dns_not_pointing")
    assert body["found"] == {"A": [SITE_IP], "AAAA": ["2001:db8::1"], "CNAME": []}
    assert "2001:db8::1" in body["error"]


def test_a_cname_elsewhere_is_refused(api, runtime, site, dns_records):
    domain = dns_records.publish(dns_records.name("shop"), cname="site.elsewhere.example")
    body = refused(api, runtime, domain, 422, "dns_not_pointing")
    assert body["found"] == {"A": [], "AAAA": [], "CNAME": ["site.elsewhere.example"]}


@pytest.mark.parametrize("where", ["nxdomain", "no-address"])
def test_a_domain_without_address_records_is_told_what_to_create(api, runtime, site, dns_records, where):
    # a name nobody published (NXDOMAIN), or the zone's apex: it exists (SOA, NS) but has no A or AAAA
    domain = dns_records.name("nothing") if where == "nxdomain" else dns_records.zone
    body = refused(api, runtime, domain, 422, "dns_no_records")
    assert body["found"] == {"A": [], "AAAA": [], "CNAME": []}
    assert body["expected"] == {"A": SITE_IP, "CNAME": SUBDOMAIN}
    assert "no address records" in body["error"] and SITE_IP in body["error"] and SUBDOMAIN in body["error"]


@pytest.fixture
def silent_resolver():
    """A UDP socket on loopback that never answers: every query to it times out."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()


def closed_port() -> int:
    return free_port(udp=True)


@pytest.mark.parametrize("resolver", ["closed-port", "silent"])
def test_resolvers_that_do_not_answer_give_503(api, runtime, site, dns_records, monkeypatch, silent_resolver, resolver):
    domain = dns_records.publish(dns_records.name("shop"), a=[SITE_IP])
    address = ("127.0.0.1", closed_port()) if resolver == "closed-port" else silent_resolver
    monkeypatch.setattr(runtime.settings, "dns_resolvers", [address])
    monkeypatch.setattr(runtime.settings, "dns_timeout", 0.5)
    started = time.monotonic()
    body = refused(api, runtime, domain, 503, "dns_unavailable")
    assert time.monotonic() - started < 5, "the timeout setting bounds the wait"
    assert "found" not in body and "127.0.0.1" not in body["error"]


def test_a_name_no_resolver_knows_gives_503(api, runtime, site):
    """The session's PowerDNS holds no zone for it and answers REFUSED: not an answer about the domain."""
    refused(api, runtime, "shop.unserved-zone.test", 503, "dns_unavailable")


def test_no_database_lock_is_held_while_the_resolvers_are_asked(api, runtime, site, dns_records, monkeypatch,
                                                                silent_resolver):  # fmt: skip
    monkeypatch.setattr(runtime.settings, "dns_resolvers", [silent_resolver])
    monkeypatch.setattr(runtime.settings, "dns_timeout", 3.0)
    answers = []
    thread = threading.Thread(
        target=lambda: answers.append(api.post("/action/setdomain", {"service_id": 17, "domain": "shop.example.com"}))
    )
    thread.start()
    time.sleep(0.3)  # the setdomain request is waiting for DNS now
    started = time.monotonic()
    backup = api.post("/action/mkbak", {"service_id": 17})
    assert backup.status_code == 202 and time.monotonic() - started < 2, "another change of the site went ahead"
    thread.join()
    assert answers[0].status_code == 503


# ---- order of the checks, retries --------------------------------------------------------------------------------


def test_quota_and_ownership_are_answered_before_dns(api, runtime, site, dns_records):
    make_site(api, runtime, service_id=18)
    attach(api, dns_records.publish(dns_records.name("shop"), a=[SITE_IP]))
    # DNS would refuse both (nothing published), but the quota and the other site's ownership are told first
    refused(api, runtime, dns_records.name("blog"), 422, "domain_quota")
    refused(api, runtime, dns_records.name("shop"), 409, "domain_taken", service_id=18)


def test_an_attached_domain_answers_its_state_without_a_new_check(api, runtime, site, dns_records):
    domain = dns_records.publish(dns_records.name("shop"), a=[SITE_IP])
    added = attach(api, domain)
    dns_records.publish(domain, a=[OTHER_IP])
    again = api.post("/action/setdomain", {"service_id": 17, "domain": domain})
    assert again.status_code == 202 and again.get_json()["job_id"] == added["job_id"], again.get_json()


def test_a_failed_domain_is_verified_again_on_retry(api, runtime, site, dns_records):
    domain = dns_records.publish(dns_records.name("shop"), a=[SITE_IP])
    added = attach(api, domain)
    assert claim(runtime, added["job_id"])
    finish(runtime, added["job_id"], JobState.FAILED, message="The certificate could not be issued.")
    listed = api.get("/action/getdomain", service_id=17).get_json()["domains"]
    assert [(d["domain"], d["state"]) for d in listed] == [(domain, "failed")]

    dns_records.publish(domain, a=[OTHER_IP])
    refused(api, runtime, domain, 422, "dns_not_pointing")
    dns_records.publish(domain, cname=SUBDOMAIN)
    again = attach(api, domain)
    assert again["job_id"] != added["job_id"]


# ---- units -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("192.0.2.53", ("192.0.2.53", 53)),
        (" 192.0.2.53:5353 ", ("192.0.2.53", 5353)),
        ("2001:db8::53", ("2001:db8::53", 53)),
        ("[2001:DB8::53]:5300", ("2001:db8::53", 5300)),
        ("[2001:db8::53]", ("2001:db8::53", 53)),
        ("127.0.0.1:65535", ("127.0.0.1", 65535)),
    ],
)
def test_resolver_addresses(text, address):
    assert resolver_address(text) == address


@pytest.mark.parametrize(
    "text",
    ["ns1.example.net", "192.0.2.53:0", "192.0.2.53:65536", "192.0.2.53:", "192.0.2.53:dns", "[2001:db8::53",
     "[2001:db8::53]5300", "2001:db8::53]:53", "192.0.2.300", "[ns1]:53", ""],
)  # fmt: skip
def test_bad_resolver_addresses(text):
    with pytest.raises(ValueError):
        resolver_address(text)


def test_the_resolver_settings(monkeypatch, tmp_path):
    for name in ("PROXMOXWP_DNS_RESOLVERS", "PROXMOXWP_DNS_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    assert load_settings(data_dir=tmp_path).dns_resolvers == []  # the system's resolvers
    monkeypatch.setenv("PROXMOXWP_DNS_RESOLVERS", "192.0.2.53, [2001:db8::53]:5353,")
    monkeypatch.setenv("PROXMOXWP_DNS_TIMEOUT", "1.5")
    settings = load_settings(data_dir=tmp_path)
    assert settings.dns_resolvers == [("192.0.2.53", 53), ("2001:db8::53", 5353)]
    assert settings.dns_timeout == 1.5
    monkeypatch.setenv("PROXMOXWP_DNS_RESOLVERS", "192.0.2.53,resolver.example.net")
    with pytest.raises(ConfigError, match=r"^PROXMOXWP_DNS_RESOLVERS: 'resolver.example.net' is not"):
        load_settings(data_dir=tmp_path)
    monkeypatch.setenv("PROXMOXWP_DNS_RESOLVERS", "")
    monkeypatch.setenv("PROXMOXWP_DNS_TIMEOUT", "0")
    with pytest.raises(ConfigError, match=r"^PROXMOXWP_DNS_TIMEOUT: "):
        load_settings(data_dir=tmp_path)


@pytest.mark.parametrize(
    ("found", "public_ip", "verdict"),
    [
        (Found(a=(SITE_IP,)), SITE_IP, True),
        (Found(a=(SITE_IP, SITE_IP)), SITE_IP, True),
        (Found(), SITE_IP, False),
        (Found(a=(SITE_IP,), aaaa=("2001:db8::1",)), SITE_IP, False),
        (Found(aaaa=("2001:db8:10::10",)), "2001:db8:10:0:0::10", True),
        (Found(cnames=("lb.example.org", SUBDOMAIN)), SITE_IP, True),
        (Found(a=(OTHER_IP,), cnames=(SUBDOMAIN,)), SITE_IP, True),  # the CNAME decides
        (Found(cnames=("wp17.sites.example.net.evil.example",)), SITE_IP, False),
    ],
)
def test_points_to_site(found, public_ip, verdict):
    assert points_to_site(found, SUBDOMAIN, public_ip) is verdict
