"""Running one playbook with ansible-runner: private data dir, !unsafe extra vars, events, stats, cancel."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import ansible_runner
import yaml

from api.db import Database
from api.jobs import launch_playbook
from api.jobs.leftovers import terminate_run_processes
from api.jobs.lock_broker import SOCKET_VARIABLE, LockBroker
from api.jobs.secrets import scrub

if TYPE_CHECKING:
    from api.config import Settings

# runner events that end one task on one host
TASK_RESULTS = {"runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable"}
FAILURES = {"runner_on_failed", "runner_on_unreachable", "runner_item_on_failed"}
KEPT_RESULT_KEYS = (
    "msg",
    "censored",
    "rc",
    "stderr",
    "stdout",
    "changed",
    "failed",
    "skipped",
    "unreachable",
)
TEXT_LIMIT = 2000
VAR_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
# Environment variables whose values are secrets by their names: the playbooks may need them (the modules'
# credentials), ansible-runner's command file must not hold them.
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSW|API_KEY|PRIVATE|CREDENTIAL", re.IGNORECASE)
# The API's own secrets, which no playbook needs: not handed over at all.
API_ONLY = (
    "PROXMOXWP_SECRET_KEY",
    "PROXMOXWP_DATABASE_URL",
    "PROXMOXWP_QUEUE_URL",
    "PROXMOXWP_API_TOKENS",
    "PROXMOXWP_FAILURE_WEBHOOK_URL",
    "PROXMOXWP_FAILURE_WEBHOOK_SECRET",
)


class _UnsafeDumper(yaml.SafeDumper):
    """Dumps every string value as `!unsafe`, so Ansible never templates what a customer typed."""


def _unsafe_string(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    return dumper.represent_scalar("!unsafe", value, style='"')


def _plain_keys(dumper: yaml.SafeDumper, value: dict) -> yaml.Node:
    pairs = []
    for key, item in value.items():
        if not isinstance(key, str) or not VAR_NAME.match(key):
            raise ValueError(f"extra var name {key!r} is not a plain identifier")
        pairs.append((yaml.ScalarNode("tag:yaml.org,2002:str", key), dumper.represent_data(item)))
    return yaml.MappingNode("tag:yaml.org,2002:map", pairs)


_UnsafeDumper.add_representer(str, _unsafe_string)
_UnsafeDumper.add_representer(dict, _plain_keys)


def unsafe_yaml(variables: dict) -> str:
    return yaml.dump(variables, Dumper=_UnsafeDumper, default_flow_style=False, allow_unicode=True, width=10**6)


def ansible_playbook() -> str:
    """The ansible-playbook beside this Python (a virtualenv need not be on PATH), else the one on PATH."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    return str(beside) if beside.exists() else shutil.which("ansible-playbook") or "ansible-playbook"


def split_environment(environment: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The environment as ansible-runner may see it (secret values blanked: it copies the worker's own
    environment, so they are overridden rather than left out) and the secrets the launcher puts back."""
    hidden = {
        name: value for name, value in environment.items() if value and (name in API_ONLY or SECRET_NAME.search(name))
    }
    shown = {**environment, **dict.fromkeys(hidden, "")}
    return shown, {name: value for name, value in hidden.items() if name not in API_ONLY}


def ansible_environment(project_dir: Path, vault_password_file: Path | None) -> dict[str, str]:
    """What every ansible-playbook the product starts is given: the project's configuration and, when the
    inventory holds vault-encrypted values, the path of the password file (the password never leaves it)."""
    env = {"ANSIBLE_CONFIG": str(project_dir / "ansible.cfg")}
    if vault_password_file is not None:
        env["ANSIBLE_VAULT_PASSWORD_FILE"] = str(vault_password_file)
    return env


@dataclass
class RunResult:
    status: str  # successful, failed, timeout, canceled, error
    rc: int | None
    stats: dict = field(default_factory=dict)
    failed_task: str | None = None
    failed_host: str | None = None
    message: str | None = None
    tasks_done: int = 0
    # Tasks that reported a change, on every host: the stats' `changed` counts plus the failed tasks that said they
    # changed something (ansible counts no change for a task that failed). None without stats (the run was killed
    # or never played): what it changed is unknown.
    changed: int | None = None


def _truncate(text: object) -> object:
    if isinstance(text, str) and len(text) > TEXT_LIMIT:
        return text[:TEXT_LIMIT] + "…"
    return text


def summarise_event(event: dict) -> dict:
    """The part of a runner event worth keeping: names, outcome, message; never module arguments."""
    data = event.get("event_data") or {}
    res = data.get("res") if isinstance(data.get("res"), dict) else {}
    summary = {key: _truncate(res[key]) for key in KEPT_RESULT_KEYS if key in res}
    if data.get("ignore_errors"):
        summary["ignore_errors"] = True
    if event.get("event") == "playbook_on_stats":
        summary["artifact_data"] = data.get("artifact_data") or {}
        for key in ("ok", "changed", "failures", "dark", "skipped"):
            summary[key] = data.get(key) or {}
    if data.get("duration") is not None:
        summary["duration"] = data["duration"]
        # the module that ran (never its arguments): which part of a job's time the cluster or the edge took
        if data.get("task_action"):
            summary["action"] = data["task_action"]
        # when it began on its host: the job's timeline, and how long the job took to reach its first task
        if data.get("start"):
            summary["start"] = data["start"]
    return summary


def failure_text(summary: dict) -> str:
    for key in ("msg", "stderr", "stdout", "censored"):
        value = summary.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return "the task failed without a message"


# private data dirs of the runs going on in this process, so that a worker that stops can end them
ACTIVE_RUNS: set[str] = set()


def end_active_runs() -> None:
    for marker in list(ACTIVE_RUNS):
        terminate_run_processes(marker)


class PlaybookRun:
    """One run of one playbook. Callbacks get scrubbed event summaries; secrets never leave this object."""

    def __init__(
        self,
        *,
        project_dir: Path,
        playbook: Path,
        inventory: Path,
        runs_dir: Path,
        variables: dict,
        secrets: dict[str, str],
        timeout: int,
        ident: str,
        on_event: Callable[[dict], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
        vault_password_file: Path | None = None,
        locks_db: Database | None = None,
    ) -> None:
        self.project_dir, self.playbook, self.inventory = project_dir, playbook, inventory
        self.vault_password_file = vault_password_file
        # where the run's modules take the locks shared by the workers (lock_broker.py); None: no broker
        self.locks_db = locks_db
        self.runs_dir, self.variables, self.secrets = runs_dir, variables, secrets
        self.timeout, self.ident = timeout, ident
        self.on_event = on_event or (lambda _event: None)
        self.cancelled = cancelled or (lambda: False)
        self.secret_values = sorted((v for v in secrets.values() if v), key=len, reverse=True)
        self._task_uuids: set[str] = set()
        self._failed_item_task: str | None = None
        self._failed_changes = 0
        self._lock = threading.Lock()
        self.result = RunResult(status="error", rc=None)

    def _failed(self, name: str, task_uuid: str | None, record: dict, summary: dict) -> None:
        # The task where the run broke is the first failure. The message is the last one's: a rescue that undoes
        # the run fails again with the reason and what it could not undo. A failed loop's own message is only
        # "One or more items failed", so its failed item's message is kept.
        if self.result.failed_task is None:
            self.result.failed_task, self.result.failed_host = record["task"], record["host"]
        if name == "runner_on_failed" and task_uuid is not None and task_uuid == self._failed_item_task:
            return
        self._failed_item_task = task_uuid if name == "runner_item_on_failed" else None
        self.result.message = scrub(failure_text(summary), self.secret_values)

    def _handle(self, event: dict) -> bool:
        name = event.get("event", "")
        data = event.get("event_data") or {}
        summary = scrub(summarise_event(event), self.secret_values)
        record = {
            "event": name,
            "task": scrub(data.get("task"), self.secret_values),
            "host": data.get("host"),
            "data": summary,
        }
        with self._lock:
            if name in TASK_RESULTS and data.get("task_uuid"):
                self._task_uuids.add(data["task_uuid"])
                record["tasks_done"] = len(self._task_uuids)
            if name in FAILURES and not summary.get("ignore_errors"):
                self._failed(name, data.get("task_uuid"), record, summary)
                self._failed_changes += bool(summary.get("changed"))
            if name == "playbook_on_stats":
                self.result.stats = summary.get("artifact_data") or {}
                changed = summary.get("changed") or {}
                self.result.changed = sum(changed.values()) + self._failed_changes
        self.on_event(record)
        return False  # nothing written to the artifacts directory

    def run(self) -> RunResult:
        self.runs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        private = Path(tempfile.mkdtemp(prefix=f"{self.ident}-", dir=self.runs_dir))
        ACTIVE_RUNS.add(str(private))
        broker = LockBroker(self.locks_db, private) if self.locks_db is not None else None
        try:
            (private / "env").mkdir(mode=0o700)
            extravars = private / "env" / "extravars"
            fd = os.open(extravars, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(unsafe_yaml({**self.variables, **self.secrets}))
            runner = ansible_runner.run(
                private_data_dir=str(private),
                project_dir=str(self.project_dir),
                # ansible-playbook is started through the launcher, which hands it the secrets of the environment
                binary=sys.executable,
                cmdline=shlex.join([launch_playbook.__file__, str(self.playbook)]),
                inventory=str(self.inventory),
                ident=self.ident,
                envvars=self._environment(private, broker.start() if broker else None),
                suppress_env_files=True,
                event_handler=self._handle,
                cancel_callback=self.cancelled,
                timeout=self.timeout,
                quiet=True,
                settings={"suppress_ansible_output": True, "pexpect_use_poll": True},
            )
            self.result.status = runner.status
            self.result.rc = runner.rc
            if runner.status == "failed" and self.result.failed_task is None:
                self.result.message = self._output_tail(runner)
        finally:
            terminate_run_processes(str(private))
            if broker is not None:
                broker.stop()  # after the processes: no module holds a lock any more
            ACTIVE_RUNS.discard(str(private))
            shutil.rmtree(private, ignore_errors=True)
        self.result.tasks_done = len(self._task_uuids)
        if self.result.status == "timeout":
            self.result.message = f"The playbook did not finish within {self.timeout} seconds."
        elif self.result.status == "canceled":
            self.result.message = "The job was cancelled."
        elif self.result.status != "successful" and not self.result.message:
            self.result.message = f"ansible-playbook ended with status {self.result.status} (rc {self.result.rc})."
        return self.result

    def _output_tail(self, runner) -> str | None:
        """When no task failed (a syntax error, a missing file), ansible's own last words say why."""
        try:
            lines = [line.strip() for line in runner.stdout.read().splitlines() if line.strip()]
        except (OSError, AttributeError):
            return None
        errors = [line for line in lines if line.startswith(("ERROR", "[ERROR]"))] or lines[-3:]
        text = " ".join(errors)[-TEXT_LIMIT:]
        return scrub(text, self.secret_values) or None

    def _environment(self, private: Path, lock_socket: Path | None = None) -> dict[str, str]:
        # Modules run on the controller unpack themselves into TMPDIR; one killed mid-way (a timeout, a cancel)
        # leaves its payload there, so TMPDIR is the run's own directory, removed with it.
        scratch = private / "scratch"
        scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
        shown, secret = split_environment(
            {
                **os.environ,
                "TMPDIR": str(scratch),
                # what ansible-playbook starts from PATH (ansible-galaxy, ansible-vault) is the one beside it
                "PATH": os.pathsep.join([str(Path(ansible_playbook()).parent), os.environ.get("PATH", "")]),
                **ansible_environment(self.project_dir, self.vault_password_file),
                "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_RETRY_FILES_ENABLED": "0",
                "ANSIBLE_LOCAL_TEMP": str(private / "tmp"),
                "ANSIBLE_HOME": str(private / "ansible-home"),
                "PYTHONUNBUFFERED": "1",
                launch_playbook.PLAYBOOK_COMMAND: ansible_playbook(),
                # without a broker, none inherited from the worker's own environment either
                SOCKET_VARIABLE: str(lock_socket) if lock_socket else "",
            }
        )
        if secret:
            secrets_file = private / "env" / "secrets.json"
            fd = os.open(secrets_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(secret, handle)
            shown[launch_playbook.SECRETS_FILE] = str(secrets_file)
        return shown


def operator_run(settings: Settings, playbook: str, timeout: int, ident: str) -> RunResult:
    """A playbook an operator's command runs (`doctor`, `image build`) as a job's is run: the configured inventory
    and its vault password file, no variables, the run's files under <data dir>/runs."""
    return PlaybookRun(
        project_dir=settings.project_dir,
        playbook=settings.playbook_dir / playbook,
        inventory=settings.inventory,
        runs_dir=settings.data_dir / "runs",
        variables={},
        secrets={},
        timeout=timeout,
        ident=ident,
        vault_password_file=settings.vault_password_file,
    ).run()
