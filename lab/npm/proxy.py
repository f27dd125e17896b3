"""The lab's proxy: an NpmState whose proxy hosts are served by a real nginx.

`LabProxy(state, layout).start()` starts the lab's nginx (lab/npm/nginx_process.py) on the hosts the state
serves and follows the state from then on:

- when NPM would write a host's config, the state asks `check` (`NpmState.attach_nginx`): the host is rendered
  with every other served host into a staging configuration and `nginx -t` judges it there. A refusal takes
  the path of the state's `fail_nginx` fault (`meta.nginx_online` false, `nginx_err` nginx's message, the host
  kept out), as NPM 2.15.1 does when nginx refuses a host's file;
- after every change (`NpmState.subscribe`) `apply` writes the certificates (self-signed, for the names of each
  Let's Encrypt certificate; lab/npm/certificates.py), deletes those of deleted certificates, renders the
  served hosts, tests them and only then installs them and reloads nginx. A configuration nginx refuses is not
  installed: the loaded one stays, as in NPM (for example while a deleted certificate's host is still served).

Both run under the state's lock, so the API's answer comes after nginx serves the change. Call `start` before
the API serves the state, and `stop` after it stopped.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterable
from datetime import datetime

from lab.npm.certificates import CertificateStore
from lab.npm.files import write_atomic
from lab.npm.nginx import InvalidHost, Layout, render_host, render_main
from lab.npm.nginx_process import NGINX, NginxError, NginxProcess
from lab.npm.state import LETSENCRYPT, EnabledHost, NpmState

log = logging.getLogger(__name__)


class LabProxy:
    def __init__(self, state: NpmState, layout: Layout, nginx: str = NGINX) -> None:
        self.state = state
        self.layout = layout
        self.nginx = NginxProcess(layout, nginx)
        self.certificates = CertificateStore(layout)
        self.last_error: str | None = None  # why the last configuration was not installed
        self._installed: dict[int, str] | None = None
        self._unsubscribe: list[Callable[[], None]] = []

    def start(self) -> None:
        """Install the served hosts (none, if nginx refuses them all together) and start nginx."""
        layout = self.layout
        for folder in (layout.directory, layout.logs, layout.certificates, layout.temp, layout.acme_challenge):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.certificates.ensure_default()
        write_atomic(self.layout.conf, render_main(self.layout, self.layout.hosts, as_root=_root()), mode=0o644)
        self.state.attach_nginx(self.check)
        self._unsubscribe.append(self.state.subscribe(self.apply))
        self.apply(self.state)
        if self._installed is None:
            log.error("nginx refuses the saved hosts, starting without them: %s", self.last_error)
            self._install({})
        try:
            self.nginx.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self.state.attach_nginx(None)
        while self._unsubscribe:
            self._unsubscribe.pop()()
        self.nginx.stop()

    def check(self, host: EnabledHost, fault: str | None) -> str | None:
        """nginx's verdict on `host` written as given, next to the other served hosts (NpmState's nginx check)."""
        files = self._render(h for h in self.state.enabled_hosts() if h.id != host.id)
        try:
            self._certificate_of(host)
            files[host.id] = render_host(host, self.layout, fault)
        except InvalidHost as error:
            return f"lab/npm: the config of proxy host {host.id} is not written: {error}"
        return self._test(files)

    def apply(self, state: NpmState) -> None:
        """Make nginx serve what the state serves, if nginx accepts it (NpmState observer)."""
        self._sync_certificates()
        files = self._render(state.enabled_hosts())
        if files == self._installed:
            return
        error = self._test(files)
        if error is not None:
            self.last_error = error
            log.error("nginx keeps its configuration; the new one fails its test: %s", error)
            return
        self._install(files)
        self.last_error = None
        if self.nginx.running:
            try:
                self.nginx.reload()
            except NginxError as failed:
                self.last_error = str(failed)
                log.error("%s", failed)

    def _render(self, hosts: Iterable[EnabledHost]) -> dict[int, str]:
        files = {}
        for host in hosts:
            try:
                self._certificate_of(host)
                files[host.id] = render_host(host, self.layout)
            except InvalidHost as error:  # only from a hand-edited state file: check() keeps them out
                log.error("proxy host %s is not served: %s", host.id, error)
        return files

    def _certificate_of(self, host: EnabledHost) -> None:
        certificate = host.certificate
        if certificate is not None and certificate.provider == LETSENCRYPT:
            self.certificates.ensure(certificate.id, certificate.domain_names, certificate.expires_on)

    def _sync_certificates(self) -> None:
        """A self-signed certificate per issued Let's Encrypt one; the files of deleted ones go (certbot's). One
        certbot is still working on has no files yet (another request's change may come meanwhile)."""
        kept = set()
        issuing = self.state.certificates_being_issued()
        for row in self.state.certificates():
            if row["provider"] == LETSENCRYPT and row["domain_names"] and row["id"] not in issuing:
                names = tuple(row["domain_names"])
                self.certificates.ensure(row["id"], names, datetime.fromisoformat(row["expires_on"]))
                kept.add(row["id"])
        self.certificates.prune(kept)

    def _test(self, files: dict[int, str]) -> str | None:
        """`nginx -t` of these host configs in the staging directory, worded with the paths they would have."""
        staging = self.layout.staging
        shutil.rmtree(staging, ignore_errors=True)
        hosts = staging / "proxy_host"
        staging.mkdir(mode=0o700)
        hosts.mkdir(mode=0o700)
        for host_id, text in files.items():
            (hosts / f"{host_id}.conf").write_text(text)
        conf = staging / "nginx.conf"
        conf.write_text(render_main(self.layout, hosts, as_root=_root()))
        error = self.nginx.test(conf)
        if error is None:
            return None
        return error.replace(str(hosts), str(self.layout.hosts)).replace(str(conf), str(self.layout.conf))

    def _install(self, files: dict[int, str]) -> None:
        hosts = self.layout.hosts
        hosts.mkdir(parents=True, exist_ok=True, mode=0o700)
        for host_id, text in files.items():
            write_atomic(hosts / f"{host_id}.conf", text, mode=0o644)
        for path in hosts.glob("*.conf"):
            if not (path.stem.isdigit() and int(path.stem) in files):
                path.unlink()
        self._installed = dict(files)


def _root() -> bool:
    return os.geteuid() == 0
