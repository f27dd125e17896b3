"""The edge of a site as the worker runs the playbooks, against the project's fake Proxmox VE (where the site's
container is), the session's PowerDNS (a zone per test) and the NPM double (where its proxy hosts are):
create-site and delete-site with their DNS record and proxy hosts, domain_add, domain_remove and proxy_toggle."""

from __future__ import annotations

import pytest
import requests
from sites import cluster, run_playbook, site_inventory

from lab.ports import free_port

pytestmark = pytest.mark.cluster

SERVICE = 4301
DOMAIN = "www.customer-site.test"
PUBLIC_IP = "203.0.113.10"


@pytest.fixture
def player(tmp_path, pve_api, edge_peers):
    """Run a playbook for the test's service, against an inventory pointing at the test's peers."""
    inventory = site_inventory(tmp_path, pve_api, edge_peers.settings)

    def play(playbook: str, **variables):
        if playbook == "site_create.yml":
            variables.setdefault("plan", "basic")
            variables.setdefault("public_ip", PUBLIC_IP)
        return run_playbook(inventory, tmp_path / "runs", playbook, service_id=SERVICE, **variables)

    return play


@pytest.fixture
def edge(player, edge_peers):
    """A site made by site_create, with its subdomain's record and proxy host: (play, container ip, subdomain)."""
    created = player("site_create.yml")
    assert created.ok, created.message
    return player, created.stats["ip"], edge_peers.subdomain(SERVICE)


def hosts(npm) -> dict[str, dict]:
    return {host["domain_names"][0]: host for host in npm.state.proxy_hosts()}


def test_a_custom_domain_is_served_with_its_certificate_and_removed(edge, npm, pve):
    play, ip, subdomain = edge
    added = play("domain_add.yml", domain=DOMAIN, subdomain=subdomain, public_ip="203.0.113.10")
    assert added.ok, added.message
    assert added.stats["domain_state"] == "active"
    host = hosts(npm)[DOMAIN]
    assert host["forward_host"] == ip and host["enabled"] and host["ssl_forced"] and host["certificate_id"] > 0

    again = play("domain_add.yml", domain=DOMAIN, subdomain=subdomain, public_ip="203.0.113.10")
    assert again.ok and again.changed == 0

    removed = play("domain_remove.yml", domain=DOMAIN)
    assert removed.ok
    assert DOMAIN not in hosts(npm)
    assert all(DOMAIN not in cert["domain_names"] for cert in npm.state.certificates())
    assert play("domain_remove.yml", domain=DOMAIN).ok
    assert subdomain in hosts(npm) and len(cluster(pve)) == 1


def test_a_domain_whose_certificate_fails_is_served_over_http_and_marked(edge, edge_peers, npm):
    play, _ip, subdomain = edge
    domain = f"shop.{edge_peers.zone}"  # no record: Let's Encrypt cannot look it up
    npm.state.fail_certificates(domain)
    added = play("domain_add.yml", domain=domain, subdomain=subdomain, public_ip=PUBLIC_IP)
    assert added.ok, added.message
    assert added.stats["domain_state"] == "ssl_error"
    assert f"{domain} has no A or AAAA record" in added.stats["domain_message"]
    assert hosts(npm)[domain]["enabled"] and hosts(npm)[domain]["certificate_id"] == 0

    npm.state.clear_faults()
    retried = play("domain_add.yml", domain=domain, subdomain=subdomain, public_ip=PUBLIC_IP)
    assert retried.ok and retried.stats["domain_state"] == "active"


def test_the_toggle_flips_every_host_of_the_site_and_makes_none(edge, npm):
    play, _ip, subdomain = edge
    assert play("domain_add.yml", domain=DOMAIN, subdomain=subdomain, public_ip="203.0.113.10").ok

    off = play("proxy_toggle.yml", proxy_enabled=False, subdomain=subdomain, domains=[DOMAIN, "not-made-yet.test"])
    assert off.ok, off.message
    assert not hosts(npm)[subdomain]["enabled"] and not hosts(npm)[DOMAIN]["enabled"]
    assert "not-made-yet.test" not in hosts(npm)

    still_off = play("proxy_toggle.yml", proxy_enabled=False, subdomain=subdomain, domains=[DOMAIN])
    assert still_off.ok and still_off.changed == 0

    on = play("proxy_toggle.yml", proxy_enabled=True, subdomain=subdomain, domains=[DOMAIN])
    assert on.ok
    assert hosts(npm)[subdomain]["enabled"] and hosts(npm)[DOMAIN]["enabled"] and hosts(npm)[DOMAIN]["ssl_forced"]


def test_create_site_failing_at_the_proxy_leaves_no_dns_record_and_a_retry_succeeds(player, edge_peers, pve):
    subdomain = edge_peers.subdomain(SERVICE)
    edge_peers.npm.state.fail_nginx(subdomain, message="nginx: [emerg] unknown directive")

    failed = player("site_create.yml")
    assert not failed.ok
    assert "NPM's nginx refused the host" in failed.message and "unknown directive" in failed.message
    assert "Left behind" not in failed.message
    assert edge_peers.addresses(subdomain) == [], "the record this run made is removed"
    assert edge_peers.hosts() == {} and edge_peers.certificates() == []
    assert cluster(pve) == {}

    edge_peers.npm.state.clear_faults()
    retried = player("site_create.yml")
    assert retried.ok, retried.message
    assert edge_peers.addresses(subdomain) == [PUBLIC_IP]
    assert edge_peers.hosts()[subdomain]["forward_host"] == retried.stats["ip"]


def test_create_site_writes_the_record_into_the_zone_that_holds_the_base_zone(tmp_path, pve, pve_api, edge_peers):
    # The base zone is a name inside the zone PowerDNS has (as a Cloudflare zone is the registered domain).
    base_zone = f"sites.{edge_peers.zone}"
    settings = {**edge_peers.settings, "proxmoxwp_base_zone": base_zone}
    subdomain = f"wp{SERVICE}.{base_zone}"

    # Left unset, the zone is the base zone, which PowerDNS does not have: the run fails before the proxy host.
    failed = run_playbook(site_inventory(tmp_path / "unset", pve_api, settings), tmp_path / "runs", "site_create.yml",
                          service_id=SERVICE, plan="basic", public_ip=PUBLIC_IP)  # fmt: skip
    assert not failed.ok
    assert f"has no zone {base_zone}. Is it {edge_peers.zone} or proxmoxwp.test? Set the zone" in failed.message
    assert edge_peers.hosts() == {} and cluster(pve) == {}

    dns = {**settings["proxmoxwp_dns"], "zone": edge_peers.zone}
    inventory = site_inventory(tmp_path / "set", pve_api, settings, proxmoxwp_dns=dns)
    created = run_playbook(inventory, tmp_path / "runs", "site_create.yml", service_id=SERVICE, plan="basic",
                           public_ip=PUBLIC_IP)  # fmt: skip
    assert created.ok, created.message
    assert edge_peers.addresses(subdomain) == [PUBLIC_IP]
    with edge_peers.powerdns.session() as session:
        rrsets = session.get(edge_peers.powerdns.zone_url(edge_peers.zone), timeout=10).json()["rrsets"]
    assert (f"{subdomain}.", "A") in [(rrset["name"], rrset["type"]) for rrset in rrsets]
    assert edge_peers.hosts()[subdomain]["forward_host"] == created.stats["ip"]


def test_a_subdomain_certificate_that_cannot_be_issued_leaves_the_site_on_http(player, edge_peers):
    # The site published on a loopback address, where nothing answers on the proxy's HTTP port: the reason the
    # module finds (NPM passes on none), without probing beyond loopback.
    public_ip = "127.0.0.2"
    subdomain = edge_peers.subdomain(SERVICE)
    edge_peers.npm.state.fail_certificates(subdomain)

    created = player("site_create.yml", public_ip=public_ip)
    assert created.ok, created.message
    assert created.stats["ssl"] == "error"
    assert f"port {edge_peers.http_port} of {public_ip} does not answer" in created.stats["ssl_error"]
    host = edge_peers.hosts()[subdomain]
    assert host["enabled"] and host["certificate_id"] == 0 and not host["ssl_forced"]

    edge_peers.npm.state.clear_faults()
    again = player("site_create.yml", public_ip=public_ip)
    assert again.ok and again.stats["ssl"] == "active", "running create again retries the certificate"
    assert edge_peers.hosts()[subdomain]["ssl_forced"]


def test_delete_site_with_its_proxy_host_already_gone_still_cleans_dns_and_domains(edge, edge_peers, npm, pve):
    play, _ip, subdomain = edge
    assert play("domain_add.yml", domain=DOMAIN).ok
    host = hosts(npm)[subdomain]
    gone = requests.delete(
        f"{npm.url}/nginx/proxy-hosts/{host['id']}", headers={"Authorization": f"Bearer {npm.token()}"}, timeout=10
    )
    assert gone.status_code == 200, gone.text

    deleted = play("site_delete.yml", domains=[DOMAIN, "never-attached.test"])
    assert deleted.ok, deleted.message
    assert edge_peers.addresses(subdomain) == []
    assert hosts(npm) == {} and npm.state.certificates() == []
    assert cluster(pve) == {}
    assert play("site_delete.yml", domains=[DOMAIN]).ok, "deleting a deleted site is fine"


def test_create_site_with_npm_down_removes_the_rest_and_names_what_it_could_not(tmp_path, pve, pve_api, edge_peers):
    closed = f"http://127.0.0.1:{free_port()}/api"  # a loopback port nothing listens on
    npm_api = {**edge_peers.settings["proxmoxwp_npm_api"], "url": closed, "timeout": 3}
    inventory = site_inventory(tmp_path, pve_api, edge_peers.settings, proxmoxwp_npm_api=npm_api)
    subdomain = edge_peers.subdomain(SERVICE)

    failed = run_playbook(inventory, tmp_path / "runs", "site_create.yml", service_id=SERVICE, plan="basic",
                          public_ip=PUBLIC_IP)  # fmt: skip
    assert not failed.ok
    assert failed.failed_task == "Make the proxy host, then its certificate, then attach it and force SSL"
    assert f"Left behind (a retry reuses them, delete-site removes them): the proxy host of {subdomain}" in (
        failed.message
    )
    assert edge_peers.addresses(subdomain) == [] and cluster(pve) == {}
