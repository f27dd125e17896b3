"""The fake PVE's firewall API as PVE answers it to the project's token: a container's options, rules and IP sets
(fakepve's, with PVE's checks and texts), PVE's permissions for them, net0's firewall flag, and the container's
firewall config gone with the container."""

from __future__ import annotations

import pytest
from test_fake_pve import Api, create_ct, ct_path

pytestmark = pytest.mark.cluster


@pytest.fixture
def api(pve) -> Api:
    return Api(pve)


def fw(vmid: int, rest: str = "") -> str:
    return ct_path(vmid, "/firewall" + rest)


def test_a_containers_options_rules_and_ipset_are_kept_and_read_back(api):
    create_ct(api, 100, net0="name=eth0,bridge=vmbr0,ip=10.77.0.100/16,gw=10.77.0.1,firewall=1")
    assert "firewall=1" in api.ok("GET", ct_path(100, "/config"))["net0"]
    api.ok("PUT", fw(100, "/options"), enable=1, ipfilter=1, policy_in="DROP", policy_out="DROP")
    options = api.ok("GET", fw(100, "/options"))
    assert {k: options[k] for k in ("enable", "ipfilter", "policy_in", "policy_out")} == {
        "enable": 1,
        "ipfilter": 1,
        "policy_in": "DROP",
        "policy_out": "DROP",
    }
    api.ok("POST", fw(100, "/ipset"), name="ipfilter-net0")
    api.ok("POST", fw(100, "/ipset/ipfilter-net0"), cidr="10.77.0.100")
    assert [e["cidr"] for e in api.ok("GET", fw(100, "/ipset/ipfilter-net0"))] == ["10.77.0.100"]
    api.ok("POST", fw(100, "/rules"), type="out", action="DROP", dest="10.77.0.0/16", enable=1)
    # PVE puts a new rule first whatever pos says (Rules.pm's create unshifts it).
    api.ok("POST", fw(100, "/rules"), type="in", action="ACCEPT", proto="tcp", dport="80", source="10.77.0.1", pos=1)
    rules = api.ok("GET", fw(100, "/rules"))
    assert [(r["pos"], r["type"], r["action"]) for r in rules] == [(0, "in", "ACCEPT"), (1, "out", "DROP")]
    assert api.ok("GET", fw(100, "/rules/1"))["dest"] == "10.77.0.0/16"
    # A rule made without enable is off.
    assert api.ok("GET", fw(100, "/rules/0"))["enable"] == 0
    api.ok("PUT", fw(100, "/rules/1"), comment="no other site")
    assert api.ok("GET", fw(100, "/rules/1"))["comment"] == "no other site"
    api.ok("DELETE", fw(100, "/rules/0"))
    assert [r["type"] for r in api.ok("GET", fw(100, "/rules"))] == ["out"]


def test_pve_refuses_a_bad_rule_with_its_400(api):
    create_ct(api, 100)
    refused = api.request("POST", fw(100, "/rules"), type="in", action="ACCEPT", dport="80")
    assert refused.status_code == 400
    assert refused.json()["errors"] == {"proto": "missing property - 'dport' requires this property"}
    refused = api.request("POST", fw(100, "/rules"), type="in", action="ACCEPT", source="10.77.0.300")
    assert refused.status_code == 400 and "source" in refused.json()["errors"]
    refused = api.request("PUT", fw(100, "/options"), policy_in="ALLOW")
    assert refused.status_code == 400 and "policy_in" in refused.json()["errors"]


def test_the_token_reads_the_datacenter_firewall_but_may_not_switch_it(api):
    assert api.ok("GET", "/cluster/firewall/options").get("enable", 0) == 0
    refused = api.request("PUT", "/cluster/firewall/options", enable=1)
    assert (refused.status_code, refused.reason) == (403, "Permission check failed (/, Sys.Modify)")


def test_rules_need_vm_config_network_on_the_guest(pve, api):
    create_ct(api, 100)
    pve.call(pve.pve.take_privilege, "VM.Config.Network")
    refused = api.request("POST", fw(100, "/rules"), type="in", action="ACCEPT", proto="tcp", dport="22")
    assert (refused.status_code, refused.reason) == (403, "Permission check failed (/vms/100, VM.Config.Network)")
    assert api.ok("GET", fw(100, "/rules")) == []


def test_destroying_a_container_removes_its_firewall_config(pve, api):
    create_ct(api, 100)
    api.ok("PUT", fw(100, "/options"), enable=1)
    api.ok("POST", fw(100, "/ipset"), name="ipfilter-net0")
    api.ok("POST", fw(100, "/rules"), type="in", action="ACCEPT", proto="tcp", dport="80", enable=1)
    assert api.run("DELETE", ct_path(100)) == "OK"
    assert pve.call(pve.pve.guest_firewall, 100) is None
    create_ct(api, 100)
    assert api.ok("GET", fw(100, "/rules")) == []
    assert api.ok("GET", fw(100, "/ipset")) == []
    assert "enable" not in api.ok("GET", fw(100, "/options"))
