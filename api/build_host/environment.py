"""The variables the role build_container reads (its defaults/main.yml), for whoever runs it on its own host."""

from __future__ import annotations

from pathlib import Path


def build_environment(directory: Path, bridge: str, gateway: str) -> dict[str, str]:
    """Where the build host keeps its containers, rootfs cache, key and images, and the bridge they plug into
    with the host's address on it (ADDRESS/PREFIX)."""
    return {
        "PROXMOXWP_BUILD_DIR": str(directory),
        "PROXMOXWP_BUILD_BRIDGE": bridge,
        "PROXMOXWP_BUILD_GATEWAY": gateway,
    }
