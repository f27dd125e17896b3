"""A Cloudflare API v4 double for the dns_record role's Cloudflare provider: the DNS-records part of the API,
over real HTTP on loopback (the `cloudflare` fixture in plugin.py).

Why a double: Cloudflare cannot be reached from tests, and its API has no local edition. The double models what a
DNS client meets (token auth, the envelope, zones by name or id and only registered domains as zones, list with
exact filters and paging, create, PATCH, PUT, DELETE, round-robin records, the CNAME rules, the duplicate errors)
from Cloudflare's public documentation and the answers users have quoted; its choices where Cloudflare is not
documented are written down in rules.py, state.py, listing.py and app.py.

- state.py: zones, records and the calls received, and the rules across records (duplicates, CNAME);
- rules.py: the rules of one record's fields (name, type, content, ttl, proxied) and CloudflareError;
- listing.py: filtering, ordering and paging of lists;
- app.py: the Flask app (routes, envelope, auth);
- plugin.py: the pytest fixture that serves it.
"""

from .app import create_app
from .plugin import ServedCloudflare
from .rules import CloudflareError
from .state import CloudflareState, DnsRecord, Zone

__all__ = ["CloudflareError", "CloudflareState", "DnsRecord", "ServedCloudflare", "Zone", "create_app"]
