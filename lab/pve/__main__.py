"""`python -m lab.pve`: the lab's Proxmox VE API on real LXC containers (docs/lab-pve.md).

    python -m lab.pve serve --bind 127.0.0.1:8006 --dir DIR --bridge NAME --lxcpath PATH \\
        --rootfs-cache PATH --templates DIR --name-prefix P [--nodes pve1,pve2,pve3] [--ha-delay SECONDS]
    python -m lab.pve destroy-all --prefix P --lxcpath PATH

`serve` runs until SIGTERM (lab.pve.service says what it writes into DIR); `destroy-all` destroys every container
`<P><vmid>` under the LXC path with its snapshots and prints their names as JSON. Failures: one line on stderr,
exit status 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from api.build_host.errors import BuildHostError
from lab.pve.guests import check_prefix, destroy_all
from lab.pve.service import Options, serve


def _bind(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)


def _prefix(text: str) -> str:
    try:
        check_prefix(text)
    except BuildHostError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab.pve", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="serve the API until SIGTERM")
    run.add_argument("--bind", type=_bind, default=("127.0.0.1", 8006), help="HOST:PORT (default 127.0.0.1:8006)")
    run.add_argument("--dir", type=Path, required=True, help="certificate, token and pve.json go here")
    run.add_argument("--bridge", required=True, help="the lab's bridge the containers plug into")
    run.add_argument("--lxcpath", type=Path, required=True, help="where the containers live (lxc-* -P)")
    run.add_argument("--rootfs-cache", type=Path, required=True, help="the cached Debian rootfs (built if missing)")
    run.add_argument("--templates", type=Path, help="directory of template archives (local:vztmpl/<file>)")
    run.add_argument("--name-prefix", type=_prefix, required=True, help="containers are <prefix><vmid>")
    run.add_argument("--reference", help="the PVE API reference (default: lab/reference/pve-api-full.json.gz)")
    run.add_argument(
        "--nodes", default="pve1,pve2,pve3", help="the cluster's nodes, comma-separated (default pve1,pve2,pve3)"
    )
    run.add_argument(
        "--ha-delay", type=float, default=10.0, help="seconds until HA recovers a failed node's guests (default 10)"
    )
    destroy = commands.add_parser("destroy-all", help="destroy every container <prefix><vmid>")
    destroy.add_argument("--prefix", type=_prefix, required=True)
    destroy.add_argument("--lxcpath", type=Path, required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    # One line per request is noise next to the operations (each is logged by lab.pve).
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if args.command == "destroy-all":
        try:
            names = destroy_all(args.lxcpath, args.prefix)
        except BuildHostError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return 1
        print(json.dumps({"destroyed": names}))
        return 0
    host, port = args.bind
    options = Options(
        args.dir,
        host,
        port,
        args.bridge,
        args.lxcpath,
        args.rootfs_cache,
        args.templates,
        args.name_prefix,
        args.reference,
        tuple(node.strip() for node in args.nodes.split(",") if node.strip()),
        args.ha_delay,
    )
    return serve(options)


if __name__ == "__main__":
    sys.exit(main())
