#!/usr/bin/python
# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)

DOCUMENTATION = r"""
---
module: proxmoxwp_npm_check
short_description: Check that Nginx Proxy Manager answers, takes the credentials and is a supported version
description:
  - Asks Nginx Proxy Manager's API, without changing anything, whether the sites' proxy hosts could be made there;
    it answers, its version is one the collection supports (2.13 or later; the API changed its errors in 2.13), the
    identity and secret log in, and the user may read proxy hosts and certificates.
  - It is what C(proxmoxwp doctor) runs (playbooks/doctor.yml). A finding never fails the task.
version_added: "0.1.0"
author: ProxmoxWP contributors (!UNKNOWN)
extends_documentation_fragment:
  - proxmoxwp.hosting.proxmoxwp_npm_api
  - proxmoxwp.hosting.attributes
  - proxmoxwp.hosting.attributes.info_module
"""

EXAMPLES = r"""
- name: Check Nginx Proxy Manager
  proxmoxwp.hosting.proxmoxwp_npm_check:
    api: "{{ proxmoxwp_npm_api }}"
  register: proxy
"""

RETURN = r"""
checks:
  description:
    - One entry per check (C(npm.api), C(npm.version), C(npm.login)), each with C(id), C(ok), C(summary) and C(fix)
      (empty when C(ok)). A check that could not run because an earlier one failed is left out.
  returned: always
  type: list
  elements: dict
version:
  description: The version Nginx Proxy Manager reported (C(2.15.1)), or null.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_env import missing_settings  # noqa: E402
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_findings import finding  # noqa: E402
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_http import require_requests  # noqa: E402
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_npm import (  # noqa: E402
    API_NEEDED,
    Npm,
    NpmApiError,
    api_option,
)

# The oldest release whose API the module_utils client speaks (expired token 400, missing permission 404).
OLDEST = (2, 13)


def check(npm):
    """The findings and the version text."""
    try:
        root = npm.about()
    except NpmApiError as exc:
        return None, [
            finding(
                "npm.api",
                False,
                str(exc),
                "Check api.url (it ends in /api) and that the controller reaches Nginx Proxy Manager there.",
            )
        ]
    parts = root.get("version") if isinstance(root, dict) else None
    if not isinstance(parts, dict):
        return None, [
            finding(
                "npm.api",
                False,
                f"{npm.base} answered, but not as Nginx Proxy Manager's API does (no version in GET /).",
                "Point api.url at Nginx Proxy Manager's API: http(s)://<host>:81/api.",
            )
        ]
    numbers = tuple(int(parts.get(key) or 0) for key in ("major", "minor", "revision"))
    version = ".".join(map(str, numbers))
    checks = [finding("npm.api", True, f"Nginx Proxy Manager {version} answers at {npm.base}.")]
    if numbers[:2] < OLDEST:
        checks.append(
            finding(
                "npm.version",
                False,
                f"Nginx Proxy Manager {version} is older than {OLDEST[0]}.{OLDEST[1]}, the oldest the project "
                "supports.",
                "Upgrade Nginx Proxy Manager (the project is tested with 2.15.1).",
            )
        )
    else:
        checks.append(finding("npm.version", True, f"Version {version} is supported."))
    try:
        npm.login()
        npm.proxy_hosts()
        npm.certificates()
    except NpmApiError as exc:
        fix = (
            "Check api.identity and api.secret (an NPM user's e-mail and password); give the user the permission to "
            "manage proxy hosts and certificates (Users > Permissions)."
        )
        checks.append(finding("npm.login", False, str(exc), fix))
        return version, checks
    checks.append(finding("npm.login", True, f"{npm.identity} logs in and may read proxy hosts and certificates."))
    return version, checks


def main():
    module = AnsibleModule(argument_spec={"api": api_option()}, supports_check_mode=True)
    require_requests(module)
    api = module.params["api"]
    missing = missing_settings("The connection to Nginx Proxy Manager", "api", "npm", api, API_NEEDED)
    if missing:
        fix = "Set proxmoxwp_npm_api in the inventory (the secret in Ansible Vault)."
        module.exit_json(changed=False, version=None, checks=[finding("npm.api", False, missing + ".", fix)])
    version, checks = check(Npm(api["url"], api["identity"], api["secret"], api["timeout"], api["validate_certs"]))
    module.exit_json(changed=False, version=version, checks=checks)


if __name__ == "__main__":
    main()
