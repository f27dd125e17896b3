"""The lab's Proxmox VE API as a service: LabPve over TLS until SIGTERM, and the files a client needs.

Into its directory it writes, each readable by root only where it holds a secret:
- `pki/`: the cluster's CA (`pve-root-ca.pem`, what clients trust) and each node's certificate signed by it;
- `token`: the API token's secret (a new one each start), for `PVEAPIToken=<token_id>=<secret>`;
- `pve.json` once the API answers (removed when it stops): url, host, port, node (the first node's endpoint),
  hosts (every node's endpoint: node, host, port, fingerprint), nodes, token_id, token_file, ca_file, fingerprint
  (SHA-256 of the first node's certificate, as PVE shows it) and the LXC path and name prefix of its containers;
- `control.sock`: the lab's control of its nodes (lab.pve.control: fail a node, bring it back).

The cluster has the nodes given, all on this machine, each with its own API endpoint (pveproxy on every node of a
real cluster serves the whole API): the first on the bind address, the others on ports the system picks. A failed
node's endpoint goes down with it, and its HA guests are recovered on another node after the HA delay, their real
containers started again there. Each node has this machine's figures: its containers all run here.

The cluster starts empty: containers of the same prefix left by an earlier run are orphans and are destroyed first.
At SIGTERM the API stops answering, tasks under way finish their real work, and the containers stay (the lab's
`down` destroys them with `destroy-all`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from api.build_host.containers import Containers
from api.build_host.errors import BuildHostError
from api.build_host.network import bridge_exists
from api.build_host.rootfs import ensure_rootfs
from lab.errors import LabError
from lab.pve import control as lab_control
from lab.pve.cluster_pki import ClusterPki
from lab.pve.endpoints import Endpoint
from lab.pve.guests import Guests, destroy_all
from lab.pve.images import Images
from lab.pve.lxc import LabPve

INFO_FILE = "pve.json"
TOKEN_FILE = "token"  # noqa: S105 - the name of the file holding the secret
PKI_DIR = "pki"
# At SIGTERM, seconds that tasks under way get to finish their real work (the lab's `down` waits 60 s).
DRAIN_TIMEOUT = 45.0
log = logging.getLogger("lab.pve")


@dataclass(frozen=True)
class Options:
    directory: Path
    host: str
    port: int
    bridge: str
    lxcpath: Path
    rootfs_cache: Path
    templates: Path | None
    prefix: str
    reference: str | None = None
    nodes: tuple[str, ...] = ("pve1", "pve2", "pve3")
    # Real seconds from a node's failure until the HA manager recovers its guests (PVE: a minute or more).
    ha_delay: float = 10.0


def this_machine(meminfo: Path = Path("/proc/meminfo")) -> dict:
    """The node figures of this machine: its CPUs, its memory and what the host itself uses of it now."""
    fields = {}
    for line in meminfo.read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = int(value.split()[0]) * 1024  # kB
    total = fields["MemTotal"]
    return {"maxcpu": os.cpu_count() or 1, "maxmem": total, "mem": total - fields.get("MemAvailable", total)}


def serve(options: Options) -> int:
    """Run the API until SIGTERM or SIGINT; 0 after a clean stop, 1 when it could not start."""
    try:
        return asyncio.run(_serve(options))
    except BuildHostError as exc:
        log.error("%s", exc)
        return 1


async def _serve(options: Options) -> int:
    directory = options.directory
    if not bridge_exists(options.bridge):
        raise LabError(
            f"the bridge {options.bridge} does not exist: bring it up first (python -m api.build_host bridge-up)"
        )
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    (directory / INFO_FILE).unlink(missing_ok=True)
    orphans = destroy_all(options.lxcpath, options.prefix)
    if orphans:
        log.info("destroyed %d container(s) left by an earlier run: %s", len(orphans), ", ".join(orphans))
    images = Images(options.rootfs_cache, options.templates)
    guests = Guests(Containers(options.lxcpath), options.prefix, options.bridge, images)
    pve = LabPve(guests, host=options.host, port=options.port, reference_path=options.reference)
    pve.drain_timeout = DRAIN_TIMEOUT
    # The datacenter firewall on, as the production guide has the operator turn it on before the first site, so the
    # sites' rules are enforced on the bridge (lab.pve.netfilter); PROXMOXWP_LAB_FIREWALL=0 leaves it off.
    pve.set_datacenter_firewall(os.environ.get("PROXMOXWP_LAB_FIREWALL", "1") != "0")
    pve.ha_recovery_delay = options.ha_delay
    for node in options.nodes:
        if node not in pve.nodes:
            pve.add_node(node)
    # The lab's containers run on this machine, whichever node they are on: each node is as big as the machine
    # (placement counts on it).
    for node in pve.nodes:
        pve.set_node_capacity(node, **this_machine())
    pki = ClusterPki(directory / PKI_DIR, hosts=(options.host,))
    nodes = sorted(pve.nodes)
    first = pki.node(nodes[0])

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await pve.start(first.certfile, first.keyfile)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", options.host, options.port, exc)
        return 1
    endpoints = {nodes[0]: Endpoint(nodes[0], pve.runner, pve.host, pve.port, first, False)}
    control = None
    try:
        for node in nodes[1:]:
            endpoints[node] = await Endpoint.open(node, pve, pve.host, pki.node(node))
        control = await lab_control.serve(pve, directory, endpoints)
        # The Debian template is the cached rootfs: build it now rather than in the first create (a daemon thread:
        # a stop does not wait for a build, which the next one starts over).
        threading.Thread(target=_prebuild, args=(options.rootfs_cache,), name="rootfs", daemon=True).start()
        _write_secret(directory / TOKEN_FILE, pve.token_secret)
        info = {
            "url": pve.url,
            "host": pve.host,
            "port": pve.port,
            "node": nodes[0],
            "nodes": nodes,
            "hosts": [
                {"node": node, "host": e.host, "port": e.port, "fingerprint": e.fingerprint}
                for node, e in endpoints.items()
            ],
            "token_id": pve.token_id,
            "token_file": str(directory / TOKEN_FILE),
            "ca_file": pki.cafile,
            "fingerprint": _colons(first.fingerprint),
            "lxcpath": str(guests.containers.lxcpath),
            "prefix": options.prefix,
            "bridge": options.bridge,
        }
        _write_json(directory / INFO_FILE, info)
        log.info(
            "serving %s (containers %s<vmid> in %s, bridge %s)",
            pve.url,
            options.prefix,
            options.lxcpath,
            options.bridge,
        )
        await stop.wait()
        log.info("stopping: the API stops answering, tasks under way finish")
    finally:
        (directory / INFO_FILE).unlink(missing_ok=True)
        if control is not None:
            control.close()
        for endpoint in endpoints.values():
            await endpoint.close()
        await pve.stop()
    log.info("stopped")
    return 0


def _prebuild(cache: Path) -> None:
    try:
        log.info("the Debian rootfs is ready: %s", ensure_rootfs(cache))
    except BuildHostError as exc:
        log.error("the Debian rootfs could not be built (a create from the Debian template tries again): %s", exc)


def _colons(digest: str) -> str:
    """A SHA-256 fingerprint as PVE shows it: upper-case pairs joined by colons."""
    digest = digest.upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _write_secret(path: Path, secret: str) -> None:
    """The secret alone in a file only its owner reads, replaced whole."""
    partial = path.with_name(f".{path.name}.partial")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    os.replace(partial, path)


def _write_json(path: Path, data: dict) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(partial, path)
