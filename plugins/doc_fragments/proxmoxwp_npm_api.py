# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)
"""What the Nginx Proxy Manager modules of the collection share: the connection to NPM's API and its action group."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
requirements:
  - requests
attributes:
  action_group:
    description: Use C(group/proxmoxwp.hosting.npm) in C(module_defaults) to set O(api) once for a play.
    support: full
    membership:
      - proxmoxwp.hosting.npm
options:
  api:
    description:
      - How to reach NPM.
      - 'A play sets it once for the action group C(proxmoxwp.hosting.npm) with C(module_defaults), for example
        C(group/proxmoxwp.hosting.npm: {api: "{{ proxmoxwp_npm_api }}"}).'
      - Each setting left out here is taken from its environment variable, named in its description; without
        O(api), every setting is. O(api.url), O(api.identity) and O(api.secret) are required, here or in the
        environment.
    type: dict
    suboptions:
      url:
        description:
          - Base URL of NPM's API, for example C(http://10.77.0.2:81/api).
          - If not set, the environment variable E(PROXMOXWP_NPM_URL) is used.
        type: str
      identity:
        description:
          - The user's e-mail address.
          - If not set, the environment variable E(PROXMOXWP_NPM_IDENTITY) is used.
        type: str
      secret:
        description:
          - The user's password.
          - If not set, the environment variable E(PROXMOXWP_NPM_SECRET) is used.
        type: str
      timeout:
        description:
          - Seconds to wait for one request.
          - A request is tried up to 4 times, with backoff, when its connection was refused or could not be made;
            a C(GET), C(PUT) or C(DELETE) also when this timeout passed or the API answered HTTP 500, 502, 503 or
            504. A C(POST) that may have been received is never sent again.
        type: int
        default: 30
      certificate_timeout:
        description:
          - Seconds to wait for a certificate request, which NPM answers only once certbot is done (3 to 11 s,
            more under load), including the time spent waiting for another request to NPM's certbot to finish.
        type: int
        default: 300
      validate_certs:
        description: Check NPM's TLS certificate (for an https URL).
        type: bool
        default: true
"""
