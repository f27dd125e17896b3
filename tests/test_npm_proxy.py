"""The role npm_proxy (module proxmoxwp.hosting.proxmoxwp_npm_proxy_host) against the NPM double, which checks every
request body against NPM's own OpenAPI schema and behaves as NPM 2.15.1 does (token expiry, 400s, non-atomic create,
404 for a missing permission)."""

from __future__ import annotations

import os

import pytest
from role_runs import run_role

pytestmark = pytest.mark.cluster

SITE = "s7.sites.proxmoxwp.test"


def site_vars(npm, **overrides):
    api = {"url": npm.url, "identity": npm.identity, "secret": npm.secret}
    site = {"proxmoxwp_npm_api": api, "npm_proxy_domain_names": [SITE], "npm_proxy_forward_host": "10.77.0.7"}
    return site | overrides


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


def test_a_certificate_that_cannot_be_issued_leaves_a_working_http_host_and_says_why(npm, tmp_path):
    npm.state.fail_certificates(SITE, detail="DNS problem: NXDOMAIN looking up A for " + SITE)
    failed = run_role(tmp_path, "npm_proxy", "present", verbosity=1, **site_vars(npm))
    assert failed.ok, failed.stdout[-2000:]
    assert "ssl: error" in failed.stdout.replace('"', "")
    assert "NXDOMAIN looking up A" in failed.stdout
    made = host(npm)
    assert made["enabled"] and made["certificate_id"] == 0 and not made["ssl_forced"]

    npm.state.clear_faults()
    retried = run_role(tmp_path, "npm_proxy", "present", **site_vars(npm))
    assert retried.ok
    assert host(npm)["certificate_id"] > 0 and host(npm)["ssl_forced"]


def test_the_toggle_disables_and_enables_and_a_host_in_that_state_is_not_an_error(npm, tmp_path):
    assert run_role(tmp_path, "npm_proxy", "present", **site_vars(npm)).ok
    off = run_role(tmp_path, "npm_proxy", "present", **site_vars(npm, npm_proxy_enabled=False))
    assert off.ok and off.changed == 1 and not host(npm)["enabled"]
    still_off = run_role(tmp_path, "npm_proxy", "present", **site_vars(npm, npm_proxy_enabled=False))
    assert still_off.ok and still_off.changed == 0
    on = run_role(tmp_path, "npm_proxy", "present", **site_vars(npm))
    assert on.ok and host(npm)["enabled"] and host(npm)["ssl_forced"]


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
