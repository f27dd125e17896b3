"""domain_add, domain_remove and proxy_toggle as the worker runs them, against the project's fake Proxmox VE (where
the site's container is) and the NPM double (where its proxy hosts are)."""

from __future__ import annotations

import pytest
from role_runs import run_role
from sites import cluster, run_playbook, site_inventory

pytestmark = pytest.mark.cluster

SERVICE = 4301
SUBDOMAIN = f"wp{SERVICE}.lab.proxmoxwp.test"
DOMAIN = "www.customer-site.test"


@pytest.fixture
def edge(tmp_path, pve, pve_api, npm):
    api = {"url": npm.url, "identity": npm.identity, "secret": npm.secret}
    inventory = site_inventory(tmp_path, pve_api, proxmoxwp_npm_api=api)

    def play(playbook: str, **variables):
        return run_playbook(inventory, tmp_path / "runs", playbook, service_id=SERVICE, **variables)

    created = play("site_create.yml", plan="basic", subdomain=SUBDOMAIN)
    assert created.ok, created.message
    ip = created.stats["ip"]
    # The subdomain's host, as create-site will make it.
    made = run_role(tmp_path, "npm_proxy", "present", proxmoxwp_npm_api=api, npm_proxy_domain_names=[SUBDOMAIN],
                    npm_proxy_forward_host=ip)  # fmt: skip
    assert made.ok, made.stdout[-2000:]
    return play, ip


def hosts(npm) -> dict[str, dict]:
    return {host["domain_names"][0]: host for host in npm.state.proxy_hosts()}


def test_a_custom_domain_is_served_with_its_certificate_and_removed(edge, npm, pve):
    play, ip = edge
    added = play("domain_add.yml", domain=DOMAIN, subdomain=SUBDOMAIN, public_ip="203.0.113.10")
    assert added.ok, added.message
    assert added.stats["domain_state"] == "active"
    host = hosts(npm)[DOMAIN]
    assert host["forward_host"] == ip and host["enabled"] and host["ssl_forced"] and host["certificate_id"] > 0

    again = play("domain_add.yml", domain=DOMAIN, subdomain=SUBDOMAIN, public_ip="203.0.113.10")
    assert again.ok and again.changed == 0

    removed = play("domain_remove.yml", domain=DOMAIN)
    assert removed.ok
    assert DOMAIN not in hosts(npm)
    assert all(DOMAIN not in cert["domain_names"] for cert in npm.state.certificates())
    assert play("domain_remove.yml", domain=DOMAIN).ok
    assert SUBDOMAIN in hosts(npm) and len(cluster(pve)) == 1


def test_a_domain_whose_certificate_fails_is_served_over_http_and_marked(edge, npm):
    play, _ip = edge
    npm.state.fail_certificates(DOMAIN, detail="DNS problem: NXDOMAIN looking up A for " + DOMAIN)
    added = play("domain_add.yml", domain=DOMAIN, subdomain=SUBDOMAIN, public_ip="203.0.113.10")
    assert added.ok, added.message
    assert added.stats["domain_state"] == "ssl_error"
    assert "NXDOMAIN looking up A" in added.stats["domain_message"]
    assert hosts(npm)[DOMAIN]["enabled"] and hosts(npm)[DOMAIN]["certificate_id"] == 0

    npm.state.clear_faults()
    retried = play("domain_add.yml", domain=DOMAIN, subdomain=SUBDOMAIN, public_ip="203.0.113.10")
    assert retried.ok and retried.stats["domain_state"] == "active"


def test_the_toggle_flips_every_host_of_the_site_and_makes_none(edge, npm):
    play, _ip = edge
    assert play("domain_add.yml", domain=DOMAIN, subdomain=SUBDOMAIN, public_ip="203.0.113.10").ok

    off = play("proxy_toggle.yml", proxy_enabled=False, subdomain=SUBDOMAIN, domains=[DOMAIN, "not-made-yet.test"])
    assert off.ok, off.message
    assert not hosts(npm)[SUBDOMAIN]["enabled"] and not hosts(npm)[DOMAIN]["enabled"]
    assert "not-made-yet.test" not in hosts(npm)

    still_off = play("proxy_toggle.yml", proxy_enabled=False, subdomain=SUBDOMAIN, domains=[DOMAIN])
    assert still_off.ok and still_off.changed == 0

    on = play("proxy_toggle.yml", proxy_enabled=True, subdomain=SUBDOMAIN, domains=[DOMAIN])
    assert on.ok
    assert hosts(npm)[SUBDOMAIN]["enabled"] and hosts(npm)[DOMAIN]["enabled"] and hosts(npm)[DOMAIN]["ssl_forced"]
