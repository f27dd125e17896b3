# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)
"""A new container's address comes from the operator's pool (docs/addresses.md): the lowest address of the pool that
no guest of the cluster has configured and no other creation is taking at the same moment.

The cluster is the record of which addresses are taken: a site's container holds its address in net0 for as long as
it exists, and so does an archive a restore kept (docs/backups.md), so an address is free again exactly when its
container is destroyed. A creation running at the same time cannot be seen in the cluster yet (PVE writes the new
container's net0 only when the create task ends), so each address is also taken as a lock through the workers' lock
broker for as long as the create runs.
"""

import contextlib
import ipaddress
import re
import time

from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_guests import as_int, parse_props
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_lock import LockBusy, held
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_relocation import (
    KNOWN,
    settled,
    waits_for_relocation,
)

# The config keys that carry a guest's static address: a container's net0..netN, a VM's cloud-init ipconfig0..N.
ADDRESS_KEY = re.compile(r"^(net|ipconfig)\d+$")
LOCK_PREFIX = "address:"


def address_argument_spec():
    """The option addresses (doc fragment proxmoxwp.hosting.proxmoxwp_addresses)."""
    return {
        "addresses": {
            "type": "dict",
            "default": {},
            "options": {
                "ranges": {"type": "list", "elements": "str", "default": []},
                "exclude": {"type": "list", "elements": "str", "default": []},
            },
        }
    }


class NoAddress(Exception):
    """Every address of the pool is taken."""


class AddressPool:
    """The addresses new containers may get: the ranges (or the whole network), less the network and broadcast
    addresses, the gateway and the excluded addresses. ValueError with the reason when a setting is wrong."""

    def __init__(self, network, gateway=None, ranges=(), exclude=()):
        self.network = ipaddress.ip_network(network, strict=False)
        self.gateway = ipaddress.ip_address(gateway) if gateway else None
        self.blocks = [self._block(text) for text in ranges or ()]
        if not self.blocks:
            self.blocks = [(self.network[0], self.network[-1])]
        self.excluded = set()
        for text in exclude or ():
            self.excluded.update(self._excluded(text))

    def _inside(self, address, text):
        if address not in self.network:
            raise ValueError(f"{text!r} is not inside the containers' network {self.network}")
        return address

    def _block(self, text):
        text = str(text).strip()
        try:
            if "-" in text:
                first, last = (ipaddress.ip_address(part.strip()) for part in text.split("-", 1))
            else:
                block = ipaddress.ip_network(text, strict=False)
                first, last = block[0], block[-1]
        except ValueError as exc:
            raise ValueError(f"address range {text!r}: {exc}") from None
        if first > last:
            raise ValueError(f"address range {text!r} ends before it starts")
        return self._inside(first, text), self._inside(last, text)

    def _excluded(self, text):
        text = str(text).strip()
        try:
            if "/" in text:
                return set(ipaddress.ip_network(text, strict=False))
            return {ipaddress.ip_address(text)}
        except ValueError as exc:
            raise ValueError(f"excluded address {text!r}: {exc}") from None

    def usable(self, address):
        """Whether the pool may hand out `address` (an ipaddress object)."""
        if self.network.num_addresses > 2 and address in (self.network.network_address, self.network[-1]):
            return False
        return address != self.gateway and address not in self.excluded and self.holds(address)

    def holds(self, address):
        """Whether `address` lies in one of the pool's ranges (excluded or not)."""
        return any(first <= address <= last for first, last in self.blocks)

    def candidates(self):
        """The pool's usable addresses, range by range, lowest first within a range, each once."""
        seen = set()
        for first, last in self.blocks:
            current = first
            while current <= last:
                if current not in seen and self.usable(current):
                    seen.add(current)
                    yield current
                current += 1


def configured_addresses(config):
    """The static addresses (ipaddress objects) a guest's config gives its network devices."""
    found = set()
    for key, value in (config or {}).items():
        if not ADDRESS_KEY.match(str(key)):
            continue
        props = parse_props(value)[1]
        for name in ("ip", "ip6"):
            text = props.get(name, "")
            with contextlib.suppress(ValueError):
                found.add(ipaddress.ip_interface(text).ip)  # dhcp, auto and manual are no address
    return found


def guest_label(entry):
    """How a finding names a guest of /cluster/resources: CT 105 (name)."""
    kind = "CT" if (entry.get("type") or "lxc") == "lxc" else "VM"
    name = entry.get("name")
    return f"{kind} {as_int(entry.get('vmid'))}" + (f" ({name})" if name else "")


def guest_addresses(client, entry):
    """The static addresses in the config of the guest `entry` (of /cluster/resources), whose node must answer."""
    kind = entry.get("type") or "lxc"
    return configured_addresses(client.get(f"/nodes/{entry['node']}/{kind}/{as_int(entry.get('vmid'))}/config"))


def addresses_in_use(client, timeout, warn=None):
    """{address: "CT 105 (name)"} for every static address a guest of the cluster has configured.

    A guest on a node that does not answer has a config nobody can read. An HA guest is waited for until the HA
    manager has moved it (at most `timeout` seconds in all; NodeDown past that): it is running again somewhere
    soon, with its address. Any other one is passed over with a warning: nothing will move it, and waiting would
    stop every creation until its node is back (docs/addresses.md says what that leaves open)."""
    deadline = time.monotonic() + timeout
    used = {}
    for entry in client.get("/cluster/resources", type="vm") or []:
        if entry.get("status") not in KNOWN and not waits_for_relocation(entry):
            if warn is not None:
                warn(
                    f"the address of {guest_label(entry)} cannot be read: its node {entry.get('node')} does not "
                    "answer and it is not an HA resource; it is not avoided"
                )
            continue
        entry = settled(client, entry, max(0.0, deadline - time.monotonic()), warn)
        for address in guest_addresses(client, entry):
            used.setdefault(address, guest_label(entry))
    return used


@contextlib.contextmanager
def taken_address(client, pool, timeout, warn=None):
    """Yield the lowest free address of the pool as text, held against other creations until the block ends.

    NoAddress when the pool has no free address left."""
    used = addresses_in_use(client, timeout, warn)
    for address in pool.candidates():
        if address in used:
            continue
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(held(LOCK_PREFIX + str(address), 0))
            except LockBusy:
                continue  # another creation is taking it right now
            yield str(address)
            return
    raise NoAddress(
        f"no free address is left in the pool ({describe(pool)}): {len(used)} addresses are configured on guests; "
        "add a range to proxmoxwp_ct_addresses or remove guests"
    )


def describe(pool):
    return ", ".join(str(first) if first == last else f"{first}-{last}" for first, last in pool.blocks)


def net0(bridge, address, network, gateway):
    """The container's net0 property string for its address."""
    prefix = ipaddress.ip_network(network, strict=False).prefixlen
    return f"name=eth0,bridge={bridge},ip={address}/{prefix},gw={gateway}"
