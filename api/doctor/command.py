"""The `proxmoxwp doctor` command."""

from __future__ import annotations

import json
import sys

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object: ok and every check.")
@click.option("--local", "local_only", is_flag=True, help="Only what this machine can check (no cluster, NPM, DNS).")
@click.option(
    "--worker-user",
    default=None,
    help="The user the workers run as, whose access to the SSH key is checked (default: the user running this).",
)
def doctor(as_json: bool, local_only: bool, worker_user: str | None) -> None:
    """Check everything a site needs and say what to fix; exit status 1 when something is wrong."""
    from api.config import load_settings
    from api.doctor import cluster, local
    from api.doctor.findings import as_json as json_report
    from api.doctor.findings import as_text
    from api.runtime import Runtime

    runtime = Runtime(load_settings())
    user = worker_user or local.current_user()
    found = local.everything(runtime, user)
    if not local_only:
        found += cluster.findings(runtime)
    click.echo(json.dumps(json_report(found), indent=2) if as_json else as_text(found))
    sys.exit(0 if all(f.ok for f in found) else 1)
