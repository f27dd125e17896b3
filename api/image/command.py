"""The `proxmoxwp image` commands: build the golden image, upload it to the cluster."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.group()
def image() -> None:
    """The golden image new sites are created from."""


@image.command()
def build() -> None:
    """Build the golden image (playbooks/template_build.yml with the configured inventory); prints its archive."""
    from api.config import load_settings
    from api.image.build import BuildError
    from api.image.build import build as build_image

    try:
        archive = build_image(load_settings())
    except BuildError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    click.echo(str(archive))


@image.command()
@click.option(
    "--archive",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The template archive (default: proxmoxwp_template.archive of the inventory).",
)
@click.option("--node", "nodes", multiple=True, help="Upload to this node (repeatable; default: every online node).")
@click.option(
    "--filename",
    default=None,
    help="The volume's file name on the storage (default: the archive's); a new name for a new image.",
)
def upload(archive: Path | None, nodes: tuple[str, ...], filename: str | None) -> None:
    """Upload the golden image to the template storage through the Proxmox VE API, checksum verified by PVE;
    prints the volid to set as proxmoxwp_pve_ostemplate."""
    from api.config import ConfigError, load_settings
    from api.image import upload as uploading
    from api.pve import pve_client

    settings = load_settings()
    try:
        where = uploading.target(settings)
        client, api_error = pve_client(settings, where.api)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    archive = archive or where.archive
    if not archive.is_file():
        click.echo(f"{archive}: no such archive (build it with `proxmoxwp image build`)", err=True)
        sys.exit(2)
    say = lambda line: click.echo(line, err=True)  # noqa: E731 - progress on stderr, the volid alone on stdout
    try:
        volid = uploading.upload(
            client, archive, where.storage, filename or archive.name, nodes or uploading.online_nodes(client), say
        )
    except (api_error, ValueError) as exc:
        click.echo(f"upload failed: {getattr(exc, 'message', None) or exc}", err=True)
        sys.exit(1)
    say(f"set proxmoxwp_pve_ostemplate: {volid}")
    click.echo(volid)
