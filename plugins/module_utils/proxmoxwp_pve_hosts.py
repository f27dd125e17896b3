# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)
"""The Proxmox VE API hosts a client talks to, the order it tries them in, and which failures move on to the next.

Every node of a PVE cluster answers the whole API (pveproxy hands a request for another node's path to that node), so
the modules may be given several nodes (`api.hosts`): when one does not answer, the next one is asked. Only a failure
that happened before any byte of the request reached a server moves on: the connection was refused or not made in
time, the name did not resolve, or the server's certificate was not the one expected (urllib3 checks the chain and
the pin right after the handshake, before sending). Any answer (a 4xx, a 500, a 595) comes from a live host, and a
request that may have been received (a read timeout, a connection dropped mid-way) may have acted: asking another node
would do a POST twice, so the error is the caller's.
"""

import re
import ssl
from collections import namedtuple

try:
    from urllib3.exceptions import ConnectTimeoutError, SSLError
except ImportError:  # pragma: no cover - reported by the module through missing_required_lib
    ConnectTimeoutError = SSLError = ()

# The settings of one entry of api.hosts; what an entry leaves out is the shared setting of the same name.
HOST_OPTIONS = {
    "host": {"type": "str", "required": True},
    "port": {"type": "int"},
    "fingerprint": {"type": "str"},
    "ca_file": {"type": "path"},
}
DEFAULT_PORT = 8006


class ApiHost(namedtuple("ApiHost", "host port fingerprint ca_file")):
    """One host of the API: its address, port, and the pin or CA its certificate is checked with."""

    @property
    def where(self):
        return f"{self.host}:{self.port}"


def api_hosts(api):
    """The hosts of an `api` option, in the order given: api.hosts, each entry completed from the shared port,
    fingerprint and ca_file, or else the one api.host. ValueError saying what is wrong."""
    entries = api.get("hosts") or [{"host": api.get("host")}]
    hosts = []
    for number, entry in enumerate(entries, 1):
        name = f"api.hosts[{number}].host" if api.get("hosts") else "api.host"
        host = str(entry.get("host") or "").strip()
        if not host:
            raise ValueError(name + " is empty")
        if re.match(r"^[a-z]+://", host) or "/" in host:
            raise ValueError(f"{name} must be a host name or address, without scheme or path: {host}")
        found = ApiHost(
            host,
            int(entry.get("port") or api.get("port") or DEFAULT_PORT),
            entry.get("fingerprint") or api.get("fingerprint"),
            entry.get("ca_file") or api.get("ca_file"),
        )
        if any(known.where == found.where for known in hosts):
            raise ValueError(f"api.hosts names {found.where} twice")
        hosts.append(found)
    return hosts


def _causes(exc):
    """exc and what it wraps (requests around urllib3's MaxRetryError, whose reason wraps the ssl error ...)."""
    seen = set()
    while isinstance(exc, BaseException) and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        reason = getattr(exc, "reason", None)
        if isinstance(reason, BaseException):
            exc = reason
        elif exc.args and isinstance(exc.args[0], BaseException):
            exc = exc.args[0]
        else:
            exc = exc.__cause__ or exc.__context__


def sent_nothing(exc):
    """Whether a failed request never reached the server: the connection was refused or not made in time, the name
    did not resolve (urllib3's NewConnectionError and NameResolutionError are ConnectTimeoutErrors), or the server's
    certificate was refused (not signed by the CA, not for that name, not the pinned one). Another TLS error may come
    from reading the answer, after the request went: it does not count."""
    for cause in _causes(exc):
        if isinstance(cause, ConnectTimeoutError):
            return True
        if isinstance(cause, SSLError) and "Fingerprints did not match" in str(cause):
            return True
        # urllib3's own CertificateError (hostname matching) is no ssl error
        if isinstance(cause, ssl.SSLCertVerificationError) or type(cause).__name__ == "CertificateError":
            return True
    return False


class HostOrder:
    """The order to try the hosts in: the one that answered last first (for the rest of the client's life), then the
    others in the order configured."""

    def __init__(self, count):
        self.count = count
        self.current = 0

    def order(self):
        return [self.current] + [index for index in range(self.count) if index != self.current]

    def answered(self, index):
        self.current = index
