# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)
"""A small client of the Nginx Proxy Manager API (v2.13 and later; schema: lab/reference/npm-openapi-*.json).

What it knows about NPM (docs/real-systems.md): a token comes from `POST /tokens` and lasts a day, an expired one is
answered with HTTP 400, so the client logs in again once; a missing permission is a 404; "already in use" and
enabling an enabled host are 400s, so state is read before it is changed.
"""

from __future__ import annotations

import time

from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_env import from_environment
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_http import requests, retrying_session
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_lock import LockTimeout, held

# certbot's answer while another certbot runs in NPM: nothing was done, so the request may be sent again.
CERTBOT_BUSY = "Another instance of Certbot is already running"
# Seconds between tries while certbot is busy: doubling from the first, never more than the last.
BUSY_BACKOFF = (1.0, 10.0)

# The settings of a module's `api` option that are needed, with the environment variable each falls back on.
API_NEEDED = {"url": "PROXMOXWP_NPM_URL", "identity": "PROXMOXWP_NPM_IDENTITY", "secret": "PROXMOXWP_NPM_SECRET"}


def api_option():
    """The argument spec of the `api` option (documented by the doc fragment proxmoxwp.hosting.proxmoxwp_npm_api).

    apply_defaults: left out, `api` is a dict all the same, so its settings' environment fallbacks apply."""
    return {
        "type": "dict",
        "apply_defaults": True,
        "options": {
            "url": from_environment(API_NEEDED["url"], type="str"),
            "identity": from_environment(API_NEEDED["identity"], type="str"),
            "secret": from_environment(API_NEEDED["secret"], type="str", no_log=True),
            "timeout": {"type": "int", "default": 30},
            "certificate_timeout": {"type": "int", "default": 300},
            "validate_certs": {"type": "bool", "default": True},
        },
    }


class NpmApiError(Exception):
    """NPM refused or failed a request; the message carries NPM's own reason."""

    def __init__(self, message: str, status: int | None = None, stack: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        # NPM's `debug.stack` (certificate paths only): for a failed certbot, the lines of its stderr.
        self.stack = stack or []


def _reason(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return (response.text or response.reason or "").strip()[:300]
    if not isinstance(body, dict):
        return str(body)[:300]
    error = body.get("error")
    return str(error.get("message") if isinstance(error, dict) else error or body)[:300]


def _stack(response: requests.Response) -> list[str]:
    """The lines of `debug.stack` NPM adds to errors on the certificate paths. A failed certificate's message is
    only "Internal Error": certbot's stderr is all there is, and it does not name the failed check (the module
    finds that itself: proxmoxwp_acme)."""
    try:
        body = response.json()
    except ValueError:
        return []
    debug = body.get("debug") if isinstance(body, dict) else None
    stack = debug.get("stack") if isinstance(debug, dict) else None
    lines = [] if not isinstance(stack, list) else [str(entry) for entry in stack]
    return [part for line in lines for part in line.split("\n")]


class Npm:
    """Log in with an identity and secret; every call carries the token, renewed once when NPM says it expired."""

    def __init__(
        self,
        url: str,
        identity: str,
        secret: str,
        timeout: float = 30,
        validate_certs: bool = True,
        certificate_timeout: float = 300,
    ):
        self.base = url.rstrip("/")
        self.identity, self.secret = identity, secret
        self.timeout, self.certificate_timeout = timeout, certificate_timeout
        self.session = retrying_session()
        self.session.verify = validate_certs
        self.session.headers["Accept"] = "application/json"
        self.token: str | None = None

    def _send(self, method: str, path: str, timeout: float | None = None, **kwargs) -> requests.Response:
        try:
            return self.session.request(method, f"{self.base}{path}", timeout=timeout or self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise NpmApiError(f"Nginx Proxy Manager at {self.base} did not answer: {exc}") from exc

    def about(self) -> dict:
        """What `GET /` answers without a token: `{"status": "OK", "setup": true, "version": {...}}`."""
        response = self._send("GET", "/")
        if response.status_code >= 400:
            raise NpmApiError(f"Nginx Proxy Manager GET /: {_reason(response)}", response.status_code)
        try:
            return response.json()
        except ValueError:
            return {}

    def login(self) -> None:
        response = self._send("POST", "/tokens", json={"identity": self.identity, "secret": self.secret})
        if response.status_code >= 400:
            raise NpmApiError(f"Logging in to Nginx Proxy Manager failed: {_reason(response)}", response.status_code)
        self.token = response.json()["token"]

    def call(
        self, method: str, path: str, body: dict | None = None, params: dict | None = None, timeout: float | None = None
    ):
        if self.token is None:
            self.login()
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self.token}"}
            response = self._send(method, path, timeout=timeout, json=body, params=params, headers=headers)
            expired = response.status_code in (400, 401) and "token" in _reason(response).lower()
            if expired and attempt == 1:
                self.login()
                continue
            break
        # Since 2.13 a missing permission is a 404 naming the path ("Not Found - /nginx/..."); a missing object's
        # 404 names only its id.
        if response.status_code == 404 and _reason(response).startswith("Not Found - /"):
            lacking = f"the user {self.identity} lacks the permission"
            raise NpmApiError(f"Nginx Proxy Manager refused {method} {path}: {lacking}", 403)
        if response.status_code >= 400:
            message = f"Nginx Proxy Manager {method} {path}: {_reason(response)}"
            raise NpmApiError(message, response.status_code, _stack(response))
        return response.json() if response.content else None

    # ---- proxy hosts and certificates ------------------------------------------------------------------------

    def proxy_hosts(self) -> list[dict]:
        return self.call("GET", "/nginx/proxy-hosts", params={"expand": "certificate"})

    def host_for(self, domain: str) -> dict | None:
        """The proxy host that serves `domain`, or None."""
        domain = domain.lower()
        for host in self.proxy_hosts():
            if domain in (name.lower() for name in host.get("domain_names", [])):
                return host
        return None

    def certificates(self) -> list[dict]:
        return self.call("GET", "/nginx/certificates")

    def certificate_for(self, domains: list[str]) -> dict | None:
        """A Let's Encrypt certificate for exactly these names (one made by an earlier, interrupted run)."""
        wanted = {d.lower() for d in domains}
        for cert in self.certificates():
            if cert.get("provider") == "letsencrypt" and {d.lower() for d in cert.get("domain_names", [])} == wanted:
                return cert
        return None

    def request_certificate(self, names: list[str]) -> dict:
        """A new Let's Encrypt certificate for `names`, which NPM issues while the request waits (3-11 s, more
        under load: api.certificate_timeout bounds it).

        NPM runs one certbot at a time and answers a second request with a 500 that did nothing ("Another instance
        of Certbot is already running"). The workers share a lock per NPM (held while the request runs); a run by
        hand has none, so a busy answer is sent again, with backoff, until certificate_timeout has passed. Any
        other answer, and a timeout, is final: that request may have acted."""
        body = {"provider": "letsencrypt", "domain_names": names, "meta": {"dns_challenge": False}}
        deadline = time.monotonic() + self.certificate_timeout
        pause = BUSY_BACKOFF[0]
        try:
            with held(f"npm-certbot:{self.base}", timeout=self.certificate_timeout):
                while True:
                    try:
                        return self.call("POST", "/nginx/certificates", body, timeout=self.certificate_timeout)
                    except NpmApiError as exc:
                        busy = exc.status == 500 and any(CERTBOT_BUSY in line for line in exc.stack[:1])
                        left = deadline - time.monotonic()
                        if not busy:
                            raise
                        if left <= 0:
                            waited = f"NPM's certbot stayed busy with other requests for {self.certificate_timeout} s"
                            raise NpmApiError(f"{exc} ({waited})", exc.status, exc.stack) from exc
                        time.sleep(min(pause, left))
                        pause = min(pause * 2, BUSY_BACKOFF[1])
        except LockTimeout as exc:
            raise NpmApiError(f"No certificate was requested: {exc}") from exc

    def names_in_use(self, names: list[str]) -> list[str]:
        """Why each of `names` held by a 404 host or a redirection host cannot be a proxy host's: NPM's own words
        ("<name> is already in use"), with the host that holds it. A list NPM does not show this user is skipped:
        NPM still refuses the name, in the same words."""
        wanted = {name.lower(): name for name in names}
        found = []
        for kind, path in (("404 host", "/nginx/dead-hosts"), ("redirection host", "/nginx/redirection-hosts")):
            try:
                hosts = self.call("GET", path)
            except NpmApiError as exc:
                if exc.status == 403:
                    continue
                raise
            for host in hosts or []:
                for name in host.get("domain_names", []):
                    if name.lower() in wanted:
                        found.append(f"{wanted[name.lower()]} is already in use by {kind} {host.get('id')}")
        return found
