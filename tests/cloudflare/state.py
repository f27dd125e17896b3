"""The Cloudflare double's state: zones, DNS records and the calls it received, behind one lock (the server is
threaded), with the rules Cloudflare applies across records.

Across-record rules, and the codes chosen where Cloudflare has had more than one:
- several records with one name and type are allowed (round robin), so clients must upsert by listing first;
- a record whose type, name and content equal an existing one's: 81058 "An identical record already exists." when
  its ttl and proxied are the same too (what Cloudflare answers today), otherwise 81057 "Record already exists."
  (Cloudflare's older code, kept for the duplicate that differs only in settings); clients should treat both as
  "already there";
- a CNAME where an A, AAAA or CNAME has that name: 81053; an A or AAAA where a CNAME has that name: 81054;
- a record id the zone does not have: 404, 81044 "Record does not exist.";
- a zone id the account does not have: 400, 7003 "Could not route to ..., perhaps your object identifier is invalid?"
  (with 7000 "No route for that URI"), the answer users quote most for a name or a wrong id in the path. Answers of
  1001 "Invalid zone identifier" (an account id given as the zone id) are quoted too: clients should take both.

Zones, as on Cloudflare's ordinary plans: a zone is a registered domain, one label under a public suffix of the
Public Suffix List (example.net, example.co.uk); a name under one (sites.example.net) cannot be added and so is
never found: looking it up by name answers an empty list. Subdomain setup is an Enterprise feature
(`add_zone(..., subdomain_setup=True)`).
"""

from __future__ import annotations

import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

from publicsuffixlist import PublicSuffixList

from .rules import PROXIABLE, SAME_NAME_HELP, CloudflareError, plain_name, record_fields

ADDRESS_TYPES = frozenset({"A", "AAAA"})
NAME_SERVERS = ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"]
ACCOUNT = {"id": "0f0e0d0c0b0a09080706050403020100", "name": "ProxmoxWP tests"}
# What Cloudflare says when asked to add a name under a registered domain as a zone.
NOT_A_ROOT_DOMAIN = (
    "Please ensure you are providing the root domain and not any subdomains (e.g., example.com, not "
    "subdomain.example.com)"
)


@cache
def public_suffixes() -> PublicSuffixList:
    """The Public Suffix List the package ships (read once: parsing it takes a moment)."""
    return PublicSuffixList()


def now() -> str:
    """Cloudflare's timestamp form: 2024-01-01T05:20:00.123456Z."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass
class Zone:
    id: str
    name: str
    created_on: str

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": "active",
            "paused": False,
            "type": "full",
            "development_mode": 0,
            "name_servers": list(NAME_SERVERS),
            "original_name_servers": None,
            "account": dict(ACCOUNT),
            "created_on": self.created_on,
            "modified_on": self.created_on,
            "activated_on": self.created_on,
        }


@dataclass
class DnsRecord:
    id: str
    zone: Zone
    type: str
    name: str
    content: str
    ttl: int
    proxied: bool
    priority: int | None
    comment: str | None
    tags: list[str]
    created_on: str
    modified_on: str

    def fields(self) -> dict[str, Any]:
        """The writable fields, the base a PATCH is merged onto."""
        return {
            "type": self.type,
            "name": self.name,
            "content": self.content,
            "ttl": self.ttl,
            "proxied": self.proxied,
            "priority": self.priority,
            "comment": self.comment,
            "tags": list(self.tags),
        }

    def to_api(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": self.id,
            "zone_id": self.zone.id,
            "zone_name": self.zone.name,
            "name": self.name,
            "type": self.type,
            "content": self.content,
            "proxiable": self.type in PROXIABLE,
            "proxied": self.proxied,
            "ttl": self.ttl,
            "locked": False,
            "settings": {},
            "meta": {"auto_added": False, "managed_by_apps": False, "managed_by_argo_tunnel": False},
            "comment": self.comment,
            "tags": list(self.tags),
            "created_on": self.created_on,
            "modified_on": self.modified_on,
        }
        if self.priority is not None:
            record["priority"] = self.priority
        return record


@dataclass(frozen=True)
class Call:
    """One request the double received (also the refused ones), so a test can assert what a client did, e.g. that
    a second run of the role wrote nothing."""

    method: str
    path: str
    query: dict[str, str]
    body: Any


@dataclass
class CloudflareState:
    token: str = field(default_factory=lambda: secrets.token_urlsafe(30))
    token_id: str = field(default_factory=new_id)
    zones: dict[str, Zone] = field(default_factory=dict)
    records: dict[str, DnsRecord] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)

    # ------------------------------------------------------------------------------------------------ zones

    def add_zone(self, name: str, *, subdomain_setup: bool = False) -> Zone:
        """Add a zone (as if it had been added to the account); returns it, with its id for the API. Like
        Cloudflare, only a registered domain unless `subdomain_setup` (Enterprise): else ValueError."""
        zone_name = plain_name(name)
        if not subdomain_setup and public_suffixes().privatesuffix(zone_name) != zone_name:
            raise ValueError(f"{zone_name}: {NOT_A_ROOT_DOMAIN}")
        with self.lock:
            zone = Zone(id=new_id(), name=zone_name, created_on=now())
            if any(existing.name == zone.name for existing in self.zones.values()):
                raise ValueError(f"zone {zone.name} exists already")
            self.zones[zone.id] = zone
            return zone

    def zone(self, zone_id: str, path: str) -> Zone:
        with self.lock:
            if zone_id not in self.zones:
                raise CloudflareError(
                    400,
                    7003,
                    f"Could not route to {path}, perhaps your object identifier is invalid?",
                    [(7000, "No route for that URI")],
                )
            return self.zones[zone_id]

    def find_zones(self, name: str | None = None) -> list[Zone]:
        with self.lock:
            zones = sorted(self.zones.values(), key=lambda zone: zone.name)
        return [zone for zone in zones if name is None or zone.name == plain_name(name)]

    # ---------------------------------------------------------------------------------------------- records

    def zone_records(self, zone: Zone) -> list[DnsRecord]:
        with self.lock:
            return [record for record in self.records.values() if record.zone.id == zone.id]

    def record(self, zone: Zone, record_id: str) -> DnsRecord:
        with self.lock:
            record = self.records.get(record_id)
            if record is None or record.zone.id != zone.id:
                raise CloudflareError(404, 81044, "Record does not exist.")
            return record

    def create_record(self, zone: Zone, body: dict[str, Any]) -> DnsRecord:
        fields = record_fields(body, zone.name)
        with self.lock:
            self._check_conflicts(zone, fields, exclude=None)
            stamp = now()
            record = DnsRecord(id=new_id(), zone=zone, created_on=stamp, modified_on=stamp, **fields)
            self.records[record.id] = record
            return record

    def update_record(self, zone: Zone, record_id: str, body: dict[str, Any], *, partial: bool) -> DnsRecord:
        """PATCH (partial: the body's fields over the record's) or PUT (the body is the whole record)."""
        with self.lock:
            record = self.record(zone, record_id)
            fields = record_fields(record.fields() | body if partial else body, zone.name)
            self._check_conflicts(zone, fields, exclude=record.id)
            for key, value in fields.items():
                setattr(record, key, value)
            record.modified_on = now()
            return record

    def delete_record(self, zone: Zone, record_id: str) -> str:
        with self.lock:
            record = self.record(zone, record_id)
            del self.records[record.id]
            return record.id

    def _check_conflicts(self, zone: Zone, fields: dict[str, Any], exclude: str | None) -> None:
        same_name = [
            record for record in self.zone_records(zone) if record.name == fields["name"] and record.id != exclude
        ]
        for record in same_name:
            if (record.type, record.content, record.priority) == (
                fields["type"],
                fields["content"],
                fields["priority"],
            ):
                if (record.ttl, record.proxied) == (fields["ttl"], fields["proxied"]):
                    raise CloudflareError(400, 81058, "An identical record already exists.")
                raise CloudflareError(400, 81057, "Record already exists.")
        types = {record.type for record in same_name}
        if fields["type"] == "CNAME" and types & (ADDRESS_TYPES | {"CNAME"}):
            raise CloudflareError(
                400, 81053, "An A, AAAA, or CNAME record with that host already exists." + SAME_NAME_HELP
            )
        if fields["type"] in ADDRESS_TYPES and "CNAME" in types:
            raise CloudflareError(400, 81054, "A CNAME record with that host already exists." + SAME_NAME_HELP)
