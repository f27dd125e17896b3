"""Cloudflare's rules for one DNS record's fields, and the error type the double answers with.

Kept apart from the store so each rule is read in one place. Codes and messages are Cloudflare's as seen in its
API answers; where a case has no well-known code (the error chains under 1004) the code is the most plausible one
and tests of the role should rely on the top-level code and the HTTP status only.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

PROXIABLE = frozenset({"A", "AAAA", "CNAME"})
HOSTNAME_TYPES = frozenset({"CNAME", "NS", "MX"})
RECORD_TYPES = PROXIABLE | HOSTNAME_TYPES | {"TXT"}  # the types this double models
TTL_AUTO = 1
TTL_MIN, TTL_MAX = 60, 86400
LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
SAME_NAME_HELP = (
    " For more details, refer to "
    "<https://developers.cloudflare.com/dns/manage-dns-records/troubleshooting/records-with-same-name/>."
)


@dataclass
class CloudflareError(Exception):
    """An API error: the HTTP status and the `errors` entries of the envelope (code, message, error_chain)."""

    status: int
    code: int
    message: str
    chain: list[tuple[int, str]] = field(default_factory=list)

    def errors(self) -> list[dict[str, Any]]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.chain:
            error["error_chain"] = [{"code": code, "message": message} for code, message in self.chain]
        return [error]


def validation_error(code: int, message: str) -> CloudflareError:
    """Cloudflare's shape for a bad field: 400, code 1004 "DNS Validation Error", the reason in error_chain."""
    return CloudflareError(400, 1004, "DNS Validation Error", [(code, message)])


def plain_name(name: str) -> str:
    """How Cloudflare stores and compares names: lower case, no trailing dot (used for filters too, so a filter
    may be given either way)."""
    return name.strip().lower().rstrip(".")


def record_name(name: Any, zone: str) -> str:
    """The fully qualified name of a record given as `@`, relative (`www`) or absolute (`www.example.com[.]`).
    Like Cloudflare, a name that does not end in the zone is taken as relative and gets the zone appended."""
    if not isinstance(name, str) or not plain_name(name):
        raise validation_error(9000, "DNS name is invalid.")
    name = plain_name(name)
    if name == "@":
        return zone
    if name != zone and not name.endswith("." + zone):
        name = f"{name}.{zone}"
    labels = name.split(".")
    if labels[0] == "*":
        labels = labels[1:]
    if len(name) > 253 or not all(LABEL.match(label) for label in labels):
        raise validation_error(9000, "DNS name is invalid.")
    return name


def record_type(rtype: Any) -> str:
    if not isinstance(rtype, str) or rtype.upper() not in RECORD_TYPES:
        raise validation_error(9020, "Invalid DNS record type.")
    return rtype.upper()


def record_content(rtype: str, content: Any) -> str:
    """The content as Cloudflare stores it: addresses in canonical form, host names plain (lower case, no dot)."""
    if rtype == "A":
        try:
            return str(ipaddress.IPv4Address(content))
        except ValueError:
            raise validation_error(9005, "Content for A record must be a valid IPv4 address.") from None
    if rtype == "AAAA":
        try:
            return ipaddress.IPv6Address(content).compressed
        except ValueError:
            raise validation_error(9006, "Content for AAAA record must be a valid IPv6 address.") from None
    if rtype in HOSTNAME_TYPES:
        host = plain_name(content) if isinstance(content, str) else ""
        if not host or len(host) > 253 or not all(LABEL.match(label) for label in host.split(".")):
            raise validation_error(9007, f"Content for {rtype} record is invalid.")
        return host
    if not isinstance(content, str) or not content or len(content) > 2048:
        raise validation_error(9009, f"Content for {rtype} record is invalid.")
    return content


def record_proxied(rtype: str, proxied: Any) -> bool:
    if not isinstance(proxied, bool):
        raise validation_error(9003, "Invalid 'proxied' value, must be a boolean.")
    if proxied and rtype not in PROXIABLE:
        raise CloudflareError(400, 9004, "This record type cannot be proxied.")
    return proxied


def record_ttl(ttl: Any, proxied: bool) -> int:
    """1 means automatic; a proxied record is always automatic, whatever was asked (as Cloudflare does)."""
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not (ttl == TTL_AUTO or TTL_MIN <= ttl <= TTL_MAX):
        raise validation_error(
            9021, f"Invalid TTL. Must be between {TTL_MIN} and {TTL_MAX} seconds, or 1 for Automatic."
        )
    return TTL_AUTO if proxied else ttl


def record_priority(rtype: str, priority: Any) -> int | None:
    if rtype != "MX":
        return None
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 65535:
        raise validation_error(9100, "MX records require a priority between 0 and 65535.")
    return priority


def record_fields(body: dict[str, Any], zone: str) -> dict[str, Any]:
    """Every field of a record checked and normalised, from a complete body (POST, PUT, or a PATCH merged onto the
    record's current fields). Defaults are Cloudflare's: ttl 1 (automatic), proxied false, no comment, no tags."""
    rtype = record_type(body.get("type"))
    proxied = record_proxied(rtype, body.get("proxied", False))
    comment = body.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise validation_error(9101, "Comment must be a string.")
    tags = body.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise validation_error(9102, "Tags must be a list of strings.")
    return {
        "type": rtype,
        "name": record_name(body.get("name"), zone),
        "content": record_content(rtype, body.get("content")),
        "proxied": proxied,
        "ttl": record_ttl(body.get("ttl", TTL_AUTO), proxied),
        "priority": record_priority(rtype, body.get("priority")),
        "comment": comment,
        "tags": list(tags),
    }
