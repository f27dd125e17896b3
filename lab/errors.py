"""The lab's own failures: its stand-ins refused or could not do something.

They extend the build host's error (api/build_host/errors.py), whose containers, bridges and rootfs the lab
runs on, so a caller that catches BuildHostError catches a failure from either layer.
"""

from __future__ import annotations

from api.build_host.errors import BuildHostError


class LabError(BuildHostError):
    """Something the lab was asked to do could not be done; the message says what and why, on one line."""
