"""Does a customer's domain point to their site? Asked of the configured resolvers before setdomain queues a job.

Accepted (docs/domain-verification.md): the CNAME chain reaches the site's subdomain, or else every A and every
AAAA record is the site's public IP and there is at least one. The CNAME target is compared by name, not by what
it resolves to: an authoritative-only server (PowerDNS) answers a CNAME to a name outside its zones with the CNAME
alone. Nothing is cached: a customer who has just fixed their records retries at once.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from api import validation
from api.errors import ApiError, unavailable, unprocessable

log = logging.getLogger(__name__)

SHOWN_RECORDS = 4  # records named in the customer's sentence; `found` has them all


class DnsUnavailable(Exception):
    """The resolvers gave no usable answer (timeout, every one failing): nothing is known about the domain."""


@dataclass(frozen=True)
class Found:
    """What the domain resolves to: addresses at the end of its CNAME chain and the chain's targets, in order."""

    a: tuple[str, ...] = ()
    aaaa: tuple[str, ...] = ()
    cnames: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, list[str]]:
        return {"A": list(self.a), "AAAA": list(self.aaaa), "CNAME": list(self.cnames)}


def make_resolver(nameservers: Sequence[tuple[str, int]], timeout: float) -> dns.resolver.Resolver:
    """A resolver asking `nameservers` ((address, port) pairs), or the system's when there are none."""
    if nameservers:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(address, port) for address, port in nameservers]
    else:
        try:
            resolver = dns.resolver.Resolver()  # read on every check, so an edited resolv.conf counts at once
        except dns.exception.DNSException as exc:
            raise DnsUnavailable(f"no system resolver: {exc}") from exc
    resolver.timeout = resolver.lifetime = timeout
    resolver.cache = None
    return resolver


def lookup(domain: str, resolver: dns.resolver.Resolver) -> Found:
    """A and AAAA of `domain` (an A-label name), following CNAMEs; raises DnsUnavailable."""
    name = dns.name.from_text(domain)  # absolute: no search domains are tried
    a, a_chain = _resolve(resolver, name, dns.rdatatype.A)
    aaaa, aaaa_chain = _resolve(resolver, name, dns.rdatatype.AAAA)
    # both queries follow the same chain; keep each target once should a record change in between
    cnames = tuple(dict.fromkeys(a_chain + aaaa_chain))
    return Found(a, aaaa, cnames)


def _resolve(
    resolver: dns.resolver.Resolver, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    try:
        answer = resolver.resolve(name, rdtype, search=False, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN as exc:
        # a CNAME whose target does not exist is NXDOMAIN too: its chain still says where the domain points
        return (), _nxdomain_chain(exc)
    except dns.exception.DNSException as exc:  # timeout, every server failing, an answer that cannot be read
        raise DnsUnavailable(f"{dns.rdatatype.to_text(rdtype)} {name}: {exc}") from exc
    chain = answer.chaining_result
    addresses = tuple(rdata.to_text() for rdata in chain.answer or ())
    return addresses, _targets(chain.cnames)


def _nxdomain_chain(exc: dns.resolver.NXDOMAIN) -> tuple[str, ...]:
    for response in exc.responses().values():
        try:
            return _targets(response.resolve_chaining().cnames)
        except dns.exception.DNSException:
            return ()
    return ()


def _targets(cnames: list) -> tuple[str, ...]:
    return tuple(rdata.target.to_text(omit_final_dot=True).lower() for rrset in cnames for rdata in rrset)


def points_to_site(found: Found, subdomain: str, public_ip: str) -> bool:
    if subdomain.lower().rstrip(".") in found.cnames:
        return True
    ours = ipaddress.ip_address(public_ip)
    addresses = [ipaddress.ip_address(text) for text in (*found.a, *found.aaaa)]
    return bool(addresses) and all(address == ours for address in addresses)


def check(domain: str, subdomain: str, public_ip: str, nameservers: Sequence[tuple[str, int]], timeout: float) -> None:
    """Return when `domain` points to the site; raise the API's answer otherwise (422, or 503 without an answer)."""
    shown = validation.unicode_domain(domain)
    try:
        found = lookup(domain, make_resolver(nameservers, timeout))
    except DnsUnavailable as exc:
        log.warning("DNS check of %s failed: %s", domain, exc)
        raise unavailable(
            "dns_unavailable",
            f"The DNS records of {shown} could not be checked right now; please try again in a few minutes.",
        ) from None
    if not points_to_site(found, subdomain, public_ip):
        raise refusal(shown, found, subdomain, public_ip)


def refusal(shown: str, found: Found, subdomain: str, public_ip: str) -> ApiError:
    """The 422 for a domain that does not point to the site: one sentence saying what to create."""
    family = "AAAA" if ipaddress.ip_address(public_ip).version == 6 else "A"
    extra = {"found": found.as_dict(), "expected": {family: public_ip, "CNAME": subdomain}}
    if not (found.a or found.aaaa or found.cnames):
        return unprocessable(
            "dns_no_records",
            f"The domain {shown} has no address records; create an {family} record for {public_ip} or a CNAME "
            f"record to {subdomain}, then try again.",
            **extra,
        )
    ours = ipaddress.ip_address(public_ip)
    partly = any(ipaddress.ip_address(text) == ours for text in (*found.a, *found.aaaa))
    seen = [f"CNAME {target}" for target in found.cnames] + [f"A {a}" for a in found.a]
    seen += [f"AAAA {aaaa}" for aaaa in found.aaaa]
    more = len(seen) - SHOWN_RECORDS
    listed = ", ".join(seen[:SHOWN_RECORDS]) + (f" and {more} more" if more > 0 else "")
    return unprocessable(
        "dns_not_pointing",
        f"The domain {shown} does not point {'only ' if partly else ''}to this site (it has {listed}); it needs an "
        f"{family} record for {public_ip} and no other A or AAAA record, or a CNAME record to {subdomain}.",
        **extra,
    )
