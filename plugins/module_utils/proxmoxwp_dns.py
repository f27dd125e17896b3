# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)
"""DNS record sets on PowerDNS Authoritative (HTTP API) and Cloudflare (API v4), behind one small interface.

A record set is every record of one type at one name. Both providers are driven the same way: read the set,
compare, change only what differs, so a module on top is idempotent and can tell what it changed.
PowerDNS replaces a set in one PATCH (REPLACE/DELETE are idempotent by themselves); Cloudflare keeps single
records (several A records per name are allowed), so a set is reconciled record by record.

Records are written into the zone the provider has, which need not be the name they sit under: the records of
wp1.sites.example.net go into the zone example.net when that is the zone (a Cloudflare zone is a registered domain
on ordinary plans). `zone()` finds that zone once per client, or raises ZoneNotFound with a sentence an operator
can act on; it is what a check of the settings calls too.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_env import from_environment, missing_settings
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_http import (
    IDEMPOTENT_METHODS,
    requests,
    retrying_session,
)

RECORD_TYPES = ("A", "AAAA", "CNAME")


class DnsApiError(Exception):
    """A DNS API refused or failed a request; the message is the provider's own reason, `codes` its error codes."""

    def __init__(self, message: str, codes: frozenset = frozenset()) -> None:
        super().__init__(message)
        self.codes = codes


class ZoneNotFound(DnsApiError):
    """The provider has no such zone (or none this credential may see); the message says what to change."""


@dataclass(frozen=True)
class Zone:
    """A zone as the provider has it: its name (fully qualified, lower case, no trailing dot) and the provider's
    id for it (PowerDNS: the name with its dot; Cloudflare: a 32-character hex id)."""

    name: str
    id: str

    def holds(self, name: str) -> bool:
        name = fqdn(name)
        return name == self.name or name.endswith("." + self.name)


def missing_zone(provider: str, zone: str, note: str = "") -> ZoneNotFound:
    """The error for a zone the provider does not have, with the zones above it as the likely answer."""
    labels = fqdn(zone).split(".")
    parents = [".".join(labels[n:]) for n in range(1, len(labels) - 1)]
    guess = f" Is it {' or '.join(parents)}?" if parents else ""
    return ZoneNotFound(
        f"{provider} has no zone {fqdn(zone)}{note}.{guess} Set the zone that holds the records (option zone of "
        "proxmoxwp_dns_record; proxmoxwp_dns.zone in the inventory, by default proxmoxwp_base_zone) to a zone "
        "it has."
    )


@dataclass(frozen=True)
class RecordSet:
    name: str  # fully qualified, lower case, no trailing dot
    type: str
    ttl: int
    values: tuple[str, ...] = field(default_factory=tuple)  # sorted, canonical

    def as_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "ttl": self.ttl, "values": list(self.values)}


def fqdn(name: str) -> str:
    return name.strip().rstrip(".").lower()


def canonical(record_type: str, value: str) -> str:
    """The form both APIs answer with: compressed IPv6, lower-case target names without the final dot."""
    if record_type == "A":
        return str(ipaddress.IPv4Address(value.strip()))
    if record_type == "AAAA":
        return str(ipaddress.IPv6Address(value.strip()))
    return fqdn(value)


def record_set(name: str, record_type: str, ttl: int, values) -> RecordSet:
    return RecordSet(fqdn(name), record_type, int(ttl), tuple(sorted({canonical(record_type, v) for v in values})))


def _reason(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return (response.text or response.reason or "").strip()[:300]
    if isinstance(body, dict):
        if body.get("errors"):  # Cloudflare's envelope
            return "; ".join(f"{e.get('message')} ({e.get('code')})" for e in body["errors"])
        if body.get("error"):  # PowerDNS
            return str(body["error"])
    return str(body)[:300]


class PowerDns:
    """PowerDNS Authoritative: `/api/v1/servers/<server>/zones/<zone>.` with X-API-Key."""

    # Our PATCHes only REPLACE or DELETE a set, so sending one again does what sending it once does; and they must
    # be sent again: when two writes to a zone meet, the gsqlite3 backend answers 500 "GSQLBackend unable to ...:
    # database is locked" and rolls the loser back (seen with several sites created at once). Writers that met
    # once meet again when the host is busy: they get more tries than a blip needs (waits of about 0, 1, 2, 4 and
    # 8 s, each with up to JITTER more), about 15 s in all.
    RETRIED_METHODS = IDEMPOTENT_METHODS | {"PATCH"}
    RETRIES = 5

    def __init__(self, api_url: str, api_key: str, server_id: str = "localhost", timeout: float = 30,
                 validate_certs: bool = True) -> None:  # fmt: skip
        self.api_url = api_url.rstrip("/")
        self.base = f"{self.api_url}/api/v1/servers/{server_id}/zones"
        self.session = retrying_session(methods=self.RETRIED_METHODS, retries=self.RETRIES)
        self.session.headers.update({"X-API-Key": api_key, "Accept": "application/json"})
        self.session.verify = validate_certs
        self.timeout = timeout

    def _call(self, method: str, zone: str, **kwargs) -> requests.Response:
        url = f"{self.base}/{fqdn(zone)}."
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise DnsApiError(f"PowerDNS at {self.base} did not answer: {exc}") from exc
        if response.status_code == 404:
            # 4.7 answers a plain "Not Found", later versions {"error": "Could not find domain '...'"}
            raise missing_zone(f"PowerDNS at {self.api_url}", zone)
        if response.status_code >= 400:
            raise DnsApiError(f"PowerDNS {method} zone {fqdn(zone)}: HTTP {response.status_code}: {_reason(response)}")
        return response

    def zone(self, zone: str) -> Zone:
        """The zone named `zone`, or ZoneNotFound."""
        found = self._call("GET", zone, params={"rrsets": "false"}).json()  # 4.7+ leave the records out
        return Zone(fqdn(found.get("name") or zone), found.get("id") or f"{fqdn(zone)}.")

    def get(self, zone: Zone, name: str, record_type: str) -> RecordSet | None:
        # Servers that know the filter answer only this set; older ones answer the whole zone.
        params = {"rrset_name": f"{fqdn(name)}.", "rrset_type": record_type}
        zone_data = self._call("GET", zone.name, params=params).json()
        for rrset in zone_data.get("rrsets", []):
            if fqdn(rrset["name"]) == fqdn(name) and rrset["type"] == record_type:
                values = [r["content"] for r in rrset.get("records", []) if not r.get("disabled")]
                return record_set(name, record_type, rrset.get("ttl", 0), values) if values else None
        return None

    def replace(self, zone: Zone, wanted: RecordSet) -> None:
        records = [
            {"content": f"{value}." if wanted.type == "CNAME" else value, "disabled": False} for value in wanted.values
        ]
        rrset = {"name": f"{wanted.name}.", "type": wanted.type, "ttl": wanted.ttl, "changetype": "REPLACE",
                 "records": records}  # fmt: skip
        self._call("PATCH", zone.name, json={"rrsets": [rrset]})

    def delete(self, zone: Zone, name: str, record_type: str) -> None:
        rrset = {"name": f"{fqdn(name)}.", "type": record_type, "changetype": "DELETE"}
        self._call("PATCH", zone.name, json={"rrsets": [rrset]})


ZONE_ID = re.compile(r"^[0-9a-f]{32}$")


class Cloudflare:
    """Cloudflare API v4 with an API token: zones found by name or id, records listed by type and exact name."""

    ALREADY_THERE = {81057, 81058}
    # A zone id the account does not have: 7003 "Could not route to /zones/..., perhaps your object identifier is
    # invalid?" (with 7000 "No route for that URI"), or 1001 "Invalid zone identifier" for a well-formed one.
    NO_SUCH_ZONE = {7003, 1001}

    def __init__(self, api_url: str, api_token: str, timeout: float = 30) -> None:
        self.base = api_url.rstrip("/")
        self.session = retrying_session()
        self.session.headers.update({"Authorization": f"Bearer {api_token}", "Accept": "application/json"})
        self.timeout = timeout
        self._zones: dict[str, Zone] = {}

    def _call(self, method: str, path: str, **kwargs) -> dict:
        try:
            response = self.session.request(method, f"{self.base}{path}", timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise DnsApiError(f"Cloudflare at {self.base} did not answer: {exc}") from exc
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 400 or not body.get("success", False):
            codes = frozenset(e.get("code") for e in body.get("errors") or [])
            raise DnsApiError(
                f"Cloudflare {method} {path.split('?')[0]}: HTTP {response.status_code}: {_reason(response)}", codes
            )
        return body

    def zone(self, zone: str) -> Zone:
        """The zone named `zone` (a registered domain, example.net) or with the id `zone`, or ZoneNotFound."""
        key = fqdn(zone)
        if key not in self._zones:
            if ZONE_ID.match(key):
                try:
                    found = self._call("GET", f"/zones/{key}")["result"]
                except DnsApiError as exc:
                    if exc.codes & self.NO_SUCH_ZONE:
                        raise ZoneNotFound(
                            f"Cloudflare has no zone with the id {key} for this API token ({exc}). Set the zone "
                            "that holds the records (option zone of proxmoxwp_dns_record; proxmoxwp_dns.zone in "
                            "the inventory) to a zone id or name the account has."
                        ) from None
                    raise
            else:
                listed = self._call("GET", "/zones", params={"name": key})["result"]
                if not listed:
                    note = " for this API token (a Cloudflare zone is a registered domain, not a name under one)"
                    raise missing_zone("Cloudflare", key, note)
                found = listed[0]
            self._zones[key] = Zone(fqdn(found["name"]), found["id"])
        return self._zones[key]

    def _records(self, zone: Zone, name: str, record_type: str) -> list[dict]:
        records, page = [], 1
        while True:
            params = {"type": record_type, "name": fqdn(name), "page": page, "per_page": 100}
            body = self._call("GET", f"/zones/{zone.id}/dns_records", params=params)
            records += body["result"]
            info = body.get("result_info") or {}
            if page >= int(info.get("total_pages") or 1):
                return records
            page += 1

    def get(self, zone: Zone, name: str, record_type: str) -> RecordSet | None:
        records = self._records(zone, name, record_type)
        if not records:
            return None
        return record_set(
            name, record_type, min(int(r.get("ttl", 1)) for r in records), [r["content"] for r in records]
        )

    def replace(self, zone: Zone, wanted: RecordSet) -> None:
        zone_id = zone.id
        present = {canonical(wanted.type, r["content"]): r for r in self._records(zone, wanted.name, wanted.type)}
        for value, record in present.items():
            if value not in wanted.values:
                self._call("DELETE", f"/zones/{zone_id}/dns_records/{record['id']}")
            elif int(record.get("ttl", 1)) != wanted.ttl:
                self._call("PATCH", f"/zones/{zone_id}/dns_records/{record['id']}", json={"ttl": wanted.ttl})
        for value in wanted.values:
            if value in present:
                continue
            body = {"type": wanted.type, "name": wanted.name, "content": value, "ttl": wanted.ttl, "proxied": False}
            try:
                self._call("POST", f"/zones/{zone_id}/dns_records", json=body)
            except DnsApiError as exc:
                # Made meanwhile by someone else (a retried job): the record is there, which is what we want.
                if not exc.codes & self.ALREADY_THERE:
                    raise

    def delete(self, zone: Zone, name: str, record_type: str) -> None:
        zone_id = zone.id
        for record in self._records(zone, name, record_type):
            try:
                self._call("DELETE", f"/zones/{zone_id}/dns_records/{record['id']}")
            except DnsApiError as exc:
                if 81044 not in exc.codes:  # already gone
                    raise


# Each provider's settings that are needed, with the environment variable each falls back on.
NEEDED = {
    "powerdns": {"api_url": "PROXMOXWP_PDNS_URL", "api_key": "PROXMOXWP_PDNS_API_KEY"},
    "cloudflare": {"api_token": "PROXMOXWP_CLOUDFLARE_API_TOKEN"},
}


def connection_options():
    """The argument spec of the options every DNS module has (doc fragment proxmoxwp.hosting.proxmoxwp_dns_api):
    the provider, its connection, the zone and the request timeout.

    apply_defaults: left out, a provider's option is a dict all the same, so its settings' fallbacks apply."""
    return {
        "provider": {"type": "str", "required": True, "choices": ["powerdns", "cloudflare"]},
        "powerdns": {
            "type": "dict",
            "apply_defaults": True,
            "options": {
                "api_url": from_environment(NEEDED["powerdns"]["api_url"], type="str"),
                "api_key": from_environment(NEEDED["powerdns"]["api_key"], type="str", no_log=True),
                "server_id": {"type": "str", "default": "localhost"},
                "validate_certs": {"type": "bool", "default": True},
            },
        },
        "cloudflare": {
            "type": "dict",
            "apply_defaults": True,
            "options": {
                "api_url": {"type": "str", "default": "https://api.cloudflare.com/client/v4"},
                "api_token": from_environment(NEEDED["cloudflare"]["api_token"], type="str", no_log=True),
            },
        },
        "zone": {"type": "str", "required": True},
        "timeout": {"type": "int", "default": 30},
    }


def missing_connection(params):
    """None, or the sentence naming the provider's settings that neither the task nor the environment gave."""
    name = params["provider"]
    return missing_settings(f"provider={name}", name, "dns", params[name], NEEDED[name])


def provider_client(module):
    """The client of the module's provider; the module fails, naming what is missing, when a setting lacks."""
    p = module.params
    missing = missing_connection(p)
    if missing:
        module.fail_json(msg=missing)
    c = p[p["provider"]]
    if p["provider"] == "powerdns":
        return PowerDns(c["api_url"], c["api_key"], c["server_id"], p["timeout"], c["validate_certs"])
    return Cloudflare(c["api_url"], c["api_token"], p["timeout"])
