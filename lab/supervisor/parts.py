"""The parts of the lab, each started, stopped and checked on its own."""

from __future__ import annotations

import abc
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import psutil

from api.build_host.locks import exclusive
from api.build_host.network import bridge_exists, ensure_bridge, remove_bridge
from api.listen import AddressInUse, check_free
from api.waiting import holds_within
from lab.pve.netfilter import remove_tables
from lab.supervisor.layout import Lab, LabError, parse_bind, proxmoxwp_command
from lab.supervisor.processes import cmdline_of, family_of, group_members, log_tail, process_by_pid, terminate

START_TIMEOUT = 60.0


@dataclass
class PartStatus:
    name: str
    running: bool
    pid: int | None
    log: str
    healthy: bool
    detail: str = ""
    extra: dict[str, object] = field(default_factory=dict)
    optional: bool = False  # the lab is up without it

    @property
    def state(self) -> str:
        if self.optional:  # a thing the lab has or not, not a process
            return "present" if self.running else "absent"
        return "running" if self.running else "stopped"

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "state": self.state,
            "running": self.running,
            "healthy": self.healthy,
            "pid": self.pid,
            "log": self.log,
            "detail": self.detail,
            "optional": self.optional,
            **self.extra,
        }


class Part(Protocol):
    """One part of the lab. `start` and `stop` are idempotent and say in one line what they did."""

    name: str

    def start(self, lab: Lab) -> str: ...

    def stop(self, lab: Lab) -> str: ...

    def check(self, lab: Lab) -> PartStatus: ...

    def pid(self, lab: Lab) -> int | None: ...


class ProcessPart(abc.ABC):
    """A part of the lab that is one `proxmoxwp …` process (and whatever it starts)."""

    name = ""
    argv_marker = ""  # the `proxmoxwp` subcommand, to tell this part's process from a reused pid
    stop_timeout = 20.0

    @abc.abstractmethod
    def argv(self, lab: Lab) -> list[str]:
        """The command line that starts this part."""

    @abc.abstractmethod
    def ready(self, lab: Lab, log_offset: int) -> bool:
        """True once the process does its job."""

    def before_start(self, lab: Lab) -> None:  # noqa: B027 - a hook; most parts need none
        """Refuse to start when something else is in the way."""

    def pid_file(self, lab: Lab) -> Path:
        return lab.directory / f"{self.name}.pid"

    def log_file(self, lab: Lab) -> Path:
        return lab.directory / f"{self.name}.log"

    def process(self, lab: Lab) -> psutil.Process | None:
        """This part's process if it runs, from the pid file; None otherwise."""
        try:
            process = process_by_pid(int(self.pid_file(lab).read_text().strip()))
        except (OSError, ValueError):
            return None
        if process is None:
            return None
        cmdline = cmdline_of(process)
        if cmdline and not self.owns(lab, cmdline):
            return None  # the pid has been reused by another program
        return process

    def owns(self, lab: Lab, cmdline: list[str]) -> bool:
        """Whether a process with this command line is this part's (and not a reused pid)."""
        return any("proxmoxwp" in arg for arg in cmdline) and self.argv_marker in cmdline

    def pid(self, lab: Lab) -> int | None:
        process = self.process(lab)
        return None if process is None else process.pid

    def start(self, lab: Lab) -> str:
        pid = self.pid(lab)
        if pid is not None:
            return f"{self.name}: already running (pid {pid})"
        self.pid_file(lab).unlink(missing_ok=True)
        self.before_start(lab)
        log = self.log_file(lab)
        with open(log, "ab") as handle:
            handle.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} lab up: starting {self.name}\n".encode())
            handle.flush()
            offset = handle.tell()
            proc = subprocess.Popen(
                self.argv(lab),
                env={**lab.environment(), **wiring(lab)},
                cwd=lab.settings.project_dir,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file(lab).write_text(f"{proc.pid}\n")

        def settled() -> bool:
            return proc.poll() is not None or self.ready(lab, offset)

        if not holds_within(settled, START_TIMEOUT) or proc.poll() is not None:
            why = (
                f"exited with status {proc.returncode}"
                if proc.poll() is not None
                else f"was not ready after {START_TIMEOUT:.0f}s"
            )
            terminate(proc.pid, family_of(proc.pid), self.stop_timeout, self.name)
            proc.poll()
            self.pid_file(lab).unlink(missing_ok=True)
            raise LabError(f"{self.name} {why}; the end of {log}:\n{log_tail(log, offset)}")
        return f"{self.name}: started (pid {proc.pid}), log {log}"

    def stop(self, lab: Lab) -> str:
        pid_file = self.pid_file(lab)
        pid = self.pid(lab)
        if pid is None:
            leftovers = self._orphans(lab)
            if not leftovers:
                pid_file.unlink(missing_ok=True)
                return f"{self.name}: not running"
            pid, family = leftovers
        else:
            family = family_of(pid)
        how = terminate(pid, family, self.stop_timeout, self.name)
        pid_file.unlink(missing_ok=True)
        return f"{self.name}: {how} (pid {pid})"

    def _orphans(self, lab: Lab) -> tuple[int, list[psutil.Process]] | None:
        """Processes left in the group of a leader that has died (gunicorn workers, say)."""
        try:
            leader = int(self.pid_file(lab).read_text().strip())
        except (OSError, ValueError):
            return None
        members = [member for member in group_members(leader) if self.owns_member(lab, cmdline_of(member))]
        return (leader, members) if members else None

    def owns_member(self, lab: Lab, cmdline: list[str]) -> bool:
        """Whether a member of this part's process group is this part's, once its leader is gone."""
        return any("proxmoxwp" in arg for arg in cmdline)

    def check(self, lab: Lab) -> PartStatus:
        pid = self.pid(lab)
        return PartStatus(self.name, pid is not None, pid, str(self.log_file(lab)), pid is not None)


class ApiPart(ProcessPart):
    name = "api"
    argv_marker = "serve"
    stop_timeout = 40.0  # gunicorn's graceful timeout is 30 s

    def argv(self, lab: Lab) -> list[str]:
        return [proxmoxwp_command(), "serve", "--bind", lab.bind]

    def answers(self, lab: Lab) -> bool:
        try:
            with urllib.request.urlopen(lab.api_url + "/health", timeout=2) as reply:  # noqa: S310 - http URL
                return reply.status == 200 and json.load(reply).get("status") == "ok"
        except (OSError, ValueError):  # urllib's errors are OSErrors
            return False

    def ready(self, lab: Lab, log_offset: int) -> bool:
        return self.answers(lab)

    def before_start(self, lab: Lab) -> None:
        """Bind the address for a moment (no traffic): taken, or not an address of this machine?"""
        host, port = parse_bind(lab.bind)
        try:
            check_free(host, port)
        except AddressInUse:
            raise LabError(f"{lab.bind} is already in use by another program") from None
        except socket.gaierror as exc:
            raise LabError(f"the API address {lab.bind}: {exc.strerror}") from None
        except OSError as exc:
            raise LabError(f"the API cannot listen on {lab.bind}: {exc.strerror}") from None

    def check(self, lab: Lab) -> PartStatus:
        status = super().check(lab)
        answers = status.running and self.answers(lab)
        status.healthy = answers
        status.extra = {"answers": answers, "url": lab.api_url}
        if status.running and not answers:
            status.detail = "the process runs but GET /health does not answer"
        return status


class WorkerPart(ProcessPart):
    name = "worker"
    argv_marker = "worker"

    def argv(self, lab: Lab) -> list[str]:
        return [proxmoxwp_command(), "worker"]

    def ready(self, lab: Lab, log_offset: int) -> bool:
        """huey logs one line when its consumer has started taking jobs."""
        return "consumer started" in log_tail(self.log_file(lab), log_offset, lines=10_000).lower()


class ServicePart(ProcessPart):
    """A lab service of the `lab` package, `python -m <module> serve --dir <its directory> ...`, which writes
    `<its directory>/<info_file>` (how to reach it) once it answers and removes it when it stops."""

    module = ""
    info_file = ""

    def options(self, lab: Lab) -> list[str]:
        return []

    def argv(self, lab: Lab) -> list[str]:
        return [sys.executable, "-m", self.module, "serve", "--dir", str(lab.part_dir(self.name)), *self.options(lab)]

    def owns(self, lab: Lab, cmdline: list[str]) -> bool:
        return self.module in cmdline and str(lab.part_dir(self.name)) in cmdline

    def owns_member(self, lab: Lab, cmdline: list[str]) -> bool:
        # the service's own children (pdns_server, nginx) name its directory in their command line
        return any(str(lab.part_dir(self.name)) in arg for arg in cmdline)

    def info(self, lab: Lab) -> dict | None:
        try:
            return json.loads((lab.part_dir(self.name) / self.info_file).read_text())
        except (OSError, ValueError):
            return None

    def ready(self, lab: Lab, log_offset: int) -> bool:
        return self.info(lab) is not None

    def before_start(self, lab: Lab) -> None:
        (lab.part_dir(self.name) / self.info_file).unlink(missing_ok=True)

    def check(self, lab: Lab) -> PartStatus:
        status = super().check(lab)
        info = self.info(lab) if status.running else None
        status.healthy = info is not None
        status.extra = {"answers": info is not None, **self.shown(info or {})}
        return status

    def shown(self, info: dict) -> dict:
        """What `lab status` shows of the info file (never a secret)."""
        return {}


class PowerDnsPart(ServicePart):
    name = "dns"
    module = "lab.powerdns"
    info_file = "powerdns.json"

    def options(self, lab: Lab) -> list[str]:
        zone = lab.naming_zone()
        return [
            "--dns-port", str(lab.addresses.dns_port),
            "--api-port", str(lab.addresses.pdns_api_port),
            "--zone", zone,
        ]  # fmt: skip

    def shown(self, info: dict) -> dict:
        return {"url": info.get("api_url"), "dns": info.get("dns")}


class PvePart(ServicePart):
    name = "pve"
    module = "lab.pve"
    info_file = "pve.json"
    stop_timeout = 60.0  # a container operation under way finishes first

    def options(self, lab: Lab) -> list[str]:
        return [
            "--bind", f"127.0.0.1:{lab.addresses.pve_port}",
            "--bridge", lab.addresses.bridge,
            "--lxcpath", str(lab.part_dir("lxc")),
            "--rootfs-cache", str(lab.part_dir("cache")),
            "--templates", str(lab.part_dir("images")),
            "--name-prefix", CONTAINER_PREFIX,
            # the cluster's nodes on this machine, and how long HA takes to recover a failed one's sites
            "--nodes", os.environ.get("PROXMOXWP_LAB_NODES") or "pve1,pve2,pve3",
            "--ha-delay", os.environ.get("PROXMOXWP_LAB_HA_DELAY") or "10",
        ]  # fmt: skip

    def stop(self, lab: Lab) -> str:
        said = super().stop(lab)
        # the sites' containers go with the lab: the next `lab up` starts from an empty cluster
        destroy = [sys.executable, "-m", self.module, "destroy-all", "--prefix", CONTAINER_PREFIX,
                   "--lxcpath", str(lab.part_dir("lxc"))]  # fmt: skip
        done = subprocess.run(destroy, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise LabError(f"pve: the lab's containers could not be removed: {done.stderr.strip()[-500:]}")
        return said

    def shown(self, info: dict) -> dict:
        return {"url": info.get("url")}


class ProxyPart(ServicePart):
    name = "proxy"
    module = "lab.npm"
    info_file = "npm.json"

    def options(self, lab: Lab) -> list[str]:
        return [
            "--port", str(lab.addresses.npm_port),
            "--nginx-dir", str(lab.part_dir(self.name) / "nginx"),
            "--http-port", str(lab.addresses.http_port),
            "--https-port", str(lab.addresses.https_port),
        ]  # fmt: skip

    def shown(self, info: dict) -> dict:
        return {"url": info.get("url"), "http": info.get("http"), "https": info.get("https")}


class BridgePart:
    """The containers' bridge with NAT (an nftables table of its own); not a process."""

    name = "bridge"

    def start(self, lab: Lab) -> str:
        bridge = ensure_bridge(lab.addresses.bridge, lab.addresses.gateway)
        ensure_ssh_key(lab.ssh_key)
        return f"bridge: {bridge.name} {bridge.gateway} with NAT (nft table {bridge.table})"

    def stop(self, lab: Lab) -> str:
        existed = bridge_exists(lab.addresses.bridge)
        remove_tables(lab.addresses.bridge)  # the sites' firewall on it (lab.pve.netfilter)
        remove_bridge(lab.addresses.bridge)
        return f"bridge: {'removed' if existed else 'not there'}"

    def pid(self, lab: Lab) -> int | None:
        return None

    def check(self, lab: Lab) -> PartStatus:
        up = bridge_exists(lab.addresses.bridge)
        return PartStatus(self.name, up, None, "", up, extra={"bridge": lab.addresses.bridge})


class GoldenImagePart:
    """The golden image (playbooks/template_build.yml) in the lab's template directory, built when missing; the
    lab's inventory then creates sites from it. Not a process: `down` keeps it, as a cache."""

    name = "image"
    archive_name = "debian-12-proxmoxwp-wordpress_amd64.tar.zst"
    timeout = 1800

    def __init__(self) -> None:
        self.enabled = True

    def archive(self, lab: Lab) -> Path:
        return lab.part_dir("images") / self.archive_name

    @staticmethod
    def lock_file(archive: Path) -> Path:
        """Held while the image is checked and built: labs (and test runs) sharing a template directory build it
        once, and none takes a half-written archive."""
        return archive.parent / f".{archive.name}.lock"

    def start(self, lab: Lab) -> str:
        if not self.enabled:
            return "image: not built (--no-golden): sites are installed from packages"
        archive = self.archive(lab)
        if archive.is_file():
            return f"image: {archive}"
        lock = self.lock_file(archive)
        with exclusive(lock, timeout=self.timeout + 60, what=f"another build of the golden image ({lock})"):
            if archive.is_file():
                return f"image: {archive} (built meanwhile by another lab)"
            return self._build(lab)

    def _build(self, lab: Lab) -> str:
        log = lab.directory / "image.log"
        command = [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i", str(lab.settings.inventory),
            str(lab.settings.playbook_dir / "template_build.yml"),
        ]  # fmt: skip
        with open(log, "ab") as handle:
            built = subprocess.run(
                command, env={**lab.environment(), **wiring(lab)}, cwd=lab.settings.project_dir,
                stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT, timeout=self.timeout, check=False,
            )  # fmt: skip
        if built.returncode != 0:
            raise LabError(f"image: the golden image could not be built; the end of {log}:\n{log_tail(log)}")
        return f"image: built {self.archive(lab)}, log {log}"

    def stop(self, lab: Lab) -> str:
        return "image: kept"

    def pid(self, lab: Lab) -> int | None:
        return None

    def check(self, lab: Lab) -> PartStatus:
        there = self.archive(lab).is_file()
        shown = {"archive": str(self.archive(lab)) if there else None}
        return PartStatus(self.name, there, None, "", True, extra=shown, optional=True)


CONTAINER_PREFIX = "pwplab-"


def ensure_ssh_key(path: Path) -> None:
    """An ed25519 key pair for the playbooks' logins to the lab's containers, made once."""
    if path.exists():
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    made = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "proxmoxwp-lab", "-f", str(path)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    if made.returncode != 0:
        raise LabError(f"the lab's SSH key could not be made: {made.stderr.strip()}")


def _read(path: str | None) -> str:
    try:
        return Path(path or "").read_text().strip() if path else ""
    except OSError:
        return ""


def wiring(lab: Lab) -> dict[str, str]:
    """The variables that point the API, the worker and the playbooks (inventory/lab) at the lab's services that
    run; read from their info files, so a part started later sees the ones started before it."""
    env: dict[str, str] = {}
    if dns := DNS.info(lab):
        env["PROXMOXWP_PDNS_URL"] = dns["api_url"]
        env["PROXMOXWP_PDNS_API_KEY"] = _read(dns.get("api_key_file"))
        env["PROXMOXWP_DNS_RESOLVERS"] = dns["dns"]
    if pve := PVE.info(lab):
        env["PROXMOXWP_PVE_PORT"] = str(pve["port"])
        env["PROXMOXWP_PVE_CA_FILE"] = pve["ca_file"]
        # every node's API endpoint, and the nodes sites may be placed on (inventory/lab)
        hosts = [{"host": entry["host"], "port": entry["port"]} for entry in pve.get("hosts", [])]
        env["PROXMOXWP_LAB_PVE_HOSTS"] = json.dumps(hosts)
        env["PROXMOXWP_LAB_NODES"] = ",".join(pve.get("nodes") or [pve["node"]])
        env["PROXMOXWP_PVE_TOKEN_SECRET"] = _read(pve.get("token_file"))
    if proxy := PROXY.info(lab):
        env["PROXMOXWP_NPM_URL"] = proxy["url"]
        env["PROXMOXWP_NPM_IDENTITY"] = proxy["identity"]
        env["PROXMOXWP_NPM_SECRET"] = _read(proxy.get("secret_file"))
    return env


DNS = PowerDnsPart()
PVE = PvePart()
PROXY = ProxyPart()
API = ApiPart()
# In start order; `lab down` stops them in reverse order.
IMAGE = GoldenImagePart()
PARTS: list[Part] = [BridgePart(), DNS, PVE, PROXY, IMAGE, API, WorkerPart()]
