"""How many tasks a playbook has, for a job's progress the first time its kind runs.

Asking `ansible-playbook --list-tasks` costs a second or more of CPU beside the run itself, so the answer is
kept on disk (one small file per playbook and version of the tree) and survives a restart of the worker.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

from api.jobs.runner import ansible_environment, ansible_playbook, unsafe_yaml

LIST_TIMEOUT_SECONDS = 120


def count_tasks(
    project_dir: Path,
    playbook: Path,
    inventory: Path,
    variables: dict,
    cache_dir: Path,
    vault_password_file: Path | None = None,
) -> int | None:
    """How many tasks the playbook lists, or None when ansible-playbook cannot say.

    Everything it writes stays in `cache_dir` (private): the answer, and while it asks, a scratch folder. A
    worker that is killed meanwhile leaves at most that folder there, never one in /tmp."""
    key = hashlib.sha256(f"{playbook.resolve()}\0{_tree_mtime(project_dir, playbook)}".encode()).hexdigest()[:32]
    answer = cache_dir / f"tasks-{key}"
    try:
        return int(answer.read_text())
    except (OSError, ValueError):
        pass
    cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    count = _list_tasks(project_dir, playbook, inventory, variables, cache_dir, vault_password_file)
    if count is not None:
        # written aside and renamed, so that two workers asking at once never read half a number
        partial = cache_dir / f".{answer.name}.{os.getpid()}"
        partial.write_text(str(count))
        os.replace(partial, answer)
    return count


def _list_tasks(
    project_dir: Path,
    playbook: Path,
    inventory: Path,
    variables: dict,
    cache_dir: Path,
    vault_password_file: Path | None,
) -> int | None:
    with tempfile.TemporaryDirectory(prefix="list-", dir=cache_dir) as scratch:
        varfile = Path(scratch) / "vars.yml"
        varfile.write_text(unsafe_yaml(variables))
        env = dict(
            os.environ,
            **ansible_environment(project_dir, vault_password_file),
            ANSIBLE_HOME=scratch,
            ANSIBLE_LOCAL_TEMP=str(Path(scratch) / "tmp"),
            TMPDIR=scratch,
        )
        try:
            out = subprocess.run(
                [ansible_playbook(), "--list-tasks", "-i", str(inventory), "-e", f"@{varfile}", str(playbook)],
                cwd=project_dir,
                env=env,
                capture_output=True,
                text=True,
                timeout=LIST_TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
    if out.returncode != 0:
        return None
    return sum(1 for line in out.stdout.splitlines() if "TAGS: [" in line and not line.lstrip().startswith("play #"))


def _tree_mtime(project_dir: Path, playbook: Path) -> float:
    """The newest change among the playbook's folder and the roles and plugins it can use."""
    latest = 0.0
    for root in {playbook.parent, project_dir / "roles", project_dir / "plugins"}:
        if root.is_dir():
            for path in root.rglob("*"):
                if "__pycache__" in path.parts:
                    continue
                try:
                    latest = max(latest, path.stat().st_mtime)
                except FileNotFoundError:  # removed while we looked
                    continue
    return latest
