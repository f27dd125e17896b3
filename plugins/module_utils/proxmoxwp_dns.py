# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)
"""DNS record sets on PowerDNS Authoritative (HTTP API) and Cloudflare (API v4), behind one small interface.

A record set is every record of one type at one name. Both providers are driven the same way: read the set,
compare, change only what differs, so a module on top is idempotent and can tell what it changed.
PowerDNS replaces a set in one PATCH (REPLACE/DELETE are idempotent by themselves); Cloudflare keeps single
records (several A records per name are allowed), so a set is reconciled record by record.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_http import requests, retrying_session

RECORD_TYPES = ("A", "AAAA", "CNAME")


class DnsApiError(Exception):
    """A DNS API refused or failed a request; the message is the provider's own reason, `codes` its error codes."""

    def __init__(self, message: str, codes: frozenset = frozenset()) -> None:
        super().__init__(message)
        self.codes = codes


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

    def __init__(self, api_url: str, api_key: str, server_id: str = "localhost", timeout: float = 30,
                 validate_certs: bool = True) -> None:  # fmt: skip
        self.base = f"{api_url.rstrip('/')}/api/v1/servers/{server_id}/zones"
        self.session = retrying_session()
        self.session.headers.update({"X-API-Key": api_key, "Accept": "application/json"})
        self.session.verify = validate_certs
        self.timeout = timeout

    def _call(self, method: str, zone: str, **kwargs) -> requests.Response:
        url = f"{self.base}/{fqdn(zone)}."
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise DnsApiError(f"PowerDNS at {self.base} did not answer: {exc}") from exc
        if response.status_code >= 400:
            raise DnsApiError(f"PowerDNS {method} zone {fqdn(zone)}: HTTP {response.status_code}: {_reason(response)}")
        return response

    def get(self, zone: str, name: str, record_type: str) -> RecordSet | None:
        # Servers that know the filter answer only this set; older ones answer the whole zone.
        zone_data = self._call("GET", zone, params={"rrset_name": f"{fqdn(name)}.", "rrset_type": record_type}).json()
        for rrset in zone_data.get("rrsets", []):
            if fqdn(rrset["name"]) == fqdn(name) and rrset["type"] == record_type:
                values = [r["content"] for r in rrset.get("records", []) if not r.get("disabled")]
                return record_set(name, record_type, rrset.get("ttl", 0), values) if values else None
        return None

    def replace(self, zone: str, wanted: RecordSet) -> None:
        records = [
            {"content": f"{value}." if wanted.type == "CNAME" else value, "disabled": False} for value in wanted.values
        ]
        rrset = {"name": f"{wanted.name}.", "type": wanted.type, "ttl": wanted.ttl, "changetype": "REPLACE",
                 "records": records}  # fmt: skip
        self._call("PATCH", zone, json={"rrsets": [rrset]})

    def delete(self, zone: str, name: str, record_type: str) -> None:
        rrset = {"name": f"{fqdn(name)}.", "type": record_type, "changetype": "DELETE"}
        self._call("PATCH", zone, json={"rrsets": [rrset]})


class Cloudflare:
    """Cloudflare API v4 with an API token: zones found by name, records listed by type and exact name."""

    ALREADY_THERE = {81057, 81058}

    def __init__(self, api_url: str, api_token: str, timeout: float = 30) -> None:
        self.base = api_url.rstrip("/")
        self.session = retrying_session()
        self.session.headers.update({"Authorization": f"Bearer {api_token}", "Accept": "application/json"})
        self.timeout = timeout
        self._zone_ids: dict[str, str] = {}

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
            error = DnsApiError(
                f"Cloudflare {method} {path.split('?')[0]}: HTTP {response.status_code}: {_reason(response)}"
            )
            error.codes = {e.get("code") for e in body.get("errors", [])}  # type: ignore[attr-defined]
            raise error
        return body

    def zone_id(self, zone: str) -> str:
        if zone not in self._zone_ids:
            found = self._call("GET", "/zones", params={"name": fqdn(zone)})["result"]
            if not found:
                raise DnsApiError(f"Cloudflare has no zone {fqdn(zone)} for this token")
            self._zone_ids[zone] = found[0]["id"]
        return self._zone_ids[zone]

    def _records(self, zone: str, name: str, record_type: str) -> list[dict]:
        records, page = [], 1
        while True:
            params = {"type": record_type, "name": fqdn(name), "page": page, "per_page": 100}
            body = self._call("GET", f"/zones/{self.zone_id(zone)}/dns_records", params=params)
            records += body["result"]
            info = body.get("result_info") or {}
            if page >= int(info.get("total_pages") or 1):
                return records
            page += 1

    def get(self, zone: str, name: str, record_type: str) -> RecordSet | None:
        records = self._records(zone, name, record_type)
        if not records:
            return None
        return record_set(
            name, record_type, min(int(r.get("ttl", 1)) for r in records), [r["content"] for r in records]
        )

    def replace(self, zone: str, wanted: RecordSet) -> None:
        zone_id = self.zone_id(zone)
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

    def delete(self, zone: str, name: str, record_type: str) -> None:
        zone_id = self.zone_id(zone)
        for record in self._records(zone, name, record_type):
            try:
                self._call("DELETE", f"/zones/{zone_id}/dns_records/{record['id']}")
            except DnsApiError as exc:
                if 81044 not in exc.codes:  # already gone
                    raise
