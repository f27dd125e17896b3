"""The build host: throwaway LXC containers on the controller, where the golden image is built.

`playbooks/template_build.yml` (role `build_container`) makes a container from a bare Debian 12 rootfs,
installs the site-independent part of WordPress into it over SSH and writes its root filesystem as a template
archive for Proxmox VE. What it needs is here: a cached Debian 12 rootfs (`ensure_rootfs`), a bridge with NAT
to reach the Debian mirror (`ensure_bridge`), containers made on them in milliseconds (`Containers`: an overlay
on the cached rootfs) or about a second (from an archive written by `Containers.export`), and `wait_ssh`.
`python -m api.build_host` offers the same as commands printing JSON, for the role.

The lab (lab/) and the tests stand their containers on the same tools.
"""

from api.build_host.containers import ContainerInfo, Containers
from api.build_host.errors import BuildHostError, ContainerExistsError, ContainerNotFoundError
from api.build_host.network import Bridge, ensure_bridge, free_subnet, remove_bridge
from api.build_host.rootfs import ensure_rootfs
from api.build_host.ssh import wait_ssh

__all__ = [
    "Bridge",
    "BuildHostError",
    "ContainerExistsError",
    "ContainerInfo",
    "ContainerNotFoundError",
    "Containers",
    "ensure_bridge",
    "ensure_rootfs",
    "free_subnet",
    "remove_bridge",
    "wait_ssh",
]
