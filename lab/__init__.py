"""Real LXC containers on this machine, for role tests (molecule), benchmarks and the local lab.

A cached Debian 12 rootfs (`ensure_rootfs`), a bridge with NAT to reach the mirror (`ensure_bridge`), and
containers made on them in a few milliseconds (`Containers`: an overlay on the cached rootfs) or about a
second (from a golden image archive written by `Containers.export`). `python -m lab` offers the same as
commands printing JSON, for Ansible playbooks. `lab.pve` is the lab's Proxmox VE API on these containers
(`python -m lab.pve`, docs/lab-pve.md).
"""

from lab.containers import ContainerInfo, Containers
from lab.errors import ContainerExistsError, ContainerNotFoundError, LabError
from lab.network import Bridge, ensure_bridge, free_subnet, remove_bridge
from lab.rootfs import ensure_rootfs
from lab.ssh import wait_ssh

__all__ = [
    "Bridge",
    "ContainerExistsError",
    "ContainerInfo",
    "ContainerNotFoundError",
    "Containers",
    "LabError",
    "ensure_bridge",
    "ensure_rootfs",
    "free_subnet",
    "remove_bridge",
    "wait_ssh",
]
