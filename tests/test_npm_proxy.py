"""The role npm_proxy (module proxmoxwp.hosting.proxmoxwp_npm_proxy_host) against the NPM double, which checks every
request body against NPM's own OpenAPI schema and behaves as NPM 2.15.1 does (token expiry, 400s, non-atomic create,
404 for a missing permission)."""

from __future__ import annotations

import os
import secrets
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from edge import proxy_answering
from role_runs import run_role

from lab.powerdns.server import fqdn

pytestmark = pytest.mark.cluster

SITE = "s7.sites.proxmoxwp.test"
OTHER = "s8.sites.proxmoxwp.test"
# No test lets the module ask a resolver or probe an address beyond loopback: where a certificate fails, the
# checks ask the test's PowerDNS, or are off.
UNCHECKED = {"enabled": False}


def site_vars(npm, **overrides):
    api = {"url": npm.url, "identity": npm.identity, "secret": npm.secret}
    site = {"proxmoxwp_npm_api": api, "npm_proxy_domain_names": [SITE], "npm_proxy_forward_host": "10.77.0.7",
            "npm_proxy_acme_check": UNCHECKED}  # fmt: skip
    return site | overrides


def said(run) -> str:
    """The run's output as one line: the YAML callback folds long strings and doubles their quotes."""
    return " ".join(run.stdout.replace("''", "'").split())


def served(npm, name: str = SITE):
    """The host as NPM's nginx serves it (its config as last written and accepted), or None."""
    return next((h for h in npm.state.enabled_hosts() if name in h.domain_names), None)


def npm_delete(npm, path: str) -> None:
    gone = requests.delete(f"{npm.url}{path}", headers={"Authorization": f"Bearer {npm.token()}"}, timeout=10)
    assert gone.status_code == 200, gone.text


def host(npm, name: str = SITE) -> dict | None:
    return next((h for h in npm.state.proxy_hosts() if name in h["domain_names"]), None)


def test_a_host_is_made_then_certified_then_forced_to_ssl_and_a_second_run_changes_nothing(npm, tmp_path):
    first = run_role(tmp_path, "npm_proxy", "present", verbosity=1, **site_vars(npm))
    assert first.ok, first.stdout[-2000:]
    made = host(npm)
    assert made["forward_host"] == "10.77.0.7" and made["forward_port"] == 80
    assert made["enabled"] and made["ssl_forced"] and made["certificate_id"] > 0
    assert made["allow_websocket_upgrade"] and made["http2_support"] and made["block_exploits"]
    assert [issuance.domain_names for issuance in npm.state.issuances] == [(SITE,)]
    # The safe order, as the module reports what it did: the host over HTTP first, then its certificate.
    positions = [first.stdout.find(action) for action in ("create host", "request certificate", "attach certificate")]
    assert -1 not in positions and positions == sorted(positions), first.stdout[-2000:]

    again = run_role(tmp_path, "npm_proxy", "present", **site_vars(npm))
    assert again.ok and again.changed == 0
    assert len(npm.state.issuances) == 1


@pytest.fixture
def public_dns(powerdns):
    """A zone of the test's own on the session's PowerDNS: (zone, publish(name, address), the acme_check that asks
    it)."""
    zone = f"z{secrets.token_hex(4)}.proxmoxwp.test"
    powerdns.create_zone(zone)

    def publish(name: str, address: str) -> None:
        rrset = {"name": fqdn(name), "type": "A", "ttl": 60, "changetype": "REPLACE",
                 "records": [{"content": address, "disabled": False}]}  # fmt: skip
        with powerdns.session() as session:
            session.patch(powerdns.zone_url(zone), json={"rrsets": [rrset]}, timeout=10).raise_for_status()

    host_, port = powerdns.dns_address
    return zone, publish, {"resolvers": [f"{host_}:{port}"], "timeout": 2}


def test_a_certificate_that_cannot_be_issued_leaves_a_working_http_host_and_says_why(npm, tmp_path, public_dns):
    """NPM says only "Internal Error": the module finds the reason in the names' public DNS, which it compares with
    the site's public address (without probing an address that is not the site's)."""
    zone, publish, acme_check = public_dns
    elsewhere, unpublished = f"www.{zone}", f"new.{zone}"
    publish(elsewhere, "192.0.2.7")
    npm.state.fail_certificates(elsewhere, unpublished)
    names = {"npm_proxy_public_addresses": ["127.0.0.1"], "npm_proxy_acme_check": acme_check}
    failed = run_role(tmp_path, "npm_proxy", "present", verbosity=1,
                      **site_vars(npm, npm_proxy_domain_names=[elsewhere, unpublished], **names))  # fmt: skip
    assert failed.ok, failed.stdout[-2000:]
    assert "ssl: error" in failed.stdout.replace('"', "")
    assert f"{elsewhere} points to 192.0.2.7, not 127.0.0.1" in said(failed)
    assert f"{unpublished} has no A or AAAA record" in said(failed)
    made = host(npm, elsewhere)
    assert made["enabled"] and made["certificate_id"] == 0 and not made["ssl_forced"]

    npm.state.clear_faults()
    retried = run_role(tmp_path, "npm_proxy", "present",
                       **site_vars(npm, npm_proxy_domain_names=[elsewhere, unpublished], **names))  # fmt: skip
    assert retried.ok
    assert host(npm, elsewhere)["certificate_id"] > 0 and host(npm, elsewhere)["ssl_forced"]


def test_a_certificate_refused_although_dns_and_http_look_right_says_a_retry_may_succeed(npm, tmp_path, public_dns):
    zone, publish, acme_check = public_dns
    name = f"ok.{zone}"
    publish(name, "127.0.0.1")
    npm.state.fail_certificates(name)
    with proxy_answering() as port:
        run = run_role(tmp_path, "npm_proxy", "present", verbosity=1,
                       **site_vars(npm, npm_proxy_domain_names=[name], npm_proxy_public_addresses=["127.0.0.1"],
                                   npm_proxy_acme_check={**acme_check, "http_port": port}))  # fmt: skip
    assert run.ok, run.stdout[-2000:]
    assert "the name's DNS and HTTP look right, so a retry may succeed" in said(run)
    assert host(npm, name)["enabled"] and host(npm, name)["certificate_id"] == 0


def test_a_host_nginx_refuses_gets_no_certificate_request_and_another_site_still_gets_its_certificate(npm, tmp_path):
    npm.state.fail_nginx(SITE, message="nginx: [emerg] unknown directive in proxy_host")
    refused = run_role(tmp_path, "npm_proxy", "present", **site_vars(npm))
    assert not refused.ok
    assert "NPM's nginx refused the host" in refused.stdout and f"({SITE})" in refused.stdout
    assert "unknown directive in proxy_host" in refused.stdout
    assert npm.state.issuances == [], "no certificate request for a host nginx refused"
    assert host(npm) is None, "the host this run made is removed"

    other = run_role(tmp_path, "npm_proxy", "present", **site_vars(npm, npm_proxy_domain_names=[OTHER]))
    assert other.ok, other.stdout[-2000:]
    assert [issuance.domain_names for issuance in npm.state.issuances] == [(OTHER,)]
    assert served(npm, OTHER).certificate is not None


def test_an_existing_host_nginx_refuses_after_a_change_is_disabled_and_the_run_fails(npm, tmp_path):
    assert run_role(tmp_path, "npm_proxy", "present", **site_vars(npm, npm_proxy_certificate="none")).ok
    npm.state.fail_nginx(SITE, message="nginx: [emerg] host not found in upstream")
    refused = run_role(tmp_path, "npm_proxy", "present", **site_vars(npm, npm_proxy_forward_host="10.77.0.8"))
    assert not refused.ok
    assert "host not found in upstream" in refused.stdout and f"({SITE})" in refused.stdout
    assert "changed: true" in said(refused).replace('"', ""), "the update and the disable were done"
    assert not host(npm)["enabled"], "kept, but disabled"
    assert npm.state.issuances == []


def test_a_rerun_after_a_create_that_answered_500_serves_the_host_with_its_certificate(npm, tmp_path):
    npm.state.interrupt_next("create_host")
    interrupted = run_role(tmp_path, "npm_proxy", "present", **site_vars(npm))
    assert not interrupted.ok
    assert served(npm) is None

    repaired = run_role(tmp_path, "npm_proxy", "present", verbosity=1, **site_vars(npm))
    assert repaired.ok, repaired.stdout[-2000:]
    assert len(npm.state.proxy_hosts()) == 1
    assert host(npm)["ssl_forced"] and served(npm).certificate is not None


def test_a_certificate_deleted_behind_our_back_is_issued_again_and_the_other_hosts_work_again(npm, tmp_path):
    assert run_role(tmp_path, "npm_proxy", "present", **site_vars(npm)).ok
    assert run_role(tmp_path, "npm_proxy", "present", **site_vars(npm, npm_proxy_domain_names=[OTHER])).ok
    lost = host(npm)["certificate_id"]
    npm_delete(npm, f"/nginx/certificates/{lost}")

    repaired = run_role(tmp_path, "npm_proxy", "present", verbosity=1, **site_vars(npm))
    assert repaired.ok, repaired.stdout[-2000:]
    assert repaired.changed == 1
    assert host(npm)["certificate_id"] not in (0, lost) and host(npm)["ssl_forced"]
    assert served(npm).certificate is not None

    moved = run_role(tmp_path, "npm_proxy", "present",
                     **site_vars(npm, npm_proxy_domain_names=[OTHER], npm_proxy_forward_host="10.77.0.9"))  # fmt: skip
    assert moved.ok, moved.stdout[-2000:]
    assert served(npm, OTHER).forward_host == "10.77.0.9"


@pytest.mark.parametrize(
    ("hold", "kind"), [("add_dead_host", "404 host"), ("add_redirection_host", "redirection host")]
)
def test_a_name_another_kind_of_host_holds_is_refused_with_npms_message(npm, tmp_path, hold, kind):
    getattr(npm.state, hold)(SITE)
    run = run_role(tmp_path, "npm_proxy", "present", **site_vars(npm))
    assert not run.ok
    assert f"{SITE} is already in use by {kind}" in run.stdout
    assert npm.state.proxy_hosts() == [] and npm.state.issuances == []


def test_two_runs_at_once_both_end_with_their_certificates(npm, tmp_path):
    """NPM runs one certbot at a time and answers a request meanwhile with a 500: without the workers' lock (a run
    by hand), the module sends that request again until certbot is free. certbot takes 3 s here, so that the two
    runs, started together, overlap."""
    npm.state.issuance_seconds = 3
    env = {key: value for key, value in os.environ.items() if key != "PROXMOXWP_LOCK_SOCKET"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda args: run_role(args[0], "npm_proxy", "present", env=env, **args[1]),
                             [(tmp_path / "a", site_vars(npm)),
                              (tmp_path / "b", site_vars(npm, npm_proxy_domain_names=[OTHER]))]))  # fmt: skip
    assert all(run.ok for run in runs), [run.stdout[-1500:] for run in runs]
    assert host(npm)["ssl_forced"] and host(npm, OTHER)["ssl_forced"]
    assert served(npm).certificate is not None and served(npm, OTHER).certificate is not None
    assert npm.state.certbot_refusals >= 1, "the runs overlapped: one was told certbot was busy, and retried"


def test_the_toggle_disables_and_enables_and_a_host_in_that_state_is_not_an_error(npm, tmp_path):
    assert run_role(tmp_path, "npm_proxy", "present", **site_vars(npm)).ok
    off = run_role(tmp_path, "npm_proxy", "present", **site_vars(npm, npm_proxy_enabled=False))
    assert off.ok and off.changed == 1 and not host(npm)["enabled"]
    still_off = run_role(tmp_path, "npm_proxy", "present", **site_vars(npm, npm_proxy_enabled=False))
    assert still_off.ok and still_off.changed == 0
    on = run_role(tmp_path, "npm_proxy", "present", **site_vars(npm))
    assert on.ok and host(npm)["enabled"] and host(npm)["ssl_forced"]


def test_a_disable_that_answered_500_but_disabled_the_host_is_not_an_error(npm, tmp_path):
    assert run_role(tmp_path, "npm_proxy", "present", **site_vars(npm)).ok
    npm.state.interrupt_next("disable_host")
    off = run_role(tmp_path, "npm_proxy", "present", **site_vars(npm, npm_proxy_enabled=False))
    assert off.ok, off.stdout[-2000:]
    assert off.changed == 1 and not host(npm)["enabled"] and served(npm) is None


def test_absent_removes_host_and_certificate_and_again_succeeds(npm, tmp_path):
    assert run_role(tmp_path, "npm_proxy", "present", **site_vars(npm)).ok
    removed = run_role(tmp_path, "npm_proxy", "absent", **site_vars(npm))
    assert removed.ok and removed.changed == 1
    assert npm.state.proxy_hosts() == [] and npm.state.certificates() == []
    again = run_role(tmp_path, "npm_proxy", "absent", **site_vars(npm))
    assert again.ok and again.changed == 0


def test_a_token_that_expires_during_the_run_is_renewed(npm, tmp_path):
    def expire_once(state):
        unsubscribe()
        state.expire_tokens()

    unsubscribe = npm.state.subscribe(expire_once)  # right after the host is made
    run = run_role(tmp_path, "npm_proxy", "present", **site_vars(npm))
    assert run.ok, run.stdout[-2000:]
    assert host(npm)["ssl_forced"]


def test_a_user_without_the_permission_gets_a_clear_error(npm, tmp_path):
    npm.state.add_user("viewer@proxmoxwp.test", "viewer-secret-123", proxy_hosts="hidden")
    api = {"url": npm.url, "identity": "viewer@proxmoxwp.test", "secret": "viewer-secret-123"}
    run = run_role(tmp_path, "npm_proxy", "present", verbosity=3, **site_vars(npm, proxmoxwp_npm_api=api))
    assert not run.ok
    assert "lacks the permission" in run.stdout
    assert "viewer-secret-123" not in run.stdout + run.stderr


def test_a_name_served_by_another_host_is_refused_and_nothing_changes(npm, tmp_path):
    other = site_vars(npm, npm_proxy_domain_names=["www.customer.test", SITE], npm_proxy_forward_host="10.77.0.9")
    assert run_role(tmp_path, "npm_proxy", "present", **other).ok
    before = npm.state.proxy_hosts()
    run = run_role(tmp_path, "npm_proxy", "present", **site_vars(npm))
    assert not run.ok
    assert f"{SITE} is already in use" in run.stdout
    assert npm.state.proxy_hosts() == before


def test_a_play_without_module_defaults_takes_the_connection_from_the_environment(npm, tmp_path):
    """An operator's own play that sets no module_defaults: the module reads PROXMOXWP_NPM_*, and the secret
    stays out of the output."""
    site = {key: value for key, value in site_vars(npm).items() if key != "proxmoxwp_npm_api"}
    env = {key: value for key, value in os.environ.items() if not key.startswith("PROXMOXWP_NPM_")}
    env.update(PROXMOXWP_NPM_URL=npm.url, PROXMOXWP_NPM_IDENTITY=npm.identity, PROXMOXWP_NPM_SECRET=npm.secret)
    run = run_role(tmp_path, "npm_proxy", "present", verbosity=3, env=env, **site)
    assert run.ok, run.stdout[-2000:]
    assert host(npm)["forward_host"] == "10.77.0.7" and host(npm)["ssl_forced"]
    assert npm.secret not in run.stdout + run.stderr
