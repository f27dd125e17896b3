"""`proxmoxwp lab up | down | status | node fail|restore|api-stop|api-start|list`."""

from __future__ import annotations

import json
import os
import sys

import click

from api.config import ConfigError, load_settings
from lab.supervisor.layout import DEFAULT_BIND, Lab, LabError, parse_bind
from lab.supervisor.parts import API, IMAGE, PARTS, Part


def _lab(bind: str | None = None) -> Lab:
    settings = load_settings()
    if bind is None:
        state = settings.data_dir / "lab" / "lab.json"
        try:
            bind = json.loads(state.read_text())["bind"]
        except (OSError, ValueError, KeyError, TypeError):
            bind = os.environ.get("PROXMOXWP_LAB_BIND") or DEFAULT_BIND
    return Lab(settings, str(bind))


@click.group()
def lab() -> None:
    """The local lab: the API and a worker on this machine (`up`, `down`, `status`)."""


@lab.command()
@click.option(
    "--bind",
    envvar="PROXMOXWP_LAB_BIND",
    default=DEFAULT_BIND,
    show_default=True,
    help="Address and port of the lab's API (also PROXMOXWP_LAB_BIND).",
)
@click.option(
    "--golden/--no-golden",
    envvar="PROXMOXWP_LAB_GOLDEN",
    default=True,
    show_default=True,
    help="Build the golden image when it is missing (about 3 minutes once); without it sites install from packages"
    " (also PROXMOXWP_LAB_GOLDEN=0).",
)
def up(bind: str, golden: bool) -> None:
    """Start every part that is not running: the containers' bridge, DNS, the Proxmox VE API on real containers, the
    proxy, the golden image, the API and a worker; wait until each answers."""
    from api.migrate import upgrade
    from api.runtime import Runtime

    parse_bind(bind)
    the_lab = _lab(bind)
    with the_lab.locked():
        recorded = _lab()
        if API.pid(recorded) is not None and recorded.bind != bind:
            click.echo(f"api: already running at {recorded.bind}; not moving it to {bind}")
            the_lab = recorded
        runtime = Runtime(the_lab.settings)
        runtime.check(need_schema=False)
        try:
            revision = upgrade(runtime.db)
        except Exception as exc:
            raise ConfigError(f"PROXMOXWP_DATABASE_URL: {str(getattr(exc, 'orig', exc)).splitlines()[0]}") from None
        finally:
            runtime.db.dispose()
        click.echo(f"database at revision {revision}")
        the_lab.ensure_token()
        the_lab.save_state()
        IMAGE.enabled = golden
        started: list[Part] = []
        try:
            for part in PARTS:
                was_running = part.pid(the_lab) is not None
                click.echo(part.start(the_lab))
                if not was_running:
                    started.append(part)
        except LabError:
            for part in reversed(started):
                part.stop(the_lab)
            raise
    click.echo(f"API at {the_lab.api_url}, token in {the_lab.token_file}")


@lab.command()
def down() -> None:
    """Stop every part that `lab up` started (SIGTERM, then SIGKILL after a bounded wait)."""
    the_lab = _lab()
    with the_lab.locked():
        failures = []
        for part in reversed(PARTS):
            try:
                click.echo(part.stop(the_lab))
            except LabError as exc:
                failures.append(exc.message)
    if failures:
        raise LabError("; ".join(failures))


@lab.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
def status(as_json: bool) -> None:
    """Each part with its state; exit status 0 when everything runs and answers, 3 otherwise."""
    the_lab = _lab()
    parts = [part.check(the_lab) for part in PARTS]
    everything_up = all(part.running and part.healthy for part in parts if not part.optional)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "up": everything_up,
                    "api_url": the_lab.api_url,
                    "token_file": str(the_lab.token_file),
                    "data_dir": str(the_lab.settings.data_dir),
                    "parts": [part.as_dict() for part in parts],
                }
            )
        )
    else:
        for part in parts:
            state = part.state
            pid = f" (pid {part.pid})" if part.pid else ""
            answers = part.extra.get("answers")
            extra = ""
            if part.running and answers is not None:
                extra = ", answers" if answers else ", NOT answering"
            where = [str(part.extra[key]) for key in ("url", "http", "dns", "bridge", "archive") if part.extra.get(key)]
            if where:
                extra += " — " + ", ".join(where)
            click.echo(f"{part.name:<8} {state}{pid}{extra}")
        click.echo(f"API url    {the_lab.api_url}")
        click.echo(f"token file {the_lab.token_file}")
    sys.exit(0 if everything_up else 3)


@lab.group()
def node() -> None:
    """The lab cluster's nodes: fail one as a real node fails (power lost), and bring it back."""


def _control(request: dict) -> None:
    from lab.pve import control

    try:
        answer = control.send(_lab().part_dir("pve"), request)
    except OSError as exc:
        message = f"the lab's Proxmox VE does not answer ({exc}): start it with `proxmoxwp lab up`"
        raise click.ClickException(message) from None
    if not answer.get("ok"):
        raise click.ClickException(answer.get("error") or "the lab's Proxmox VE refused the request")
    api = answer.get("api", {})
    for name, state in answer["nodes"].items():
        click.echo(f"{name:<8} {state:<8} api {api.get(name, 'listening')}")
    if request["command"] == "fail":
        delay = answer.get("ha_recovery_delay")
        click.echo(f"the HA manager recovers {request['node']}'s HA sites on another online node in {delay:g} s")


@node.command("fail")
@click.argument("name")
def node_fail(name: str) -> None:
    """Fail node NAME: offline for the cluster, its containers killed; HA recovers its sites after the HA delay
    (PROXMOXWP_LAB_HA_DELAY at `lab up`)."""
    _control({"command": "fail", "node": name})


@node.command("restore")
@click.argument("name")
def node_restore(name: str) -> None:
    """Bring failed node NAME back (its containers that HA did not move stay stopped)."""
    _control({"command": "restore", "node": name})


@node.command("api-stop")
@click.argument("name")
def node_api_stop(name: str) -> None:
    """Stop node NAME's API endpoint only (pveproxy down; the node and its containers run on): clients go to
    the other API hosts."""
    _control({"command": "api-stop", "node": name})


@node.command("api-start")
@click.argument("name")
def node_api_start(name: str) -> None:
    """Start node NAME's API endpoint again."""
    _control({"command": "api-start", "node": name})


@node.command("list")
def node_list() -> None:
    """Each node of the lab cluster, online or failed."""
    _control({"command": "nodes"})


if __name__ == "__main__":
    lab()
