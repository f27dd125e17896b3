"""Ending the processes a playbook run leaves behind.

ansible-runner kills the process group of `ansible-playbook` on cancel and timeout, but ansible-core's
worker processes call setsid(), so the task that was running goes on in a session of its own (and so do the
modules it started). Every process of a run carries the run's private data dir in its command line (forks
inherit it), which is how they are found here, with all their descendants.
"""

from __future__ import annotations

import psutil


def terminate_run_processes(marker: str, grace: float = 5.0, rounds: int = 5) -> int:
    """Stop every process whose command line contains `marker`, and their children; return how many.

    Looked for again after each round: ansible-playbook may fork a worker for its next task while the round ends
    it, and that child (with the marker in its command line) was not there when the round looked."""
    stopped = 0
    for _ in range(rounds):
        found = _processes_of(marker)
        if not found:
            break
        _terminate(list(found.values()), grace)
        stopped += len(found)
    return stopped


def _processes_of(marker: str) -> dict[int, psutil.Process]:
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in proc.info["cmdline"] or ()):
                found[proc.pid] = proc
                for child in proc.children(recursive=True):
                    found[child.pid] = child
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _terminate(processes: list[psutil.Process], grace: float) -> None:
    alive = []
    for proc in processes:
        try:
            proc.terminate()
            alive.append(proc)
        except psutil.NoSuchProcess:
            continue
    _, still_alive = psutil.wait_procs(alive, timeout=grace)
    for proc in still_alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(still_alive, timeout=grace)
