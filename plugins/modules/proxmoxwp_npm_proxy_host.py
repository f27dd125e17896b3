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
    RV(ssl) is V(error) with the reason in RV(ssl_error). NPM passes on only certbot's stderr, which does not
    say which check failed, so the module looks itself (O(acme_check)), each name's public DNS answer against
    O(public_addresses), then, only on those addresses, whether the proxy answers on the challenge's port and
    whether the answer comes from this proxy host. A disabled host gets no certificate until it is enabled.
  - NPM runs one certbot at a time and answers a request made meanwhile with a 500 that did nothing. Requests go
    one at a time through the workers' shared lock C(npm-certbot:<api.url>) when the worker provides one
    (E(PROXMOXWP_LOCK_SOCKET)), and a "busy" answer is sent again with backoff until O(api.certificate_timeout)
    has passed. A request that may have acted is never sent again.
  - After every create, update and enable the host is read again, before any certificate request. A host NPM's
    nginx refused (C(meta.nginx_online) false) is removed if this run made it, else disabled, and the module
    fails with nginx's reason; it never gets a certificate request (NPM would write its config untested and
    then refuse to change any host until it is deleted).
  - A run repairs what earlier runs or other hands left. An enabled host whose config NPM never wrote (a create
    that answered 500) gets it written again; a host whose certificate was deleted (its config then breaks
    C(nginx -t) for every host) is disabled, forgets the certificate, is enabled again and gets a new one; a
    certificate that exists but is not attached, or SSL not forced, is attached and forced. The host is read
    at the end of every run, also when nothing was changed.
  - A name another proxy host, a 404 host or a redirection host has is refused before anything is changed, in
    NPM's words (C(<name> is already in use)) with the host that has it.
  - Only fields that NPM 2.13 and later accept are sent.
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
  public_addresses:
    description:
      - The addresses the names must resolve to (the site's public address); compared with the names' DNS when
        a certificate is not issued, and the only addresses the module probes.
      - Left empty, the DNS answer is reported but not judged, and nothing is probed.
    type: list
    elements: str
    default: []
  acme_check:
    description: How the module finds why Let's Encrypt did not issue a certificate.
    type: dict
    suboptions:
      enabled:
        description: Whether to look at all; V(false) reports only certbot's first line.
        type: bool
        default: true
      resolvers:
        description:
          - The resolvers to ask for the names' A and AAAA records, each C(ip) or C(ip:port) (C([ipv6]:port)).
          - Left empty, the system's (C(/etc/resolv.conf)).
        type: list
        elements: str
        default: []
      http_port:
        description: The port Let's Encrypt's HTTP-01 check reaches the proxy on.
        type: int
        default: 80
      timeout:
        description: Seconds for one DNS look-up or HTTP probe.
        type: float
        default: 5
requirements:
  - dnspython
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
  description:
    - Why the certificate was not issued, when RV(ssl) is V(error).
    - 'For example C(Let''s Encrypt cannot validate the name: www.example.org points to 198.51.100.7, not
      203.0.113.10), or, when the names'' DNS and HTTP look right, C(Let''s Encrypt refused the certificate for a
      reason NPM does not pass on; the name''s DNS and HTTP look right, so a retry may succeed), with certbot''s
      first line.'
    - NPM's own answer when it did not run certbot (busy for O(api.certificate_timeout), a timeout).
  returned: when ssl is error
  type: str
ssl_checks:
  description:
    - What the module found per name when RV(ssl) is V(error) (empty when it did not look).
    - C(name); C(addresses), the name's A and AAAA answers; C(problem), what is wrong, or null.
  returned: when ssl is error
  type: list
  elements: dict
  sample: [{"name": "www.example.org", "addresses": ["198.51.100.7"],
            "problem": "www.example.org points to 198.51.100.7, not 203.0.113.10"}]
actions:
  description: What the module did, in order; also on failure (then C(changed) is true when it did anything).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.proxmoxwp.hosting.plugins.module_utils import proxmoxwp_acme as acme  # noqa: E402
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_env import missing_settings  # noqa: E402
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_http import require_requests  # noqa: E402
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_npm import (  # noqa: E402
    API_NEEDED,
    CERTBOT_BUSY,
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
    """NPM refuses a name any other host has (proxy, 404 or redirection host): refused here, before any change."""
    taken = []
    for name in names:
        other = npm.host_for(name)
        if other is not None and other["id"] != own_id:
            taken.append(f"{name} is already in use by proxy host {other['id']}")
    taken += npm.names_in_use(names)
    if taken:
        raise NpmApiError("; ".join(taken))


class Run:
    def __init__(self, module, npm):
        self.module, self.npm = module, npm
        self.actions = []
        self.created = False
        self.result = {"host_id": None, "certificate_id": 0, "enabled": False, "ssl": "none"}

    def do(self, action, method, path, body=None):
        self.actions.append(action)
        if self.module.check_mode:
            return None
        return self.npm.call(method, path, body)

    def path(self, host):
        return f"/nginx/proxy-hosts/{host['id']}"

    def present(self, p):
        wanted = base_fields(p)
        names = wanted["domain_names"]
        host = own_host(self.npm, names)
        check_names_free(self.npm, names, host["id"] if host else None)
        if host is None and not p["create"]:
            return
        if host is None:
            enabled = True if p["enabled"] is None else p["enabled"]
            host = self.create(wanted)
        else:
            enabled = bool(host.get("enabled")) if p["enabled"] is None else p["enabled"]
            host = self.update(self.drop_lost_certificate(host), wanted)
        host = self.switch(host, enabled)
        self.result.update(host_id=host["id"], enabled=enabled, certificate_id=host.get("certificate_id") or 0)
        if p["certificate"] == "letsencrypt":
            self.certify(host, names, enabled, p)
        self.verify(host, enabled)

    def create(self, wanted):
        self.created = True
        host = self.do("create host", "POST", "/nginx/proxy-hosts", wanted)
        if host is None:
            return {"id": None, "enabled": True, "certificate_id": 0, **wanted}
        # NPM answers the row as it was before nginx got its config: only a new read tells whether it serves.
        return self.served(host)

    def update(self, host, wanted):
        """Correct what differs; also rewrite the config of an enabled host NPM does not serve: one a create that
        answered 500 stored without ever writing its config (meta {}), or one nginx refused before."""
        diff = differences(host, wanted)
        unserved = host.get("enabled") and (host.get("meta") or {}).get("nginx_online") is not True
        if not diff and not unserved:
            return host
        after = self.do("update host" if diff else "rewrite host's config", "PUT", self.path(host), diff or wanted)
        return {**host, **diff} if after is None else self.served(after)

    def drop_lost_certificate(self, host):
        """A certificate deleted behind NPM's hosts leaves their config naming files that are gone: nginx -t fails
        for every host, and NPM rewrites no config until this one is out. Only a disable takes it out; then the
        host forgets the certificate (while disabled, nothing is written), and is enabled and certified again."""
        cert_id = host.get("certificate_id")
        if not cert_id or cert_id in {cert["id"] for cert in self.npm.certificates()}:
            return host
        if host.get("enabled"):
            self.do("disable host (its certificate is gone)", "POST", f"{self.path(host)}/disable")
        after = self.do("forget the deleted certificate", "PUT", self.path(host), {"certificate_id": 0})
        return {**host, **(after or {}), "enabled": False, "certificate_id": 0}

    def switch(self, host, enabled):
        if bool(host.get("enabled")) == enabled:
            return host
        verb = "enable" if enabled else "disable"
        try:
            self.do(f"{verb} host", "POST", f"{self.path(host)}/{verb}")
        except NpmApiError:
            # NPM switches the host before it reloads nginx: a 500 of the reload may come with the switch done.
            if bool(self.npm.call("GET", self.path(host)).get("enabled")) != enabled:
                raise
        host = {**host, "enabled": enabled}
        return self.served(host) if enabled and host["id"] is not None and not self.module.check_mode else host

    def served(self, host):
        """The host as NPM has it now; an enabled host nginx refused (or whose config was not written) is taken
        out (removed if this run made it, else disabled), and the module fails naming nginx's reason. Checked
        before any certificate request: NPM would write the refused host's config untested for it, and then
        refuse to change any host until that one is deleted."""
        after = self.npm.call("GET", self.path(host))
        meta = after.get("meta") or {}
        if not after.get("enabled") or meta.get("nginx_online") is True:
            return after
        reason = meta.get("nginx_err") or "NPM wrote no config for it"
        message = f"NPM's nginx refused the host {after['id']} ({after['domain_names'][0]}): {reason}"
        try:
            if self.created:
                self.do("remove refused host", "DELETE", self.path(after))
            else:
                self.do("disable refused host", "POST", f"{self.path(after)}/disable")
        except NpmApiError as exc:
            message += f"; taking it out failed too: {exc}"
        raise NpmApiError(message)

    def certify(self, host, names, enabled, p):
        if host.get("certificate_id"):
            missing = {key: value for key, value in SSL_FIELDS.items() if host.get(key) != value}
            if missing:
                after = self.do("force SSL", "PUT", self.path(host), missing)
                if after is not None and enabled:
                    self.served(after)
            self.result["ssl"] = "active"
            return
        if not enabled:
            return
        cert = self.npm.certificate_for(names)
        if cert is None:
            self.actions.append("request certificate")
            try:
                cert = {"id": 0} if self.module.check_mode else self.npm.request_certificate(names)
            except NpmApiError as exc:
                self.result.update(ssl="error", **self.refusal(names, exc, p))
                return
        attach = {"certificate_id": cert["id"], **SSL_FIELDS}
        after = self.do("attach certificate", "PUT", self.path(host), attach)
        if after is not None:
            self.served(after)
        self.result.update(ssl="active", certificate_id=cert["id"])

    def refusal(self, names, exc, p):
        """Why the certificate was not issued. certbot's failure reaches NPM's answer only as its stderr, without
        the failed check: the module looks at the names' DNS and HTTP itself (proxmoxwp_acme)."""
        certbot_failed = exc.status == 500 and exc.stack and CERTBOT_BUSY not in exc.stack[0]
        if not certbot_failed:
            return {"ssl_error": str(exc), "ssl_checks": []}
        if not p["acme_check"]["enabled"]:
            return {"ssl_error": acme.unchecked(exc.stack), "ssl_checks": []}
        reason, checks = acme.diagnose(names, p["public_addresses"], p["acme_check"], exc.stack)
        return {"ssl_error": reason, "ssl_checks": checks}

    def verify(self, host, enabled):
        """Read the host once more, also when nothing was changed: a host NPM does not serve is not "ok"."""
        if host["id"] is None or self.module.check_mode:
            return
        after = self.npm.call("GET", self.path(host))
        name = after["domain_names"][0]
        if bool(after.get("enabled")) != enabled:
            state = "disabled" if enabled else "enabled"
            raise NpmApiError(f"The proxy host {after['id']} ({name}) is still {state}")
        meta = after.get("meta") or {}
        if enabled and meta.get("nginx_online") is not True:
            reason = meta.get("nginx_err") or "NPM wrote no config for it"
            raise NpmApiError(f"NPM does not serve the proxy host {after['id']} ({name}): {reason}")

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
            "public_addresses": {"type": "list", "elements": "str", "default": []},
            "acme_check": {
                "type": "dict",
                "apply_defaults": True,
                "options": {
                    "resolvers": {"type": "list", "elements": "str", "default": []},
                    "http_port": {"type": "int", "default": 80},
                    "timeout": {"type": "float", "default": 5},
                    "enabled": {"type": "bool", "default": True},
                },
            },
        },
        required_if=[("state", "present", ["forward_host"])],
        supports_check_mode=True,
    )
    require_requests(module)
    acme.require_dnspython(module)
    p = module.params
    if not p["domain_names"]:
        module.fail_json(msg="domain_names must not be empty")
    api = p["api"]
    missing = missing_settings("The connection to Nginx Proxy Manager", "api", "npm", api, API_NEEDED)
    if missing:
        module.fail_json(msg=missing)
    npm = Npm(
        api["url"], api["identity"], api["secret"], api["timeout"], api["validate_certs"], api["certificate_timeout"]
    )
    run = Run(module, npm)
    try:
        if p["state"] == "present":
            run.present(p)
        else:
            run.absent(p)
    except NpmApiError as exc:
        # What was sent may have acted although a later step failed (NPM's writes are not atomic).
        module.fail_json(msg=str(exc), changed=bool(run.actions), actions=run.actions)
    module.exit_json(changed=bool(run.actions), actions=run.actions, **run.result)


if __name__ == "__main__":
    main()
