"""Normalising and checking the values Paymenter sends: service ids, e-mail, IPs, domains, backup names."""

from __future__ import annotations

import functools
import ipaddress
import re

import idna
from email_validator import EmailNotValidError, validate_email

SERVICE_ID_PATTERN = r"^[1-9][0-9]{0,17}$"
SERVICE_ID_MAX = 10**18 - 1
BACKUP_PATTERN = r"^BAK[0-9]{8}-[1-9][0-9]{0,5}$"
MAX_DOMAIN = 253


def service_id(value: object) -> int:
    """Paymenter's service id as an int: a JSON integer or a string of 1 to 18 digits, no sign, no zero."""
    if isinstance(value, str) and re.fullmatch(SERVICE_ID_PATTERN, value):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= SERVICE_ID_MAX:
        return value
    raise ValueError("must be Paymenter's numeric service id (1 to 18 digits)")


def email(value: str) -> str:
    try:
        result = validate_email(value, check_deliverability=False, strict=True)
    except EmailNotValidError as exc:
        raise ValueError(f"is not a valid e-mail address: {exc}") from None
    return result.normalized


def public_ip(value: str) -> str:
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValueError("is not an IPv4 or IPv6 address") from None
    if address.is_unspecified or address.is_multicast:
        raise ValueError("cannot be an unspecified or multicast address")
    return str(address)


def ip_allowed(value: str, allowed: list[str]) -> bool:
    if not allowed:
        return True
    address = ipaddress.ip_address(value)
    return any(address in ipaddress.ip_network(net, strict=False) for net in allowed)


def domain(value: str) -> str:
    """IDNA-normalise a customer's domain to its lower-case A-label form, or say why it cannot be one."""
    name = value.strip().rstrip(".")
    if not name:
        raise ValueError("must not be empty")
    if "*" in name:
        raise ValueError("cannot be a wildcard")
    if _is_ip(name):
        raise ValueError("must be a domain name, not an IP address")
    try:
        ascii_name = idna.encode(name, uts46=True, transitional=False).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError) as exc:
        # idna's own text quotes the input; an error must not echo markup or template text back
        raise ValueError(_idna_problem(exc)) from None
    labels = ascii_name.split(".")
    if len(labels) < 2:
        raise ValueError("needs at least two labels, like example.com")
    if len(ascii_name) > MAX_DOMAIN:
        raise ValueError(f"is longer than {MAX_DOMAIN} characters once IDNA-encoded")
    for label in labels:
        if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", label):
            raise ValueError("may only hold letters, digits and inner hyphens in each label of at most 63 characters")
    if labels[-1].isdigit():
        raise ValueError("must end in a top-level domain, not a number")
    return ascii_name


def _idna_problem(exc: Exception) -> str:
    text = str(exc).lower()
    if "too long" in text and "label" in text:
        return "has a label longer than 63 characters"
    if "too long" in text:
        return f"is longer than {MAX_DOMAIN} characters once IDNA-encoded"
    if "empty label" in text:
        return "has an empty label (two dots in a row, or a leading dot)"
    if "codepoint" in text or "not allowed" in text:
        return "may only hold letters, digits, hyphens and dots"
    if "hyphen" in text:
        return "cannot have a label that starts or ends with a hyphen"
    return "is not a valid (internationalised) domain name"


# Every /status shows each name in Unicode too: the names are few and decoding one costs more than the rest of its
# view.
@functools.lru_cache(maxsize=4096)
def unicode_domain(ascii_name: str) -> str:
    try:
        return idna.decode(ascii_name)
    except idna.IDNAError:
        return ascii_name


def within_zone(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True
