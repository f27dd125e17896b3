"""Filtering, ordering and paging of list answers, as Cloudflare's list endpoints do them.

Separate from the routes because both lists (zones, DNS records) page the same way and a client's paging loop is
one of the things the double must exercise: `result_info` says page, per_page, count (on this page), total_count
and total_pages. The double is lenient where Cloudflare's exact answer is not known: a page or per_page that is
not a number falls back to the default, and per_page is clamped to the endpoint's bounds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .rules import plain_name
from .state import DnsRecord

T = TypeVar("T")
RECORD_ORDERS = ("type", "name", "content", "ttl", "proxied")


@dataclass(frozen=True)
class Paging:
    default: int
    low: int
    high: int


ZONE_PAGING = Paging(default=20, low=5, high=50)
RECORD_PAGING = Paging(default=100, low=5, high=5_000_000)


def _number(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def paginate(items: Sequence[T], args: Mapping[str, str], paging: Paging) -> tuple[list[T], dict[str, int]]:
    """One page of items and the result_info that describes it (a page past the end is empty, not an error)."""
    per_page = min(max(_number(args.get("per_page"), paging.default), paging.low), paging.high)
    page = max(_number(args.get("page"), 1), 1)
    chunk = list(items[(page - 1) * per_page : page * per_page])
    info = {
        "page": page,
        "per_page": per_page,
        "count": len(chunk),
        "total_count": len(items),
        "total_pages": math.ceil(len(items) / per_page),
    }
    return chunk, info


def _record_matches(record: DnsRecord, args: Mapping[str, str]) -> list[bool]:
    """One verdict per filter given: type, name, content (each exact; `name.exact`/`content.exact` too), proxied."""
    checks: list[bool] = []
    if "type" in args:
        checks.append(record.type == args["type"].upper())
    for key in ("name", "name.exact"):
        if key in args:
            checks.append(record.name == plain_name(args[key]))
    for key in ("content", "content.exact"):
        if key in args:
            checks.append(record.content.lower() == args[key].strip().lower())
    if "proxied" in args:
        checks.append(record.proxied == (args["proxied"].lower() == "true"))
    return checks


def filter_records(records: Sequence[DnsRecord], args: Mapping[str, str]) -> list[DnsRecord]:
    """Records that pass the filters (`match=all`, the default, needs every one; `match=any` one), ordered by
    `order` (default type, then name) and `direction`."""
    combine = any if args.get("match") == "any" else all
    chosen = [record for record in records if not (checks := _record_matches(record, args)) or combine(checks)]
    order = args.get("order") if args.get("order") in RECORD_ORDERS else None

    def key(record: DnsRecord) -> tuple[Any, ...]:
        head = (getattr(record, order),) if order else ()
        return (*head, record.type, record.name, record.content, record.created_on)

    return sorted(chosen, key=key, reverse=args.get("direction") == "desc")
