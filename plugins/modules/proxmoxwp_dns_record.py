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
requirements:
  - requests
author: ProxmoxWP contributors (!UNKNOWN)
extends_documentation_fragment:
  - proxmoxwp.hosting.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  action_group:
    description:
      - Use C(group/proxmoxwp.hosting.dns) in C(module_defaults) to set O(provider) and its connection once for a
        play.
    support: full
    membership:
      - proxmoxwp.hosting.dns
options:
  provider:
    description:
      - Which DNS API holds the zone.
      - 'A play sets the provider and its connection once for the action group C(proxmoxwp.hosting.dns) with
        C(module_defaults), for example C(group/proxmoxwp.hosting.dns: "{{ proxmoxwp_dns }}").'
    type: str
    choices: [powerdns, cloudflare]
    required: true
  powerdns:
    description:
      - PowerDNS connection (O(provider=powerdns)).
      - Each setting left out is taken from its environment variable, named in its description; without
        O(powerdns), every setting is. O(powerdns.api_url) and O(powerdns.api_key) are required, here or in the
        environment.
    type: dict
    suboptions:
      api_url:
        description:
          - Base URL of the PowerDNS webserver, for example C(http://127.0.0.1:8081).
          - If not set, the environment variable E(PROXMOXWP_PDNS_URL) is used.
        type: str
      api_key:
        description:
          - The API key.
          - If not set, the environment variable E(PROXMOXWP_PDNS_API_KEY) is used.
        type: str
      server_id:
        description: The server id in the API path.
        type: str
        default: localhost
      validate_certs:
        description: Check the server's TLS certificate.
        type: bool
        default: true
  cloudflare:
    description:
      - Cloudflare connection (O(provider=cloudflare)).
      - O(cloudflare.api_token) is required, here or in the environment.
    type: dict
    suboptions:
      api_url:
        description: Base URL of the API.
        type: str
        default: https://api.cloudflare.com/client/v4
      api_token:
        description:
          - An API token allowed to edit DNS in the zone.
          - If not set, the environment variable E(PROXMOXWP_CLOUDFLARE_API_TOKEN) is used.
        type: str
  zone:
    description:
      - The zone that holds the records, as the DNS provider has it. This need not be the name the records sit
        under; the records of C(s123.sites.example.com) go into the zone C(example.com) when that is the zone.
      - For Cloudflare, a registered domain (C(example.com); on ordinary plans a name under one is not a zone) or
        the zone's id (32 hexadecimal digits). For PowerDNS, the zone's name.
      - A zone the provider does not have fails the task, naming the zone and the zones above it, before anything
        is changed.
    type: str
    required: true
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
  timeout:
    description:
      - Seconds to wait for one API request.
      - A request is tried up to 4 times, with backoff, when its connection was refused or could not be made;
        a C(GET), C(PUT) or C(DELETE) also when this timeout passed or the API answered HTTP 500, 502, 503 or
        504. A C(POST) that may have been received is never sent again.
    type: int
    default: 30
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
    Cloudflare,
    DnsApiError,
    PowerDns,
    ZoneNotFound,
    fqdn,
    record_set,
)
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_env import (  # noqa: E402
    from_environment,
    missing_settings,
)
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_http import require_requests  # noqa: E402

# Each provider's settings that are needed, with the environment variable each falls back on.
NEEDED = {
    "powerdns": {"api_url": "PROXMOXWP_PDNS_URL", "api_key": "PROXMOXWP_PDNS_API_KEY"},
    "cloudflare": {"api_token": "PROXMOXWP_CLOUDFLARE_API_TOKEN"},
}


def provider(module):
    p = module.params
    name = p["provider"]
    c = p[name]
    missing = missing_settings(f"provider={name}", name, "dns", c, NEEDED[name])
    if missing:
        module.fail_json(msg=missing)
    if name == "powerdns":
        return PowerDns(c["api_url"], c["api_key"], c["server_id"], p["timeout"], c["validate_certs"])
    return Cloudflare(c["api_url"], c["api_token"], p["timeout"])


def main():
    module = AnsibleModule(
        argument_spec={
            "provider": {"type": "str", "required": True, "choices": ["powerdns", "cloudflare"]},
            # apply_defaults: left out, the option is a dict all the same, so its settings' fallbacks apply.
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
            "name": {"type": "str", "required": True},
            "type": {"type": "str", "required": True, "choices": ["A", "AAAA", "CNAME"]},
            "values": {"type": "list", "elements": "str"},
            "ttl": {"type": "int", "default": 300},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
            "timeout": {"type": "int", "default": 30},
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
    dns = provider(module)
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
