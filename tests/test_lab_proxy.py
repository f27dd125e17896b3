"""The lab's proxy (lab/npm/proxy.py): the NPM double's enabled hosts served by a real nginx from Debian, on free
loopback ports, in front of a small backend on 127.0.0.1 that answers with the request it received.

Everything goes through NPM's API (and once through the role npm_proxy); what is checked is what a visitor of
the proxy gets. The last tests run `python -m lab.npm serve` as the lab does: restarts keep the hosts, SIGTERM
stops nginx, nginx dying stops the command. Every fixture stops its nginx and checks that none of it is left.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from conftest import ROOT, free_port, wait_until
from cryptography import x509
from role_runs import run_role

from lab.npm import NpmState
from lab.npm.nginx import Layout
from lab.npm.proxy import LabProxy
from tests.npm import IDENTITY, SECRET, ServedNpm, serve_npm

pytestmark = pytest.mark.cluster

SITE = "s1.sites.proxmoxwp.test"
WWW = "www.s1.sites.proxmoxwp.test"
OTHER = "s2.sites.proxmoxwp.test"


# A backend that tells what reached it


class _EchoHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    release = threading.Event()  # /slow answers once this is set

    def do_GET(self) -> None:
        if self.path == "/slow":
            self.release.wait(30)
        body = json.dumps({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def backend() -> Iterator[int]:
    """The port of an HTTP server on 127.0.0.1 answering every GET with its path and headers as JSON (`/slow`
    once `_EchoHandler.release` is set)."""
    _EchoHandler.release = threading.Event()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="echo-backend", daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        _EchoHandler.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# Talking to NPM's API and to the proxy


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # loopback only, whatever proxy the environment names
    return session


class Api:
    def __init__(self, url: str, identity: str, secret: str, token: str | None = None) -> None:
        self.url = url
        self.token = token or self._login(identity, secret)

    def _login(self, identity: str, secret: str) -> str:
        with _session() as session:
            response = session.post(f"{self.url}/tokens", json={"identity": identity, "secret": secret}, timeout=10)
        response.raise_for_status()
        return response.json()["token"]

    def call(self, method: str, path: str, body: Any = None) -> requests.Response:
        with _session() as session:
            return session.request(
                method, self.url + path, json=body, headers={"Authorization": f"Bearer {self.token}"}, timeout=60
            )

    def create_host(self, *names: str, port: int, **fields: Any) -> dict[str, Any]:
        body = {
            "domain_names": list(names),
            "forward_scheme": "http",
            "forward_host": "127.0.0.1",
            "forward_port": port,
            "block_exploits": True,
            "allow_websocket_upgrade": True,
            **fields,
        }
        response = self.call("POST", "/nginx/proxy-hosts", body)
        assert response.status_code == 201, response.text
        return self.host(response.json()["id"])

    def host(self, host_id: int) -> dict[str, Any]:
        response = self.call("GET", f"/nginx/proxy-hosts/{host_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def certify(self, host_id: int, *names: str) -> dict[str, Any]:
        """NPM's safe order: a Let's Encrypt certificate for the names, then attached with SSL forced and HTTP/2."""
        issued = self.call("POST", "/nginx/certificates", {"provider": "letsencrypt", "domain_names": list(names)})
        assert issued.status_code == 201, issued.text
        body = {"certificate_id": issued.json()["id"], "ssl_forced": True, "http2_support": True, "hsts_enabled": True}
        attached = self.call("PUT", f"/nginx/proxy-hosts/{host_id}", body)
        assert attached.status_code == 200, attached.text
        return issued.json()


@dataclass
class Https:
    status: int
    http_version: str
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Proxy:
    """How a visitor reaches the lab's nginx: HTTP and HTTPS on loopback, by name."""

    layout: Layout

    def http(self, name: str, path: str = "/", **headers: str) -> requests.Response:
        with _session() as session:
            return session.get(
                f"http://{self.layout.address(self.layout.http_port)}{path}",
                headers={"Host": name, "Connection": "close", **headers},
                allow_redirects=False,
                timeout=30,
            )

    def https(self, name: str, path: str = "/", cacert: Path | None = None) -> Https:
        """curl resolving `name` to the proxy, trusting only `cacert` (the certificate served for the name)."""
        port = self.layout.https_port
        argv = ["curl", "--silent", "--show-error", "--noproxy", "*", "--max-time", "30", "--http2",
                "--resolve", f"{name}:{port}:{self.layout.listen}", "--dump-header", "-",
                "--write-out", "\n%{http_version}"]  # fmt: skip
        argv += ["--cacert", str(cacert)] if cacert else ["--insecure"]
        result = subprocess.run([*argv, f"https://{name}:{port}{path}"], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        head, _, rest = result.stdout.partition("\n\n")  # text mode: curl's CRLF read as LF
        body, _, version = rest.rpartition("\n")
        status_line, *header_lines = head.splitlines()
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
        return Https(int(status_line.split()[1]), version, headers, body)

    def certificate(self, name: str) -> x509.Certificate:
        """The certificate the proxy presents for `name` (SNI), unverified."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        address = (self.layout.listen, self.layout.https_port)
        with (
            socket.create_connection(address, timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=name) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der)


def san(certificate: x509.Certificate) -> list[str]:
    extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return sorted(extension.value.get_values_for_type(x509.DNSName))


# The lab's NPM: the double, served in this process, with its real nginx


@dataclass
class Lab:
    npm: ServedNpm
    proxy: LabProxy
    api: Api
    visitor: Proxy

    @property
    def state(self) -> NpmState:
        return self.npm.state

    def conf(self, host_id: int) -> Path:
        return self.proxy.layout.hosts / f"{host_id}.conf"


def two_ports() -> tuple[int, int]:
    """Two different free ports of 127.0.0.1 for nginx's HTTP and HTTPS."""
    first = free_port()
    return first, wait_until(lambda: (port := free_port()) != first and port, what="a second free port")


def nginx_family(master: int | None) -> list[psutil.Process]:
    if master is None:
        return []
    try:
        process = psutil.Process(master)
        return [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def assert_gone(processes: list[psutil.Process]) -> None:
    """Every one of `processes` has exited (killed here if not, so that none outlives the test)."""
    left = [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for process in left:
        process.kill()
    assert not left, f"nginx processes left behind: {[p.pid for p in left]}"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    state = NpmState(IDENTITY, SECRET)
    http_port, https_port = two_ports()
    layout = Layout(tmp_path / "npm", http_port=http_port, https_port=https_port)
    proxy = LabProxy(state, layout)
    proxy.start()
    try:
        with serve_npm(state) as served:
            yield Lab(served, proxy, Api(served.url, IDENTITY, SECRET), Proxy(layout))
    finally:
        family = nginx_family(proxy.nginx.pid)
        proxy.stop()
        assert_gone(family)


# The proxy


def test_a_host_reaches_its_backend_with_the_headers_npm_sends(lab: Lab, backend: int):
    host = lab.api.create_host(SITE, WWW, port=backend)
    assert host["meta"] == {"nginx_online": True, "nginx_err": None}

    answer = lab.visitor.http(SITE, "/hello?x=1")
    assert answer.status_code == 200, answer.text
    seen = answer.json()
    assert seen["path"] == "/hello?x=1"
    assert seen["headers"]["host"] == SITE
    assert seen["headers"]["x-forwarded-proto"] == "http"
    assert seen["headers"]["x-forwarded-scheme"] == "http"
    assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert seen["headers"]["x-real-ip"] == "127.0.0.1"
    assert answer.headers["X-Served-By"] == SITE
    assert lab.visitor.http(WWW).json()["headers"]["host"] == WWW

    # websocket upgrade: the Upgrade header reaches the backend only while the host allows it
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket"}
    assert lab.visitor.http(SITE, "/ws", **upgrade).json()["headers"].get("upgrade") == "websocket"
    put = lab.api.call("PUT", f"/nginx/proxy-hosts/{host['id']}", {"allow_websocket_upgrade": False})
    assert put.status_code == 200 and put.json()["meta"]["nginx_online"] is True
    assert "upgrade" not in lab.visitor.http(SITE, "/ws", **upgrade).json()["headers"]

    # a name no host has answers 404 from the default server, over HTTP and HTTPS
    assert lab.visitor.http(OTHER).status_code == 404
    assert lab.visitor.https(OTHER).status == 404


def test_a_certificate_forces_https_on_the_labs_port_with_http2_and_its_names(lab: Lab, backend: int):
    host = lab.api.create_host(SITE, WWW, port=backend)
    assert lab.visitor.https(SITE).status == 404  # no certificate yet: the default server's
    issued = lab.api.certify(host["id"], SITE, WWW)
    # answered as NPM answers a Let's Encrypt issuance
    assert issued["provider"] == "letsencrypt" and issued["domain_names"] == [SITE, WWW]
    assert issued["meta"]["letsencrypt_certificate"]["cn"] == SITE
    assert [i.domain_names for i in lab.state.issuances] == [(SITE, WWW)]
    assert lab.api.host(host["id"])["meta"] == {"nginx_online": True, "nginx_err": None}

    redirect = lab.visitor.http(SITE, "/wp-admin/?a=b")
    assert redirect.status_code == 301
    assert redirect.headers["Location"] == f"https://{SITE}:{lab.proxy.layout.https_port}/wp-admin/?a=b"

    fullchain, privkey = lab.proxy.layout.certificate_files(issued["id"])
    assert privkey.stat().st_mode & 0o777 == 0o600
    served = lab.visitor.certificate(SITE)
    assert san(served) == [SITE, WWW]
    assert served.issuer == served.subject  # self-signed
    assert served.not_valid_after_utc.isoformat().startswith(issued["expires_on"][:19])

    for name in (SITE, WWW):
        answer = lab.visitor.https(name, "/page", cacert=fullchain)  # verified: the names are the certificate's
        assert (answer.status, answer.http_version) == (200, "2")
        seen = answer.json()
        assert seen["headers"]["host"] == name and seen["headers"]["x-forwarded-proto"] == "https"
        assert answer.headers["strict-transport-security"].startswith("max-age=63072000")


def test_disable_enable_and_delete_change_what_the_proxy_answers(lab: Lab, backend: int):
    host_id = lab.api.create_host(SITE, port=backend)["id"]
    other_id = lab.api.create_host(OTHER, port=backend)["id"]
    assert lab.visitor.http(SITE).status_code == 200

    assert lab.api.call("POST", f"/nginx/proxy-hosts/{host_id}/disable").json() is True
    assert lab.visitor.http(SITE).status_code == 404
    assert not lab.conf(host_id).exists()
    assert lab.visitor.http(OTHER).status_code == 200

    assert lab.api.call("POST", f"/nginx/proxy-hosts/{host_id}/enable").json() is True
    assert lab.visitor.http(SITE).json()["headers"]["host"] == SITE

    assert lab.api.call("DELETE", f"/nginx/proxy-hosts/{host_id}").json() is True
    assert lab.visitor.http(SITE).status_code == 404
    assert sorted(p.name for p in lab.proxy.layout.hosts.iterdir()) == [f"{other_id}.conf"]


def test_acme_challenges_get_nginxs_404_not_the_site(lab: Lab, backend: int):
    """NPM serves /.well-known/acme-challenge/ of every proxy host from its webroot: a probe for a random token
    is nginx's 404 for a served name, without reaching the site (no X-Served-By from `location /`)."""
    lab.api.create_host(SITE, port=backend)
    for path in ("/.well-known/acme-challenge/probe-5f2c9a", "/.well-known/acme-challenge/"):
        probe = lab.visitor.http(SITE, path)
        assert probe.status_code == 404 and "X-Served-By" not in probe.headers
    assert lab.visitor.http(OTHER, "/.well-known/acme-challenge/probe-5f2c9a").status_code == 404
    assert lab.visitor.http(SITE, "/.well-known/other").headers["X-Served-By"] == SITE


def test_a_certificate_certbot_still_works_on_gets_no_files(lab: Lab, backend: int):
    lab.state.issuance_seconds = 3
    body = {"provider": "letsencrypt", "domain_names": [SITE]}
    with ThreadPoolExecutor(max_workers=1) as pool:
        issuing = pool.submit(lab.api.call, "POST", "/nginx/certificates", body)
        [row] = wait_until(lab.state.certificates, timeout=10, what="the certificate being issued")
        lab.api.create_host(OTHER, port=backend)  # a change the proxy applies while certbot runs
        assert not issuing.done()
        assert not lab.proxy.layout.certificate_files(row["id"])[0].exists()
        assert issuing.result(timeout=30).status_code == 201
    assert lab.proxy.layout.certificate_files(row["id"])[0].exists()


def test_a_change_does_not_wait_for_requests_in_flight_and_they_complete(lab: Lab, backend: int):
    """A reload waits until the old workers stopped taking connections, not until their requests end."""
    lab.api.create_host(SITE, port=backend)
    answers: list[requests.Response] = []
    slow = threading.Thread(target=lambda: answers.append(lab.visitor.http(SITE, "/slow")))
    slow.start()
    try:
        wait_until(lambda: _in_flight(lab, backend), timeout=10, what="the slow request to reach the backend")
        started = time.monotonic()
        lab.api.create_host(OTHER, port=backend)
        assert time.monotonic() - started < 5
        assert lab.visitor.http(OTHER).status_code == 200
    finally:
        _EchoHandler.release.set()
        slow.join(timeout=30)
    assert [answer.status_code for answer in answers] == [200]


def _in_flight(lab: Lab, backend: int) -> bool:
    """nginx has a connection open to the backend (a request is being proxied)."""
    workers = nginx_family(lab.proxy.nginx.pid)[1:]
    connections = [connection for worker in workers for connection in worker.net_connections()]
    return any(c.raddr and c.raddr.port == backend and c.status == psutil.CONN_ESTABLISHED for c in connections)


def test_a_config_nginx_refuses_is_not_loaded_and_the_other_hosts_stay_served(lab: Lab, backend: int):
    lab.api.create_host(OTHER, port=backend)
    lab.state.fail_nginx(SITE)
    broken = lab.api.create_host(SITE, port=backend)
    meta = broken["meta"]
    assert meta["nginx_online"] is False
    # the real nginx's refusal, worded as NPM shows it, naming the file the host would have had
    assert meta["nginx_err"].startswith(f'nginx: [emerg] unknown directive "{SITE}" in {lab.conf(broken["id"])}:')
    assert meta["nginx_err"].endswith(f"nginx: configuration file {lab.proxy.layout.conf} test failed")
    assert not lab.conf(broken["id"]).exists()
    assert lab.visitor.http(SITE).status_code == 404
    assert lab.visitor.http(OTHER).status_code == 200

    lab.state.clear_faults()
    fixed = lab.api.call("PUT", f"/nginx/proxy-hosts/{broken['id']}", {"forward_port": backend}).json()
    assert fixed["meta"] == {"nginx_online": True, "nginx_err": None}
    assert lab.visitor.http(SITE).status_code == 200


@pytest.mark.parametrize(
    ("names", "forward_host"),
    [
        (["bad$name.sites.proxmoxwp.test"], "127.0.0.1"),
        (["evil.sites.proxmoxwp.test\nreturn\t200\tpwned"], "127.0.0.1"),
        ([SITE], "127.0.0.1; include /etc/shadow"),
        ([SITE], "127.0.0.1:80/x"),
    ],
    ids=["dollar-in-name", "newline-in-name", "directive-in-forward-host", "path-in-forward-host"],
)
def test_what_npms_schema_lets_through_but_is_not_a_hostname_is_never_written(
    lab: Lab, backend: int, names: list[str], forward_host: str
):
    """The schema allows `$` and newlines in a name and any text as forward_host: such a host gets NPM's
    nginx error path (nginx_online false) and nothing of it reaches the configuration."""
    lab.api.create_host(OTHER, port=backend)
    host = lab.api.create_host(*names, port=backend, forward_host=forward_host)
    assert host["meta"]["nginx_online"] is False
    assert "is not written" in host["meta"]["nginx_err"]
    assert not lab.conf(host["id"]).exists()
    written = "".join(path.read_text() for path in lab.proxy.layout.hosts.glob("*.conf"))
    assert "pwned" not in written and "shadow" not in written and "$name" not in written
    assert lab.visitor.http(OTHER).status_code == 200


def test_a_deleted_certificate_in_use_keeps_the_loaded_config_until_its_host_goes(lab: Lab, backend: int):
    """As in NPM: the certificate's files go, so nginx refuses every new configuration; the one it has loaded
    stays and keeps serving, until the host's config is removed (disable)."""
    host_id = lab.api.create_host(SITE, port=backend)["id"]
    certificate = lab.api.certify(host_id, SITE)
    fullchain, _ = lab.proxy.layout.certificate_files(certificate["id"])
    assert lab.api.call("DELETE", f"/nginx/certificates/{certificate['id']}").json() is True
    assert not fullchain.exists()
    assert lab.visitor.https(SITE).status == 200  # still the loaded configuration

    assert lab.api.call("POST", "/nginx/proxy-hosts", {"domain_names": [OTHER], "forward_scheme": "http",
                        "forward_host": "127.0.0.1", "forward_port": backend}).status_code == 500  # fmt: skip
    assert lab.visitor.http(OTHER).status_code == 404
    # the real nginx agrees with the model: its loaded configuration would not load again
    assert "cannot load certificate" in (lab.proxy.nginx.test(lab.proxy.layout.conf) or "")

    assert lab.api.call("POST", f"/nginx/proxy-hosts/{host_id}/disable").json() is True
    assert lab.visitor.http(SITE).status_code == 404
    assert lab.proxy.nginx.test(lab.proxy.layout.conf) is None and lab.proxy.last_error is None


def test_the_role_npm_proxy_makes_a_site_reachable_over_https_and_absent_removes_it(
    lab: Lab, backend: int, tmp_path: Path
):
    site = {
        "proxmoxwp_npm_api": {"url": lab.npm.url, "identity": IDENTITY, "secret": SECRET},
        "npm_proxy_domain_names": [SITE],
        "npm_proxy_forward_host": "127.0.0.1",
        "npm_proxy_forward_port": backend,
    }
    present = run_role(tmp_path, "npm_proxy", "present", **site)
    assert present.ok, present.stdout[-2000:]
    [host] = lab.state.proxy_hosts()
    fullchain, _ = lab.proxy.layout.certificate_files(host["certificate_id"])
    answer = lab.visitor.https(SITE, "/", cacert=fullchain)
    assert (answer.status, answer.http_version) == (200, "2")
    assert answer.json()["headers"]["x-forwarded-proto"] == "https"
    assert lab.visitor.http(SITE).status_code == 301

    absent = run_role(tmp_path, "npm_proxy", "absent", **site)
    assert absent.ok, absent.stdout[-2000:]
    assert lab.visitor.http(SITE).status_code == 404
    assert not fullchain.exists()


# The command the lab runs


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    info: dict[str, Any]

    @property
    def secret(self) -> str:
        return Path(self.info["secret_file"]).read_text().strip()

    def nginx(self) -> list[psutil.Process]:
        return nginx_family(self.info["nginx_pid"])


def serve(directory: Path, http_port: int, https_port: int, log: Path) -> Served:
    info_file = directory / "npm.json"
    argv = [sys.executable, "-m", "lab.npm", "serve", "--dir", str(directory), "--port", "0",
            "--nginx-dir", str(directory / "nginx"),
            "--http-port", str(http_port), "--https-port", str(https_port)]  # fmt: skip
    with open(log, "ab") as output:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)

    def started() -> dict[str, Any] | None:
        assert process.poll() is None, f"serve exited: {log.read_text()[-2000:]}"
        try:
            info = json.loads(info_file.read_text())
        except (OSError, ValueError):
            return None
        return info if info["pid"] == process.pid else None

    return Served(process, wait_until(started, timeout=60, what="npm.json of the served lab NPM"))


def stop(served: Served) -> None:
    """SIGTERM as the lab sends it; then nothing of it may be left."""
    family = served.nginx()
    assert family, "nginx was not running"
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=30) == 0
    assert_gone(family)


@pytest.fixture
def served_dir(tmp_path: Path) -> Iterator[Path]:
    """The lab NPM's directory; whatever was started on it is gone afterwards, pass or fail."""
    directory = tmp_path / "npm"
    yield directory
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(directory) in cmdline and process.pid != os.getpid():
            family = [process, *process.children(recursive=True)]
            for member in family:
                member.kill()
            pytest.fail(f"left running: {cmdline}")


def test_serve_starts_nginx_keeps_hosts_across_restarts_and_stops_everything_on_sigterm(
    served_dir: Path, backend: int, tmp_path: Path
):
    http_port, https_port = two_ports()
    log = tmp_path / "serve.log"
    first = serve(served_dir, http_port, https_port, log)
    try:
        assert first.info["http"] == f"http://127.0.0.1:{http_port}"
        assert first.info["https"] == f"https://127.0.0.1:{https_port}"
        assert first.info["identity"] == "admin@example.com"
        assert Path(first.info["secret_file"]).stat().st_mode & 0o777 == 0o600
        api = Api(first.info["url"], first.info["identity"], first.secret)
        host = api.create_host(SITE, port=backend)
        api.certify(host["id"], SITE)
        visitor = Proxy(Layout(served_dir / "nginx", http_port=http_port, https_port=https_port))
        assert visitor.https(SITE).json()["headers"]["host"] == SITE
        assert (served_dir / "state.json").stat().st_mode & 0o777 == 0o600
    finally:
        stop(first)
    assert not (served_dir / "npm.json").exists() and not (served_dir / "nginx" / "nginx.pid").exists()
    with pytest.raises(requests.ConnectionError):
        visitor.http(SITE)

    started = time.monotonic()
    second = serve(served_dir, http_port, https_port, log)
    try:
        assert time.monotonic() - started < 30
        assert second.secret == first.secret
        again = Api(second.info["url"], "", "", token=api.token)  # tokens survive too
        [kept] = again.call("GET", "/nginx/proxy-hosts").json()
        assert (kept["id"], kept["domain_names"], kept["ssl_forced"]) == (host["id"], [SITE], True)
        assert visitor.http(SITE).status_code == 301
        assert visitor.https(SITE).json()["headers"]["x-forwarded-proto"] == "https"
        assert again.create_host(OTHER, port=backend)["id"] == host["id"] + 1  # ids go on
        assert visitor.http(OTHER).status_code == 200
    finally:
        stop(second)


def test_serve_stops_when_its_nginx_dies_and_leaves_no_worker_behind(served_dir: Path, tmp_path: Path):
    """nginx killed (SIGKILL: its workers are orphaned, still holding the ports) ends the command with status 1,
    so the lab sees the part down; the orphaned workers go with it."""
    served = serve(served_dir, *two_ports(), tmp_path / "serve.log")
    family = served.nginx()
    assert len(family) >= 2
    family[0].kill()
    assert served.process.wait(timeout=30) == 1
    assert_gone(family)
    assert "nginx exited with status -9" in (tmp_path / "serve.log").read_text()
