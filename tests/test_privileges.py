"""The Proxmox VE privileges the collection needs: one list (plugins/module_utils/proxmoxwp_privileges.py), the same
in the production example's role, the docs and the lab's token; and the lab's Proxmox VE refusing what real PVE
refuses (lab/pve/permissions.py), with PVE's 403 text."""

from __future__ import annotations

import pytest
from conftest import ROOT
from fakepve.model import PveError
from sites import cluster, load_module_util, run_playbook, site_inventory

from lab.pve import reference
from lab.pve.permissions import TEXT_ONLY, Access, check_request

LISTED = load_module_util("proxmoxwp_privileges")
REFERENCE = reference.load()
TOKEN = "proxmoxwp@pve!ansible"
USER = "proxmoxwp@pve"
DENIED = "Permission check failed"  # PVE's raise_perm_exc, with "(<path>, <privilege>)" when it names them


def rule(method: str, path: str) -> dict | None:
    return REFERENCE.permissions[(method, path)]


def access(*privileges: str, token_privileges: tuple[str, ...] | None = None, privsep: bool = True) -> Access:
    """A user holding a role of these privileges on /, and its token holding them too (or token_privileges)."""
    model = Access()
    model.roles["user-role"] = set(privileges)
    model.roles["token-role"] = set(privileges if token_privileges is None else token_privileges)
    model.add_token(TOKEN, privsep=privsep)
    model.grant("/", USER, "user-role")
    model.grant("/", TOKEN, "token-role")
    return model


def refusal(model: Access, permissions: dict | None, params: dict, who: str = TOKEN, method="GET", path="") -> str:
    """PVE's 403 text for the request, or "" when it is allowed."""
    try:
        check_request(model, permissions, method, path, who, params)
    except PveError as exc:
        assert exc.status == 403, exc.message
        return exc.message
    return ""


# ------------------------------------------------------------------- the reference's machine-readable checks

CHECKS = [
    # (method, path of the reference, privileges held, params, PVE's answer)
    ("GET", "/cluster/ha/resources", {"VM.Audit"}, {}, "Permission check failed (/, Sys.Audit)"),
    ("GET", "/cluster/ha/resources", {"Sys.Audit"}, {}, ""),
    (
        "DELETE",
        "/nodes/{node}/lxc/{vmid}",
        {"VM.Audit"},
        {"vmid": "100"},
        "Permission check failed (/vms/100, VM.Allocate)",
    ),
    # a parameter the path names but the request lacks becomes "-"
    ("GET", "/nodes/{node}/lxc/{vmid}/config", set(), {}, "Permission check failed (/vms/-, VM.Audit)"),
    # a path of other characters is no path: nobody holds anything there
    ("GET", "/nodes/{node}/lxc/{vmid}/config", {"VM.Audit"}, {"vmid": "1 0"}, "Permission check failed (, VM.Audit)"),
    # `any`: one of them is enough, and the refusal lists them all
    ("POST", "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}/rollback", {"VM.Snapshot.Rollback"}, {"vmid": 7}, ""),
    (
        "POST",
        "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}/rollback",
        {"VM.Audit"},
        {"vmid": 7},
        "Permission check failed (/vms/7, VM.Snapshot|VM.Snapshot.Rollback)",
    ),
    # `and` names the first missing privilege; its `or` (newid, or a pool given by require_param) none at all
    (
        "POST",
        "/nodes/{node}/lxc/{vmid}/clone",
        {"VM.Allocate"},
        {"vmid": 1, "newid": 2},
        "Permission check failed (/vms/1, VM.Clone)",
    ),
    ("POST", "/nodes/{node}/lxc/{vmid}/clone", {"VM.Clone"}, {"vmid": 1, "newid": 2}, "Permission check failed"),
    ("POST", "/nodes/{node}/lxc/{vmid}/clone", {"VM.Clone", "VM.Allocate"}, {"vmid": 1, "newid": 2}, ""),
    # `perm-modify`: Permissions.Modify, or the path's own allocate privilege
    (
        "PUT",
        "/access/acl",
        set(),
        {"path": "/vms/100"},
        "Permission check failed (/vms/100, Permissions.Modify|VM.Allocate)",
    ),
    ("PUT", "/access/acl", {"VM.Allocate"}, {"path": "/vms/100"}, ""),
    # `userid-param`: a token is not its user; Realm.AllocateUser on the user's realm
    ("GET", "/access/users/{userid}/token", set(), {"userid": USER}, "Permission check failed"),
    (
        "POST",
        "/access/users",
        set(),
        {"userid": "new@pve"},
        "Permission check failed (/access/realm/pve, Realm.AllocateUser)",
    ),
    # `userid-group`: with no groups, only the privilege on /access/groups allows it
    ("GET", "/access/users/{userid}/token", {"User.Modify"}, {"userid": USER}, ""),
    # `user: all` and no check: anyone logged in (what the method's code checks is another matter)
    ("GET", "/cluster/nextid", set(), {}, ""),
]


@pytest.mark.parametrize(("method", "path", "held", "params", "answer"), CHECKS)
def test_the_lab_checks_the_references_permissions_as_pve_does(method, path, held, params, answer):
    assert refusal(access(*held), rule(method, path), params, method=method, path=path) == answer


def test_userid_param_self_lets_a_user_read_its_own_tokens_and_root_everything():
    model = access()
    assert refusal(model, rule("GET", "/access/users/{userid}/token"), {"userid": USER}, who=USER) == ""
    assert refusal(model, rule("GET", "/cluster/ha/resources"), {}, who="root@pam") == ""
    # a method without permissions in the schema is root@pam's alone
    assert refusal(model, None, {}) == "Permission check failed (user != root@pam)"


# --------------------------------------------------------------------------------- who holds what


def test_a_privilege_separated_token_holds_what_both_it_and_its_user_hold():
    both = access("Sys.Audit", "VM.Audit", token_privileges=("Sys.Audit", "VM.Allocate"))
    assert set(both.privileges(TOKEN, "/vms/100")) == {"Sys.Audit"}
    shared = access("Sys.Audit", token_privileges=("Sys.Audit", "VM.Allocate"), privsep=False)
    assert set(shared.privileges(TOKEN, "/vms/100")) == {"Sys.Audit"}  # without separation: the user's
    only_token = Access()
    only_token.roles["r"] = {"Sys.Audit"}
    only_token.add_token(TOKEN)
    only_token.grant("/", TOKEN, "r")
    assert only_token.privileges(TOKEN, "/") == {}  # granted to the token alone: nothing


def test_a_more_specific_acl_replaces_what_propagates_and_propagate_0_stays_on_its_path():
    model = access("Sys.Audit", "VM.Audit")
    model.roles["storage-only"] = {"Datastore.Audit"}
    for who in (USER, TOKEN):
        model.grant("/storage", who, "storage-only", propagate=False)
    assert set(model.privileges(TOKEN, "/storage")) == {"Datastore.Audit"}
    assert model.privileges(TOKEN, "/storage") == {"Datastore.Audit": False}
    assert set(model.privileges(TOKEN, "/storage/drbd1")) == {"Sys.Audit", "VM.Audit"}
    assert model.effective(TOKEN)["/storage"] == {"Datastore.Audit": 0}


# --------------------------------------------------------------- the hand-kept table: container create

CREATE = {
    "node": "pve1",
    "vmid": 100,
    "ostemplate": "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
    "storage": "drbd1",
    "rootfs": "drbd1:8",
    "cores": 1,
    "memory": 1024,
    "net0": "name=eth0,bridge=vmbr0,ip=10.77.0.100/16,gw=10.77.0.1",
    "hostname": "site",
    "onboot": 1,
    "features": "nesting=1",
}


def create_refusal(model: Access, **changes) -> str:
    params = {k: v for k, v in dict(CREATE, **changes).items() if v is not None}
    return refusal(model, rule("POST", "/nodes/{node}/lxc"), params, method="POST", path="/nodes/{node}/lxc")


def test_create_is_checked_by_the_hand_kept_table_its_words_describe():
    assert ("POST", "/nodes/{node}/lxc") in TEXT_ONLY and "check" not in rule("POST", "/nodes/{node}/lxc")
    role = set(LISTED.ROLE_PRIVILEGES)
    assert create_refusal(access(*role)) == ""
    assert create_refusal(access(*role - {"VM.Allocate"})) == "Permission check failed"
    assert create_refusal(access(*role - {"SDN.Use"})) == (
        "Permission check failed (/sdn/zones/localnetwork/vmbr0, SDN.Use)"
    )
    tagged = CREATE["net0"] + ",tag=20"
    assert create_refusal(access(*role - {"SDN.Use"}), net0=tagged) == (
        "Permission check failed (/sdn/zones/localnetwork/vmbr0/20, SDN.Use)"
    )
    assert create_refusal(access(*role - {"Datastore.AllocateSpace"})) == (
        "Permission check failed (/storage/drbd1, Datastore.AllocateSpace)"
    )
    assert create_refusal(access(*role - {"VM.Config.Memory"})) == (
        "Permission check failed (/vms/100, VM.Config.Memory)"
    )
    assert create_refusal(access(*role), unprivileged=0) == "Permission check failed (/, Sys.Modify)"


# ------------------------------------------------------------------------------------ one list, everywhere


def perms_of(check: list | None) -> list[tuple[set[str], bool]]:
    """Each `perm` of a check expression: (privileges, any), leaving out the alternatives that need a parameter the
    modules never send (a pool)."""
    if not check:
        return []
    if check[0] in ("and", "or"):
        return [found for sub in check[1:] for found in perms_of(sub)]
    if check[0] == "perm" and "require_param" not in check:
        return [(set(check[2]), "any" in check)]
    return []


def test_every_call_of_the_list_is_in_the_reference_and_names_what_its_check_names():
    for call in LISTED.CALLS:
        assert (call.method, call.path) in REFERENCE.permissions, (call.method, call.path)
        listed = {p for need in call.needs for p in need.privileges}
        for privileges, any_of in perms_of((rule(call.method, call.path) or {}).get("check")):
            assert (privileges & listed) if any_of else (privileges <= listed), (call.method, call.path, privileges)


def test_the_role_is_every_privilege_the_calls_need_and_no_other():
    needed = {need.privileges[0] for call in LISTED.CALLS for need in call.needs if not need.optional}
    assert set(LISTED.ROLE_PRIVILEGES) == needed
    assert {"Sys.Audit", "SDN.Use"} <= needed and "Sys.Modify" not in needed


def test_the_production_example_grants_exactly_the_listed_role():
    text = (ROOT / "inventory" / "production.example" / "group_vars" / "all" / "proxmox.yml").read_text()
    block = "\n".join(line.removeprefix("#   ") for line in text.splitlines() if line.startswith("#   "))
    assert block == "\n".join(LISTED.pveum_commands()), "the comment should hold:\n" + "\n".join(
        LISTED.pveum_commands()
    )


def privileges_table() -> str:
    """The table of docs/modules.md, from the list."""
    lines = ["| call | privileges (path) | when | what for |", "|---|---|---|---|"]
    for call in LISTED.CALLS:
        needs = "<br>".join(f"`{'` or `'.join(n.privileges)}` ({n.path})" for n in call.needs) or "none"
        when = "<br>".join(n.when or "always" for n in call.needs) or ""
        lines.append(f"| `{call.method} {call.path}` | {needs} | {when} | {call.purpose} |")
    return "\n".join(lines)


def test_the_docs_show_the_list_and_the_role():
    text = (ROOT / "docs" / "modules.md").read_text()
    assert privileges_table() in text, "docs/modules.md, section Privileges, should hold:\n" + privileges_table()
    assert "\n".join(LISTED.pveum_commands()) in text


# ---------------------------------------------------------------------- the lab's cluster, enforcing


@pytest.mark.cluster
def test_the_labs_token_holds_exactly_the_role_and_the_modules_send_only_listed_calls(pve, tmp_path, edge_peers):
    import requests

    answer = requests.get(
        f"{pve.url}/api2/json/access/permissions",
        headers={"Authorization": f"PVEAPIToken={pve.pve.token_id}={pve.pve.token_secret}"},
        verify=pve.cafile,
        timeout=10,
    )
    assert answer.json()["data"]["/"] == dict.fromkeys(LISTED.ROLE_PRIVILEGES, 1)

    inventory = site_inventory(tmp_path, pve.pve_api(), edge_peers.settings)
    created = run_playbook(
        inventory, tmp_path / "runs", "site_create.yml", service_id=7101, plan="basic", public_ip="203.0.113.9"
    )
    assert created.ok, created.message
    listed = {(call.method, call.path) for call in LISTED.CALLS}
    sent = {(s.method, template(s.path)) for s in pve.call(lambda: list(pve.pve.sent))}
    assert sent <= listed, sent - listed

    # Without Sys.Audit, which every delete needs to read the HA resources, the job fails with PVE's 403.
    pve.call(pve.pve.take_privilege, "Sys.Audit")
    deleted = run_playbook(inventory, tmp_path / "runs", "site_delete.yml", service_id=7101)
    assert not deleted.ok
    assert "Permission check failed (/, Sys.Audit) [HTTP 403]" in deleted.message
    assert len(cluster(pve)) == 1  # and nothing was deleted


def template(path: str) -> str:
    """The schema's path of a request path (/api2/json/nodes/pve1/lxc/100 -> /nodes/{node}/lxc/{vmid})."""
    from fakepve import schema

    return schema.load().match(path.removeprefix("/api2/json")).template
