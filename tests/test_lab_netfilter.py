"""What the lab's firewall makes of a guest's firewall config (lab/pve/netfilter.py), without nftables: a guest is
filtered only as PVE filters it, and its rules become chain rules in their order."""

from __future__ import annotations

from fakepve.firewall import empty_conf

from lab.pve.netfilter import guest_rules, rule_line, ruleset

NET0 = "name=eth0,bridge=vmbr0,ip=10.77.0.105/16,gw=10.77.0.1,firewall=1"


def firewall(**options) -> dict:
    conf = empty_conf()
    conf["options"] = {"enable": 1, "ipfilter": 1, "policy_in": "DROP", "policy_out": "DROP", **options}
    conf["ipset"]["ipfilter-net0"] = [{"cidr": "10.77.0.105"}]
    conf["rules"] = [
        {"type": "in", "action": "ACCEPT", "proto": "tcp", "dport": "80", "source": "10.77.0.1", "enable": 1},
        {"type": "out", "action": "DROP", "dest": "10.77.0.0/16,192.168.10.0/24", "enable": 1},
        {"type": "out", "action": "ACCEPT", "proto": "tcp", "dport": "80,443", "enable": 0},
    ]
    return conf


def test_a_guest_is_filtered_only_with_the_datacenter_its_own_firewall_and_nets_flag_on():
    on = {"enable": 1}
    assert guest_rules(105, {"net0": NET0}, firewall(), on) is not None
    assert guest_rules(105, {"net0": NET0}, firewall(), {}) is None
    assert guest_rules(105, {"net0": NET0}, firewall(enable=0), on) is None
    assert guest_rules(105, {"net0": NET0.replace(",firewall=1", "")}, firewall(), on) is None
    assert guest_rules(105, {"net0": NET0}, None, on) is None


def test_rules_keep_their_order_accept_leaves_the_other_side_to_decide_and_disabled_ones_are_left_out():
    rules = guest_rules(105, {"net0": NET0}, firewall(), {"enable": 1})
    assert rules.allowed == ["10.77.0.105"]
    assert [rule_line(r) for r in rules.rules] == [
        "ip saddr 10.77.0.1 meta l4proto tcp th dport 80 return",
        "ip daddr { 10.77.0.0/16, 192.168.10.0/24 } drop",
    ]
    rules.port = "vethAB12"
    script = ruleset("vmbr9", [rules])
    assert "ip saddr 10.77.0.105 jump ct105_out" in script and "ip daddr 10.77.0.105 jump ct105_in" in script
    assert 'iifname "vethAB12" ether type ip ip saddr != 10.77.0.105 drop' in script
    assert 'iifname "vethAB12" ether type arp arp saddr ip != 10.77.0.105 drop' in script
