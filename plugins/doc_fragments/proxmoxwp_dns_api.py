# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)
"""What the DNS modules of the collection share: the provider, its connection, the zone and the request timeout,
and their action group."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
requirements:
  - requests
attributes:
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
  timeout:
    description:
      - Seconds to wait for one API request.
      - A request is tried up to 4 times, with backoff, when its connection was refused or could not be made;
        a C(GET), C(PUT) or C(DELETE) also when this timeout passed or the API answered HTTP 500, 502, 503 or
        504. A C(POST) that may have been received is never sent again.
    type: int
    default: 30
"""
