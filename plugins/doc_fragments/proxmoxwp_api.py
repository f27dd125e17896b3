# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)
"""The options every proxmoxwp module shares: the connection to the Proxmox VE API and the task timeout."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
requirements:
  - proxmoxer >= 2.2
  - requests
options:
  api:
    description: Connection to the Proxmox VE API with an API token.
    type: dict
    required: true
    suboptions:
      host:
        description: Host name or address of a PVE node (no scheme, no path).
        type: str
        required: true
      port:
        description: Port of the PVE API.
        type: int
        default: 8006
      token_id:
        description: API token id, C(user@realm!tokenname).
        type: str
        required: true
      token_secret:
        description: API token secret (the UUID PVE showed when the token was made). Never logged.
        type: str
        required: true
      validate_certs:
        description:
          - Verify the server certificate against O(api.ca_file) or the system CAs.
          - Ignored when O(api.fingerprint) is set; the pin is then the verification.
        type: bool
        default: true
      ca_file:
        description: CA bundle (PEM) to verify the PVE certificate with.
        type: path
      fingerprint:
        description:
          - SHA-256 fingerprint of the PVE server certificate, hex, colons optional. When set, the connection
            accepts only that certificate, without needing a CA (PVE's self-signed certificate works).
        type: str
      timeout:
        description: Seconds to wait for the answer to one HTTP request.
        type: int
        default: 30
  task_timeout:
    description:
      - Seconds to wait for one Proxmox VE task (UPID) to end, or for a container to reach a power state.
    type: int
    default: 900
"""
