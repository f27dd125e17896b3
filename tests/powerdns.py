"""A real PowerDNS Authoritative server for tests: the session fixture `powerdns` (a pytest plugin,
`pytest_plugins = ["tests.powerdns"]`).

Why a real server and not a double: the dns_record role's PowerDNS provider and the custom-domain check must meet
the real API's habits (plain-text 401/404, JSON 422, trailing dots, REPLACE/DELETE that are idempotent, caches the
API purges) and a real DNS answer path through dnspython; a double would only echo our own assumptions.

One server per session (it starts in about a quarter of a second): Debian's `pdns_server` with the gsqlite3 backend,
its database, config, control socket and log in a temporary directory, started with its own --config-dir (the
Debian config loads the bind backend), on 127.0.0.1 only, on ports the system picks. Zones live for the whole
session, so each test makes its own zone under a name no other test uses. At the end of the session, passed or
failed, the server's process group gets SIGTERM, then SIGKILL after a bound. Skipped when pdns-server or
pdns-backend-sqlite3 is not installed (`scripts/install.sh --dev` installs both).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab.powerdns.server import SCHEMA, PowerDns, PowerDnsError, default_binary, fqdn, start_powerdns

__all__ = ["PowerDns", "PowerDnsError", "fqdn", "powerdns"]


@pytest.fixture(scope="session")
def powerdns(tmp_path_factory) -> Iterator[PowerDns]:
    """The session's PowerDNS server (see PowerDns); stopped at the end of the session whatever the outcome."""
    binary = default_binary()
    if binary is None:
        pytest.skip("pdns_server is not installed (apt-get install pdns-server pdns-backend-sqlite3)")
    if not SCHEMA.is_file():
        pytest.skip(f"{SCHEMA} is missing (apt-get install pdns-backend-sqlite3)")
    server = start_powerdns(tmp_path_factory.mktemp("powerdns"), binary)
    try:
        yield server
    finally:
        server.stop()
