#!/usr/bin/python
# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)

DOCUMENTATION = r"""
---
module: proxmoxwp_dns_check
short_description: Check that the DNS provider has the sites' zone and takes records in it
description:
  - Asks the DNS provider whether the sites' records could be written, as C(proxmoxwp_dns_record) writes them;
    the provider has O(zone), the sites' names (under O(base_zone)) lie in it, and the credential may write there.
  - To know the last, it writes one A record, C(proxmoxwp-doctor.<base_zone>) pointing at 192.0.2.1 (an address
    kept for documentation, RFC 5737), and removes it again at once. Nothing else in the zone is touched.
  - It is what C(proxmoxwp doctor) runs (playbooks/doctor.yml). A finding never fails the task.
version_added: "0.1.0"
author: ProxmoxWP contributors (!UNKNOWN)
extends_documentation_fragment:
  - proxmoxwp.hosting.proxmoxwp_dns_api
  - proxmoxwp.hosting.attributes
attributes:
  check_mode:
    support: partial
    details:
      - In check mode the zone is looked up, but nothing is written, so whether the credential may write is not
        known.
  diff_mode:
    support: none
options:
  base_zone:
    description: The zone the sites' subdomains are made under (C(proxmoxwp_base_zone)), inside O(zone).
    type: str
    required: true
  ttl:
    description: TTL of the record written to try the credential.
    type: int
    default: 60
"""

EXAMPLES = r"""
- name: Check the DNS provider
  proxmoxwp.hosting.proxmoxwp_dns_check:
    provider: cloudflare
    cloudflare:
      api_token: "{{ vault_cloudflare_token }}"
    zone: example.net
    base_zone: sites.example.net
  register: dns
"""

RETURN = r"""
checks:
  description:
    - One entry per check (C(dns.zone), C(dns.write)), each with C(id), C(ok), C(summary) and C(fix) (empty when
      C(ok)). A check that could not run because an earlier one failed is left out.
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_dns import (  # noqa: E402
    DnsApiError,
    ZoneNotFound,
    connection_options,
    fqdn,
    missing_connection,
    provider_client,
    record_set,
)
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_findings import finding  # noqa: E402
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_http import require_requests  # noqa: E402

PROBE_LABEL = "proxmoxwp-doctor"
PROBE_ADDRESS = "192.0.2.1"


def check(dns, p, check_mode):
    try:
        zone = dns.zone(p["zone"])
    except ZoneNotFound as exc:
        fix = "Set proxmoxwp_dns.zone to a zone the provider has (for Cloudflare, the registered domain)."
        return [finding("dns.zone", False, str(exc), fix)]
    except DnsApiError as exc:
        fix = "Check the provider's URL and credential in proxmoxwp_dns (the secret in Ansible Vault)."
        return [finding("dns.zone", False, str(exc), fix)]
    base = fqdn(p["base_zone"])
    if not zone.holds(base):
        return [
            finding(
                "dns.zone",
                False,
                f"The sites' names (under {base}) are not in the zone {zone.name}.",
                "Set proxmoxwp_dns.zone to the zone that holds proxmoxwp_base_zone (the registered domain for "
                "Cloudflare).",
            )
        ]
    checks = [finding("dns.zone", True, f"{p['provider']} has the zone {zone.name}, which holds {base}.")]
    if check_mode:
        return checks
    probe = record_set(f"{PROBE_LABEL}.{base}", "A", p["ttl"], [PROBE_ADDRESS])
    try:
        dns.replace(zone, probe)
        dns.delete(zone, probe.name, "A")
    except DnsApiError as exc:
        fix = "Give the credential the right to edit DNS records in the zone (Cloudflare: Zone > DNS > Edit)."
        checks.append(finding("dns.write", False, f"Writing a record into {zone.name} failed: {exc}", fix))
        return checks
    checks.append(finding("dns.write", True, f"A record was written into {zone.name} and removed again."))
    return checks


def main():
    module = AnsibleModule(
        argument_spec={
            **connection_options(),
            "base_zone": {"type": "str", "required": True},
            "ttl": {"type": "int", "default": 60},
        },
        supports_check_mode=True,
    )
    require_requests(module)
    p = module.params
    missing = missing_connection(p)
    if missing:
        fix = "Set proxmoxwp_dns in the inventory (the secret in Ansible Vault)."
        module.exit_json(changed=False, checks=[finding("dns.zone", False, missing + ".", fix)])
    module.exit_json(changed=False, checks=check(provider_client(module), p, module.check_mode))


if __name__ == "__main__":
    main()
