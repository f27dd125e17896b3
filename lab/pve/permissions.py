"""Proxmox VE's permission checks, for the lab's Proxmox VE: who holds which privilege on which path, and whether a
request may be carried out.

PVE (pve-access-control, PVE::RPCEnvironment and PVE::AccessControl) decides in three places, and so does this:

- the method's `permissions` in the API schema (here the PVE API reference, lab/reference): `check_api2` runs its
  machine-readable `check` (`perm`, `and`, `or`, `userid-param`, `userid-group`, `perm-modify`) as
  exec_api2_perm_check does, with its quirks: an unknown `{param}` in a path becomes `-`, a path with other
  characters than letters, digits and `./_-` is no path (no privileges), `or` and `require_param` refuse without
  a reason, an `and` inside an `or` still raises;
- for the methods whose permissions the schema gives only in words (`user: all` and a description), what their
  code checks, by hand: TEXT_ONLY (container create). The checks inside other methods' code (each option of a
  config change, the bridge of a network device, the storage of a clone or a resize, task ownership) are
  fakepve's, which asks ProjectPve.allowed() and so this model;
- `Access.privileges`: PVE's permissions(): roles along the path (a more specific ACL replaces what propagates
  from above; `propagate` 0 applies to that path only), roles of a pool on its members, and for an API token with
  privilege separation the intersection of what its user and the token hold.

A refusal is PVE's: HTTP 403 with the reason `Permission check failed (<path>, <privilege>)` (raise_perm_exc).
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from fakepve.lxc import parse_mount, split_props
from fakepve.model import PveError
from fakepve.shapes import PRIVILEGES

ROOT = "root@pam"
# The collection's list of what its modules need (plugins/module_utils): the lab's token holds exactly its role.
PRIVILEGES_FILE = Path(__file__).resolve().parents[2] / "plugins" / "module_utils" / "proxmoxwp_privileges.py"
# get_effective_permissions: the paths PVE always reports on, besides those of the ACL and the pools.
DEFAULT_PATHS = ("/", "/access", "/access/groups", "/nodes", "/pool", "/sdn", "/storage", "/vms")
NEW_DISK = re.compile(r"^([^:\s]+):(\d+(?:\.\d+)?)$")  # PVE::LXC's NEW_DISK_RE: "<storage>:<GiB>"


@functools.cache
def product_privileges() -> ModuleType:
    """plugins/module_utils/proxmoxwp_privileges.py, loaded from the checkout (it imports nothing of Ansible)."""
    spec = importlib.util.spec_from_file_location("proxmoxwp_privileges", PRIVILEGES_FILE)
    if spec is None or spec.loader is None or not PRIVILEGES_FILE.is_file():
        raise RuntimeError(f"the collection's list of privileges is missing: {PRIVILEGES_FILE}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def denied(what: str | None = None) -> PveError:
    """PVE's raise_perm_exc."""
    return PveError(403, f"Permission check failed ({what})" if what else "Permission check failed")


def template_replace(template: str, values: dict[str, Any]) -> str:
    """PVE::Tools::template_replace: `{name}` becomes the value, or `-` when it is missing or false."""
    return re.sub(r"\{([^}]+)\}", lambda m: str(values.get(m.group(1)) or "-"), template)


def normalize_path(path: str) -> str | None:
    """PVE::AccessControl::normalize_path: one slash at a time, none at the end; None for a path of other
    characters."""
    path = re.sub(r"/+", "/", path).rstrip("/") or "/"
    if not path.startswith("/"):
        path = "/" + path
    return path if re.fullmatch(r"[A-Za-z0-9./_-]+", path) else None


@dataclass
class Access:
    """user.cfg of the fake cluster: roles, ACL entries, users and API tokens, and the pools' members."""

    roles: dict[str, set[str]] = field(default_factory=lambda: {"Administrator": set(PRIVILEGES), "NoAccess": set()})
    # (path, user or token id, role, propagate)
    acl: list[tuple[str, str, str, bool]] = field(default_factory=list)
    users: set[str] = field(default_factory=set)
    # token id -> privilege separation
    tokens: dict[str, bool] = field(default_factory=dict)
    # name -> {"vms": {vmid}, "storage": {sid}}; a callable so that the model's pools are read when asked
    pools: Callable[[], dict[str, dict[str, set]]] = dict

    # ------------------------------------------------------------------------------------------ changes

    def add_token(self, token_id: str, privsep: bool = True) -> None:
        self.users.add(token_id.split("!", 1)[0])
        self.tokens[token_id] = privsep

    def grant(self, path: str, ugid: str, role: str, propagate: bool = True) -> None:
        """pveum acl modify PATH --roles ROLE --users/--tokens UGID [--propagate 0]."""
        if role not in self.roles:
            raise ValueError(f"role '{role}' does not exist")
        self.acl.append((normalize_path(path) or path, ugid, role, propagate))

    # ------------------------------------------------------------------------------------------- reading

    def _roles(self, ugid: str, path: str) -> dict[str, bool]:
        """PVE::AccessControl::roles for one user or token (no groups in the lab): role -> propagate."""
        roles: dict[str, bool] = {}
        for acl_path in sorted({p for p, *_ in self.acl}):
            final = acl_path == path
            if not (acl_path == "/" or final or path.startswith(acl_path + "/")):
                continue
            found = {r: prop for p, who, r, prop in self.acl if p == acl_path and who == ugid and (final or prop)}
            if found:
                roles = found  # a more specific ACL replaces what came from above
        return roles

    def _compiled(self, ugid: str, path: str) -> dict[str, bool]:
        """RPCEnvironment's compile_acl_path without the token intersection: privilege -> propagate."""
        roles = self._roles(ugid, path)
        for pool, members in self.pools().items():
            member = path in {f"/vms/{v}" for v in members.get("vms", ())} | {
                f"/storage/{s}" for s in members.get("storage", ())
            }
            if not member or "NoAccess" in roles:
                continue
            for role in self._roles(ugid, f"/pool/{pool}"):
                roles.setdefault(role, False)  # a pool's role never propagates
        privs: dict[str, bool] = {}
        for role, propagate in roles.items():
            for priv in self.roles.get(role, ()):
                privs[priv] = privs.get(priv, False) or propagate
        return privs

    def privileges(self, authid: str, path: str | None) -> dict[str, bool]:
        """RPCEnvironment::permissions: privilege -> propagate that authid (user or token) holds on path."""
        if authid == ROOT:
            return dict.fromkeys(self.roles["Administrator"], True)
        if path is None:
            return {}
        if "!" in authid:
            user = authid.split("!", 1)[0]
            if authid not in self.tokens:
                return {}
            held = self.privileges(user, path)
            if not self.tokens[authid]:
                return held
            own = self._compiled(authid, path)
            return {p: held[p] and own[p] for p in own if p in held}
        if authid not in self.users:
            return {}
        return self._compiled(authid, path)

    def effective(self, authid: str) -> dict[str, dict[str, int]]:
        """RPCEnvironment::get_effective_permissions, as GET /access/permissions answers it: path -> {priv: 0|1}."""
        paths = set(DEFAULT_PATHS) | {p for p, *_ in self.acl}
        for members in self.pools().values():
            paths |= {f"/vms/{v}" for v in members.get("vms", ())}
            paths |= {f"/storage/{s}" for s in members.get("storage", ())}
        answer = {}
        for path in sorted(paths):
            held = self.privileges(authid, path)
            if held:
                answer[path] = {p: int(v) for p, v in sorted(held.items())}
        return answer

    # ------------------------------------------------------------------------------------------ checking

    def check(self, authid: str, path: str | None, privs: list[str] | tuple[str, ...], noerr=False) -> bool:
        """RPCEnvironment::check: every privilege, or a refusal naming the first missing one."""
        held = self.privileges(authid, path)
        for priv in privs:
            if priv not in held:
                if noerr:
                    return False
                raise denied(f"{path or ''}, {priv}")
        return True

    def check_any(self, authid: str, path: str | None, privs, noerr=False) -> bool:
        held = self.privileges(authid, path)
        if any(p in held for p in privs):
            return True
        if noerr:
            return False
        raise denied(f"{path or ''}, {'|'.join(privs)}")

    def check_vm(self, authid: str, vmid: Any, pool: str | None, privs, noerr=False) -> bool:
        """RPCEnvironment::check_vm_perm: on the pool, else on the guest."""
        if pool and self.check(authid, f"/pool/{pool}", privs, noerr=True):
            return True
        return self.check(authid, f"/vms/{vmid}", privs, noerr)

    def _user_exists(self, userid: str | None, noerr: bool) -> bool:
        if userid in self.users or userid == ROOT:
            return True
        if noerr:
            return False
        raise PveError(500, f"no such user ('{userid}')")

    def run_check(self, check: list, authid: str, params: dict[str, Any], noerr=False) -> bool:
        """RPCEnvironment::exec_api2_perm_check of one `check` expression of the schema."""
        test, args = check[0], check[1:]
        if test == "and":
            for sub in args:
                self.run_check(sub, authid, params)  # PVE passes no noerr down: the first failure raises
            return True
        if test == "or":
            if any(self.run_check(sub, authid, params, noerr=True) for sub in args):
                return True
            if noerr:
                return False
            raise denied()
        if test == "perm":
            template, privs = args[0], args[1]
            options = dict(zip(args[2::2], args[3::2], strict=False))
            wanted = options.get("require_param")
            if wanted and params.get(wanted) is None:
                if noerr:
                    return False
                raise denied()
            path = normalize_path(template_replace(template, params))
            if options.get("any"):
                return self.check_any(authid, path, privs, noerr)
            return self.check(authid, path, privs, noerr)
        if test == "userid-param":
            userid = params.get("userid")
            if args[0] == "self":
                if not self._user_exists(userid, noerr):
                    return False
                if authid == userid:
                    return True
                if noerr:
                    return False
                raise denied()
            realm = str(userid or "").rpartition("@")[2]
            return self.check(authid, f"/access/realm/{realm}", ["Realm.AllocateUser"], noerr)
        if test == "userid-group":
            privs, options = args[0], dict(zip(args[1::2], args[2::2], strict=False))
            existing = options.get("groups_param") != "create"
            if existing and not self._user_exists(params.get("userid"), noerr):
                return False
            if self.check_any(authid, "/access/groups", privs, noerr=True):
                return True
            # The lab has no groups: nothing below /access/groups can allow it.
            if options.get("groups_param"):
                groups = [g for g in re.split(r"[,;\s]+", str(params.get("groups") or "")) if g]
                where = f"/access/groups/{groups[0]}" if groups else "/access/groups"
                raise denied(f"{where}, {'|'.join(privs)}")
            if existing:
                if noerr:
                    return False
                raise denied()
            return True
        if test == "perm-modify":
            path = normalize_path(template_replace(args[0], params))
            if path is None:
                return False
            extra = {"storage": "Datastore.Allocate", "vms": "VM.Allocate", "pool": "Pool.Allocate"}
            top = path.split("/")[1] if path.count("/") >= 2 and path.split("/")[2] else ""
            privs = ["Permissions.Modify", *([extra[top]] if top in extra else [])]
            return self.check_any(authid, path, privs, noerr)
        raise PveError(500, "unknown permission test")

    def check_api2(self, permissions: dict | None, authid: str | None, params: dict[str, Any]) -> None:
        """RPCEnvironment::check_api2_permissions: the schema's rule for a method, or a 403."""
        permissions = permissions or None
        if authid is None:
            if permissions and permissions.get("user") == "world":
                return
            raise denied("user != null")
        if authid == ROOT:
            return
        if permissions is None:
            raise denied("user != root@pam")
        if permissions.get("user") in ("all", "world"):
            return
        if permissions.get("check"):
            self.run_check(permissions["check"], authid, params)
            return
        raise denied()


# ------------------------------------------------------------------------ methods whose permissions are words


def _bridge_checks(access: Access, authid: str, net: str) -> None:
    """PVE::LXC::check_bridge_access (PVE 8): SDN.Use on the bridge's zone path, or on its VLAN when tagged."""
    props = split_props(net)[1]
    bridge, tag = props.get("bridge"), props.get("tag")
    if not bridge:
        return
    path = f"/sdn/zones/localnetwork/{bridge}"
    if tag:
        access.check(authid, f"{path}/{tag}", ["SDN.Use"])
    elif not props.get("trunks"):
        access.check(authid, path, ["SDN.Use"])


def modify_config_checks(access: Access, authid: str, vmid: Any, pool: str | None, new: dict, old: dict) -> None:
    """PVE::LXC::check_ct_modify_config_perm for the options of `new` (in a fixed order; PVE's is a hash's)."""
    for opt in sorted(new):
        if opt in ("cores", "cpuunits", "cpulimit"):
            access.check_vm(authid, vmid, pool, ["VM.Config.CPU"])
        elif opt == "rootfs" or re.fullmatch(r"mp\d+", opt):
            access.check_vm(authid, vmid, pool, ["VM.Config.Disk"])
            volume = parse_mount(str(new[opt])).get("volume", "")
            found = NEW_DISK.match(volume)
            if found:
                access.check(authid, f"/storage/{found.group(1)}", ["Datastore.AllocateSpace"])
        elif opt in ("memory", "swap"):
            access.check_vm(authid, vmid, pool, ["VM.Config.Memory"])
        elif re.fullmatch(r"net\d+", opt):
            access.check_vm(authid, vmid, pool, ["VM.Config.Network"])
            for config in (old, new):
                if config.get(opt):
                    _bridge_checks(access, authid, str(config[opt]))
        elif re.fullmatch(r"dev\d+", opt):
            raise denied("configuring device passthrough is only allowed for root@pam")
        elif opt in ("nameserver", "searchdomain", "hostname"):
            access.check_vm(authid, vmid, pool, ["VM.Config.Network"])
        elif opt == "features":
            # Only nesting may be set by others than root, and only on an unprivileged container.
            access.check_vm(authid, vmid, pool, ["VM.Allocate"])
        elif opt == "hookscript":
            raise denied("changing the hookscript is only allowed for root@pam")
        else:
            access.check_vm(authid, vmid, pool, ["VM.Config.Options"])


# Parameters of create that are not container options (create_vm extracts them before the option checks).
CREATE_ONLY = frozenset(
    {"node", "vmid", "ostemplate", "storage", "password", "ssh-public-keys", "restore", "force", "unique", "pool"}
    | {"start", "ha-managed", "ignore-unpack-errors", "unprivileged", "bwlimit"}
)


def _create(access: Access, authid: str, params: dict[str, Any]) -> None:
    """API2/LXC.pm create_vm: "You need 'VM.Allocate' permission on /vms/{vmid} or on the VM pool /pool/{pool}.
    ... You also need 'Datastore.AllocateSpace' permissions on the storage. For privileged containers,
    'Sys.Modify' permissions on '/' are required." -- in the order its code checks them."""
    vmid, pool = params.get("vmid"), params.get("pool")
    restore = str(params.get("restore", "0")) in ("1", "true")
    unprivileged = params.get("unprivileged")
    if not restore and str(unprivileged if unprivileged is not None else 1) in ("0", "false"):
        access.check(authid, "/", ["Sys.Modify"])
    if params.get("ha-managed") not in (None, 0, "0"):
        access.check(authid, "/", ["Sys.Console"])
    if not (
        access.check(authid, f"/vms/{vmid}", ["VM.Allocate"], noerr=True)
        or (pool and access.check(authid, f"/pool/{pool}", ["VM.Allocate"], noerr=True))
        or (restore and params.get("force") and access.check(authid, f"/vms/{vmid}", ["VM.Backup"], noerr=True))
    ):
        raise denied()  # PVE names neither path nor privilege here
    options = {k: v for k, v in params.items() if k not in CREATE_ONLY}
    modify_config_checks(access, authid, vmid, pool, options, {})
    template = str(params.get("ostemplate", ""))
    sid, colon, name = template.partition(":")
    if colon and name.split("/", 1)[0] in ("vztmpl", "iso", "import"):
        access.check_any(authid, f"/storage/{sid}", ["Datastore.AllocateSpace", "Datastore.Audit"])
    if "rootfs" not in options:
        access.check(authid, f"/storage/{params.get('storage') or 'local'}", ["Datastore.AllocateSpace"])


# (method, schema path) -> the checks its code makes; methods not here whose schema says only `user: all` are
# answered to anyone logged in, or checked in fakepve's own route (tasks: the owner, or Sys.Audit on the node;
# /cluster/resources: each guest listed only with VM.Audit on it) and in ProjectPve (GET /access/permissions).
TEXT_ONLY: dict[tuple[str, str], Callable[[Access, str, dict[str, Any]], None]] = {
    ("POST", "/nodes/{node}/lxc"): _create,
}


def check_request(
    access: Access, permissions: dict | None, method: str, template: str, authid: str | None, params: dict
) -> None:
    """Everything PVE checks of a request before it acts: the schema's rule, then the code's (TEXT_ONLY)."""
    access.check_api2(permissions, authid, params)
    by_hand = TEXT_ONLY.get((method, template))
    if by_hand is not None and authid not in (None, ROOT):
        by_hand(access, authid, params)
