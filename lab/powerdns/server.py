"""One pdns_server in a directory of its own: config, gsqlite3 database, control socket and log.

Why Debian's real server and not a double: the dns_record role's PowerDNS provider and the custom-domain check must
meet the real API's habits (plain-text 401/404, JSON 422, trailing dots, REPLACE/DELETE that are idempotent, caches the
API purges) and a real DNS answer path; a double would only echo our own assumptions. The server runs with its own
--config-dir (Debian's config loads the bind backend), on loopback only.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.resolver
import requests

from lab.ports import free_port

HOST = "127.0.0.1"
SCHEMA = Path("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql")
START_TIMEOUT = 30.0  # to a server that answers both the API and DNS
STOP_TIMEOUT = 10.0  # after SIGTERM, before SIGKILL
START_ATTEMPTS = 3  # a port the system gave us can be taken by a parallel test before pdns binds it
POLL_INTERVAL = 0.05
SOA_TIMERS = "1 10800 3600 604800 60"  # serial refresh retry expire minimum (a short negative TTL)

# socket-dir is "." (the server runs in its directory) because a UNIX socket path may not exceed 107 bytes, and a
# data dir deep in a test tree or an operator's layout would make the absolute path longer than that.
CONFIG = """\
launch=gsqlite3
gsqlite3-database={database}
gsqlite3-dnssec=no
local-address={host}
local-port={dns_port}
api=yes
api-key={api_key}
webserver=yes
webserver-address={host}
webserver-port={api_port}
webserver-allow-from=127.0.0.1/32
socket-dir=.
daemon=no
guardian=no
disable-syslog=yes
loglevel=5
security-poll-suffix=
"""


class PowerDnsError(RuntimeError):
    """The server did not start, or an API call the fixture makes for a test failed."""


def fqdn(name: str) -> str:
    """`Example.org` → `example.org.`: the API wants zone and rrset names absolute, and compares them in lower case."""
    return name.lower().rstrip(".") + "."


@dataclass
class PowerDns:
    """A running pdns_server. `api_url` is the server's API root (`.../api/v1/servers/localhost`); send `api_key`
    as X-API-Key. `dns_address` is (host, port) for UDP and TCP."""

    directory: Path
    process: subprocess.Popen
    api_key: str
    api_port: int
    dns_port: int

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.api_port}/api/v1/servers/localhost"

    @property
    def dns_address(self) -> tuple[str, int]:
        return (HOST, self.dns_port)

    @property
    def log_path(self) -> Path:
        return self.directory / "pdns.log"

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}

    def zone_url(self, zone: str) -> str:
        """The URL of one zone (`.../zones/example.org.`), where rrsets are PATCHed."""
        return f"{self.api_url}/zones/{fqdn(zone)}"

    def session(self) -> requests.Session:
        """A requests session that sends the API key and ignores proxy settings from the environment."""
        session = requests.Session()
        session.trust_env = False
        session.headers.update(self.headers)
        return session

    def create_zone(self, name: str, nameservers: tuple[str, ...] = ()) -> dict[str, Any]:
        """Create a Native zone with a real SOA (ns1.<zone>, hostmaster.<zone>, negative TTL 60) and NS records
        (default ns1.<zone>) through the API; returns the API's zone object."""
        zone = fqdn(name)
        ns = [fqdn(server) for server in nameservers] or [f"ns1.{zone}"]
        soa = f"{ns[0]} hostmaster.{zone} {SOA_TIMERS}"
        body = {
            "name": zone,
            "kind": "Native",
            "nameservers": ns,
            "rrsets": [{"name": zone, "type": "SOA", "ttl": 3600, "records": [{"content": soa, "disabled": False}]}],
        }
        with self.session() as session:
            response = session.post(f"{self.api_url}/zones", json=body, timeout=10)
        if response.status_code != 201:
            raise PowerDnsError(f"creating zone {zone}: HTTP {response.status_code} {response.text}")
        return response.json()

    def resolver(self, lifetime: float = 5.0) -> dns.resolver.Resolver:
        """A dnspython resolver that asks only this server (no /etc/resolv.conf, no cache)."""
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [HOST]
        resolver.port = self.dns_port
        resolver.lifetime = lifetime
        resolver.timeout = lifetime
        return resolver

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as error:
            return f"(no log: {error})"

    def stop(self) -> None:
        """SIGTERM to the server's process group, SIGKILL after STOP_TIMEOUT; returns once it is reaped."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT)


def _answers(server: PowerDns, session: requests.Session) -> bool:
    """True once the API accepts the key and the DNS port answers (REFUSED for a zone it lacks is an answer)."""
    try:
        if session.get(server.api_url, timeout=1).status_code != 200:
            return False
        dns.query.udp(dns.message.make_query(".", "SOA"), HOST, port=server.dns_port, timeout=1)
    except (requests.RequestException, dns.exception.DNSException, OSError):
        return False
    return True


def _launch(directory: Path, binary: str, dns_port: int, api_port: int, api_key: str) -> PowerDns:
    """Write the config (free ports for a port 0) and start the server in its own process group (not waiting)."""
    server_ports = {
        "dns_port": dns_port or free_port(udp=True),
        "api_port": api_port or free_port(),
    }
    config = CONFIG.format(host=HOST, database=directory / "pdns.sqlite3", api_key=api_key, **server_ports)
    config_file = directory / "pdns.conf"
    config_file.touch(mode=0o600)  # it holds the API key
    config_file.write_text(config)
    # setpriv (util-linux, essential) makes the kernel send SIGTERM to the server if this process dies without its
    # teardown (SIGKILL, a pytest-timeout that exits the process), so no server outlives the session.
    setpriv = shutil.which("setpriv")
    guard = [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []
    with open(directory / "pdns.log", "ab") as log:
        process = subprocess.Popen(
            [*guard, binary, f"--config-dir={directory}"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
            process_group=0,
        )
    return PowerDns(directory=directory, process=process, api_key=api_key, **server_ports)


def _wait_ready(server: PowerDns) -> bool:
    """Poll until the server answers (True) or exits (False); raise after START_TIMEOUT. Waiting on the process
    with a short timeout is the pause between polls, so an early exit is seen at once."""
    deadline = time.monotonic() + START_TIMEOUT
    with server.session() as session:
        while time.monotonic() < deadline:
            if _answers(server, session):
                return True
            try:
                server.process.wait(POLL_INTERVAL)
                return False
            except subprocess.TimeoutExpired:
                pass
    raise PowerDnsError(f"pdns_server did not answer within {START_TIMEOUT}s; log:\n{server.log_tail()}")


def start_powerdns(
    directory: Path,
    binary: str | None = None,
    schema: Path = SCHEMA,
    dns_port: int = 0,
    api_port: int = 0,
    api_key: str | None = None,
) -> PowerDns:
    """Start a server in `directory`, making its database from the backend's schema unless it exists (zones survive
    a restart). Ports 0 are picked free, and picked again when the server exits while starting (a port taken in
    between); then it fails with the log's tail."""
    binary = binary or default_binary()
    if binary is None:
        raise PowerDnsError("pdns_server is not installed (apt-get install pdns-server pdns-backend-sqlite3)")
    database_file = directory / "pdns.sqlite3"
    if not database_file.exists():
        with contextlib.closing(sqlite3.connect(database_file)) as database:
            database.executescript(schema.read_text())
    api_key = api_key or secrets.token_urlsafe(24)
    attempts = START_ATTEMPTS if not (dns_port and api_port) else 1
    for _attempt in range(attempts):
        server = _launch(directory, binary, dns_port, api_port, api_key)
        try:
            if _wait_ready(server):
                return server
        except BaseException:
            server.stop()
            raise
        if "Address already in use" not in server.log_tail():
            break
    raise PowerDnsError(
        f"pdns_server exited with {server.process.returncode} while starting; log:\n{server.log_tail()}"
    )


def default_binary() -> str | None:
    return shutil.which("pdns_server") or shutil.which("pdns_server", path="/usr/sbin:/usr/local/sbin")
