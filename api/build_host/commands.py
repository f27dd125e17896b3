"""Running the host's tools (lxc-*, ip, nft, tar, debootstrap) as argument lists, never through a shell.

Every call has a timeout, and every failure becomes a BuildHostError naming the command and the last lines it
printed, so a caller sees why without digging in logs.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Sequence

from api.build_host.errors import BuildHostError

DEFAULT_TIMEOUT = 60.0
ERROR_TAIL_LINES = 3

# What to install when a tool is missing; the names are Debian packages (scripts/install.sh installs them).
PACKAGES = {
    "debootstrap": "debootstrap",
    "ip": "iproute2",
    "nft": "nftables",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "tar": "tar",
    "zstd": "zstd",
}


def run(
    argv: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    stdin: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` with `stdin` as its input and capture its output as text.

    BuildHostError when the program is missing, runs past `timeout` seconds, or (with `check`) exits non-zero.
    """
    require(argv[0])
    try:
        result = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BuildHostError(f"`{shlex.join(argv)}` did not finish within {timeout:g}s") from exc
    if check and result.returncode != 0:
        output = tail(result.stderr or result.stdout)
        raise BuildHostError(f"`{shlex.join(argv)}` failed (exit {result.returncode}): {output}")
    return result


def require(program: str) -> None:
    """BuildHostError naming the Debian package when `program` is not installed."""
    if shutil.which(program) is None:
        package = PACKAGES.get(program, "lxc" if program.startswith("lxc-") else program)
        raise BuildHostError(f"`{program}` is not installed (Debian package {package})")


def tail(text: str, lines: int = ERROR_TAIL_LINES) -> str:
    """The last non-empty lines of `text`, joined on one line (errors stay one line for the CLI)."""
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(kept) or "(no output)"
