"""A command run in a mount namespace of its own, without holding the lab's disks.

`unshare --mount` copies every mount of the host into the new namespace, the lab containers' root disks among them
(ext4 on loop devices, api.build_host.disks). While a copy lives, the host's unmount does not let go of the
device, so a disk grown offline by another test would wait for this command to end. On a host whose root mount is
shared, `--propagation slave` would carry the host's unmounts in; on a private one (as in a CI container) it does
not, so the copies of loop mounts are taken out right after the namespace is made, before the command runs.
"""

from __future__ import annotations

# The command's own argv follows this prefix; $0 of the inner bash is only a name for error messages.
DROP_LOOP_MOUNTS = (
    "findmnt --list --noheadings --output TARGET,SOURCE | while read -r target source; do "
    '[[ $source == /dev/loop* ]] && umount --lazy -- "$target"; done; exec "$@"'
)


def in_private_mounts(*argv: str) -> list[str]:
    """`argv` in a private mount namespace that holds none of the host's loop-device mounts."""
    return ["unshare", "--mount", "--propagation", "private", "bash", "-c", DROP_LOOP_MOUNTS, "private-mounts", *argv]
