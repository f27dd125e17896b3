"""pytest fixture `edge_peers`: where a test's sites are published, a zone of its own on the session's PowerDNS and
a fresh NPM double (tests/powerdns.py, tests/npm.py).

Register with `pytest_plugins = ["tests.edge"]`. `.settings` are the inventory variables that point the playbooks
at both (give them to `sites.site_inventory`); `.addresses(name)` resolves a name through PowerDNS as a visitor
would; `.hosts()` lists NPM's proxy hosts by their first name.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dns.resolver
import pytest

from lab.ports import free_port


@dataclass(frozen=True)
class EdgePeers:
    zone: str
    npm: object  # tests.npm.ServedNpm
    powerdns: object  # tests.powerdns.PowerDns
    http_port: int  # where the sites' proxy would answer HTTP: a free loopback port

    @property
    def settings(self) -> dict:
        return {
            "proxmoxwp_base_zone": self.zone,
            "proxmoxwp_npm_api": {"url": self.npm.url, "identity": self.npm.identity, "secret": self.npm.secret},
            "proxmoxwp_dns": {
                "provider": "powerdns",
                "powerdns": {"api_url": self.powerdns.api_url.split("/api/")[0], "api_key": self.powerdns.api_key},
                "ttl": 60,
            },
            # Why a certificate failed is looked up here too, never beyond loopback: the names' DNS through this
            # PowerDNS, HTTP on a loopback port nothing listens on (and only on a site's loopback public address).
            "proxmoxwp_acme_check": {
                "resolvers": ["{}:{}".format(*self.powerdns.dns_address)],
                "http_port": self.http_port,
                "timeout": 2,
            },
        }

    def subdomain(self, service_id: int) -> str:
        return f"wp{service_id}.{self.zone}"

    def addresses(self, name: str) -> list[str]:
        """The A and AAAA answers for `name`, sorted; [] when the name has none."""
        found = []
        for record_type in ("A", "AAAA"):
            with contextlib.suppress(dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                found += [r.to_text() for r in self.powerdns.resolver().resolve(name, record_type)]
        return sorted(found)

    def hosts(self) -> dict[str, dict]:
        return {host["domain_names"][0]: host for host in self.npm.state.proxy_hosts()}

    def certificates(self) -> list[dict]:
        return self.npm.state.certificates()


@pytest.fixture
def edge_peers(powerdns, npm) -> EdgePeers:
    zone = f"z{secrets.token_hex(4)}.proxmoxwp.test"
    powerdns.create_zone(zone)
    return EdgePeers(zone, npm, powerdns, free_port())


class _ServedBy(BaseHTTPRequestHandler):
    """Answers as NPM's nginx does for a proxy host: with the header X-Served-By naming it, and nginx's 404 for an
    ACME challenge it does not hold."""

    def do_GET(self) -> None:
        self.send_response(404 if self.path.startswith("/.well-known/") else 200)
        self.send_header("X-Served-By", self.headers["Host"])
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def proxy_answering(address: str = "127.0.0.1", port: int = 0) -> Iterator[int]:
    """A stand-in for the proxy's HTTP port on a loopback `address` (what the NPM module probes when a certificate
    fails) until the block ends; yields its port."""
    server = ThreadingHTTPServer((address, port), _ServedBy)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="proxy-answering", daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
