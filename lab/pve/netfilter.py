"""The lab's Proxmox VE firewall: the guests' firewall config (options, rules, IP filter) applied with nftables on
the lab's bridge, as pve-firewall applies it on a node, so that a test inside a container meets it.

What filters traffic between two containers on one Linux bridge here: bridged IPv4 is passed through the `inet`
(and `ip`) forward hook by br_netfilter (`net.bridge.bridge-nf-call-iptables = 1`, built into this kernel), where
conntrack works but the input and output interfaces are the bridge, not the containers' veths. The `bridge` family
sees the veths, but has no conntrack here (nf_conntrack_bridge is not available: `ct state` there is refused). So:

- table `inet proxmoxwp_fw_<bridge>`: the stateful rules. Answers to allowed connections pass (ct state
  established,related); a new packet goes through its sender's `out` chain (by source address: forward and
  input hooks) and then its receiver's `in` chain (by destination: forward and output hooks). A rule that ACCEPTs
  returns to the base chain (the other side still decides), DROP and REJECT end it; each chain ends with the
  guest's policy. Traffic of this machine (the proxy and the controller in the lab) meets the containers' `in`
  chains in the output hook, and their traffic to it the `out` chains in the input hook.
- table `bridge proxmoxwp_fw_<bridge>`: the IP filter, by the container's veth: IPv4 and ARP from any other
  address than those allowed (the IP set `ipfilter-net0` and net0's own address, as PVE adds for containers) are
  dropped where they enter the bridge. The source address the `inet` table trusts is thereby the sender's own.

As on PVE, a guest is filtered only while the datacenter firewall is on, its own firewall is on and its net0 has
`firewall=1`. Both tables are replaced whole in one nft transaction at every change, and removed with the lab's
API (at its stop) and by `lab down` (remove_tables).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import subprocess
from dataclasses import dataclass, field

from fakepve.lxc import split_props

log = logging.getLogger("lab.pve")
VERDICTS = {"ACCEPT": "return", "DROP": "drop", "REJECT": "reject"}


@dataclass
class GuestRules:
    """What the tables need of one filtered guest."""

    vmid: int
    address: str
    options: dict
    rules: list[dict]
    allowed: list[str] = field(default_factory=list)  # the IP filter's addresses (empty: no IP filter)
    port: str | None = None  # the host side of its veth (when it runs)


def table_name(bridge: str) -> str:
    return f"proxmoxwp_fw_{bridge}"


def guest_rules(vmid: int, config: dict, firewall: dict | None, datacenter: dict) -> GuestRules | None:
    """The guest's rules when PVE would filter it, else None."""
    if not firewall or not _on(datacenter.get("enable")) or not _on(firewall["options"].get("enable")):
        return None
    props = split_props(str(config.get("net0") or ""))[1]
    if not _on(props.get("firewall")):
        return None
    address = str(props.get("ip", "")).split("/", 1)[0]
    if not _is_ip(address):
        return None
    allowed = []
    if _on(firewall["options"].get("ipfilter")):
        allowed = sorted({address, *(e["cidr"] for e in firewall["ipset"].get("ipfilter-net0", []))})
    rules = [r for r in firewall["rules"] if _on(r.get("enable")) and r.get("type") in ("in", "out")]
    return GuestRules(vmid, address, dict(firewall["options"]), rules, allowed)


def _on(value) -> bool:
    try:
        return int(value or 0) > 0
    except (TypeError, ValueError):
        return str(value).lower() in ("true", "yes", "on")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _addresses(text: str) -> str:
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _ports(text: str) -> str:
    items = [item.strip().replace(":", "-") for item in str(text).split(",") if item.strip()]
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def rule_line(rule: dict) -> str | None:
    """One PVE rule as an nft rule of the guest's chain; None for what the lab does not translate (macros)."""
    if rule.get("macro"):
        log.warning("lab firewall: macro %s not applied (the lab translates proto/port rules only)", rule["macro"])
        return None
    parts = []
    if rule.get("source"):
        parts.append(f"ip saddr {_addresses(rule['source'])}")
    if rule.get("dest"):
        parts.append(f"ip daddr {_addresses(rule['dest'])}")
    proto = rule.get("proto")
    if proto:
        parts.append(f"meta l4proto {proto}")
        if rule.get("sport"):
            parts.append(f"th sport {_ports(rule['sport'])}")
        if rule.get("dport"):
            parts.append(f"th dport {_ports(rule['dport'])}")
    parts.append(VERDICTS[rule["action"]])
    return " ".join(parts)


def _chain(name: str, rules: list[dict], policy: str) -> list[str]:
    lines = [f"  chain {name} {{"]
    lines += [f"    {line}" for line in (rule_line(r) for r in rules) if line]
    lines += [f"    {VERDICTS.get(policy, 'drop')}", "  }"]
    return lines


def ruleset(bridge: str, guests: list[GuestRules]) -> str:
    """An nft script that replaces both tables whole (declared, deleted, defined in one transaction)."""
    table = table_name(bridge)
    lines = [f"table inet {table}", f"delete table inet {table}", f"table inet {table} {{"]
    hooks = {"forward": ("out", "in"), "input": ("out",), "output": ("in",)}
    for hook, sides in hooks.items():
        lines += [
            f"  chain {hook} {{",
            f"    type filter hook {hook} priority filter; policy accept;",
            "    ct state established,related accept",
        ]
        for side in sides:
            match = "saddr" if side == "out" else "daddr"
            lines += [f"    ip {match} {g.address} jump ct{g.vmid}_{side}" for g in guests]
        lines.append("  }")
    for g in guests:
        lines += _chain(f"ct{g.vmid}_in", [r for r in g.rules if r["type"] == "in"], g.options.get("policy_in", "DROP"))
        out_policy = g.options.get("policy_out", "ACCEPT")
        lines += _chain(f"ct{g.vmid}_out", [r for r in g.rules if r["type"] == "out"], out_policy)
    lines.append("}")
    lines += [f"table bridge {table}", f"delete table bridge {table}", f"table bridge {table} {{"]
    lines += ["  chain prerouting {", "    type filter hook prerouting priority filter; policy accept;"]
    for g in guests:
        if g.allowed and g.port:
            allowed = _addresses(",".join(g.allowed))
            lines.append(f'    iifname "{g.port}" ether type ip ip saddr != {allowed} drop')
            lines.append(f'    iifname "{g.port}" ether type arp arp saddr ip != {allowed} drop')
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def veth_of(pid: int | None) -> str | None:
    """The host side of the veth whose other end is eth0 in the network namespace of process pid."""
    if not pid:
        return None
    inside = subprocess.run(
        ["nsenter", "-t", str(pid), "-n", "ip", "-json", "link", "show", "eth0"],
        capture_output=True,
        text=True,
        check=False,
    )
    if inside.returncode != 0:
        return None
    index = (json.loads(inside.stdout or "[]") or [{}])[0].get("link_index")
    if index is None:
        return None
    links = json.loads(subprocess.run(["ip", "-json", "link"], capture_output=True, text=True, check=True).stdout)
    return next((link["ifname"] for link in links if link.get("ifindex") == index), None)


def apply(bridge: str, guests: list[GuestRules]) -> None:
    """Both tables as the guests' rules say (an empty ruleset when no guest is filtered)."""
    subprocess.run(["nft", "-f", "-"], input=ruleset(bridge, guests), text=True, capture_output=True, check=True)


def remove_tables(bridge: str) -> None:
    """Both tables of the bridge gone; tables already gone are not an error."""
    table = table_name(bridge)
    script = "".join(f"table {family} {table}\ndelete table {family} {table}\n" for family in ("inet", "bridge"))
    subprocess.run(["nft", "-f", "-"], input=script, text=True, capture_output=True, check=True)


def our_tables() -> list[str]:
    """Names of the lab firewall tables on this machine (both families)."""
    listed = subprocess.run(["nft", "--json", "list", "tables"], capture_output=True, text=True, check=True).stdout
    names = [entry.get("table", {}).get("name", "") for entry in json.loads(listed).get("nftables", [])]
    return sorted({name for name in names if re.match(r"^proxmoxwp_fw_", name)})
