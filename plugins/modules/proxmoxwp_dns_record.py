#!/usr/bin/python
# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)

DOCUMENTATION = r"""
---
module: proxmoxwp_dns_record
short_description: Make one DNS record set (every record of a type at a name) exactly as wanted
description:
  - O(state=present) makes the records of O(type) at O(name) exactly O(values) with O(ttl); O(state=absent) removes
    every record of O(type) at O(name). Nothing else in the zone is touched.
  - The set is read first and changed only when it differs, so the module is idempotent and reports what changed.
  - PowerDNS Authoritative (HTTP API, C(X-API-Key)) replaces a set in one C(PATCH) (REPLACE or DELETE). Cloudflare
    (API v4, API token) keeps single records, several per name; the module deletes the extra ones, adds the missing
    ones and corrects their TTL. A record that appears meanwhile (error 81057/81058) or disappears (81044) is
    what was wanted.
version_added: "0.1.0"
author: ProxmoxWP contributors (!UNKNOWN)
extends_documentation_fragment:
  - proxmoxwp.hosting.proxmoxwp_dns_api
  - proxmoxwp.hosting.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
options:
  name:
    description: Fully qualified name of the records.
    type: str
    required: true
  type:
    description: Record type.
    type: str
    choices: [A, AAAA, CNAME]
    required: true
  values:
    description: The records' contents (addresses, or one target name for CNAME). Required for O(state=present).
    type: list
    elements: str
  ttl:
    description: TTL in seconds (Cloudflare's 1 means automatic).
    type: int
    default: 300
  state:
    description: Whether the records exist.
    type: str
    choices: [present, absent]
    default: present
"""

EXAMPLES = r"""
- name: Point the site's subdomain at the public address
  proxmoxwp.hosting.proxmoxwp_dns_record:
    provider: powerdns
    powerdns:
      api_url: http://127.0.0.1:8081
      api_key: "{{ vault_pdns_api_key }}"
    zone: example.com
    name: s123.sites.example.com
    type: A
    values: [203.0.113.10]
  delegate_to: localhost

- name: Remove it
  proxmoxwp.hosting.proxmoxwp_dns_record:
    provider: cloudflare
    cloudflare:
      api_token: "{{ vault_cloudflare_token }}"
    zone: 023e105f4ecef8ad9ca31a8372d0c353  # the zone id of example.com
    name: s123.sites.example.com
    type: A
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
before:
  description: The record set before, or null when there was none.
  returned: always
  type: dict
  sample: {name: s123.sites.example.com, type: A, ttl: 300, values: [203.0.113.10]}
after:
  description: The record set after (in check mode, what it would be), or null when there is none.
  returned: always
  type: dict
diff:
  description: C(before) and C(after), as above.
  returned: changed
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_dns import (  # noqa: E402
    DnsApiError,
    ZoneNotFound,
    connection_options,
    fqdn,
    provider_client,
    record_set,
)
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_http import require_requests  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec={
            **connection_options(),
            "name": {"type": "str", "required": True},
            "type": {"type": "str", "required": True, "choices": ["A", "AAAA", "CNAME"]},
            "values": {"type": "list", "elements": "str"},
            "ttl": {"type": "int", "default": 300},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
        },
        required_if=[("state", "present", ["values"])],
        supports_check_mode=True,
    )
    require_requests(module)
    p = module.params
    name = fqdn(p["name"])
    wanted = None
    if p["state"] == "present":
        try:
            wanted = record_set(name, p["type"], p["ttl"], p["values"])
        except ValueError as exc:
            module.fail_json(msg=f"Not a valid {p['type']} record value: {exc}")
        if not wanted.values:
            module.fail_json(msg="values must not be empty; use state=absent to remove the records")
        if p["type"] == "CNAME" and len(wanted.values) != 1:
            module.fail_json(msg="A CNAME has exactly one target")
    dns = provider_client(module)
    try:
        zone = dns.zone(p["zone"])
    except ZoneNotFound as exc:
        module.fail_json(msg=f"{exc} Nothing was changed.")
    except DnsApiError as exc:
        module.fail_json(msg=str(exc))
    if not zone.holds(name):
        module.fail_json(msg=f"{name} is not in the zone {zone.name}")
    try:
        current = dns.get(zone, name, p["type"])
        before = current.as_dict() if current else None
        after = wanted.as_dict() if wanted else None
        changed = current != wanted
        if changed and not module.check_mode:
            if wanted is None:
                dns.delete(zone, name, p["type"])
            else:
                dns.replace(zone, wanted)
    except DnsApiError as exc:
        module.fail_json(msg=str(exc))
    result = {"changed": changed, "before": before, "after": after}
    if changed:
        result["diff"] = {"before": before or {}, "after": after or {}}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
