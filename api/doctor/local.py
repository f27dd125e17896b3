"""What this machine can check by itself: the database, the queue, the inventory, the SSH key, the resolvers and
the way to the containers' network."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import dns.exception
import dns.resolver

from api.ansible_vars import read_variables
from api.config import ConfigError
from api.doctor.findings import Finding
from api.domain_dns import make_resolver
from api.runtime import Runtime

PING_SECONDS = 2


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0][:300]


def inventory(runtime: Runtime) -> Finding:
    try:
        runtime.inventory.check()
    except ConfigError as exc:
        return Finding("inventory", False, str(exc), "Fix the inventory (PROXMOXWP_INVENTORY) as the message says.")
    plans = ", ".join(sorted(runtime.inventory.plans))
    return Finding("inventory", True, f"The inventory {runtime.settings.inventory} reads; plans: {plans}.")


def database(runtime: Runtime) -> Finding:
    from api.migrate import current_revision, head_revision

    try:
        current, head = current_revision(runtime.db), head_revision(runtime.db)
    except Exception as exc:
        return Finding(
            "database",
            False,
            f"The database does not answer: {_first_line(exc)}",
            "Check PROXMOXWP_DATABASE_URL and that the database server runs.",
        )
    if current != head:
        return Finding(
            "database",
            False,
            f"The database is at revision {current or 'none'}, not at the newest, {head}.",
            "Run `proxmoxwp db upgrade` (with the API and the workers stopped).",
        )
    return Finding("database", True, f"The database is at the newest revision, {head}.")


def queue(runtime: Runtime) -> Finding:
    try:
        waiting = runtime.queue.pending()
    except Exception as exc:
        return Finding(
            "queue",
            False,
            f"The job queue does not answer: {_first_line(exc)}",
            "Check PROXMOXWP_QUEUE_URL and that Redis (or the SQLite file's folder) is reachable.",
        )
    return Finding("queue", True, f"The job queue answers ({waiting} waiting).")


def readable_by(path: Path, user: str) -> bool:
    """Whether `user` may read `path` by its mode bits (root reads everything; ACLs are not looked at)."""
    account = pwd.getpwnam(user)
    if account.pw_uid == 0:
        return True
    info = path.stat()
    groups = {account.pw_gid, *(g.gr_gid for g in grp.getgrall() if user in g.gr_mem)}
    if info.st_uid == account.pw_uid:
        return bool(info.st_mode & stat.S_IRUSR)
    if info.st_gid in groups:
        return bool(info.st_mode & stat.S_IRGRP)
    return bool(info.st_mode & stat.S_IROTH)


def ssh_key(runtime: Runtime, user: str) -> Finding:
    setting = read_variables(runtime.settings.inventory, ["proxmoxwp_ct_ssh"], runtime.settings.vault_password_file)
    key = str((setting.get("proxmoxwp_ct_ssh") or {}).get("private_key_file") or "")
    if not key:
        return Finding(
            "ssh.key",
            False,
            "proxmoxwp_ct_ssh.private_key_file is not set.",
            "Set it in the inventory to the key the playbooks reach the containers with.",
        )
    private, public = Path(key), Path(key + ".pub")
    make = f"Make the pair with `ssh-keygen -t ed25519 -N '' -f {private}` and give it to {user}."
    for path in (private, public):
        if not path.is_file():
            return Finding("ssh.key", False, f"The SSH key {path} does not exist.", make)
    if not readable_by(private, user):
        return Finding(
            "ssh.key",
            False,
            f"{user}, who runs the workers, cannot read the SSH key {private}.",
            f"`chown {user} {private} && chmod 600 {private}`.",
        )
    if private.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        return Finding(
            "ssh.key",
            False,
            f"The SSH key {private} can be read by others than its owner; ssh refuses such a key.",
            f"`chmod 600 {private}`.",
        )
    return Finding("ssh.key", True, f"The SSH key pair {private} is there, readable by {user} only.")


def container_network(runtime: Runtime) -> Finding:
    setting = read_variables(runtime.settings.inventory, ["proxmoxwp_ct_gateway"], runtime.settings.vault_password_file)
    gateway = str(setting.get("proxmoxwp_ct_gateway") or "")
    if not gateway:
        return Finding("network.containers", False, "proxmoxwp_ct_gateway is not set.", "Set it in the inventory.")
    ping = shutil.which("ping")
    if ping is None:
        return Finding("network.containers", False, "ping is not installed here.", "apt-get install iputils-ping")
    answered = subprocess.run(
        [ping, "-n", "-c", "1", "-W", str(PING_SECONDS), gateway], capture_output=True, check=False
    ).returncode
    if answered != 0:
        return Finding(
            "network.containers",
            False,
            f"The containers' gateway {gateway} does not answer a ping from this machine.",
            "The playbooks reach the containers over SSH from here: route the containers' network to this machine "
            "(or run the workers on a machine on it).",
        )
    return Finding("network.containers", True, f"The containers' gateway {gateway} answers from this machine.")


def resolvers(runtime: Runtime) -> Finding:
    settings = runtime.settings
    named = ", ".join(f"{host}:{port}" for host, port in settings.dns_resolvers) or "the system's (/etc/resolv.conf)"
    zone = runtime.inventory.naming.base_zone
    resolver = make_resolver(settings.dns_resolvers, settings.dns_timeout)
    try:
        resolver.resolve(zone, "SOA", raise_on_no_answer=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.YXDOMAIN):
        pass  # an answer all the same: the resolvers work
    except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
        return Finding(
            "resolvers",
            False,
            f"The resolvers {named} did not answer for {zone}: {_first_line(exc)}",
            "Set PROXMOXWP_DNS_RESOLVERS to resolvers this machine reaches (they check customers' domains).",
        )
    return Finding("resolvers", True, f"The resolvers {named} answer.")


def cheap(runtime: Runtime, user: str) -> list[Finding]:
    """What `GET /health?deep=1` runs: no network beyond the database and the queue."""
    return [
        _safely("inventory", inventory, runtime),
        _safely("database", database, runtime),
        _safely("queue", queue, runtime),
        _safely("ssh.key", lambda r: ssh_key(r, user), runtime),
    ]


def everything(runtime: Runtime, user: str) -> list[Finding]:
    return [
        *cheap(runtime, user),
        _safely("network.containers", container_network, runtime),
        _safely("resolvers", resolvers, runtime),
    ]


def _safely(check_id: str, step: Callable[[Runtime], Finding], runtime: Runtime) -> Finding:
    """A check whose settings cannot be read (a broken inventory) is a finding too, not a crash of the doctor."""
    try:
        return step(runtime)
    except ConfigError as exc:
        return Finding(check_id, False, str(exc), "Fix the setting the message names.")


def current_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name
