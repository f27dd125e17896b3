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
until the config file goes: POST .../disable or DELETE of that host.

Thread-safe: one re-entrant lock around every operation; observers run under it, after each change.
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

CERTBOT_LOG = "/data/logs/letsencrypt.log"
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
    """certbot or `nginx -t` failed: 500 `Internal Error`; the output is only in `debug` on certificate paths."""

    def __init__(self, output: str, cmd: str) -> None:
        super().__init__(output, previous={"code": 1, "killed": False, "signal": None, "cmd": cmd})


# Users and tokens.


@dataclass
class Permissions:
    """A user's permissions row: `visibility` all|user, the others manage|view|hidden."""

    visibility: str = "all"
    proxy_hosts: str = MANAGE
    certificates: str = MANAGE


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
    """One Let's Encrypt request the double answered (kept in `NpmState.issuances`)."""

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
    `expire_tokens()`; `add_user(...)` makes users with fewer permissions. `clock` (aware UTC datetimes) lets a
    test move time.
    """

    def __init__(
        self,
        identity: str,
        secret: str,
        *,
        token_lifetime: timedelta = timedelta(days=1),
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.token_lifetime = token_lifetime
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self._users: dict[int, User] = {}
        self._tokens: dict[str, _Token] = {}
        self._hosts: dict[int, dict[str, Any]] = {}
        self._certificates: dict[int, dict[str, Any]] = {}
        # host id -> the host as NPM last wrote its (enabled, accepted) config; what nginx serves
        self._configs: dict[int, dict[str, Any]] = {}
        self._certificate_faults: dict[str, str] = {}
        self._nginx_faults: dict[str, str | None] = {}
        self._observers: list[Observer] = []
        self._nginx_check: NginxCheck | None = None
        self._ids = {"user": 0, "host": 0, "certificate": 0}
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

    def clear_faults(self) -> None:
        with self._lock:
            self._certificate_faults.clear()
            self._nginx_faults.clear()

    # Views for tests and for a renderer

    def proxy_hosts(self) -> list[dict[str, Any]]:
        """Every stored host as NPM's table row, whoever owns it."""
        with self._lock:
            return [copy.deepcopy(row) for row in self._hosts.values()]

    def certificates(self) -> list[dict[str, Any]]:
        with self._lock:
            return [_certificate_row(row) for row in self._certificates.values()]

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
        """What `restore` needs to bring this NPM back after a restart: hosts, certificates, the configs nginx
        serves, the id counters and the admin's tokens (so the file holding it is a secret). Not the users
        (they come from the command line), the faults nor the issuances."""
        with self._lock:
            tokens = [
                {"token": token, "user_id": record.user_id, "expires": record.expires.isoformat()}
                for token, record in self._tokens.items()
                if record.user_id == self.admin.id and record.expires > self._now()
            ]
            return {
                "format": STATE_FORMAT,
                "ids": {"host": self._ids["host"], "certificate": self._ids["certificate"]},
                "hosts": [copy.deepcopy(row) for row in self._hosts.values()],
                "certificates": [copy.deepcopy(row) for row in self._certificates.values()],
                "configs": [copy.deepcopy(row) for row in self._configs.values()],
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
            for kind in ("host", "certificate"):
                self._ids[kind] = max(self._ids[kind], int(data["ids"][kind]))
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
        """internal/host.js isHostnameTaken: any other host, enabled or not, case-insensitively."""
        for name in domain_names:
            for row in self._hosts.values():
                if row["id"] != ignore_id and name.lower() in (n.lower() for n in row["domain_names"]):
                    raise ValidationError(f"{name} is already in use")

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
        """internal/certificate.js create: store, request from Let's Encrypt, hard-delete again on failure."""
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
            self._request_letsencrypt(row, user)
        except NpmError:
            del self._certificates[cert_id]
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
        failed = [
            (name, self._certificate_faults[name.lower()]) for name in names if name.lower() in self._certificate_faults
        ]
        if not names:
            output = (
                f"Saving debug log to {CERTBOT_LOG}\nPlease specify --domains, or --installer that will help in "
                "domain names autodiscovery, or --cert-name for an existing certificate name."
            )
        elif failed:
            problems = "".join(f"  Domain: {name}\n  Type:   dns\n  Detail: {detail}\n\n" for name, detail in failed)
            output = (
                f"Saving debug log to {CERTBOT_LOG}\n"
                "Certbot failed to authenticate some domains (authenticator: webroot). The Certificate Authority "
                f"reported these problems:\n{problems}"
                "Hint: The Certificate Authority failed to download the temporary challenge files created by "
                "Certbot. Ensure that the listed domains serve their content from the provided --webroot-path/-w "
                "and that files created there can be downloaded from the internet.\n\n"
                "Some challenges have failed.\n"
                "Ask for help or search for solutions at https://community.letsencrypt.org. See the logfile "
                f"{CERTBOT_LOG} or re-run Certbot with -v for more details."
            )
        else:
            self.issuances.append(Issuance(row["id"], tuple(names), True))
            return
        self.issuances.append(Issuance(row["id"], tuple(names), False, output))
        raise CommandError(output, cmd)

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
