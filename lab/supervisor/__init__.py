"""`proxmoxwp lab`: bring the local lab up, take it down, show what runs.

The lab is a list of parts (`parts.py`), started in order and stopped in reverse order. Each part is a
background process of its own session (so its whole process group can be stopped), with a pid file and a log
file in `<data dir>/lab/`; the API and the worker read their bearer tokens from `<data dir>/lab/api-token`.
The command reaches `proxmoxwp` through the `proxmoxwp.commands` entry point (pyproject.toml): the product
itself does not know the lab.
"""
