"""A double of `systemd-run --pipe --wait --quiet -p ...`, for machines where systemd is not PID 1 (this one, CI).

It runs the command as systemd runs a transient service (systemd.exec(5)): an environment that starts empty but
for systemd's PATH and the user's HOME, USER, LOGNAME and SHELL, then Environment=, then EnvironmentFile= over
it (a missing file fails the unit); the state directory made for the user (and given to them when it is not
theirs); the user's uid, gid and groups; the working directory, which must exist. It knows only the properties
below and refuses any other, so that a command written for it cannot lean on something it does not do.

Run as root: `python tests/systemd_run.py [OPTIONS] -p KEY=VALUE ... COMMAND ARGS...`; the exit status is the
command's, as with --wait.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import subprocess
import sys
from pathlib import Path

# what systemd gives a service before Environment= (systemd.exec(5), "Environment variables in spawned processes")
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
FLAGS = {"--pipe", "--wait", "--quiet"}
PROPERTIES = {"User", "EnvironmentFile", "Environment", "StateDirectory", "WorkingDirectory"}
STATE_ROOT = Path("/var/lib")
# systemd's exit codes for a unit that could not be set up (systemd.exec(5), "Process Exit Codes")
EXIT_CHDIR, EXIT_USER, EXIT_STATE_DIRECTORY = 200, 217, 238


def environment_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile= reads them (comments and blank lines skipped)."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";")):
            key, sep, value = line.partition("=")
            if not (sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key)):
                raise ValueError(f"not KEY=VALUE: {line!r}")
            values[key] = value
    return values


def parse(argv: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """The properties in order and the command; SystemExit(2) for what the double does not do."""
    properties, rest = [], list(argv)
    while rest and rest[0].startswith("-"):
        option = rest.pop(0)
        if option in FLAGS:
            continue
        if option == "-p" and rest:
            key, sep, value = rest.pop(0).partition("=")
            if sep and key in PROPERTIES:
                properties.append((key, value))
                continue
        raise SystemExit(f"systemd-run (test double): {option} {' '.join(rest[:1])} is not modelled")
    if not rest:
        raise SystemExit("systemd-run (test double): no command")
    return properties, rest


def fail(status: int, why: str) -> int:
    print(f"Job for run-u0.service failed: {why}", file=sys.stderr)
    return status


def main(argv: list[str]) -> int:
    properties, command = parse(argv)
    settings = dict(properties)
    account = pwd.getpwnam(settings.get("User", "root"))
    environment = {
        "PATH": SYSTEMD_PATH,
        "HOME": account.pw_dir,
        "USER": account.pw_name,
        "LOGNAME": account.pw_name,
        "SHELL": account.pw_shell,
    }
    for key, value in properties:
        if key == "Environment":
            environment.update(item.split("=", 1) for item in shlex.split(value))
    if "EnvironmentFile" in settings:
        try:
            environment.update(environment_file(Path(settings["EnvironmentFile"]).read_text()))
        except OSError as exc:
            return fail(EXIT_USER, f"Failed to load environment files: {exc.strerror}")
    if "StateDirectory" in settings:
        state = STATE_ROOT / settings["StateDirectory"]
        try:
            state.mkdir(mode=0o755, exist_ok=True)
            if (state.stat().st_uid, state.stat().st_gid) != (account.pw_uid, account.pw_gid):
                for path in [state, *state.rglob("*")]:
                    os.chown(path, account.pw_uid, account.pw_gid, follow_symlinks=False)
        except OSError as exc:
            return fail(EXIT_STATE_DIRECTORY, f"Failed to set up the state directory: {exc}")
        environment["STATE_DIRECTORY"] = str(state)
    directory = settings.get("WorkingDirectory", account.pw_dir)
    if not Path(directory).is_dir():
        return fail(EXIT_CHDIR, f"Changing to the requested working directory failed: {directory}")
    groups = os.getgrouplist(account.pw_name, account.pw_gid)
    done = subprocess.run(
        command, env=environment, cwd=directory, user=account.pw_uid, group=account.pw_gid, extra_groups=groups,
        check=False,
    )  # fmt: skip
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
