"""Where the lab keeps its files and how its parts find each other: `<data dir>/lab/`."""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import click

from api.build_host.environment import build_environment
from api.config import Settings

DEFAULT_BIND = "127.0.0.1:8080"


@dataclass(frozen=True)
class LabAddresses:
    """Where the lab's parts listen (all on loopback) and the containers' network; each can be moved with its
    PROXMOXWP_LAB_* variable when something else of the machine uses it."""

    pve_port: int = 8006
    npm_port: int = 8181
    http_port: int = 8880
    https_port: int = 8443
    pdns_api_port: int = 18081
    dns_port: int = 5300
    bridge: str = "pwplab0"
    network: str = "10.77.0.0/16"

    @classmethod
    def from_environment(cls) -> LabAddresses:
        values: dict[str, object] = {}
        for name, default in cls.__dataclass_fields__.items():
            raw = os.environ.get(f"PROXMOXWP_LAB_{name.upper()}")
            if raw:
                values[name] = int(raw) if isinstance(default.default, int) else raw
        return cls(**values)

    @property
    def gateway(self) -> str:
        """The host's address on the bridge (the network's first address), with the prefix."""
        network = ipaddress.ip_network(self.network)
        return f"{network[1]}/{network.prefixlen}"

    @property
    def pool(self) -> str:
        """The sites' addresses (PROXMOXWP_LAB_ADDRESSES): the network's upper part, from its 100th address (the
        first vmid, as the addresses once were) up to below the build container's."""
        network = ipaddress.ip_network(self.network)
        first = min(100, network.num_addresses // 2)
        return f"{network[first]}-{network[-3]}"

    @property
    def build_address(self) -> str:
        """The golden image's build container: the network's last usable address, above the sites' pool."""
        network = ipaddress.ip_network(self.network)
        return f"{network[-2]}/{network.prefixlen}"


class LabError(click.ClickException):
    """A part could not be started or stopped; the message says which and why."""


@dataclass
class Lab:
    """Where the lab keeps its files, and how its parts reach each other."""

    settings: Settings
    bind: str
    addresses: LabAddresses = field(default_factory=LabAddresses.from_environment)

    @property
    def directory(self) -> Path:
        return self.settings.data_dir / "lab"

    @property
    def token_file(self) -> Path:
        return self.directory / "api-token"

    @property
    def state_file(self) -> Path:
        return self.directory / "lab.json"

    @property
    def api_url(self) -> str:
        host, port = parse_bind(self.bind)
        if host in ("0.0.0.0", "::"):  # noqa: S104 - a wildcard bind is reached on loopback
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"  # noqa: S104
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def part_dir(self, name: str) -> Path:
        """A part's own directory (config, state, secrets, info file), made on first use."""
        path = self.directory / name
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    def naming_zone(self) -> str:
        """The sites' base zone of the lab's inventory, which the lab's DNS serves."""
        from api.inventory import Inventory

        return Inventory(self.settings.inventory, self.settings.vault_password_file).naming.base_zone

    @staticmethod
    def nameserver() -> str:
        """The resolver the lab's containers use: the host's own (the lab's DNS only holds the lab's zones)."""
        from api.build_host.errors import BuildHostError as NoNameserver
        from api.build_host.resolv import host_nameservers

        try:
            return host_nameservers()[0]
        except NoNameserver:
            return ""

    @property
    def ssh_key(self) -> Path:
        """The key the playbooks log in to the lab's containers with (its .pub is put in each at create)."""
        return self.directory / "ssh" / "id_ed25519"

    def environment(self) -> dict[str, str]:
        """The environment of every part: this one, pinned to the lab's data dir and token file, and pointing the
        playbooks at the lab's parts (inventory/lab reads these variables)."""
        env = dict(os.environ)
        env["PROXMOXWP_DATA_DIR"] = str(self.settings.data_dir)
        env["PROXMOXWP_API_TOKENS_FILE"] = str(self.token_file)
        env["PROXMOXWP_LAB_DIR"] = str(self.directory)
        env["PROXMOXWP_CT_SSH_KEY"] = str(self.ssh_key)
        env["PROXMOXWP_LAB_NETWORK"] = self.addresses.network
        env["PROXMOXWP_LAB_GATEWAY"] = self.addresses.gateway
        env["PROXMOXWP_LAB_BRIDGE"] = self.addresses.bridge
        env["PROXMOXWP_LAB_BUILD_ADDRESS"] = self.addresses.build_address
        env["PROXMOXWP_LAB_ADDRESSES"] = self.addresses.pool
        # the golden image is built on the lab's own bridge and directory (role build_container)
        env.update(build_environment(self.directory, self.addresses.bridge, self.addresses.gateway))
        env.setdefault("PROXMOXWP_LAB_NAMESERVER", self.nameserver())
        bindir = str(Path(sys.executable).parent)
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
        return env

    def ensure_token(self) -> None:
        """A random bearer token, readable by its owner only, made once."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            os.chmod(self.token_file, 0o600)
            return
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")

    def save_state(self) -> None:
        self.state_file.write_text(json.dumps({"bind": self.bind}) + "\n")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One `lab up` or `lab down` at a time."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.directory / "lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield


def parse_bind(bind: str) -> tuple[str, int]:
    """HOST:PORT (HOST may be [IPv6]) as (host, port); LabError when it is not that."""
    host, _, port = bind.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise LabError(f"the API address must be HOST:PORT with a port from 1 to 65535, not {bind!r}")
    return host, int(port)


def proxmoxwp_command() -> str:
    beside = Path(sys.executable).parent / "proxmoxwp"
    found = str(beside) if beside.exists() else shutil.which("proxmoxwp")
    if not found:
        raise LabError("the `proxmoxwp` command is not installed beside this Python or on PATH")
    return found
