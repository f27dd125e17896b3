"""`proxmoxwp lab`: bring the local lab up, take it down, show what runs.

The lab is a list of parts, started in order and stopped in reverse order. Each part is a background
process of its own session (so its whole process group can be stopped), with a pid file and a log file in
`<data dir>/lab/`. For now the parts are the API (`proxmoxwp serve`) and one worker (`proxmoxwp worker`);
the API and the worker read their bearer tokens from `<data dir>/lab/api-token`.
"""

from api.lab.commands import lab

__all__ = ["lab"]
