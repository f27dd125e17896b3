"""The nginx configuration of the lab's proxy: NPM 2.15.1's templates for a proxy host, written for Debian's nginx.

`render_host` is one server block per enabled host, as NPM's `proxy_host.conf` (with `_listen`, `_certificates`,
`_hsts`, `_forced_ssl` and `include/proxy.conf`) writes it: `server_name` the host's names, `proxy_pass` to
`forward_scheme://forward_host:forward_port` with the Host, X-Forwarded-* and X-Real-IP headers NPM sends, the
websocket headers when `allow_websocket_upgrade`, the certificate when there is one, a redirect to HTTPS for
`ssl_forced` (to the lab's HTTPS port), HTTP/2 for `http2_support`, and NPM's ACME challenge locations
(`include/letsencrypt-acme-challenge.conf`: files from the lab's empty webroot, so 404). `render_main` is the
nginx.conf around them, with default servers that answer unknown names 404 (NPM's default-site setting "404
Page").

NPM's API lets more through than a hostname (the schema's pattern allows `$`, `*` and newlines in a name, and
any text as `forward_host`), so every value is checked before it is written and a host with one that is not a
hostname (or an address) is refused with `InvalidHost`, never written: nothing from a request reaches the
configuration unless it matches a pattern that cannot carry nginx syntax. `advanced_config`, `locations`,
`block_exploits` and `caching_enabled` are not rendered (docs/lab-proxy.md).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from lab.npm.state import EnabledHost

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}", re.IGNORECASE)
_DOMAIN = re.compile(rf"(?:\*\.)?(?:{_LABEL}\.)*{_LABEL}", re.IGNORECASE)  # NPM allows a leading wildcard
_SCHEMES = ("http", "https")
_PATH = re.compile(r"[A-Za-z0-9_./+@:,=~-]+")
NGINX_FAILED_SUFFIX = "test failed"


class InvalidHost(ValueError):
    """A host with a value that is not written into an nginx configuration."""


@dataclass(frozen=True)
class Layout:
    """Where the lab's nginx keeps its files, and the loopback ports it listens on."""

    directory: Path
    listen: str = "127.0.0.1"
    http_port: int = 8880
    https_port: int = 8443

    def __post_init__(self) -> None:
        if not self.directory.is_absolute() or _PATH.fullmatch(str(self.directory)) is None:
            # written unquoted into the configuration: no blanks, quotes, `;`, braces, `$` or `#`
            raise ValueError(f"the nginx directory must be an absolute path of {_PATH.pattern}: {self.directory}")
        address = ipaddress.ip_address(self.listen)  # ValueError for anything else
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            raise ValueError(f"listen address with a scope: {self.listen}")
        for port in (self.http_port, self.https_port):
            if not 1 <= port <= 65535:
                raise ValueError(f"not a port: {port}")
        if self.http_port == self.https_port:
            raise ValueError("the HTTP and HTTPS ports must differ")

    @property
    def conf(self) -> Path:
        return self.directory / "nginx.conf"

    @property
    def hosts(self) -> Path:
        """One `<id>.conf` per served host (NPM: /data/nginx/proxy_host)."""
        return self.directory / "proxy_host"

    @property
    def staging(self) -> Path:
        """A configuration being tested before it replaces the served one."""
        return self.directory / "staging"

    @property
    def temp(self) -> Path:
        """nginx's temporary files (request bodies, buffered responses)."""
        return self.directory / "tmp"

    @property
    def certificates(self) -> Path:
        return self.directory / "certs"

    @property
    def acme_challenge(self) -> Path:
        """The webroot of ACME challenges (NPM: /data/letsencrypt-acme-challenge); the lab's stays empty."""
        return self.directory / "acme-challenge"

    @property
    def logs(self) -> Path:
        return self.directory / "logs"

    @property
    def pid_file(self) -> Path:
        return self.directory / "nginx.pid"

    def certificate_files(self, certificate_id: int | str) -> tuple[Path, Path]:
        """fullchain.pem and privkey.pem of a certificate (NPM: /etc/letsencrypt/live/npm-<id>/)."""
        folder = self.certificates / f"npm-{certificate_id}"
        return folder / "fullchain.pem", folder / "privkey.pem"

    def address(self, port: int) -> str:
        host = f"[{self.listen}]" if ":" in self.listen else self.listen
        return f"{host}:{port}"


def valid_domain(name: str) -> bool:
    return len(name) <= 253 and _DOMAIN.fullmatch(name) is not None


def upstream(host: EnabledHost) -> str:
    """`scheme://host:port` of a host's `proxy_pass`, after checking each part; InvalidHost otherwise."""
    if host.forward_scheme not in _SCHEMES:
        raise InvalidHost(f"forward_scheme {host.forward_scheme!r} is neither http nor https")
    if not isinstance(host.forward_port, int) or not 1 <= host.forward_port <= 65535:
        raise InvalidHost(f"forward_port {host.forward_port!r} is not a port")
    target = host.forward_host
    try:
        address = ipaddress.ip_address(target)
    except ValueError:
        if len(target) > 253 or _HOSTNAME.fullmatch(target) is None:
            raise InvalidHost(f"forward_host {target!r} is neither an IP address nor a hostname") from None
    else:
        if isinstance(address, ipaddress.IPv6Address):
            if address.scope_id:
                raise InvalidHost(f"forward_host {target!r} has a scope")
            target = f"[{address}]"
    return f"{host.forward_scheme}://{target}:{host.forward_port}"


def render_host(host: EnabledHost, layout: Layout, fault: str | None = None) -> str:
    """One host's server block. `fault` (a `fail_nginx` name) is written as a directive nginx does not know."""
    for name in host.domain_names:
        if not valid_domain(name):
            raise InvalidHost(f"{name!r} in domain_names is not a hostname")
    if not host.domain_names:
        raise InvalidHost("no domain_names")
    target = upstream(host)
    certificate = bool(host.certificate_id)
    logs = layout.logs / f"proxy-host-{host.id}"
    lines = [
        f"# proxy host {int(host.id)}, written by lab/npm (NPM 2.15.1's proxy_host.conf)",
        "server {",
        f"  listen {layout.address(layout.http_port)};",
    ]
    if certificate:
        http2 = " http2" if host.http2_support else ""
        fullchain, privkey = layout.certificate_files(int(host.certificate_id))
        lines += [
            f"  listen {layout.address(layout.https_port)} ssl{http2};",
            f"  ssl_certificate {fullchain};",
            f"  ssl_certificate_key {privkey};",
        ]
    lines.append(f"  server_name {' '.join(host.domain_names)};")
    if fault is not None:
        if not valid_domain(fault):
            raise InvalidHost(f"fault {fault!r} is not a hostname")
        lines.append(f"  {fault};")
    if certificate and host.ssl_forced:
        # include/force-ssl.conf, with the lab's HTTPS port in the target
        port = "" if layout.https_port == 443 else f":{layout.https_port}"
        lines += [
            '  set $lab_force_ssl "";',
            '  if ($scheme = "http") { set $lab_force_ssl "H"; }',
        ]
        if host.trust_forwarded_proto:
            lines.append('  if ($http_x_forwarded_proto = "https") { set $lab_force_ssl "${lab_force_ssl}T"; }')
        lines.append(f'  if ($lab_force_ssl = "H") {{ return 301 https://$host{port}$request_uri; }}')
    lines += [
        f"  access_log {logs}_access.log;",
        f"  error_log {logs}_error.log warn;",
        # include/letsencrypt-acme-challenge.conf: challenges come from the webroot, never from the site
        "  location ^~ /.well-known/acme-challenge/ {",
        "    auth_basic off;",
        '    default_type "text/plain";',
        f"    root {layout.acme_challenge};",
        "  }",
        "  location = /.well-known/acme-challenge/ { return 404; }",
        "  location / {",
    ]
    if certificate and host.ssl_forced and host.hsts_enabled:
        subdomains = " includeSubDomains;" if host.hsts_subdomains else ""
        lines.append(f'    add_header Strict-Transport-Security "max-age=63072000;{subdomains} preload" always;')
    if host.allow_websocket_upgrade:
        lines += [
            "    proxy_set_header Upgrade $http_upgrade;",
            "    proxy_set_header Connection $http_connection;",
            "    proxy_http_version 1.1;",
        ]
    lines += [
        # include/proxy.conf
        "    add_header X-Served-By $host;",
        "    proxy_set_header Host $host;",
        "    proxy_set_header X-Forwarded-Scheme $scheme;",
        "    proxy_set_header X-Forwarded-Proto $scheme;",
        "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "    proxy_set_header X-Real-IP $remote_addr;",
        f"    proxy_pass {target};",
        "  }",
        "}",
        "",
    ]
    return "\n".join(lines)


def render_main(layout: Layout, hosts: Path, *, as_root: bool) -> str:
    """nginx.conf: the lab's own pid, logs and temporary files, default servers, and `hosts`/*.conf.

    Run as root, the workers stay root as in NPM's image (`user root;`), so they can use the temporary
    directories under `layout.directory` whatever its parents' modes.
    """
    default_cert, default_key = layout.certificate_files("default")
    temp = layout.temp
    return "\n".join(
        [
            "# written by lab/npm: the lab's own nginx (docs/lab-proxy.md)",
            *(["user root;"] if as_root else []),
            "worker_processes 1;",
            f"pid {layout.pid_file};",
            f"error_log {layout.logs / 'error.log'} warn;",
            "worker_shutdown_timeout 30s;  # a reload or stop waits that long at most for open connections",
            "events { worker_connections 512; }",
            "http {",
            "  default_type application/octet-stream;",
            f"  access_log {layout.logs / 'access.log'};",
            f"  client_body_temp_path {temp / 'body'};",
            f"  proxy_temp_path {temp / 'proxy'};",
            f"  fastcgi_temp_path {temp / 'fastcgi'};",
            f"  uwsgi_temp_path {temp / 'uwsgi'};",
            f"  scgi_temp_path {temp / 'scgi'};",
            "  server_names_hash_bucket_size 512;  # names of up to 253 characters",
            "  client_max_body_size 2000m;  # NPM's",
            "  proxy_read_timeout 90s;",
            # the containers are on this machine: a stopped site answers 504 at once, not after nginx's 60 s
            "  proxy_connect_timeout 5s;",
            "  ssl_protocols TLSv1.2 TLSv1.3;",
            "  server_tokens off;",
            "  server {",
            f"    listen {layout.address(layout.http_port)} default_server;",
            f"    listen {layout.address(layout.https_port)} ssl default_server;",
            f"    ssl_certificate {default_cert};",
            f"    ssl_certificate_key {default_key};",
            "    server_name localhost-nginx-proxy-manager;",
            "    return 404;",
            "  }",
            f"  include {hosts}/*.conf;",
            "}",
            "",
        ]
    )


_LOG_PREFIX = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\] \d+#\d+: ", re.MULTILINE)


def nginx_message(stderr: str) -> str:
    """`nginx -t`'s output worded as NPM shows it (`nginx: [emerg] …`), without Debian's timestamps."""
    return _LOG_PREFIX.sub(r"nginx: [\1] ", stderr).strip()
