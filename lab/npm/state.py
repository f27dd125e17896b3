"""What an Nginx Proxy Manager v2.15.1 holds and does, without HTTP: users, tokens, proxy hosts, certificates and
the nginx configuration they imply.

Each operation follows the order of NPM's own code (backend/internal/*.js at v2.15.1), because that order is
what clients observe: the permission check comes before the "already in use" check, a proxy host is stored
before its certificate is requested (so a failed certificate leaves the host behind), and nginx is tested
before and after a host's config is written. Operations return the JSON rows NPM returns and raise NpmError
subclasses carrying NPM's status and message; lab/npm/app.py only translates HTTP.

Nginx is modelled as the config files NPM left in place, each a snapshot of its host as written
(`enabled_hosts()`), which the lab renders into a real nginx's server blocks (lab/npm/proxy.py: `subscribe()`
tells it when, and `attach_nginx()` lets that nginx refuse a host's config as NPM's would). A
config whose certificate files are gone (the certificate was deleted: NPM revokes it and certbot deletes the
files) makes every later `nginx -t` fail, as in NPM: everything that writes a config or requests a certificate
answers 500, even a PUT removing the certificate from that host (NPM tests nginx before rewriting the file),
until the config file goes: POST .../disable or DELETE of that host. A Let's Encrypt request naming a host whose
config nginx refused (`meta.nginx_online` false) rewrites that config untested and breaks `nginx -t` the same
way, until that host is deleted.

404 hosts and redirection hosts are kept for their names only (NPM checks every name against all three
kinds); the lab's nginx does not serve them.

Thread-safe: one re-entrant lock around every operation; observers run under it, after each change. The one
exception is certbot: an issuance lasts `issuance_seconds` without the lock, as NPM answers other requests
meanwhile, and only one certbot runs at a time.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)

VERSION = (2, 15, 1)
MANAGE, VIEW, HIDDEN = "manage", "view", "hidden"
CERTIFICATE_LIFETIME = timedelta(days=90)
LETSENCRYPT = "letsencrypt"

HOST_COLUMNS = (
    "id",
    "created_on",
    "modified_on",
    "owner_user_id",
    "domain_names",
    "forward_host",
    "forward_port",
    "access_list_id",
    "certificate_id",
    "ssl_forced",
    "caching_enabled",
    "block_exploits",
    "advanced_config",
    "meta",
    "allow_websocket_upgrade",
    "http2_support",
    "forward_scheme",
    "enabled",
    "locations",
    "hsts_enabled",
    "hsts_subdomains",
    "trust_forwarded_proto",
)
# The proxy_host table's column defaults (backend/migrations). `locations` has none: NULL when not sent.
HOST_DEFAULTS: dict[str, Any] = {
    "access_list_id": 0,
    "certificate_id": 0,
    "ssl_forced": False,
    "caching_enabled": False,
    "block_exploits": False,
    "advanced_config": "",
    "meta": {},
    "allow_websocket_upgrade": False,
    "http2_support": False,
    "forward_scheme": "http",
    "enabled": True,
    "locations": None,
    "hsts_enabled": False,
    "hsts_subdomains": False,
    "trust_forwarded_proto": False,
}
CERTIFICATE_COLUMNS = (
    "id",
    "created_on",
    "modified_on",
    "owner_user_id",
    "provider",
    "nice_name",
    "domain_names",
    "expires_on",
    "meta",
)
HOST_EXPANSIONS = ("owner", "certificate", "access_list")
CERTIFICATE_EXPANSIONS = ("owner", "proxy_hosts", "redirection_hosts", "dead_hosts", "streams")
# The dead_host and redirection_host tables (the response schemas' required columns) and their defaults.
DEAD_HOST_COLUMNS = (
    "id",
    "created_on",
    "modified_on",
    "owner_user_id",
    "domain_names",
    "certificate_id",
    "ssl_forced",
    "hsts_enabled",
    "hsts_subdomains",
    "http2_support",
    "advanced_config",
    "enabled",
    "meta",
)
REDIRECTION_HOST_COLUMNS = (
    *DEAD_HOST_COLUMNS[:5],
    "forward_http_code",
    "forward_scheme",
    "forward_domain_name",
    "preserve_path",
    *DEAD_HOST_COLUMNS[5:10],
    "block_exploits",
    *DEAD_HOST_COLUMNS[10:],
)
DEAD_HOST_DEFAULTS: dict[str, Any] = {
    "certificate_id": 0,
    "ssl_forced": False,
    "hsts_enabled": False,
    "hsts_subdomains": False,
    "http2_support": False,
    "advanced_config": "",
    "enabled": True,
    "meta": {},
}
REDIRECTION_HOST_DEFAULTS: dict[str, Any] = {**DEAD_HOST_DEFAULTS, "preserve_path": False, "block_exploits": False}
DEAD, REDIRECTION = "dead_hosts", "redirection_hosts"
OTHER_HOSTS = {
    DEAD: (DEAD_HOST_COLUMNS, DEAD_HOST_DEFAULTS),
    REDIRECTION: (REDIRECTION_HOST_COLUMNS, REDIRECTION_HOST_DEFAULTS),
}
INTERRUPTIBLE = ("create_host", "update_host", "disable_host")

CERTBOT_LOG = "/data/logs/letsencrypt.log"
CERTBOT_BUSY = "Another instance of Certbot is already running."
CERTBOT_HELP = (
    "Ask for help or search for solutions at https://community.letsencrypt.org. See the logfile "
    f"{CERTBOT_LOG} or re-run Certbot with -v for more details."
)
NGINX_TEST = "/usr/sbin/nginx -t -g error_log off;"
NGINX_FAILED = "nginx: configuration file /etc/nginx/nginx.conf test failed"


# Errors: NPM's lib/error.js. `public` False means NPM answers "Internal Error" instead of the message.


class NpmError(Exception):
    status = 500
    public = False

    def __init__(self, message: str, previous: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.previous = previous

    def debug(self) -> dict[str, Any]:
        """The `debug` member NPM adds to errors on /nginx/certificates paths (a JS stack and the cause)."""
        lines = f"{type(self).__name__}: {self.message}".split("\n")
        payload: dict[str, Any] = {"stack": [*lines, "    at lab.npm (a double of NPM v2.15.1)"]}
        if self.previous is not None:
            payload["previous"] = self.previous
        return payload


class AuthError(NpmError):
    """Bad credentials and expired tokens: 400 in NPM, not 401."""

    status = 400
    public = True


class ValidationError(NpmError):
    status = 400
    public = True


class ItemNotFoundError(NpmError):
    status = 404
    public = True

    def __init__(self, item: object) -> None:
        super().__init__(f"Not Found - {item}" if item else "Not Found")


class PermissionDenied(NpmError):
    """Since v2.13 NPM's permission failure falls through to its catch-all route: 404 `Not Found - <path>`.

    (access.js calls `errs.PermissionError(...)` without `new`, throwing undefined, and `next(undefined)` means
    "no error" to Express.) The HTTP layer words the message, as only it knows the path.
    """

    status = 404
    public = True

    def __init__(self) -> None:
        super().__init__("Not Found")


class InternalError(NpmError):
    """A JavaScript error without a status (a malformed token, a TypeError): 500 `Internal Error`."""


class CommandError(NpmError):
    """certbot or `nginx -t` failed: 500 `Internal Error`; the command's stderr (`output`) is only in `debug` on
    certificate paths, as NPM's utils.exec rejects with `new Error(stderr)`: its stack starts `Error: `."""

    def __init__(self, output: str, cmd: str) -> None:
        super().__init__(output, previous={"code": 1, "killed": False, "signal": None, "cmd": cmd})

    def debug(self) -> dict[str, Any]:
        payload = super().debug()
        payload["stack"] = [f"Error: {line}" if i == 0 else line for i, line in enumerate(self.message.split("\n"))]
        payload["stack"].append("    at lab.npm (a double of NPM v2.15.1)")
        return payload


# Users and tokens.


@dataclass
class Permissions:
    """A user's permissions row: `visibility` all|user, the others manage|view|hidden."""

    visibility: str = "all"
    proxy_hosts: str = MANAGE
    certificates: str = MANAGE
    dead_hosts: str = MANAGE
    redirection_hosts: str = MANAGE


@dataclass
class User:
    id: int
    email: str
    secret: str
    name: str
    roles: list[str]
    permissions: Permissions
    created_on: str
    is_disabled: bool = False

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    def row(self) -> dict[str, Any]:
        """The `owner` expansion (NPM omits is_deleted; permissions only when asked for, never here)."""
        digest = hashlib.md5(self.email.encode(), usedforsecurity=False).hexdigest()
        return {
            "id": self.id,
            "created_on": self.created_on,
            "modified_on": self.created_on,
            "is_disabled": self.is_disabled,
            "email": self.email,
            "name": self.name,
            "nickname": self.name,
            "avatar": f"//www.gravatar.com/avatar/{digest}?default=mm",
            "roles": list(self.roles),
        }


@dataclass
class _Token:
    user_id: int
    expires: datetime


# Records for assertions and for a renderer.


@dataclass(frozen=True)
class Issuance:
    """One Let's Encrypt request the double answered (kept in `NpmState.issuances`). `output` is what certbot
    printed on failure, stdout included (the Domain/Type/Detail lines NPM never shows)."""

    certificate_id: int
    domain_names: tuple[str, ...]
    succeeded: bool
    output: str | None = None


@dataclass(frozen=True)
class HostCertificate:
    id: int
    provider: str
    domain_names: tuple[str, ...]
    expires_on: datetime


@dataclass(frozen=True)
class EnabledHost:
    """A host NPM's nginx serves: enabled, and its config passed `nginx -t` when NPM last wrote it.

    `certificate` is None with a non-zero `certificate_id` when that certificate was deleted after the config
    was written (its files are gone: nginx will refuse the whole configuration on the next test or reload).
    """

    id: int
    domain_names: tuple[str, ...]
    forward_scheme: str
    forward_host: str
    forward_port: int
    certificate_id: int
    certificate: HostCertificate | None
    ssl_forced: bool
    http2_support: bool
    hsts_enabled: bool
    hsts_subdomains: bool
    block_exploits: bool
    caching_enabled: bool
    allow_websocket_upgrade: bool
    trust_forwarded_proto: bool
    advanced_config: str
    locations: tuple[dict[str, Any], ...] = field(default_factory=tuple)


Observer = Callable[["NpmState"], None]
# A real nginx's verdict on one host's config (lab/npm/proxy.py): the host as it would be written, and the name
# of a `fail_nginx` fault to break it with (None: none); answers nginx's error, or None when nginx accepts it.
NginxCheck = Callable[[EnabledHost, str | None], str | None]
STATE_FORMAT = 1


class NpmState:
    """One NPM instance: an admin user (`identity`/`secret`) and everything the API can change.

    Fault hooks: `fail_certificates(*domains)` (Let's Encrypt cannot validate them, as when DNS does not point
    here), `fail_nginx(*domains)` (a host with one of these names gets a config nginx refuses),
    `interrupt_next(operation)` (the next such call answers 500 after its write), `expire_tokens()`;
    `add_user(...)` makes users with fewer permissions, `add_dead_host`/`add_redirection_host` hosts that hold
    names. `clock` (aware UTC datetimes) lets a test move time. `issuance_seconds` is how long certbot runs;
    `certbot_refusals` counts the requests refused because it ran, `certbot_most_at_once` the most runs seen
    at once (1: the refusal is what keeps it so).
    """

    def __init__(
        self,
        identity: str,
        secret: str,
        *,
        token_lifetime: timedelta = timedelta(days=1),
        clock: Callable[[], datetime] | None = None,
        issuance_seconds: float = 0.0,
    ) -> None:
        self.token_lifetime = token_lifetime
        self.issuance_seconds = issuance_seconds
        self.certbot_refusals = 0
        self.certbot_most_at_once = 0
        self._certbot_running = 0
        self._issuing: set[int] = set()  # certificate ids certbot is working on (stored, not issued yet)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self._users: dict[int, User] = {}
        self._tokens: dict[str, _Token] = {}
        self._hosts: dict[int, dict[str, Any]] = {}
        self._certificates: dict[int, dict[str, Any]] = {}
        self._other_hosts: dict[str, dict[int, dict[str, Any]]] = {DEAD: {}, REDIRECTION: {}}
        # host id -> nginx's error for the config a certificate request rewrote untested (breaks `nginx -t`)
        self._broken: dict[int, str] = {}
        self._interrupts: set[str] = set()
        # host id -> the host as NPM last wrote its (enabled, accepted) config; what nginx serves
        self._configs: dict[int, dict[str, Any]] = {}
        self._certificate_faults: dict[str, str] = {}
        self._nginx_faults: dict[str, str | None] = {}
        self._observers: list[Observer] = []
        self._nginx_check: NginxCheck | None = None
        self._ids = {"user": 0, "host": 0, "certificate": 0, DEAD: 0, REDIRECTION: 0}
        self.issuances: list[Issuance] = []
        self.admin = self.add_user(identity, secret, admin=True)

    # Users and tokens

    def add_user(
        self,
        email: str,
        secret: str,
        *,
        admin: bool = False,
        visibility: str = "all",
        proxy_hosts: str = MANAGE,
        certificates: str = MANAGE,
    ) -> User:
        """A user who can log in with email/secret; `proxy_hosts="hidden"` makes one whose host calls get 404."""
        with self._lock:
            user = User(
                id=self._next_id("user"),
                email=email.lower().strip(),
                secret=secret,
                name=email.split("@")[0],
                roles=["admin"] if admin else [],
                permissions=Permissions(visibility, proxy_hosts, certificates),
                created_on=self._timestamp(),
            )
            self._users[user.id] = user
            return user

    def login(self, identity: str, secret: str) -> dict[str, str]:
        """POST /tokens: a token valid `token_lifetime` (NPM ignores any expiry asked for here)."""
        with self._lock:
            user = next((u for u in self._users.values() if u.email == identity.lower().strip()), None)
            if user is None or user.is_disabled or not hmac.compare_digest(user.secret, secret):
                raise AuthError("Invalid email or password")
            return self._issue_token(user, self.token_lifetime)

    def refresh(self, actor: User | None, expiry: str | None = None) -> dict[str, str]:
        """GET /tokens: a new token for the caller, valid `expiry` (`1d`, `12h`, ...) or `token_lifetime`."""
        with self._lock:
            if actor is None:
                # internal/token.js throws `new error.AssertionFailedError` with `error` undefined.
                raise InternalError("error is not defined")
            lifetime = self.token_lifetime if expiry is None else _parse_period(expiry)
            if lifetime is None:
                raise AuthError(f"Invalid expiry time: {expiry}")
            return self._issue_token(actor, lifetime)

    def authenticate(self, token: str | None) -> User | None:
        """The caller of a request: None without a token (each operation then refuses as NPM does)."""
        if not token:
            return None
        if token == "null":  # noqa: S105 - models/token.js refuses the string "null" before verifying
            raise AuthError("Empty token")
        with self._lock:
            record = self._tokens.get(token)
            if record is None:
                raise InternalError("invalid signature")  # jsonwebtoken's error: no status, so 500
            if self._now() >= record.expires:
                raise AuthError("Token has expired")
            return self._users.get(record.user_id)

    def expire_tokens(self) -> None:
        """Every token issued so far expires now (the next request with one gets 400 `Token has expired`)."""
        with self._lock:
            now = self._now()
            for record in self._tokens.values():
                record.expires = min(record.expires, now)

    # Proxy hosts

    def list_proxy_hosts(self, actor: User | None, expand: list[str] | None = None) -> list[dict[str, Any]]:
        with self._lock:
            user = self._can(actor, "proxy_hosts", VIEW)
            rows = [row for row in self._hosts.values() if self._visible(user, row)]
            rows.sort(key=lambda row: row["domain_names"])
            return [self._host_out(row, expand) for row in rows]

    def get_proxy_host(self, actor: User | None, host_id: int, expand: list[str] | None = None) -> dict[str, Any]:
        with self._lock:
            return self._get_host(actor, host_id, expand)

    def create_proxy_host(self, actor: User | None, data: dict[str, Any]) -> dict[str, Any]:
        """internal/proxy-host.js create: check, store, then the certificate, then nginx.

        With `certificate_id: "new"` the SSL switches are cleared before the host is stored (no certificate
        yet) and stay off once the certificate is attached: NPM's long-standing bug (issues #516, #3956). If
        the certificate fails, the error propagates and the host stays, without certificate and never
        configured (no nginx_online in its meta).
        """
        with self._change():
            data = copy.deepcopy(data)
            new_certificate = data.get("certificate_id") == "new"
            if new_certificate:
                del data["certificate_id"]
            user = self._can(actor, "proxy_hosts", MANAGE)
            self._check_domains_free(data["domain_names"])
            data["owner_user_id"] = user.id
            host_id = self._insert_host(_clean_ssl_hsts(data))
            self._interrupted("create_host")
            if new_certificate:
                stored = self._hosts[host_id]
                certificate = self._create_certificate(
                    actor,
                    {"provider": LETSENCRYPT, "domain_names": stored["domain_names"], "meta": data.get("meta")},
                )
                self._update_host(actor, host_id, {"certificate_id": certificate["id"]})
            row = self._get_host(actor, host_id, list(HOST_EXPANSIONS))
            self._configure(self._hosts[host_id])  # NPM answers the row as read before this
            return row

    def update_proxy_host(self, actor: User | None, host_id: int, data: dict[str, Any]) -> dict[str, Any]:
        with self._change():
            return self._update_host(actor, host_id, copy.deepcopy(data))

    def delete_proxy_host(self, actor: User | None, host_id: int) -> bool:
        with self._change():
            self._can(actor, "proxy_hosts", MANAGE)
            self._get_host(actor, host_id)
            del self._hosts[host_id]
            self._configs.pop(host_id, None)
            self._broken.pop(host_id, None)  # NPM deletes the config file and its `.err` copy
            self._nginx_test()  # the reload after removing the config
            return True

    def enable_proxy_host(self, actor: User | None, host_id: int) -> bool:
        with self._change():
            self._can(actor, "proxy_hosts", MANAGE)
            if self._get_host(actor, host_id)["enabled"]:
                raise ValidationError("Host is already enabled")
            self._patch_host(host_id, {"enabled": True})
            self._configure(self._hosts[host_id])
            return True

    def disable_proxy_host(self, actor: User | None, host_id: int) -> bool:
        with self._change():
            self._can(actor, "proxy_hosts", MANAGE)
            if not self._get_host(actor, host_id)["enabled"]:
                raise ValidationError("Host is already disabled")
            self._patch_host(host_id, {"enabled": False})
            self._configs.pop(host_id, None)
            self._interrupted("disable_host")
            self._nginx_test()
            return True

    # Certificates

    def list_certificates(self, actor: User | None, expand: list[str] | None = None) -> list[dict[str, Any]]:
        with self._lock:
            user = self._can(actor, "certificates", VIEW)
            rows = [row for row in self._certificates.values() if self._visible(user, row)]
            rows.sort(key=lambda row: row["nice_name"])
            return [self._certificate_out(row, expand) for row in rows]

    def get_certificate(self, actor: User | None, cert_id: int, expand: list[str] | None = None) -> dict[str, Any]:
        with self._lock:
            return self._get_certificate(actor, cert_id, expand)

    def create_certificate(self, actor: User | None, data: dict[str, Any]) -> dict[str, Any]:
        with self._change():
            return self._create_certificate(actor, copy.deepcopy(data))

    def delete_certificate(self, actor: User | None, cert_id: int) -> bool:
        """Allowed while hosts use it, as in NPM: they keep `certificate_id` (their `certificate` expands to
        null) and, for Let's Encrypt, the files are revoked and deleted, so nginx refuses their configs from the
        next test on (see the module's docstring)."""
        with self._change():
            self._can(actor, "certificates", MANAGE)
            self._get_certificate(actor, cert_id)
            del self._certificates[cert_id]
            return True

    # 404 hosts and redirection hosts: only what makes them hold names (internal/dead-host.js, redirection-host.js)

    def list_other_hosts(self, actor: User | None, kind: str, expand: list[str] | None = None) -> list[dict[str, Any]]:
        """GET /nginx/dead-hosts or /nginx/redirection-hosts (`kind` DEAD or REDIRECTION)."""
        with self._lock:
            user = self._can(actor, kind, VIEW)
            rows = [row for row in self._other_hosts[kind].values() if self._visible(user, row)]
            rows.sort(key=lambda row: row["domain_names"])
            return [self._other_host_out(row, expand) for row in rows]

    def get_other_host(
        self, actor: User | None, kind: str, host_id: int, expand: list[str] | None = None
    ) -> dict[str, Any]:
        with self._lock:
            return self._get_other_host(actor, kind, host_id, expand)

    def create_other_host(self, actor: User | None, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        """Check the names, store, then the certificate and nginx, as for a proxy host (its create answer is
        read before nginx is configured, so its meta is empty)."""
        with self._change():
            data = copy.deepcopy(data)
            new_certificate = data.get("certificate_id") == "new"
            if new_certificate:
                del data["certificate_id"]
            user = self._can(actor, kind, MANAGE)
            self._check_domains_free(data["domain_names"])
            host_id = self._insert_other_host(kind, {**_clean_ssl_hsts(data), "owner_user_id": user.id})
            stored = self._other_hosts[kind][host_id]
            if new_certificate:
                certificate = self._create_certificate(
                    actor, {"provider": LETSENCRYPT, "domain_names": stored["domain_names"], "meta": {}}
                )
                stored["certificate_id"] = certificate["id"]
            answer = self._other_host_out(stored, ["owner", "certificate"])
            self._nginx_test()
            stored["meta"] = {**stored["meta"], "nginx_online": True, "nginx_err": None}
            return answer

    def delete_other_host(self, actor: User | None, kind: str, host_id: int) -> bool:
        with self._change():
            self._can(actor, kind, MANAGE)
            self._get_other_host(actor, kind, host_id)
            del self._other_hosts[kind][host_id]
            self._nginx_test()  # the reload after removing its config
            return True

    def add_dead_host(self, *names: str) -> dict[str, Any]:
        """A 404 host of the admin's holding these names (as if made in NPM's UI); its row."""
        with self._change():
            return self._add_other_host(DEAD, names, {})

    def add_redirection_host(self, *names: str, forward_domain_name: str = "example.org") -> dict[str, Any]:
        """A redirection host of the admin's, from these names to `forward_domain_name`; its row."""
        with self._change():
            fields = {"forward_http_code": 301, "forward_scheme": "auto", "forward_domain_name": forward_domain_name}
            return self._add_other_host(REDIRECTION, names, fields)

    # Fault hooks

    def fail_certificates(self, *domains: str, detail: str | None = None) -> None:
        """Let's Encrypt cannot validate these names: certificate requests including one fail like certbot's."""
        with self._lock:
            for domain in domains:
                self._certificate_faults[domain.lower()] = detail or (
                    f"DNS problem: NXDOMAIN looking up A for {domain} - check that a DNS record exists for this "
                    f"domain; DNS problem: NXDOMAIN looking up AAAA for {domain} - check that a DNS record exists "
                    "for this domain"
                )

    def fail_nginx(self, *domains: str, message: str | None = None) -> None:
        """Configs written from now on for hosts with one of these names fail `nginx -t` (nginx_online false).

        With a real nginx attached (`attach_nginx`) and no `message`, the config really is broken (the name
        written as a directive) and the error is that nginx's."""
        with self._lock:
            for domain in domains:
                self._nginx_faults[domain.lower()] = message

    def interrupt_next(self, operation: str) -> None:
        """The next `operation` (create_host, update_host or disable_host) does its write and then answers 500
        `Internal Error`, as NPM does when something fails half-way: create stores the row (`meta` {}, no
        config), update changes the row without rewriting the config, disable disables and removes the config."""
        if operation not in INTERRUPTIBLE:
            raise ValueError(f"not one of {INTERRUPTIBLE}: {operation}")
        with self._lock:
            self._interrupts.add(operation)

    def clear_faults(self) -> None:
        with self._lock:
            self._certificate_faults.clear()
            self._nginx_faults.clear()
            self._interrupts.clear()

    # Views for tests and for a renderer

    def proxy_hosts(self) -> list[dict[str, Any]]:
        """Every stored host as NPM's table row, whoever owns it."""
        with self._lock:
            return [copy.deepcopy(row) for row in self._hosts.values()]

    def certificates(self) -> list[dict[str, Any]]:
        with self._lock:
            return [_certificate_row(row) for row in self._certificates.values()]

    def certificates_being_issued(self) -> set[int]:
        """Ids of the certificates stored while certbot still works on them (no files yet)."""
        with self._lock:
            return set(self._issuing)

    def dead_hosts(self) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(row) for row in self._other_hosts[DEAD].values()]

    def redirection_hosts(self) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(row) for row in self._other_hosts[REDIRECTION].values()]

    def enabled_hosts(self) -> list[EnabledHost]:
        """The hosts NPM's nginx serves, with their certificates: each as NPM last wrote its config, which
        happens on create, enable and on updates of an enabled host, and only if `nginx -t` accepted it.

        As in NPM, `PUT {"enabled": false}` leaves the written config in place (only POST .../disable and
        DELETE remove it), and a host whose config nginx refused is not served.
        """
        with self._lock:
            return [self._enabled_host(self._configs[host_id]) for host_id in sorted(self._configs)]

    def attach_nginx(self, check: NginxCheck | None) -> None:
        """Let a real nginx judge each host config NPM would write (None detaches it).

        It is asked after the model's own checks, under the lock, and its error takes the path of a
        `fail_nginx` fault: `meta.nginx_online` false, `nginx_err` its message, the config kept out. A
        `fail_nginx` fault without a message is handed to it, to break the real config with.
        """
        with self._lock:
            self._nginx_check = check

    def export(self) -> dict[str, Any]:
        """What `restore` needs to bring this NPM back after a restart: hosts (404 and redirection hosts too),
        certificates (not those certbot is still working on: a restart ends it), the configs nginx serves and
        those broken, the id counters and the admin's tokens (so the file holding it is a secret). Not the
        users (they come from the command line), the faults nor the issuances."""
        with self._lock:
            tokens = [
                {"token": token, "user_id": record.user_id, "expires": record.expires.isoformat()}
                for token, record in self._tokens.items()
                if record.user_id == self.admin.id and record.expires > self._now()
            ]
            return {
                "format": STATE_FORMAT,
                "ids": {kind: self._ids[kind] for kind in ("host", "certificate", DEAD, REDIRECTION)},
                "hosts": [copy.deepcopy(row) for row in self._hosts.values()],
                "certificates": [
                    copy.deepcopy(row) for row in self._certificates.values() if row["id"] not in self._issuing
                ],
                "configs": [copy.deepcopy(row) for row in self._configs.values()],
                "broken": {str(host_id): error for host_id, error in self._broken.items()},
                DEAD: [copy.deepcopy(row) for row in self._other_hosts[DEAD].values()],
                REDIRECTION: [copy.deepcopy(row) for row in self._other_hosts[REDIRECTION].values()],
                "tokens": tokens,
            }

    def restore(self, data: dict[str, Any]) -> None:
        """Replace hosts, certificates and configs with an `export()`; its tokens become the admin's."""
        if data.get("format") != STATE_FORMAT:
            raise ValueError(f"not a saved NPM double state (format {data.get('format')!r})")
        with self._change():
            self._hosts = {row["id"]: {column: row[column] for column in HOST_COLUMNS} for row in data["hosts"]}
            self._certificates = {
                row["id"]: {column: row[column] for column in CERTIFICATE_COLUMNS} for row in data["certificates"]
            }
            self._configs = {row["id"]: {column: row[column] for column in HOST_COLUMNS} for row in data["configs"]}
            # 404 and redirection hosts and broken configs came later within format 1: absent means none
            self._broken = {int(host_id): error for host_id, error in data.get("broken", {}).items()}
            for kind, (columns, _) in OTHER_HOSTS.items():
                self._other_hosts[kind] = {row["id"]: {c: row[c] for c in columns} for row in data.get(kind, [])}
            for kind in ("host", "certificate", DEAD, REDIRECTION):
                self._ids[kind] = max(self._ids[kind], int(data["ids"].get(kind, 0)))
            for token in data["tokens"]:
                expires = datetime.fromisoformat(token["expires"])
                self._tokens[token["token"]] = _Token(self.admin.id, expires)

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Call `observer(state)` after every change (under the lock: keep it short); returns an unsubscribe."""
        with self._lock:
            self._observers.append(observer)
        return lambda: self._unsubscribe(observer)

    # Internals: proxy hosts

    def _get_host(self, actor: User | None, host_id: int, expand: list[str] | None = None) -> dict[str, Any]:
        user = self._can(actor, "proxy_hosts", VIEW)
        row = self._hosts.get(host_id)
        if row is None or not self._visible(user, row):
            raise ItemNotFoundError(host_id)
        return self._host_out(row, expand)

    def _update_host(self, actor: User | None, host_id: int, data: dict[str, Any]) -> dict[str, Any]:
        new_certificate = data.get("certificate_id") == "new"
        if new_certificate:
            del data["certificate_id"]
        self._can(actor, "proxy_hosts", MANAGE)
        if "domain_names" in data:
            self._check_domains_free(data["domain_names"], ignore_id=host_id)
        row = self._get_host(actor, host_id)
        if new_certificate:
            certificate = self._create_certificate(
                actor,
                {
                    "provider": LETSENCRYPT,
                    "domain_names": data.get("domain_names") or row["domain_names"],
                    "meta": {**row["meta"], **(data.get("meta") or {})},
                },
            )
            data["certificate_id"] = certificate["id"]
        self._patch_host(host_id, _clean_ssl_hsts({"domain_names": row["domain_names"], **data}, row))
        self._interrupted("update_host")
        result = self._get_host(actor, host_id, list(HOST_EXPANSIONS))
        if result["enabled"]:
            result["meta"] = self._configure(self._hosts[host_id])
        return result

    def _insert_host(self, data: dict[str, Any]) -> int:
        host_id = self._next_id("host")
        now = self._timestamp()
        values = {**HOST_DEFAULTS, **data, "id": host_id, "created_on": now, "modified_on": now}
        values["domain_names"] = sorted(values["domain_names"])
        self._hosts[host_id] = {column: copy.deepcopy(values[column]) for column in HOST_COLUMNS}
        return host_id

    def _patch_host(self, host_id: int, values: dict[str, Any]) -> None:
        row = self._hosts[host_id]
        for column in HOST_COLUMNS[3:]:
            if column in values:
                row[column] = copy.deepcopy(values[column])
        row["domain_names"] = sorted(row["domain_names"])
        row["modified_on"] = self._timestamp()

    def _check_domains_free(self, domain_names: list[str], ignore_id: int = 0) -> None:
        """internal/host.js isHostnameTaken: any other proxy, redirection or 404 host, enabled or not,
        case-insensitively (`ignore_id` is a proxy host's: only proxy hosts change their names here)."""
        others = [row for rows in self._other_hosts.values() for row in rows.values()]
        for name in domain_names:
            for row in [*(row for row in self._hosts.values() if row["id"] != ignore_id), *others]:
                if name.lower() in (n.lower() for n in row["domain_names"]):
                    raise ValidationError(f"{name} is already in use")

    def _interrupted(self, operation: str) -> None:
        """An `interrupt_next` fault: the write so far stays, the answer is 500."""
        if operation in self._interrupts:
            self._interrupts.discard(operation)
            raise InternalError(f"lab/npm: {operation} interrupted (interrupt_next)")

    # Internals: 404 and redirection hosts

    def _get_other_host(
        self, actor: User | None, kind: str, host_id: int, expand: list[str] | None = None
    ) -> dict[str, Any]:
        user = self._can(actor, kind, VIEW)
        row = self._other_hosts[kind].get(host_id)
        if row is None or not self._visible(user, row):
            raise ItemNotFoundError(host_id)
        return self._other_host_out(row, expand)

    def _insert_other_host(self, kind: str, data: dict[str, Any]) -> int:
        columns, defaults = OTHER_HOSTS[kind]
        host_id = self._next_id(kind)
        now = self._timestamp()
        values = {**defaults, **data, "id": host_id, "created_on": now, "modified_on": now}
        values["domain_names"] = sorted(values["domain_names"])
        self._other_hosts[kind][host_id] = {column: copy.deepcopy(values[column]) for column in columns}
        return host_id

    def _add_other_host(self, kind: str, names: tuple[str, ...], fields: dict[str, Any]) -> dict[str, Any]:
        self._check_domains_free(list(names))
        data = {**fields, "domain_names": list(names), "owner_user_id": self.admin.id}
        host_id = self._insert_other_host(kind, data)
        row = self._other_hosts[kind][host_id]
        row["meta"] = {"nginx_online": True, "nginx_err": None}
        return copy.deepcopy(row)

    def _other_host_out(self, row: dict[str, Any], expand: list[str] | None) -> dict[str, Any]:
        out = copy.deepcopy(row)
        for relation in _expansions(expand, ("owner", "certificate")):
            if relation == "owner":
                owner = self._users.get(row["owner_user_id"])
                out["owner"] = owner.row() if owner else None
            else:
                certificate = self._certificates.get(row["certificate_id"])
                out["certificate"] = {**_certificate_row(certificate), "meta": {}} if certificate else None
        return out

    def _host_out(self, row: dict[str, Any], expand: list[str] | None) -> dict[str, Any]:
        out = copy.deepcopy(row)
        for relation in _expansions(expand, HOST_EXPANSIONS):
            if relation == "owner":
                owner = self._users.get(row["owner_user_id"])
                out["owner"] = owner.row() if owner else None
            elif relation == "certificate":
                certificate = self._certificates.get(row["certificate_id"])
                # cleanRowCertificateMeta: a host never shows its certificate's meta
                out["certificate"] = {**_certificate_row(certificate), "meta": {}} if certificate else None
            else:
                out["access_list"] = None  # the double keeps no access lists
        return out

    # Internals: certificates

    def _get_certificate(self, actor: User | None, cert_id: int, expand: list[str] | None = None) -> dict[str, Any]:
        user = self._can(actor, "certificates", VIEW)
        row = self._certificates.get(cert_id)
        if row is None or not self._visible(user, row):
            raise ItemNotFoundError(cert_id)
        return self._certificate_out(row, expand)

    def _create_certificate(self, actor: User | None, data: dict[str, Any]) -> dict[str, Any]:
        """internal/certificate.js create: store, request from Let's Encrypt, hard-delete again on failure.

        The row is visible while certbot runs (`issuance_seconds`, without the lock)."""
        user = self._can(actor, "certificates", MANAGE)
        if data["provider"] == LETSENCRYPT:
            if data.get("domain_names") is None:
                raise InternalError("Cannot read properties of undefined (reading 'join')")
            data["nice_name"] = ", ".join(data["domain_names"])
        cert_id = self._next_id("certificate")
        now = self._timestamp()
        row = {
            "id": cert_id,
            "created_on": now,
            "modified_on": now,
            "owner_user_id": user.id,
            "provider": data["provider"],
            "nice_name": data.get("nice_name", ""),
            "domain_names": sorted(n for n in data.get("domain_names") or [] if n is not None),
            "expires_on": now,
            "meta": copy.deepcopy(data.get("meta") or {}),
        }
        self._certificates[cert_id] = row
        if row["provider"] != LETSENCRYPT:
            return _certificate_row(row)
        try:
            self._nginx_test()  # NPM reloads nginx with the ACME challenge location first
            self._rewrite_refused_configs(row["domain_names"])
            self._request_letsencrypt(row, user)
        except NpmError:
            self._certificates.pop(cert_id, None)
            raise
        issued = self._now().replace(microsecond=0)
        row["expires_on"] = _iso(issued + CERTIFICATE_LIFETIME)
        row["modified_on"] = _iso(issued)
        out = _certificate_row(row)
        out["meta"]["letsencrypt_certificate"] = {
            "cn": row["domain_names"][0],
            "issuer": "C = US, O = Let's Encrypt, CN = E5",
            "dates": {"from": int(issued.timestamp()), "to": int((issued + CERTIFICATE_LIFETIME).timestamp())},
        }
        return out

    def _request_letsencrypt(self, row: dict[str, Any], actor: User) -> None:
        names = row["domain_names"]
        cmd = (
            "certbot certonly -n --config /etc/letsencrypt.ini --work-dir /tmp/letsencrypt-lib --logs-dir "
            f"/data/logs --cert-name npm-{row['id']} --agree-tos --authenticator webroot -m {actor.email} "
            f"--preferred-challenges http --domains {','.join(names)}"
        )
        if self._certbot_running:
            self.certbot_refusals += 1
            raise CommandError(CERTBOT_BUSY, cmd)
        self._certbot_running += 1
        self.certbot_most_at_once = max(self.certbot_most_at_once, self._certbot_running)
        try:
            self._run_certbot(row["id"])
        finally:
            self._certbot_running -= 1
        failed = [
            (name, self._certificate_faults[name.lower()]) for name in names if name.lower() in self._certificate_faults
        ]
        if not names:
            stdout, stderr = (
                "",
                (
                    f"Saving debug log to {CERTBOT_LOG}\nPlease specify --domains, or --installer that will help in "
                    "domain names autodiscovery, or --cert-name for an existing certificate name."
                ),
            )
        elif failed:
            problems = "".join(f"  Domain: {name}\n  Type:   dns\n  Detail: {detail}\n\n" for name, detail in failed)
            stdout = (
                "Certbot failed to authenticate some domains (authenticator: webroot). The Certificate Authority "
                f"reported these problems:\n{problems}"
                "Hint: The Certificate Authority failed to download the temporary challenge files created by "
                "Certbot. Ensure that the listed domains serve their content from the provided --webroot-path/-w "
                "and that files created there can be downloaded from the internet.\n\n"
            )
            stderr = f"Saving debug log to {CERTBOT_LOG}\nSome challenges have failed.\n{CERTBOT_HELP}"
        else:
            self.issuances.append(Issuance(row["id"], tuple(names), True))
            return
        # certbot's terminal: the log line, its stdout, then the rest of its stderr; NPM keeps only stderr
        first, _, rest = stderr.partition("\n")
        self.issuances.append(Issuance(row["id"], tuple(names), False, f"{first}\n{stdout}{rest}"))
        raise CommandError(stderr, cmd)

    def _run_certbot(self, cert_id: int) -> None:
        """certbot's run time: `issuance_seconds` with the lock released (NPM serves other requests meanwhile).

        Every caller holds the lock exactly once (the public operations do not nest), so one release frees it.
        """
        if self.issuance_seconds <= 0:
            return
        self._issuing.add(cert_id)
        self._lock.release()
        try:
            threading.Event().wait(self.issuance_seconds)  # a simulated duration, not a wait for a condition
        finally:
            self._lock.acquire()
            self._issuing.discard(cert_id)

    def _rewrite_refused_configs(self, names: list[str]) -> None:
        """NPM writes the config of a host named in a certificate request without testing it; a host whose
        config nginx had refused is then broken for every later `nginx -t`, until that host is deleted."""
        wanted = {name.lower() for name in names}
        for row in self._hosts.values():
            if row["meta"].get("nginx_online") is False and wanted & {n.lower() for n in row["domain_names"]}:
                self._broken[row["id"]] = _config_error_text(row)
        self._nginx_test()

    def _certificate_out(self, row: dict[str, Any], expand: list[str] | None) -> dict[str, Any]:
        out = _certificate_row(row)
        for relation in _expansions(expand, CERTIFICATE_EXPANSIONS):
            if relation == "owner":
                owner = self._users.get(row["owner_user_id"])
                out["owner"] = owner.row() if owner else None
            elif relation == "proxy_hosts":
                out["proxy_hosts"] = [
                    copy.deepcopy(host) for host in self._hosts.values() if host["certificate_id"] == row["id"]
                ]
            elif relation in self._other_hosts:
                hosts = self._other_hosts[relation].values()
                out[relation] = [copy.deepcopy(host) for host in hosts if host["certificate_id"] == row["id"]]
            else:
                out[relation] = []
        return out

    # Internals: nginx

    def _configure(self, row: dict[str, Any]) -> dict[str, Any]:
        """internal/nginx.js configure: test, rewrite this host's config, test again; a refused config is
        removed and its error kept in meta. Raises CommandError when nginx is already broken."""
        self._nginx_test()
        self._configs.pop(row["id"], None)
        error = self._config_error(row) if row["enabled"] else None  # a disabled host's config is empty
        row["meta"] = {**row["meta"], "nginx_online": error is None, "nginx_err": error}
        row["modified_on"] = self._timestamp()
        if error is None and row["enabled"]:
            self._configs[row["id"]] = copy.deepcopy(row)
        self._nginx_test()  # the reload
        return copy.deepcopy(row["meta"])

    def _nginx_test(self) -> None:
        """`nginx -t` over every config NPM left in place."""
        if self._broken:
            raise CommandError(self._broken[min(self._broken)], NGINX_TEST)
        for host_id in sorted(self._configs):
            error = self._missing_certificate(self._configs[host_id])
            if error:
                raise CommandError(error, NGINX_TEST)

    def _config_error(self, row: dict[str, Any]) -> str | None:
        fault = next((name for name in row["domain_names"] if name.lower() in self._nginx_faults), None)
        if fault is not None and (self._nginx_faults[fault.lower()] or self._nginx_check is None):
            return self._nginx_faults[fault.lower()] or (
                f'nginx: [emerg] unknown directive "{fault}" in /data/nginx/proxy_host/{row["id"]}.conf:42\n'
                f"{NGINX_FAILED}"
            )
        error = self._missing_certificate(row)
        if error is None and self._nginx_check is not None:
            error = self._nginx_check(self._enabled_host(row), fault)
        return error

    def _missing_certificate(self, row: dict[str, Any]) -> str | None:
        """A config naming certificate files that are not there (deleted, or a custom one never uploaded)."""
        cert_id = row["certificate_id"]
        certificate = self._certificates.get(cert_id)
        if not cert_id or (certificate and certificate["provider"] == LETSENCRYPT):
            return None
        path = f"/etc/letsencrypt/live/npm-{cert_id}/fullchain.pem"
        if certificate is not None:
            path = f"/data/custom_ssl/npm-{cert_id}/fullchain.pem"
        return (
            f'nginx: [emerg] cannot load certificate "{path}": BIO_new_file() failed (SSL: error:80000002:system '
            f"library::No such file or directory:calling fopen({path}, r) error:10000080:BIO routines::no such "
            f"file)\n{NGINX_FAILED}"
        )

    def _enabled_host(self, row: dict[str, Any]) -> EnabledHost:
        certificate = self._certificates.get(row["certificate_id"])
        return EnabledHost(
            id=row["id"],
            domain_names=tuple(row["domain_names"]),
            forward_scheme=row["forward_scheme"],
            forward_host=row["forward_host"],
            forward_port=row["forward_port"],
            certificate_id=row["certificate_id"],
            certificate=None
            if certificate is None
            else HostCertificate(
                id=certificate["id"],
                provider=certificate["provider"],
                domain_names=tuple(certificate["domain_names"]),
                expires_on=datetime.fromisoformat(certificate["expires_on"]),
            ),
            ssl_forced=row["ssl_forced"],
            http2_support=row["http2_support"],
            hsts_enabled=row["hsts_enabled"],
            hsts_subdomains=row["hsts_subdomains"],
            block_exploits=row["block_exploits"],
            caching_enabled=row["caching_enabled"],
            allow_websocket_upgrade=row["allow_websocket_upgrade"],
            trust_forwarded_proto=row["trust_forwarded_proto"],
            advanced_config=row["advanced_config"],
            locations=tuple(copy.deepcopy(row["locations"] or [])),
        )

    # Internals: common

    def _can(self, actor: User | None, area: str, level: str) -> User:
        """lib/access.js with lib/access/<area>-<action>.json: admins may do everything, users per level."""
        if actor is None or actor.is_disabled:
            raise PermissionDenied()
        have = getattr(actor.permissions, area)
        if actor.is_admin or have == MANAGE or (level == VIEW and have == VIEW):
            return actor
        raise PermissionDenied()

    @staticmethod
    def _visible(actor: User, row: dict[str, Any]) -> bool:
        return actor.permissions.visibility == "all" or row["owner_user_id"] == actor.id

    def _issue_token(self, user: User, lifetime: timedelta) -> dict[str, str]:
        now = self._now()
        expires = now + lifetime
        token = _jwt_shaped(
            {
                "iss": "api",
                "attrs": {"id": user.id},
                "scope": ["user"],
                "jti": secrets.token_urlsafe(9),
                "iat": int(now.timestamp()),
                "exp": int(expires.timestamp()),
            }
        )
        self._tokens[token] = _Token(user.id, expires)
        return {"token": token, "expires": _iso(expires, milliseconds=True)}

    @contextmanager
    def _change(self) -> Iterator[None]:
        """Hold the lock for one operation and tell the observers afterwards, also when it failed halfway
        (a failed create may still have stored a host)."""
        with self._lock:
            try:
                yield
            finally:
                for observer in list(self._observers):
                    try:
                        observer(self)
                    except Exception:  # an observer must not change what the API answers
                        log.exception("NPM double observer %r failed", observer)

    def _unsubscribe(self, observer: Observer) -> None:
        with self._lock:
            if observer in self._observers:
                self._observers.remove(observer)

    def _next_id(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    def _now(self) -> datetime:
        return self._clock().astimezone(UTC)

    def _timestamp(self) -> str:
        """A DATETIME column as MySQL-backed NPM returns it: whole seconds, ISO, `Z`."""
        return _iso(self._now().replace(microsecond=0))


def _clean_ssl_hsts(data: dict[str, Any], existing: dict[str, Any] | None = None) -> dict[str, Any]:
    """internal/host.js cleanSslHstsData: no certificate, no forced SSL nor HTTP/2; no forced SSL, no HSTS."""
    combined = {**(existing or {}), **data}
    if not combined.get("certificate_id"):
        combined["ssl_forced"] = False
        combined["http2_support"] = False
    if not combined.get("ssl_forced"):
        combined["hsts_enabled"] = False
    if not combined.get("hsts_enabled"):
        combined["hsts_subdomains"] = False
    return combined


def _config_error_text(row: dict[str, Any]) -> str:
    """nginx's error for a refused host's config, naming the file where NPM keeps it."""
    path = f"/data/nginx/proxy_host/{row['id']}.conf"
    error = re.sub(r"\S*/proxy_host/(\d+\.conf)", r"/data/nginx/proxy_host/\1", row["meta"].get("nginx_err") or "")
    if path in error:
        return error
    return f"nginx: [emerg] invalid server block in {path}:1\n{NGINX_FAILED}"


def _certificate_row(row: dict[str, Any]) -> dict[str, Any]:
    """A certificate as the API shows it: without is_deleted and without the DNS provider's credentials."""
    out = {column: copy.deepcopy(row[column]) for column in CERTIFICATE_COLUMNS}
    out["meta"].pop("dns_provider_credentials", None)
    return out


def _expansions(expand: list[str] | None, allowed: tuple[str, ...]) -> list[str]:
    """Objection refuses a relation outside the model's allowGraph; its error has no `status`, so NPM says 500."""
    relations = []
    for relation in expand or []:
        name = relation.split(".")[0]
        if name not in allowed:
            raise InternalError(f"unallowed relation in expression: {relation}")
        relations.append(name)
    return relations


_PERIOD = re.compile(r"^([0-9]+)(y|Q|M|w|d|h|m|s|ms)$")
_PERIOD_UNITS = {
    "y": timedelta(days=365),
    "Q": timedelta(days=91),
    "M": timedelta(days=30),
    "w": timedelta(weeks=1),
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
    "s": timedelta(seconds=1),
    "ms": timedelta(milliseconds=1),
}


def _parse_period(expression: str) -> timedelta | None:
    """lib/helpers.js parseDatePeriod (`30d`, `12h`); calendar months and years approximated."""
    match = _PERIOD.match(expression)
    return int(match[1]) * _PERIOD_UNITS[match[2]] if match else None


def _iso(moment: datetime, *, milliseconds: bool = False) -> str:
    fraction = f"{moment.microsecond // 1000:03d}" if milliseconds else "000"
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + fraction + "Z"


def _jwt_shaped(payload: dict[str, Any]) -> str:
    """A token that looks like NPM's JWT (clients may decode its `exp`); the double recognises it by lookup,
    so the signature part is random rather than RS256."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = part(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    return f"{header}.{part(json.dumps(payload).encode())}.{part(secrets.token_bytes(64))}"
