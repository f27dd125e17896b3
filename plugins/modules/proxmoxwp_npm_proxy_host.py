#!/usr/bin/python
# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)

DOCUMENTATION = r"""
---
module: proxmoxwp_npm_proxy_host
short_description: A Nginx Proxy Manager proxy host with its Let's Encrypt certificate, made in the safe order
description:
  - Finds the proxy host by the first of O(domain_names). O(state=present) creates it or corrects what differs,
    enables or disables it, and gives it a certificate. O(state=absent) deletes it and its certificate; parts
    already gone are fine.
  - The order is the one that never leaves a half-made host. First the host over plain HTTP, with websockets,
    HTTP/2 and exploit blocking on. Then the certificate (Let's Encrypt checks the name over that host). Then
    the certificate is attached and SSL forced. A certificate made by an earlier run for the same names is
    reused, not requested again.
  - A certificate that cannot be issued does not fail the module. The host keeps serving over HTTP, and
    RV(ssl) is V(error) with NPM's reason in RV(ssl_error). A disabled host gets no certificate until it is
    enabled.
  - Only fields that NPM 2.13 and later accept are sent. After a change the host is read again, and the module
    fails when C(meta.nginx_online) is false.
version_added: "0.1.0"
author: ProxmoxWP contributors (!UNKNOWN)
extends_documentation_fragment:
  - proxmoxwp.hosting.proxmoxwp_npm_api
  - proxmoxwp.hosting.attributes
attributes:
  check_mode:
    support: full
    details:
      - RV(actions) lists what would be done. Whether Let's Encrypt would issue the certificate is not known in
        check mode.
  diff_mode:
    support: none
    details:
      - RV(actions) lists what was done.
options:
  domain_names:
    description: The host's names; the first one identifies the host.
    type: list
    elements: str
    required: true
  forward_host:
    description: Where the host forwards to (the site's container address). Required for O(state=present).
    type: str
  forward_port:
    description: The port it forwards to.
    type: int
    default: 80
  forward_scheme:
    description: The scheme it forwards with.
    type: str
    choices: [http, https]
    default: http
  enabled:
    description:
      - Whether the host serves. Left out, a new host serves and an existing one keeps its state (a restore that
        moves the site to another container changes where the hosts forward to, not whether they serve).
    type: bool
  create:
    description:
      - Whether a missing host is made. V(false) only changes a host that exists (the toggle flips the hosts a site
        has, and makes none).
    type: bool
    default: true
  certificate:
    description:
      - V(letsencrypt) requests (or reuses) a Let's Encrypt certificate and forces SSL.
      - V(none) serves HTTP only.
    type: str
    choices: [letsencrypt, none]
    default: letsencrypt
  state:
    description: Whether the host exists.
    type: str
    choices: [present, absent]
    default: present
"""

EXAMPLES = r"""
- name: Serve the site through the proxy with SSL
  proxmoxwp.hosting.proxmoxwp_npm_proxy_host:
    api: "{{ proxmoxwp_npm_api }}"
    domain_names: [s123.sites.example.com]
    forward_host: 10.77.0.123
  delegate_to: localhost

- name: Turn the site's proxy host off
  proxmoxwp.hosting.proxmoxwp_npm_proxy_host:
    api: "{{ proxmoxwp_npm_api }}"
    domain_names: [s123.sites.example.com]
    forward_host: 10.77.0.123
    enabled: false
  delegate_to: localhost
"""

RETURN = r"""
host_id:
  description: The proxy host's id, or null when there is none.
  returned: always
  type: int
certificate_id:
  description: The id of its certificate, or 0.
  returned: always
  type: int
enabled:
  description: Whether the host serves.
  returned: always
  type: bool
ssl:
  description: V(active) (certificate attached, SSL forced), V(error) (it could not be issued), V(none) (HTTP only).
  returned: always
  type: str
ssl_error:
  description: NPM's reason when RV(ssl) is V(error).
  returned: when ssl is error
  type: str
actions:
  description: What the module did, in order.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_env import missing_settings  # noqa: E402
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_http import require_requests  # noqa: E402
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_npm import (  # noqa: E402
    API_NEEDED,
    Npm,
    NpmApiError,
    api_option,
)

# The fields ProxmoxWP sets, all accepted by NPM 2.13 and later. HTTP/2 and forced SSL come with the certificate:
# NPM clears both on a host without one.
SITE_FIELDS = {"block_exploits": True, "allow_websocket_upgrade": True}
SSL_FIELDS = {"ssl_forced": True, "http2_support": True}


def base_fields(p):
    return {
        "domain_names": [d.lower() for d in p["domain_names"]],
        "forward_scheme": p["forward_scheme"],
        "forward_host": p["forward_host"],
        "forward_port": p["forward_port"],
        **SITE_FIELDS,
    }


def differences(host, wanted):
    diff = {}
    for key, value in wanted.items():
        have = host.get(key)
        if key == "domain_names":
            if sorted(d.lower() for d in have or []) != sorted(value):
                diff[key] = value
        elif have != value:
            diff[key] = value
    return diff


def own_host(npm, names):
    """The host of these names: the one serving the first name, unless it also serves names not asked for (then
    it is another site's host, and the name is taken)."""
    host = npm.host_for(names[0])
    if host is not None and not {n.lower() for n in host.get("domain_names", [])} <= set(names):
        raise NpmApiError(f"{names[0]} is already in use by proxy host {host['id']}")
    return host


def check_names_free(npm, names, own_id):
    for name in names:
        other = npm.host_for(name)
        if other is not None and other["id"] != own_id:
            raise NpmApiError(f"{name} is already in use by proxy host {other['id']}")


class Run:
    def __init__(self, module, npm):
        self.module, self.npm = module, npm
        self.actions = []
        self.result = {"host_id": None, "certificate_id": 0, "enabled": False, "ssl": "none"}

    def do(self, action, method, path, body=None):
        self.actions.append(action)
        if self.module.check_mode:
            return None
        return self.npm.call(method, path, body)

    def present(self, p):
        wanted = base_fields(p)
        host = own_host(self.npm, wanted["domain_names"])
        check_names_free(self.npm, wanted["domain_names"], host["id"] if host else None)
        if host is None and not p["create"]:
            return
        if host is None:
            host = self.do("create host", "POST", "/nginx/proxy-hosts", wanted) or {"id": None, **wanted}
            host.setdefault("enabled", True)
            host.setdefault("certificate_id", 0)
        else:
            diff = differences(host, wanted)
            if diff:
                host = self.do("update host", "PUT", f"/nginx/proxy-hosts/{host['id']}", diff) or {**host, **diff}
        enabled = bool(host.get("enabled")) if p["enabled"] is None else p["enabled"]
        if bool(host.get("enabled")) != enabled:
            verb = "enable" if enabled else "disable"
            self.do(f"{verb} host", "POST", f"/nginx/proxy-hosts/{host['id']}/{verb}")
            host["enabled"] = enabled
        self.result.update(host_id=host["id"], enabled=enabled, certificate_id=host.get("certificate_id") or 0)
        if p["certificate"] == "letsencrypt":
            self.certify(host, wanted["domain_names"], enabled)
        if host["id"] is not None and self.actions and not self.module.check_mode:
            after = self.npm.call("GET", f"/nginx/proxy-hosts/{host['id']}")
            meta = after.get("meta") or {}
            if meta.get("nginx_online") is False:
                raise NpmApiError(f"NPM's nginx refused the host {host['id']}: {meta.get('nginx_err')}")

    def certify(self, host, names, enabled):
        if host.get("certificate_id"):
            missing = {key: value for key, value in SSL_FIELDS.items() if host.get(key) != value}
            if missing:
                self.do("force SSL", "PUT", f"/nginx/proxy-hosts/{host['id']}", missing)
            self.result["ssl"] = "active"
            return
        if not enabled:
            return
        cert = self.npm.certificate_for(names)
        if cert is None:
            try:
                body = {"provider": "letsencrypt", "domain_names": names, "meta": {"dns_challenge": False}}
                cert = self.do("request certificate", "POST", "/nginx/certificates", body) or {"id": 0}
            except NpmApiError as exc:
                self.result.update(ssl="error", ssl_error=str(exc))
                return
        attach = {"certificate_id": cert["id"], **SSL_FIELDS}
        self.do("attach certificate", "PUT", f"/nginx/proxy-hosts/{host['id']}", attach)
        self.result.update(ssl="active", certificate_id=cert["id"])

    def absent(self, p):
        names = [d.lower() for d in p["domain_names"]]
        host = own_host(self.npm, names)
        cert_id = host.get("certificate_id") if host else None
        if host is not None:
            self.do("delete host", "DELETE", f"/nginx/proxy-hosts/{host['id']}")
        cert = self.npm.certificate_for(names)
        ids = {c for c in (cert_id, cert["id"] if cert else None) if c}
        used = {h.get("certificate_id") for h in self.npm.proxy_hosts() if not host or h["id"] != host["id"]}
        for cid in sorted(ids - used):
            try:
                self.do("delete certificate", "DELETE", f"/nginx/certificates/{cid}")
            except NpmApiError as exc:
                if exc.status != 404:
                    raise


def main():
    module = AnsibleModule(
        argument_spec={
            "api": api_option(),
            "domain_names": {"type": "list", "elements": "str", "required": True},
            "forward_host": {"type": "str"},
            "forward_port": {"type": "int", "default": 80},
            "forward_scheme": {"type": "str", "default": "http", "choices": ["http", "https"]},
            "enabled": {"type": "bool"},
            "create": {"type": "bool", "default": True},
            "certificate": {"type": "str", "default": "letsencrypt", "choices": ["letsencrypt", "none"]},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
        },
        required_if=[("state", "present", ["forward_host"])],
        supports_check_mode=True,
    )
    require_requests(module)
    p = module.params
    if not p["domain_names"]:
        module.fail_json(msg="domain_names must not be empty")
    api = p["api"]
    missing = missing_settings("The connection to Nginx Proxy Manager", "api", "npm", api, API_NEEDED)
    if missing:
        module.fail_json(msg=missing)
    run = Run(module, Npm(api["url"], api["identity"], api["secret"], api["timeout"], api["validate_certs"]))
    try:
        if p["state"] == "present":
            run.present(p)
        else:
            run.absent(p)
    except NpmApiError as exc:
        module.fail_json(msg=str(exc), actions=run.actions)
    module.exit_json(changed=bool(run.actions), actions=run.actions, **run.result)


if __name__ == "__main__":
    main()
