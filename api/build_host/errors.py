"""The one exception type of the lab, so callers (the CLI, the test fixtures) catch exactly our failures."""

from __future__ import annotations


class BuildHostError(Exception):
    """Something the lab was asked to do could not be done; the message says what and why, on one line."""


class ContainerExistsError(BuildHostError):
    """`create` refuses to overwrite: a container of that name is already there."""


class ContainerNotFoundError(BuildHostError):
    """The named container does not exist under this lxcpath."""
