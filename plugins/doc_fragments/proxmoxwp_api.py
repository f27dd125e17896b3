# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)
"""What every Proxmox VE module of the collection shares: the connection to the API (and its action group for
module_defaults) and the task timeout."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
requirements:
  - proxmoxer >= 2.2
  - requests
attributes:
  action_group:
    description: Use C(group/proxmoxwp.hosting.proxmox) in C(module_defaults) to set O(api) once for a play.
    support: full
    membership:
      - proxmoxwp.hosting.proxmox
options:
  api:
    description:
      - Connection to the Proxmox VE API with an API token.
      - 'A play sets it once for every module of the action group C(proxmoxwp.hosting.proxmox) with
        C(module_defaults), for example C(group/proxmoxwp.hosting.proxmox: {api: "{{ proxmoxwp_pve_api }}"}).'
      - Each setting left out here is taken from its environment variable, named in its description; without
        O(api), every setting is.
      - O(api.host) (or O(api.hosts)), O(api.token_id) and O(api.token_secret) are required, here or in the
        environment; the module fails, naming what is missing, before it calls the API.
    type: dict
    suboptions:
      host:
        description:
          - Host name or address of a PVE node (no scheme, no path).
          - If not set, the environment variable E(PROXMOXWP_PVE_HOST) is used.
          - Not used when O(api.hosts) is set.
        type: str
      hosts:
        description:
          - Several nodes of the cluster, asked in this order; replaces O(api.host). Every node answers the whole
            cluster's API, tasks included, so any one that answers will do.
          - A request goes to the next host only when it never reached the one asked, that is, when the connection was
            refused or not made within O(api.timeout) (at most 10 s), the name did not resolve, or the host's
            certificate was refused (not signed by O(api.ca_file), not its pin). An answer, even an error (HTTP 4xx,
            500, 595), is final, and so is a request that may have been received (no answer in time, connection
            dropped), since another node would do it a second time. Each host is tried up to 4 times in all, with
            backoff.
          - The module keeps to the host that answered for the rest of its calls, and warns about each host that did
            not answer. The next module starts with the first host again.
        type: list
        elements: dict
        suboptions:
          host:
            description: Host name or address of the node (no scheme, no path).
            type: str
            required: true
          port:
            description: Port of its API; O(api.port) when left out.
            type: int
          fingerprint:
            description:
              - SHA-256 fingerprint of this node's certificate (each node has its own C(pve-ssl.pem));
                O(api.fingerprint) when left out.
            type: str
          ca_file:
            description: CA bundle (PEM) to verify this node's certificate with; O(api.ca_file) when left out.
            type: path
      port:
        description:
          - Port of the PVE API.
          - If not set, the environment variable E(PROXMOXWP_PVE_PORT) is used, else 8006.
        type: int
        default: 8006
      token_id:
        description:
          - API token id, C(user@realm!tokenname).
          - If not set, the environment variable E(PROXMOXWP_PVE_TOKEN_ID) is used.
        type: str
      token_secret:
        description:
          - API token secret (the UUID PVE showed when the token was made). Never logged.
          - If not set, the environment variable E(PROXMOXWP_PVE_TOKEN_SECRET) is used.
        type: str
      validate_certs:
        description:
          - Verify the server certificate against O(api.ca_file) or the system CAs.
          - Ignored when O(api.fingerprint) is set; the pin is then the verification.
          - If not set, the environment variable E(PROXMOXWP_PVE_VALIDATE_CERTS) is used, else V(true).
        type: bool
        default: true
      ca_file:
        description:
          - CA bundle (PEM) to verify the PVE certificate with. The cluster's CA (C(/etc/pve/pve-root-ca.pem)) signed
            every node's certificate, so it verifies all of O(api.hosts).
          - If not set, the environment variable E(PROXMOXWP_PVE_CA_FILE) is used.
        type: path
      fingerprint:
        description:
          - SHA-256 fingerprint of the PVE server certificate, hex, colons optional. When set, the connection
            accepts only that certificate, without needing a CA (PVE's self-signed certificate works).
          - If not set, the environment variable E(PROXMOXWP_PVE_FINGERPRINT) is used.
        type: str
      timeout:
        description:
          - Seconds to wait for the answer to one HTTP request.
          - A request is tried up to 4 times, with backoff, when its connection was refused or could not be made;
            a C(GET), C(PUT) or C(DELETE) also when this timeout passed or the API answered HTTP 500, 502, 503 or
            504. A C(POST) that may have been received is never sent again.
        type: int
        default: 30
  task_timeout:
    description:
      - Seconds to wait for one Proxmox VE task (UPID) to end, or for a container to reach a power state.
    type: int
    default: 900
"""
