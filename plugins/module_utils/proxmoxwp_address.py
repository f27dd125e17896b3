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
            "vmid {0} has no address in {1}: the network holds {2} addresses; choose a larger network or a "
            "lower vmid range".format(vmid, net, net.num_addresses)
        )
    address = net[vmid]
    if net.num_addresses > 2 and address in (net.network_address, net.broadcast_address):
        raise ValueError("vmid {0} maps to {1}, the network or broadcast address of {2}".format(vmid, address, net))
    if gateway and address == ipaddress.ip_address(gateway):
        raise ValueError("vmid {0} maps to {1}, the gateway".format(vmid, address))
    return str(address)


def net0(bridge, address, network, gateway):
    """The container's net0 property string for its derived address."""
    prefix = ipaddress.ip_network(network, strict=False).prefixlen
    return "name=eth0,bridge={0},ip={1}/{2},gw={3}".format(bridge, address, prefix, gateway)
