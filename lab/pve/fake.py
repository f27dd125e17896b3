"""ProjectPve: fakepve's FakePve with the rules of the infrastructure ProxmoxWP runs on (docs/real-systems.md).

What it adds, each in its own module:
- capacity: nodes with their own capacity, their use and their storages' in /nodes and /cluster/resources as PVE
  shows them (guests count against their node), HA node maintenance and /cluster/ha/status/manager_status;
- storage_rules: the `drbd` (DRBD/LINSTOR) storage type and per-storage capabilities (latest-only rollback,
  rollback needs an unused volume, no templates, no linked clones);
- ha: stateful HA resources and an HA manager converging guests in the background;
- failover: a node that fails (fail_node, restore_node) and the HA manager's fence and recovery of its guests;
- faults: fail_task, fail_http, hang, refuse_connections, node_offline, take_ids_after_nextid,
  fail_create_leaving_container, clear_faults;
- reference: a second parameter check against the PVE API the project targets;
- uploads: POST .../storage/{storage}/upload streamed, with PVE's checks and checksum verification;
- firewall: a guest's firewall config removed with the guest (the firewall API itself is fakepve's);
- permissions: PVE's permission checks against that reference, for an API token with privilege separation that
  holds exactly the collection's role (plugins/module_utils/proxmoxwp_privileges.py) on `/`, as the production
  example grants it; GET /access/permissions answers its effective privileges;
and here: the project's API token, the default storages with a Debian template, and a parsed log of requests.

Everything else (containers, tasks, locks, the permission checks inside methods, fakepve's own schema checks and
error wording) is fakepve's. Routes are fakepve's stateful routes, so its schema checks run on the HA routes too.
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
from .capacity import Capacity
from .failover import Failover
from .faults import Faults
from .firewall import GuestFirewall
from .ha import HaApi
from .permissions import Access, check_request, product_privileges
from .storage_rules import StorageRules, drbd_storage
from .uploads import Uploads

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


class ProjectPve(Failover, Capacity, Faults, GuestFirewall, HaApi, StorageRules, Uploads, FakePve):
    """A FakePve with drbd1 (DRBD), local (dir, holding the Debian template) and local-lvm (lvmthin, fakepve's),
    stateful HA with a manager, fault helpers, reference-schema checks, and the project's API token.

    Serve it with lab.pve.serving.ServedPve (or the `pve` fixture of tests/pve/plugin.py); time_scale stays
    fakepve's (0 there).
    """

    def __init__(
        self,
        user="root@pam",
        password="secret",  # noqa: S107
        host="127.0.0.1",
        port=0,
        reference_path=None,
        permissions=True,
    ):
        super().__init__(user, password, host, port)
        self.token_id = TOKEN_ID
        self.token_secret = str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))  # PVE's secrets are UUIDs
        self.apitokens[self.token_id] = self.token_secret
        # None: no permission checks at all (fakepve's default, and permissions=False).
        self.access: Access | None = None
        self.role: str | None = None
        if permissions:
            self._grant_the_role()
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

    # ---------------------------------------------------------------------------------------- permissions

    def _grant_the_role(self) -> None:
        """The collection's role, granted on / to the token's user and to the token (privilege separation), as
        `pveum_commands()` of the list make it on a real cluster."""
        listed = product_privileges()
        self.role = listed.ROLE
        self.access = Access(pools=self._pool_members)
        self.access.roles[self.role] = set(listed.ROLE_PRIVILEGES)
        self.access.add_token(self.token_id, privsep=True)
        user = self.token_id.split("!", 1)[0]
        self.access.grant("/", user, self.role)
        self.access.grant("/", self.token_id, self.role)
        # fakepve runs the checks inside its methods only once an ACL exists; allowed() below answers them.
        self.acl = {}

    def take_privilege(self, privilege: str) -> None:
        """Remove a privilege from the role (`pveum role modify <role> --privs <the others>`)."""
        if self.access is None or self.role is None:
            raise RuntimeError("this fake grants no role: ProjectPve(permissions=True) does")
        self.access.roles[self.role].discard(privilege)

    def _pool_members(self) -> dict:
        return {
            name: {"vms": set(vmids), "storage": set(self.pool_info.get(name, {}).get("storage", ()))}
            for name, vmids in self.pools.items()
        }

    def allowed(self, user, path, priv):
        """fakepve's question (by its in-method checks) answered by PVE's rules: roles along the path, tokens."""
        if self.access is None:
            return super().allowed(user, path, priv)
        return priv in self.access.privileges(user, path)

    def grant(self, user, path, *privs):
        """fakepve's grant: the privileges, as a role of their own, on path (propagated) for user or token."""
        if self.access is None:
            self.access = Access(pools=self._pool_members)
            self.acl = {}
        role = f"fakepve-grant-{len(self.access.roles)}"
        self.access.roles[role] = set(privs)
        if "!" in user and user not in self.access.tokens:
            self.access.add_token(user, privsep=False)
        self.access.users.add(user.split("!", 1)[0])
        self.access.grant(path, user, role)

    async def _permissions(self, v, user):
        """GET /access/permissions as PVE answers it: the token's (or user's) effective privileges per path, each
        with its propagate flag; someone else's only with Sys.Audit on /access."""
        if self.access is None:
            return await super()._permissions(v, user)
        userid = v.get("userid") or user
        if not (userid == user or userid.split("!", 1)[0] == user):
            self.access.check(user, "/access", ["Sys.Audit"])
        if v.get("path"):
            held = self.access.privileges(userid, v["path"])
            return {v["path"]: {p: int(flag) for p, flag in sorted(held.items())}}
        return self.access.effective(userid)

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
        """fakepve's checks (schema, permissions) and answer, after the reference's permission and parameter checks.

        Covers every route fakepve resolves through the schema (the generic ones, containers, storage, pools,
        firewall, HA); fakepve's hand-written qemu status/config routes and the task routes keep only fakepve's
        own checks. Both checks' messages are merged into one 400, as PVE lists every bad parameter.
        """
        info = match.methods.get(request.method) if match is not None else None
        if info is not None and self.access is not None:
            # PVE checks permissions before the parameters, on the parameters as sent.
            rules = info.get("permissions")
            if self.reference is not None and self.reference.declared(request.method, match.template) is not None:
                rules = self.reference.permissions.get((request.method, match.template))
            check_request(self.access, rules, request.method, match.template, user, dict(params, **match.params))
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
