"""ProjectPve: fakepve's FakePve with the rules of the infrastructure ProxmoxWP runs on (docs/real-systems.md).

What it adds, each in its own module:
- storage_rules: the `drbd` (DRBD/LINSTOR) storage type and per-storage capabilities (latest-only rollback,
  rollback needs an unused volume, no templates, no linked clones);
- ha: stateful HA resources and an HA manager converging guests in the background;
- faults: fail_task, fail_http, hang, refuse_connections, node_offline, take_ids_after_nextid,
  fail_create_leaving_container, clear_faults;
- reference: a second parameter check against the PVE API the project targets;
and here: the project's API token, the default storages with a Debian template, and a parsed log of requests.

Everything else (containers, tasks, locks, permissions, fakepve's own schema checks and error wording) is
fakepve's. Routes are fakepve's stateful routes, so its schema checks run on the HA routes too.
"""

from __future__ import annotations

import json
import secrets
import urllib.parse
import uuid
import warnings
from typing import NamedTuple

from fakepve import FakePve
from fakepve import schema as pve_schema
from fakepve.model import PveError
from fakepve.server import SECRET_KEYS, collect, redact

from . import reference
from .faults import Faults
from .ha import HaApi
from .storage_rules import StorageRules, drbd_storage

TOKEN_ID = "proxmoxwp@pve!ansible"  # noqa: S105 - the token's name; its secret is made per instance
TEMPLATE = "debian-12-standard_12.7-1_amd64.tar.zst"
TEMPLATE_VOLID = f"local:vztmpl/{TEMPLATE}"
DRBD = "drbd1"


class Sent(NamedTuple):
    """One request as the fake received it: params are the query string and the form or JSON body together,
    secrets (password, ...) shown as ***."""

    method: str
    path: str
    params: dict


class ProjectPve(Faults, HaApi, StorageRules, FakePve):
    """A FakePve with drbd1 (DRBD), local (dir, holding the Debian template) and local-lvm (lvmthin, fakepve's),
    stateful HA with a manager, fault helpers, reference-schema checks, and the project's API token.

    Serve it with lab.pve.serving.ServedPve (or the `pve` fixture of tests/pve/plugin.py); time_scale stays
    fakepve's (0 there).
    """

    def __init__(self, user="root@pam", password="secret", host="127.0.0.1", port=0, reference_path=None):  # noqa: S107
        super().__init__(user, password, host, port)
        self.token_id = TOKEN_ID
        self.token_secret = str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))  # PVE's secrets are UUIDs
        self.apitokens[self.token_id] = self.token_secret
        self.storages[DRBD] = drbd_storage()
        self.store_file("local", TEMPLATE, 126 * 1024**2, content="vztmpl")
        # Requests as parsed params, parallel to fakepve's raw pve.requests (method, path, body).
        self.sent: list[Sent] = []
        self.reference = reference.load(reference_path)
        if self.reference is None:
            warnings.warn(
                f"PVE reference schema not found (set ${reference.ENV}): only fakepve's own schema checks run",
                stacklevel=2,
            )

    # ------------------------------------------------------------------------------------------ lifecycle

    async def start(self, certfile, keyfile):
        await super().start(certfile, keyfile)
        await self.ha_start_manager()

    async def stop(self):
        await self.ha_stop_manager()
        self._release_hangs()
        await super().stop()

    async def stop_now(self, ct) -> None:
        """A hard stop of the CT, as PVE's vm_stop without a timeout: rollback and HA's 'ignored' stop use it (LabPve
        kills the real container here)."""
        ct.status = "stopped"
        ct.pid = None

    # ------------------------------------------------------------------------------------ request checks

    async def answer(self, request, match, params, user, call=None):
        """fakepve's checks (schema, permissions) and answer, after the reference's parameter check.

        Covers every route fakepve resolves through the schema (the generic ones, containers, storage, pools,
        firewall, HA); fakepve's hand-written qemu status/config routes and the task routes keep only fakepve's
        own checks. Both checks' messages are merged into one 400, as PVE lists every bad parameter.
        """
        info = match.methods.get(request.method) if match is not None else None
        if info is not None and self.reference is not None:
            declared = self.reference.declared(request.method, match.template)
            if declared is not None:
                spec = info.get("parameters") or {}
                values = dict(params)
                values.update((k, v) for k, v in match.params.items() if k in declared)
                errors = self.reference.check(
                    request.method, match.template, values, spec.get("additionalProperties", 1)
                )
                if errors:
                    own = dict(params)
                    own.update((k, v) for k, v in match.params.items() if k in spec.get("properties", {}))
                    _, own_errors = pve_schema.validate(spec, own)
                    raise PveError(400, "Parameter verification failed.", dict(own_errors, **errors))
        return await super().answer(request, match, params, user, call)

    # ---------------------------------------------------------------------------------------- request log

    def _record(self, request, body):
        super()._record(request, body)
        params = {k: ("***" if k in SECRET_KEYS else v) for k, v in collect(request.query.items()).items()}
        params.update(self._body_params(redact(body, request.content_type), request.content_type))
        self.sent.append(Sent(request.method, request.path, params))
        del self.sent[: max(0, len(self.sent) - self.max_requests)]

    @staticmethod
    def _body_params(body: bytes, content_type: str) -> dict:
        if not body or content_type == "multipart/form-data":
            return {}
        try:
            if content_type == "application/json":
                data = json.loads(body)
                return data if isinstance(data, dict) else {}
            return collect(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
        except (ValueError, UnicodeDecodeError):
            return {}

    def requests_sent(self, method: str | None = None, path_suffix: str = "") -> list[Sent]:
        """The requests received so far (oldest first), optionally only those of a method whose path ends so."""
        return [s for s in self.sent if (method is None or s.method == method) and s.path.endswith(path_suffix)]
