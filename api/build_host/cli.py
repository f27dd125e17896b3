"""`python -m api.build_host`: the build host's operations as commands that print one JSON object, for Ansible.

The role `build_container` (the golden image's build, molecule's create and destroy) calls these with
`command:` and reads the JSON with `from_json`.
A failure, a wrong option included, exits 1 with a one-line `Error: ...` on stderr and nothing on stdout.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from api.build_host.containers import Containers
from api.build_host.errors import BuildHostError
from api.build_host.network import ensure_bridge, remove_bridge
from api.build_host.rootfs import ensure_rootfs
from api.build_host.ssh import wait_ssh


def _print(data: object) -> None:
    click.echo(json.dumps(data, sort_keys=True))


lxcpath_option = click.option(
    "--lxcpath", required=True, type=click.Path(file_okay=False, path_type=Path), help="LXC path (lxc-* -P)."
)
name_option = click.option("--name", required=True, help="The container's name.")


@click.group()
def cli() -> None:
    """Throwaway LXC containers on this machine: the golden image's build, role tests, the lab."""


@cli.command()
@click.option("--cache", required=True, type=click.Path(file_okay=False, path_type=Path), help="Cache directory.")
def rootfs(cache: Path) -> None:
    """Build the cached Debian 12 rootfs if it is missing; print its path."""
    _print({"rootfs": str(ensure_rootfs(cache))})


@cli.command("bridge-up")
@click.option("--name", required=True, help="Bridge name, e.g. pwplab0.")
@click.option("--gateway", required=True, help="The host's address on it, ADDRESS/PREFIX.")
def bridge_up(name: str, gateway: str) -> None:
    """Make the bridge with NAT (idempotent)."""
    _print(ensure_bridge(name, gateway).as_dict())


@cli.command("bridge-down")
@click.option("--name", required=True, help="Bridge name.")
def bridge_down(name: str) -> None:
    """Remove the bridge and its nftables table (missing parts are fine)."""
    remove_bridge(name)
    _print({"bridge": name, "removed": True})


@cli.command()
@lxcpath_option
@name_option
@click.option("--source", required=True, type=click.Path(exists=True, path_type=Path), help="Rootfs dir or archive.")
@click.option("--ip", "ip_cidr", required=True, help="ADDRESS/PREFIX of the container.")
@click.option("--gateway", required=True, help="The bridge's address (the container's default route).")
@click.option("--bridge", required=True, help="The bridge to plug into.")
@click.option(
    "--authorized-key-file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Public key allowed to log in as root.",
)
@click.option("--memory-mb", type=click.IntRange(min=1), help="Memory limit in MiB.")
@click.option("--nameserver", "nameservers", multiple=True, help="DNS server (repeatable); default: the host's.")
@click.option("--overlay/--no-overlay", default=None, help="Stack on the rootfs dir or copy it (default: stack).")
def create(
    lxcpath: Path,
    name: str,
    source: Path,
    ip_cidr: str,
    gateway: str,
    bridge: str,
    authorized_key_file: Path,
    memory_mb: int | None,
    nameservers: tuple[str, ...],
    overlay: bool | None,
) -> None:
    """Make a stopped container; print its name and address."""
    info = Containers(lxcpath).create(
        name,
        source=source,
        ip_cidr=ip_cidr,
        gateway=gateway,
        bridge=bridge,
        authorized_key=authorized_key_file.read_text(),
        memory_mb=memory_mb,
        nameservers=list(nameservers) or None,
        overlay=overlay,
    )
    _print({"name": info.name, "ip": info.ip})


@cli.command()
@lxcpath_option
@name_option
def start(lxcpath: Path, name: str) -> None:
    """Boot the container (returns when LXC reports it RUNNING; use wait-ssh for SSH)."""
    containers = Containers(lxcpath)
    containers.start(name)
    _print({"name": name, "state": containers.state(name), "ip": containers.ip(name)})


@cli.command()
@lxcpath_option
@name_option
@click.option("--timeout", default=30.0, show_default=True, help="Seconds of clean shutdown before the kill.")
def stop(lxcpath: Path, name: str, timeout: float) -> None:
    """Shut the container down."""
    containers = Containers(lxcpath)
    containers.stop(name, timeout=timeout)
    _print({"name": name, "state": containers.state(name)})


@cli.command()
@lxcpath_option
@name_option
def destroy(lxcpath: Path, name: str) -> None:
    """Stop and remove the container (a missing one is fine)."""
    Containers(lxcpath).destroy(name)
    _print({"name": name, "destroyed": True})


@cli.command("wait-ssh")
@click.option("--ip", required=True, help="The container's address.")
@click.option("--port", default=22, show_default=True)
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait.")
def wait_ssh_command(ip: str, port: int, timeout: float) -> None:
    """Wait until sshd sends its banner."""
    _print({"ip": ip, "port": port, "banner": wait_ssh(ip, port, timeout)})


@cli.command()
@lxcpath_option
@name_option
@click.option("--archive", required=True, type=click.Path(dir_okay=False, path_type=Path), help=".tar.zst or .tar.gz")
def export(lxcpath: Path, name: str, archive: Path) -> None:
    """Stop the container and write its root filesystem as a golden image."""
    written = Containers(lxcpath).export(name, archive)
    _print({"name": name, "archive": str(written), "bytes": written.stat().st_size})


@cli.command("list")
@lxcpath_option
def list_command(lxcpath: Path) -> None:
    """The containers under the LXC path, with state and address."""
    _print({"containers": [info.as_dict() for info in Containers(lxcpath).list()]})


def main(argv: list[str] | None = None) -> int:
    """Run one command; any failure, a wrong option included, is one `Error: ...` line and exit status 1."""
    try:
        code = cli.main(args=argv, prog_name="python -m api.build_host", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Error: interrupted", err=True)
        return 1
    except (click.ClickException, BuildHostError) as exc:
        message = exc.format_message() if isinstance(exc, click.ClickException) else str(exc)
        click.echo(f"Error: {' '.join(message.split())}", err=True)
        return 1
    return code if isinstance(code, int) else 0
