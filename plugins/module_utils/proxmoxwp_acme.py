# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)
"""Why Let's Encrypt would refuse a name, found from here: NPM passes on only certbot's stderr, whose
"Internal Error" names no domain, no check and no detail.

Per name, in the order Let's Encrypt's HTTP-01 check goes: the name's public DNS answer (A and AAAA) against the
addresses the site is published on; then, only for those addresses, whether the proxy answers on the challenge's
port, and whether the answer comes from this name's proxy host (NPM marks it with `X-Served-By: <name>`). An
address that is not one of the site's public addresses is never probed.
"""

from __future__ import annotations

import ipaddress
import secrets

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_http import requests

try:
    import dns.exception
    import dns.resolver

    DNS_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported by the module through require_dnspython
    dns = None
    DNS_IMPORT_ERROR = exc

UNKNOWN = (
    "Let's Encrypt refused the certificate for a reason NPM does not pass on; the name's DNS and HTTP look right, "
    "so a retry may succeed"
)
SERVED_BY = "X-Served-By"


def require_dnspython(module):
    """Fail the module, saying what to install, when dnspython is missing."""
    if dns is None:
        module.fail_json(msg=missing_required_lib("dnspython"), exception=str(DNS_IMPORT_ERROR))


def parse_resolver(text: str) -> tuple[str, int]:
    """'ip', 'ip:port' or '[ipv6]:port' -> (ip, port); ValueError when it is none of these."""
    text = text.strip()
    host, port = text, 53
    if text.startswith("["):
        host, _bracket, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 53
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = int(port_text)
    ipaddress.ip_address(host)
    return host, port


def _resolver(resolvers: list[str], timeout: float):
    resolver = dns.resolver.Resolver(configure=not resolvers)
    if resolvers:
        parsed = [parse_resolver(text) for text in resolvers]
        resolver.nameservers = [host for host, _port in parsed]
        resolver.nameserver_ports = dict(parsed)
    resolver.lifetime = timeout
    return resolver


def public_answer(name: str, resolvers: list[str], timeout: float) -> list[str]:
    """The name's A and AAAA addresses, sorted; [] when it has none. dns.exception.DNSException when the
    look-up itself failed."""
    resolver = _resolver(resolvers, timeout)
    found = []
    for record_type in ("A", "AAAA"):
        try:
            found += [record.to_text() for record in resolver.resolve(name, record_type)]
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            continue
    return sorted(found)


def _url(address: str, port: int, path: str) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}{path}"


def probe(name: str, address: str, port: int, timeout: float) -> str | None:
    """What is wrong with `name`'s HTTP on `address`, or None. A challenge path that answers at all (404 is the
    answer for a token nobody placed) shows the port is open; NPM's header on `/` shows the answer is this host's."""
    token = secrets.token_urlsafe(16)
    headers = {"Host": name}
    try:
        requests.get(_url(address, port, f"/.well-known/acme-challenge/{token}"), headers=headers, timeout=timeout,
                     allow_redirects=False)  # fmt: skip
        home = requests.get(_url(address, port, "/"), headers=headers, timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        return f"port {port} of {address} does not answer: {exc}"
    if home.headers.get(SERVED_BY, "").lower() != name.lower():
        return (
            f"port {port} of {address} answers, but not from this proxy host (HTTP {home.status_code} "
            f"without {SERVED_BY}: {name})"
        )
    return None


def check_name(name: str, public_addresses: list[str], settings: dict) -> dict:
    """One name's findings: {name, addresses, problem} (problem None when everything looks right)."""
    finding = {"name": name, "addresses": [], "problem": None}
    try:
        finding["addresses"] = public_answer(name, settings.get("resolvers") or [], settings["timeout"])
    except (dns.exception.DNSException, ValueError) as exc:
        finding["problem"] = f"{name} could not be looked up: {exc}"
        return finding
    found, wanted = finding["addresses"], sorted(public_addresses)
    if not found:
        finding["problem"] = f"{name} has no A or AAAA record"
    elif not wanted:
        finding["problem"] = f"{name} points to {', '.join(found)} (no public address given to compare with)"
    elif set(found) - set(wanted):
        finding["problem"] = f"{name} points to {', '.join(found)}, not {', '.join(wanted)}"
    else:
        for address in found:  # all of them are public addresses of the site (checked above)
            problem = probe(name, address, settings["http_port"], settings["timeout"])
            if problem:
                finding["problem"] = f"{name}: {problem}"
                break
    return finding


def certbot_line(stack: list[str]) -> str:
    """The first line certbot wrote to stderr that says something (not its "Saving debug log" line), from NPM's
    debug.stack: its first line is "Error: <first stderr line>", the stack frames ("    at ...") follow."""
    lines = []
    for index, line in enumerate(stack):
        if line.startswith("    at ") or line.strip().startswith("at "):
            break
        if index == 0 and ": " in line and line.split(": ", 1)[0].endswith("Error"):
            line = line.split(": ", 1)[1]
        lines.append(line.strip())
    return next((line for line in lines if line and not line.startswith("Saving debug log")), "")


def diagnose(names: list[str], public_addresses: list[str], settings: dict, stack: list[str]) -> tuple[str, list]:
    """(the reason to report, the per-name findings) for a certificate Let's Encrypt did not issue."""
    checks = [check_name(name, public_addresses, settings) for name in names]
    problems = [check["problem"] for check in checks if check["problem"]]
    if problems:
        return f"Let's Encrypt cannot validate the name: {'; '.join(problems)}", checks
    return UNKNOWN + certbot_said(stack), checks


def unchecked(stack: list[str]) -> str:
    """The reason to report when the checks are off (acme_check.enabled false)."""
    return "Let's Encrypt refused the certificate for a reason NPM does not pass on (not checked)" + certbot_said(stack)


def certbot_said(stack: list[str]) -> str:
    said = certbot_line(stack)
    return f" (certbot: {said})" if said and said != "Internal Error" else ""
