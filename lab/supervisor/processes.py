"""The lab's background processes: finding them, waiting for them, stopping them and whatever they started."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import psutil

from api.waiting import holds_within
from lab.supervisor.layout import LabError

POLL_INTERVAL = 0.2
LOG_TAIL_LINES = 30


def alive(process: psutil.Process) -> bool:
    """The process still runs: the same process (not a reused pid), and not a zombie."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def process_by_pid(pid: int) -> psutil.Process | None:
    try:
        process = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None
    return process if alive(process) else None


def group_members(pgid: int) -> list[psutil.Process]:
    """Live members of a process group."""
    members = []
    for process in psutil.process_iter():
        with contextlib.suppress(OSError, psutil.Error):
            if os.getpgid(process.pid) == pgid and alive(process):
                members.append(process)
    return members


def family_of(leader: int) -> list[psutil.Process]:
    """The leader, the members of its process group, and all its descendants (also in other sessions)."""
    family = {process.pid: process for process in group_members(leader)}
    if (process := process_by_pid(leader)) is not None:
        family[leader] = process
        with contextlib.suppress(psutil.Error):
            family.update({child.pid: child for child in process.children(recursive=True)})
    return list(family.values())


def cmdline_of(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def log_tail(path: Path, offset: int = 0, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(the log is empty)"


def terminate(leader: int, family: list[psutil.Process], timeout: float, name: str) -> str:
    """SIGTERM to `family`; after `timeout`, SIGKILL to what is left of it and of `leader`'s family then."""

    def signal_all(sig: int) -> None:
        for member in family:
            with contextlib.suppress(psutil.Error):
                member.send_signal(sig)

    def gone() -> bool:
        return not any(alive(member) for member in family)

    signal_all(signal.SIGTERM)
    if holds_within(gone, timeout):
        return "stopped"
    known = {member.pid for member in family}
    family += [member for member in family_of(leader) if member.pid not in known]
    signal_all(signal.SIGKILL)
    if not holds_within(gone, 10):
        left = sorted(member.pid for member in family if alive(member))
        raise LabError(f"{name}: processes {left} survived SIGKILL")
    return f"killed (still running {timeout:.0f}s after SIGTERM)"
