"""`proxmoxwp lab`: bring the local lab up, take it down, show what runs.

The lab is a list of parts, started in order and stopped in reverse order. Each part is a background
process of its own session (so its whole process group can be stopped), with a pid file and a log file in
`<data dir>/lab/`. For now the parts are the API (`proxmoxwp serve`) and one worker (`proxmoxwp worker`);
the API and the worker read their bearer tokens from `<data dir>/lab/api-token`.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import click
import psutil

from api.config import ConfigError, Settings, load_settings

DEFAULT_BIND = "127.0.0.1:8080"
START_TIMEOUT = 60.0
POLL_INTERVAL = 0.2
LOG_TAIL_LINES = 30


class LabError(click.ClickException):
    """A part could not be started or stopped; the message says which and why."""


@dataclass
class Lab:
    """Where the lab keeps its files, and how its parts reach each other."""

    settings: Settings
    bind: str

    @property
    def directory(self) -> Path:
        return self.settings.data_dir / "lab"

    @property
    def token_file(self) -> Path:
        return self.directory / "api-token"

    @property
    def state_file(self) -> Path:
        return self.directory / "lab.json"

    @property
    def api_url(self) -> str:
        host, port = parse_bind(self.bind)
        if host in ("0.0.0.0", "::"):  # noqa: S104 - a wildcard bind is reached on loopback
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"  # noqa: S104
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def environment(self) -> dict[str, str]:
        """The environment of every part: this one, pinned to the lab's data dir and token file."""
        env = dict(os.environ)
        env["PROXMOXWP_DATA_DIR"] = str(self.settings.data_dir)
        env["PROXMOXWP_API_TOKENS_FILE"] = str(self.token_file)
        bindir = str(Path(sys.executable).parent)
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
        return env

    def ensure_token(self) -> None:
        """A random bearer token, readable by its owner only, made once."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            os.chmod(self.token_file, 0o600)
            return
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")

    def save_state(self) -> None:
        self.state_file.write_text(json.dumps({"bind": self.bind}) + "\n")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One `lab up` or `lab down` at a time."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.directory / "lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield


def parse_bind(bind: str) -> tuple[str, int]:
    """HOST:PORT (HOST may be [IPv6]) as (host, port); LabError when it is not that."""
    host, _, port = bind.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise LabError(f"the API address must be HOST:PORT with a port from 1 to 65535, not {bind!r}")
    return host, int(port)


def proxmoxwp_command() -> str:
    beside = Path(sys.executable).parent / "proxmoxwp"
    found = str(beside) if beside.exists() else shutil.which("proxmoxwp")
    if not found:
        raise LabError("the `proxmoxwp` command is not installed beside this Python or on PATH")
    return found


# --- processes ---


def _alive(process: psutil.Process) -> bool:
    """The process still runs: the same process (not a reused pid), and not a zombie."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _process(pid: int) -> psutil.Process | None:
    try:
        process = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None
    return process if _alive(process) else None


def _group(pgid: int) -> list[psutil.Process]:
    """Live members of a process group."""
    members = []
    for process in psutil.process_iter():
        with contextlib.suppress(OSError, psutil.Error):
            if os.getpgid(process.pid) == pgid and _alive(process):
                members.append(process)
    return members


def _family(leader: int) -> list[psutil.Process]:
    """The leader, the members of its process group, and all its descendants (also in other sessions)."""
    family = {process.pid: process for process in _group(leader)}
    if (process := _process(leader)) is not None:
        family[leader] = process
        with contextlib.suppress(psutil.Error):
            family.update({child.pid: child for child in process.children(recursive=True)})
    return list(family.values())


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def _wait_for(condition: Callable[[], object], timeout: float) -> bool:
    """Poll `condition` until it holds or `timeout` seconds have passed; tell which."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL)


def _tail(path: Path, offset: int = 0, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(the log is empty)"


def _terminate(leader: int, family: list[psutil.Process], timeout: float, name: str) -> str:
    """SIGTERM to `family`; after `timeout`, SIGKILL to what is left of it and of `leader`'s family then."""

    def signal_all(sig: int) -> None:
        for member in family:
            with contextlib.suppress(psutil.Error):
                member.send_signal(sig)

    def gone() -> bool:
        return not any(_alive(member) for member in family)

    signal_all(signal.SIGTERM)
    if _wait_for(gone, timeout):
        return "stopped"
    known = {member.pid for member in family}
    family += [member for member in _family(leader) if member.pid not in known]
    signal_all(signal.SIGKILL)
    if not _wait_for(gone, 10):
        left = sorted(member.pid for member in family if _alive(member))
        raise LabError(f"{name}: processes {left} survived SIGKILL")
    return f"killed (still running {timeout:.0f}s after SIGTERM)"


# --- parts ---


@dataclass
class PartStatus:
    name: str
    running: bool
    pid: int | None
    log: str
    healthy: bool
    detail: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "state": "running" if self.running else "stopped",
            "running": self.running,
            "healthy": self.healthy,
            "pid": self.pid,
            "log": self.log,
            "detail": self.detail,
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
            process = _process(int(self.pid_file(lab).read_text().strip()))
        except (OSError, ValueError):
            return None
        if process is None:
            return None
        cmdline = _cmdline(process)
        if cmdline and not (any("proxmoxwp" in arg for arg in cmdline) and self.argv_marker in cmdline):
            return None  # the pid has been reused by another program
        return process

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
                env=lab.environment(),
                cwd=lab.settings.project_dir,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file(lab).write_text(f"{proc.pid}\n")

        def settled() -> bool:
            return proc.poll() is not None or self.ready(lab, offset)

        if not _wait_for(settled, START_TIMEOUT) or proc.poll() is not None:
            why = (
                f"exited with status {proc.returncode}"
                if proc.poll() is not None
                else f"was not ready after {START_TIMEOUT:.0f}s"
            )
            _terminate(proc.pid, _family(proc.pid), self.stop_timeout, self.name)
            proc.poll()
            self.pid_file(lab).unlink(missing_ok=True)
            raise LabError(f"{self.name} {why}; the end of {log}:\n{_tail(log, offset)}")
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
            family = _family(pid)
        how = _terminate(pid, family, self.stop_timeout, self.name)
        pid_file.unlink(missing_ok=True)
        return f"{self.name}: {how} (pid {pid})"

    def _orphans(self, lab: Lab) -> tuple[int, list[psutil.Process]] | None:
        """Processes left in the group of a leader that has died (gunicorn workers, say)."""
        try:
            leader = int(self.pid_file(lab).read_text().strip())
        except (OSError, ValueError):
            return None
        members = [member for member in _group(leader) if any("proxmoxwp" in a for a in _cmdline(member))]
        return (leader, members) if members else None

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
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise LabError(f"the API address {lab.bind}: {exc.strerror}") from None
        family, _type, _proto, _name, address = infos[0]
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise LabError(f"{lab.bind} is already in use by another program") from None
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
        return "consumer started" in _tail(self.log_file(lab), log_offset, lines=10_000).lower()


API = ApiPart()
# In start order; `lab down` stops them in reverse order.
PARTS: list[Part] = [API, WorkerPart()]


# --- the commands ---


def _lab(bind: str | None = None) -> Lab:
    settings = load_settings()
    if bind is None:
        state = settings.data_dir / "lab" / "lab.json"
        try:
            bind = json.loads(state.read_text())["bind"]
        except (OSError, ValueError, KeyError, TypeError):
            bind = os.environ.get("PROXMOXWP_LAB_BIND") or DEFAULT_BIND
    return Lab(settings, str(bind))


@click.group()
def lab() -> None:
    """The local lab: the API and a worker on this machine (`up`, `down`, `status`)."""


@lab.command()
@click.option(
    "--bind",
    envvar="PROXMOXWP_LAB_BIND",
    default=DEFAULT_BIND,
    show_default=True,
    help="Address and port of the lab's API (also PROXMOXWP_LAB_BIND).",
)
def up(bind: str) -> None:
    """Migrate the database and start every part that is not running; wait until the API answers."""
    from api.migrate import upgrade
    from api.runtime import Runtime

    parse_bind(bind)
    the_lab = _lab(bind)
    with the_lab.locked():
        recorded = _lab()
        if API.pid(recorded) is not None and recorded.bind != bind:
            click.echo(f"api: already running at {recorded.bind}; not moving it to {bind}")
            the_lab = recorded
        runtime = Runtime(the_lab.settings)
        runtime.check(need_schema=False)
        try:
            revision = upgrade(runtime.db)
        except Exception as exc:
            raise ConfigError(f"PROXMOXWP_DATABASE_URL: {str(getattr(exc, 'orig', exc)).splitlines()[0]}") from None
        finally:
            runtime.db.dispose()
        click.echo(f"database at revision {revision}")
        the_lab.ensure_token()
        the_lab.save_state()
        started: list[Part] = []
        try:
            for part in PARTS:
                was_running = part.pid(the_lab) is not None
                click.echo(part.start(the_lab))
                if not was_running:
                    started.append(part)
        except LabError:
            for part in reversed(started):
                part.stop(the_lab)
            raise
    click.echo(f"API at {the_lab.api_url}, token in {the_lab.token_file}")


@lab.command()
def down() -> None:
    """Stop every part that `lab up` started (SIGTERM, then SIGKILL after a bounded wait)."""
    the_lab = _lab()
    with the_lab.locked():
        failures = []
        for part in reversed(PARTS):
            try:
                click.echo(part.stop(the_lab))
            except LabError as exc:
                failures.append(exc.message)
    if failures:
        raise LabError("; ".join(failures))


@lab.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
def status(as_json: bool) -> None:
    """Each part with its state; exit status 0 when everything runs and answers, 3 otherwise."""
    the_lab = _lab()
    parts = [part.check(the_lab) for part in PARTS]
    everything_up = all(part.running and part.healthy for part in parts)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "up": everything_up,
                    "api_url": the_lab.api_url,
                    "token_file": str(the_lab.token_file),
                    "data_dir": str(the_lab.settings.data_dir),
                    "parts": [part.as_dict() for part in parts],
                }
            )
        )
    else:
        for part in parts:
            state = "running" if part.running else "stopped"
            pid = f" (pid {part.pid})" if part.pid else ""
            answers = part.extra.get("answers")
            extra = ""
            if part.running and answers is not None:
                extra = ", answers" if answers else ", NOT answering"
            click.echo(f"{part.name:<8} {state}{pid}{extra}")
        click.echo(f"API url    {the_lab.api_url}")
        click.echo(f"token file {the_lab.token_file}")
    sys.exit(0 if everything_up else 3)


if __name__ == "__main__":
    lab()
