"""PowerDNS Authoritative for the lab and the tests: Debian's `pdns_server` with the gsqlite3 backend, its database,
config, control socket and log in one directory, on loopback, with its HTTP API.

`start_powerdns(directory, ...)` starts one (free ports by default) and returns a `PowerDns` that knows its API and
DNS addresses; `python -m lab.powerdns serve` keeps one running for `proxmoxwp lab up`.
"""

from lab.powerdns.server import (
    PowerDns,
    PowerDnsError,
    default_binary,
    fqdn,
    start_powerdns,
)

__all__ = ["PowerDns", "PowerDnsError", "default_binary", "fqdn", "start_powerdns"]
