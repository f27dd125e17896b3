"""The lab's own nginx master: Debian's nginx with its own prefix, configuration, pid file and logs.

It runs in the foreground (`daemon off;`) as a child of the process that starts it, in that process's group, so
whatever stops that group (the lab's process manager) stops nginx too; it also gets SIGTERM when its parent dies.
Reloads are SIGHUP to that child, and `reload` returns once the old workers are gone, so a request made after
it is answered by the new configuration.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import psutil

from api.waiting import holds_within
from lab.npm.nginx import Layout, nginx_message

log = logging.getLogger(__name__)

NGINX = "/usr/sbin/nginx"
NGINX_POLL = 0.02  # nginx starts and reloads in milliseconds; the NPM double waits for it on each change
_PR_SET_PDEATHSIG = 1


class NginxError(RuntimeError):
    pass


class NginxProcess:
    def __init__(self, layout: Layout, binary: str = NGINX) -> None:
        self.layout = layout
        self.binary = binary
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _argv(self, conf: Path) -> list[str]:
        return [self.binary, "-p", f"{self.layout.directory}/", "-c", str(conf)]

    def test(self, conf: Path) -> str | None:
        """`nginx -t` of `conf`: None when nginx accepts it, else its message."""
        try:
            result = subprocess.run(
                [*self._argv(conf), "-t", "-q"], capture_output=True, text=True, timeout=60, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"nginx: {error}"
        if result.returncode == 0:
            return None
        return nginx_message(result.stderr or result.stdout) or f"nginx -t exited with status {result.returncode}"

    def start(self, timeout: float = 15.0) -> None:
        """Start the master on `layout.conf` and wait until it answers on the HTTP port."""
        if self.running:
            return
        self._stop_stale()
        self._process = subprocess.Popen(
            [*self._argv(self.layout.conf), "-g", "daemon off;"],
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )

        def up() -> bool:
            return bool(self._workers()) and _accepts(self.layout.listen, self.layout.http_port)

        if not holds_within(lambda: up() or not self.running, timeout, interval=NGINX_POLL) or not self.running:
            status = self._process.poll()
            self.stop()
            why = f"exited with status {status}" if status is not None else f"did not answer within {timeout:.0f}s"
            raise NginxError(f"nginx {why}: {self.error_log_tail()}")
        log.info("nginx started (pid %s) on %s", self._process.pid, self.layout.address(self.layout.http_port))

    def reload(self, timeout: float = 15.0) -> None:
        """SIGHUP, then wait until new workers run and the old ones stopped taking connections (gone, or "shutting
        down": nginx retitles a worker when it closes its listening sockets to finish its open connections)."""
        if not self.running or self._process is None:
            raise NginxError("nginx is not running")
        before = self._workers()
        self._process.send_signal(signal.SIGHUP)

        def reloaded() -> bool:
            workers = self._workers()
            return bool(workers - before) and all(_shutting_down(pid) for pid in workers & before)

        if not holds_within(reloaded, timeout, interval=NGINX_POLL):
            raise NginxError(f"nginx did not reload within {timeout:.0f}s: {self.error_log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the master (fast shutdown), then SIGKILL whatever is left of it and its workers."""
        process, self._process = self._process, None
        if process is None:
            return
        family = self._family(process.pid)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        for member in [*family, *self._orphans()]:
            with contextlib.suppress(psutil.Error):
                member.kill()
        self.layout.pid_file.unlink(missing_ok=True)

    def wait(self) -> int | None:
        """Block until the master exits; its status (None when it was never started or was stopped)."""
        process = self._process
        return None if process is None else process.wait()

    def error_log_tail(self, lines: int = 5) -> str:
        try:
            text = (self.layout.logs / "error.log").read_text(errors="replace")
        except OSError:
            return "(no error log)"
        return nginx_message("\n".join(text.splitlines()[-lines:])) or "(the error log is empty)"

    def _workers(self) -> set[int]:
        if self._process is None:
            return set()
        return {member.pid for member in self._family(self._process.pid) if member.pid != self._process.pid}

    @staticmethod
    def _family(pid: int) -> list[psutil.Process]:
        try:
            master = psutil.Process(pid)
            return [master, *(child for child in master.children() if child.status() != psutil.STATUS_ZOMBIE)]
        except psutil.Error:
            return []

    def _stop_stale(self) -> None:
        """What an earlier run on this directory left behind goes first: its master (when the process that ran
        it was killed), or the workers of a master that was killed, which still hold the lab's ports."""
        stale: list[psutil.Process] = []
        try:
            pid = int(self.layout.pid_file.read_text().strip())
            if str(self.layout.conf) in " ".join(psutil.Process(pid).cmdline()):
                stale = self._family(pid)
        except (OSError, ValueError, psutil.Error):
            pass
        stale += self._orphans()
        if stale:
            log.warning("stopping nginx processes %s left behind by an earlier run", [p.pid for p in stale])
            for member in stale:
                with contextlib.suppress(psutil.Error):
                    member.terminate()
            _, alive = psutil.wait_procs(stale, timeout=10)
            for member in alive:
                with contextlib.suppress(psutil.Error):
                    member.kill()
        self.layout.pid_file.unlink(missing_ok=True)

    def _orphans(self) -> list[psutil.Process]:
        """nginx workers without their master (it was killed) listening on one of the lab's addresses."""
        addresses = {(self.layout.listen, self.layout.http_port), (self.layout.listen, self.layout.https_port)}
        orphans = []
        for process in psutil.process_iter(["name", "ppid", "cmdline"]):
            with contextlib.suppress(psutil.Error):
                worker = "nginx: worker process" in " ".join(process.info["cmdline"] or [])
                if process.info["name"] != "nginx" or not worker or _is_master(process.info["ppid"]):
                    continue
                listening = {
                    (connection.laddr.ip, connection.laddr.port)
                    for connection in process.net_connections(kind="tcp")
                    if connection.status == psutil.CONN_LISTEN
                }
                if listening & addresses:
                    orphans.append(process)
        return orphans


def _prctl() -> Callable[..., int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()  # looked up here, not in the forked child


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent goes (Linux prctl PR_SET_PDEATHSIG)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def _is_master(pid: int) -> bool:
    try:
        return "nginx: master process" in " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return False


def _shutting_down(pid: int) -> bool:
    try:
        return "shutting down" in " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return True  # gone


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False
