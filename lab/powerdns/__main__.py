"""Keep the lab's PowerDNS running: `python -m lab.powerdns serve --dir DIR --zone lab.proxmoxwp.test`.

Starts pdns_server on loopback with its API, makes the zones that are missing, writes `powerdns.json` (the API's
URL, the DNS address and the file holding the API key) for the lab's other parts, and stops the server on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import threading
from pathlib import Path

from lab.powerdns.server import PowerDns, PowerDnsError, start_powerdns


def api_key(directory: Path) -> str:
    """The lab's API key, made once and readable by its owner only."""
    path = directory / "api-key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(24) + "\n")
    return path.read_text().strip()


def ensure_zone(server: PowerDns, zone: str) -> bool:
    """Make `zone` unless the server has it; True when it was made."""
    with server.session() as session:
        if session.get(server.zone_url(zone), timeout=10).status_code == 200:
            return False
    server.create_zone(zone)
    return True


def serve(directory: Path, dns_port: int, api_port: int, zones: list[str]) -> int:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server = start_powerdns(directory, dns_port=dns_port, api_port=api_port, api_key=api_key(directory))
    except PowerDnsError as exc:
        print(f"powerdns: {exc}", file=sys.stderr)
        return 1
    try:
        for zone in zones:
            if ensure_zone(server, zone):
                print(f"powerdns: zone {zone} made", file=sys.stderr)
        info = {
            "api_url": server.api_url.split("/api/")[0],
            "dns": f"{server.dns_address[0]}:{server.dns_address[1]}",
            "api_key_file": str(directory / "api-key"),
            "zones": zones,
        }
        (directory / "powerdns.json").write_text(json.dumps(info) + "\n")
        print(f"powerdns: API {info['api_url']}, DNS {info['dns']}, ready", file=sys.stderr, flush=True)
        while not stop.is_set() and server.process.poll() is None:
            stop.wait(1.0)
        if server.process.poll() is not None:
            print(f"powerdns: pdns_server exited with {server.process.returncode}", file=sys.stderr)
            return 1
        return 0
    finally:
        (directory / "powerdns.json").unlink(missing_ok=True)
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.powerdns", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="run pdns_server until SIGTERM")
    run.add_argument("--dir", type=Path, required=True, help="config, database, key and log live here")
    run.add_argument("--dns-port", type=int, default=5300, help="DNS on 127.0.0.1 (UDP and TCP)")
    run.add_argument("--api-port", type=int, default=8081, help="the HTTP API on 127.0.0.1")
    run.add_argument("--zone", action="append", default=[], help="a zone to make when missing (repeatable)")
    args = parser.parse_args(argv)
    return serve(args.dir, args.dns_port, args.api_port, args.zone)


if __name__ == "__main__":
    sys.exit(main())
