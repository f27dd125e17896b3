# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)
"""A small client of the Nginx Proxy Manager API (v2.13 and later; schema: lab/reference/npm-openapi-*.json).

What it knows about NPM (docs/real-systems.md): a token comes from `POST /tokens` and lasts a day, an expired one is
answered with HTTP 400, so the client logs in again once; a missing permission is a 404; "already in use" and
enabling an enabled host are 400s, so state is read before it is changed.
"""

from __future__ import annotations

from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_env import from_environment
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_http import requests, retrying_session

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
            "validate_certs": {"type": "bool", "default": True},
        },
    }


class NpmApiError(Exception):
    """NPM refused or failed a request; the message carries NPM's own reason."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _reason(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return (response.text or response.reason or "").strip()[:300]
    if not isinstance(body, dict):
        return str(body)[:300]
    error = body.get("error")
    message = str(error.get("message") if isinstance(error, dict) else error or body)
    # NPM answers a failed certificate with "Internal Error"; certbot's reasons are only in `debug` (on the
    # certificate paths), one "Detail:" line per name.
    stack = (body.get("debug") or {}).get("stack") or []
    details = [line.split("Detail:", 1)[1].strip() for line in stack if "Detail:" in line]
    if details:
        return f"Let's Encrypt could not issue the certificate: {'; '.join(details)}"[:500]
    return message[:300]


class Npm:
    """Log in with an identity and secret; every call carries the token, renewed once when NPM says it expired."""

    def __init__(self, url: str, identity: str, secret: str, timeout: float = 30, validate_certs: bool = True):
        self.base = url.rstrip("/")
        self.identity, self.secret = identity, secret
        self.timeout = timeout
        self.session = retrying_session()
        self.session.verify = validate_certs
        self.session.headers["Accept"] = "application/json"
        self.token: str | None = None

    def _send(self, method: str, path: str, **kwargs) -> requests.Response:
        try:
            return self.session.request(method, f"{self.base}{path}", timeout=self.timeout, **kwargs)
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

    def call(self, method: str, path: str, body: dict | None = None, params: dict | None = None):
        if self.token is None:
            self.login()
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self.token}"}
            response = self._send(method, path, json=body, params=params, headers=headers)
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
            raise NpmApiError(f"Nginx Proxy Manager {method} {path}: {_reason(response)}", response.status_code)
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
