# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)
"""A container's address is derived from its vmid (docs/addresses.md), so nobody has to be asked where a site is."""

import ipaddress


def container_address(network, gateway, vmid):
    """The vmid-th address of network, as text; ValueError when the rule cannot give a usable address."""
    net = ipaddress.ip_network(network, strict=False)
    vmid = int(vmid)
    if vmid >= net.num_addresses:
        raise ValueError(
            f"vmid {vmid} has no address in {net}: the network holds {net.num_addresses} addresses; "
            "choose a larger network or a lower vmid range"
        )
    address = net[vmid]
    if net.num_addresses > 2 and address in (net.network_address, net.broadcast_address):
        raise ValueError(f"vmid {vmid} maps to {address}, the network or broadcast address of {net}")
    if gateway and address == ipaddress.ip_address(gateway):
        raise ValueError(f"vmid {vmid} maps to {address}, the gateway")
    return str(address)


def net0(bridge, address, network, gateway):
    """The container's net0 property string for its derived address."""
    prefix = ipaddress.ip_network(network, strict=False).prefixlen
    return f"name=eth0,bridge={bridge},ip={address}/{prefix},gw={gateway}"
