"""The project's fake PVE (lab/pve) over real HTTPS with certificate verification, as the project's modules see
it: DRBD storage rules, stateful HA and its manager, the fault helpers, the reference check and the request log."""

from __future__ import annotations

import time
import urllib.parse

import pytest
import requests
from conftest import wait_until

from lab.pve.fake import DRBD, TEMPLATE_VOLID

pytestmark = pytest.mark.cluster

NODE = "pve1"


class Api:
    """A PVE API client with the project's token, verifying the fake's certificate."""

    def __init__(self, served, timeout: float = 5.0):
        self.base = f"{served.url}/api2/json"
        self.timeout = timeout
        # Per request, not session.verify: REQUESTS_CA_BUNDLE in the environment would override the session's.
        self.cafile = served.cafile
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"PVEAPIToken={served.pve.token_id}={served.pve.token_secret}"

    def request(self, method: str, path: str, **params) -> requests.Response:
        where = "params" if method in ("GET", "DELETE") else "data"
        return self.session.request(
            method, self.base + path, timeout=self.timeout, verify=self.cafile, **{where: params}
        )

    def ok(self, method: str, path: str, **params):
        response = self.request(method, path, **params)
        assert response.status_code == 200, (response.status_code, response.reason, response.text)
        return response.json()["data"]

    def task(self, upid: str) -> dict:
        """The finished task's status (polled until it stops)."""
        path = f"/nodes/{upid.split(':')[1]}/tasks/{urllib.parse.quote(upid, safe='')}/status"
        return wait_until(lambda: (s := self.ok("GET", path))["status"] == "stopped" and s, what=f"task {upid}")

    def run(self, method: str, path: str, **params) -> str:
        """Start a task and return its exit status ('OK' or the error)."""
        return self.task(self.ok(method, path, **params))["exitstatus"]


@pytest.fixture
def api(pve) -> Api:
    return Api(pve)


def ct_path(vmid: int, rest: str = "") -> str:
    return f"/nodes/{NODE}/lxc/{vmid}{rest}"


def create_ct(api: Api, vmid: int, storage: str = DRBD, node: str = NODE, **extra) -> None:
    status = api.run(
        "POST",
        f"/nodes/{node}/lxc",
        vmid=vmid,
        ostemplate=TEMPLATE_VOLID,
        rootfs=f"{storage}:8",
        hostname=f"ct{vmid}",
        **extra,
    )
    assert status == "OK"


def snapshot(api: Api, vmid: int, *names: str) -> None:
    for name in names:
        assert api.run("POST", ct_path(vmid, "/snapshot"), snapname=name) == "OK"


def ct_status(api: Api, vmid: int) -> str:
    return api.ok("GET", ct_path(vmid, "/status/current"))["status"]


# ------------------------------------------------------------------------------------------------ storage


def test_the_default_storages_and_the_template_are_there(api):
    storages = {s["storage"]: s for s in api.ok("GET", "/storage")}
    assert storages[DRBD]["type"] == "drbd" and storages[DRBD]["shared"] == 1
    assert storages[DRBD]["content"] == "images,rootdir" and "caps" not in storages[DRBD]
    assert storages["local-lvm"]["type"] == "lvmthin"
    volids = [v["volid"] for v in api.ok("GET", f"/nodes/{NODE}/storage/local/content", content="vztmpl")]
    assert volids == [TEMPLATE_VOLID]


def test_a_container_on_drbd_gets_a_drbd_volume_and_a_wrong_template_fails_its_task(pve, api):
    create_ct(api, 100)
    assert api.ok("GET", ct_path(100, "/config"))["rootfs"] == f"{DRBD}:vm-100-disk-0,size=8G"
    # PVE lists a guest's volumes only to who may audit the storage, which the modules never need to.
    pve.call(pve.pve.access.roles[pve.pve.role].add, "Datastore.Audit")
    content = api.ok("GET", f"/nodes/{NODE}/storage/{DRBD}/content")
    assert [(v["volid"], v["vmid"]) for v in content] == [(f"{DRBD}:vm-100-disk-0", 100)]
    wrong = "local:vztmpl/debian-11-standard_11.7-1_amd64.tar.zst"
    status = api.run("POST", f"/nodes/{NODE}/lxc", vmid=101, ostemplate=wrong, rootfs=f"{DRBD}:8")
    assert status == f"unable to create CT 101 - volume '{wrong}' does not exist"


def test_drbd_rolls_back_only_to_the_latest_snapshot(api):
    create_ct(api, 100)
    snapshot(api, 100, "first", "second")
    refused = api.run("POST", ct_path(100, "/snapshot/first/rollback"))
    assert refused == f"can't rollback, 'first' is not most recent snapshot on '{DRBD}:vm-100-disk-0'"
    assert api.run("POST", ct_path(100, "/snapshot/second/rollback")) == "OK"
    assert api.ok("GET", ct_path(100, "/config"))["parent"] == "second"


def test_lvmthin_rolls_back_to_any_snapshot(api):
    create_ct(api, 100, storage="local-lvm")
    snapshot(api, 100, "first", "second")
    assert api.run("POST", ct_path(100, "/snapshot/first/rollback")) == "OK"
    assert api.ok("GET", ct_path(100, "/config"))["parent"] == "first"


def test_rolling_back_a_container_ha_wants_started_fails_on_drbd_until_ha_stops_it(api, pve):
    create_ct(api, 100)
    snapshot(api, 100, "first")
    api.ok("POST", "/cluster/ha/resources", sid="ct:100", state="started")
    wait_until(lambda: ct_status(api, 100) == "running", what="HA starts the container")
    status = api.run("POST", ct_path(100, "/snapshot/first/rollback"))
    assert "in use" in status and "vm-100-disk-0" in status, status
    wait_until(lambda: ct_status(api, 100) == "running", what="HA starts it again after the rollback stopped it")
    assert "lock" not in api.ok("GET", ct_path(100, "/config"))

    api.ok("PUT", "/cluster/ha/resources/ct:100", state="stopped")
    wait_until(lambda: ct_status(api, 100) == "stopped", what="HA stops the container")
    assert api.run("POST", ct_path(100, "/snapshot/first/rollback"), start=1) == "OK"
    manager_passes(pve, 2)
    assert ct_status(api, 100) == "running", "start=1 is an HA start request: HA does not stop it again"
    assert api.ok("GET", "/cluster/ha/resources/ct:100")["state"] == "started"


def test_a_running_container_without_ha_is_stopped_by_its_drbd_rollback(api):
    create_ct(api, 100, start=1)
    snapshot(api, 100, "first")
    assert api.run("POST", ct_path(100, "/snapshot/first/rollback")) == "OK"
    assert ct_status(api, 100) == "stopped"


def test_a_container_on_drbd_cannot_become_a_template(api):
    create_ct(api, 100)
    status = api.run("POST", ct_path(100, "/template"))
    assert status == f"Template feature is not available for '{DRBD}:vm-100-disk-0'"
    config = api.ok("GET", ct_path(100, "/config"))
    assert "template" not in config and config["rootfs"].startswith(f"{DRBD}:vm-100-disk-0")


def test_drbd_refuses_linked_clones_and_full_clones_from_a_snapshot_have_no_snapshots(api):
    create_ct(api, 100)
    snapshot(api, 100, "first", "second")
    linked = api.request("POST", ct_path(100, "/clone"), newid=200, full=0)
    assert linked.status_code == 500
    assert linked.reason == f"Linked clone feature for '{DRBD}:vm-100-disk-0' is not available"
    assert api.run("POST", ct_path(100, "/clone"), newid=201, full=1, snapname="first", hostname="copy") == "OK"
    config = api.ok("GET", ct_path(201, "/config"))
    assert config["rootfs"] == f"{DRBD}:vm-201-disk-0,size=8G" and config["hostname"] == "copy"
    assert [s["name"] for s in api.ok("GET", ct_path(201, "/snapshot"))] == ["current"]
    assert [s["name"] for s in api.ok("GET", ct_path(100, "/snapshot"))] == ["first", "second", "current"]


# ----------------------------------------------------------------------------------------------------- HA


def test_ha_resources_are_stored_read_updated_and_deleted(api, pve):
    create_ct(api, 100)
    assert api.ok("GET", "/cluster/ha/resources") == []
    assert api.ok("POST", "/cluster/ha/resources", sid="ct:100", comment="site 1", max_restart=2) is None
    read = api.ok("GET", "/cluster/ha/resources/ct:100")
    assert {k: read[k] for k in ("sid", "type", "comment", "max_restart")} == {
        "sid": "ct:100",
        "type": "ct",
        "comment": "site 1",
        "max_restart": 2,
    }
    assert "state" not in read, "PVE shows no state that was never set (the default is started)"
    assert pve.call(lambda: pve.pve.ct(100).ha_state) == "started"
    assert api.ok("GET", ct_path(100, "/status/current"))["ha"] == {"managed": 1, "state": "started"}
    assert [r["sid"] for r in api.ok("GET", "/cluster/ha/resources", type="ct")] == ["ct:100"]
    assert api.ok("GET", "/cluster/ha/resources", type="vm") == []
    assert api.ok("GET", "/cluster/ha/resources/100")["sid"] == "ct:100"

    again = api.request("POST", "/cluster/ha/resources", sid="ct:100")
    assert (again.status_code, again.reason) == (500, "create resource failed: resource ID 'ct:100' already defined")

    api.ok("PUT", "/cluster/ha/resources/ct:100", state="stopped", digest=read["digest"], delete="comment")
    read = api.ok("GET", "/cluster/ha/resources/ct:100")
    assert read["state"] == "stopped" and "comment" not in read
    assert pve.call(lambda: pve.pve.ct(100).ha_state) == "stopped"
    stale = api.request("PUT", "/cluster/ha/resources/ct:100", state="started", digest="0" * 40)
    assert stale.status_code == 500 and stale.reason.startswith("update resources config failed: detected modified")

    services = [s for s in api.ok("GET", "/cluster/ha/status/current") if s["type"] == "service"]
    assert [(s["sid"], s["request_state"]) for s in services] == [("ct:100", "stopped")]

    assert api.ok("DELETE", "/cluster/ha/resources/ct:100") is None
    assert pve.call(lambda: pve.pve.ct(100).ha_state) is None
    missing = {
        ("GET", "ct:100"): "no such resource 'ct:100'",
        ("PUT", "ct:100"): "update resources config failed: no such resource 'ct:100'",
        ("DELETE", "ct:100"): "cannot delete service 'ct:100', not HA managed!",
        ("GET", "999"): "unable to detect SID from VMID - VM/CT 999 does not exist",
    }
    for (method, sid), reason in missing.items():
        params = {"comment": "x"} if method == "PUT" else {}
        answer = api.request(method, f"/cluster/ha/resources/{sid}", **params)
        assert (answer.status_code, answer.reason) == (500, reason)
    absent = api.request("POST", "/cluster/ha/resources", sid="ct:999")
    assert (absent.status_code, absent.reason) == (500, "resource 'ct:999' does not exist in cluster")


def test_ha_parameters_are_checked_against_both_schemas(api, pve):
    create_ct(api, 100)
    cases = {
        "state": ({"sid": "ct:100", "state": "running"}, "value 'running' does not have a value in the enumeration"),
        "sid": ({"state": "started"}, "property is missing and it is not optional"),
        "max_restart": ({"sid": "ct:100", "max_restart": -1}, "value must have a minimum value of 0"),
        "failback": ({"sid": "ct:100", "failback": "maybe"}, "type check ('boolean') failed - got 'maybe'"),
        "bogus": ({"sid": "ct:100", "bogus": 1}, "property is not defined in schema"),
    }
    for field, (params, message) in cases.items():
        answer = api.request("POST", "/cluster/ha/resources", **params)
        assert (answer.status_code, answer.reason) == (400, "Parameter verification failed."), field
        assert message in answer.json()["errors"][field], (field, answer.json())
    assert api.ok("GET", "/cluster/ha/resources") == []


def test_parameters_newer_than_the_targeted_pve_are_refused(api, pve):
    if pve.pve.reference is None:
        pytest.fail(
            "the PVE API reference (lab/reference/pve-api-full.json.gz) is missing: set PROXMOXWP_PVE_REFERENCE"
        )
    create_ct(api, 100)
    # fakepve's own (newer) schema has auto-rebalance; PVE 9.1, which the project targets, does not.
    answer = api.request("POST", "/cluster/ha/resources", sid="ct:100", **{"auto-rebalance": 1})
    assert answer.status_code == 400
    assert answer.json()["errors"] == {
        "auto-rebalance": "property is not defined in schema and the schema does not allow additional properties"
    }


def test_direct_power_requests_of_an_ha_container_become_ha_requests_and_destroy_needs_purge(api, pve):
    create_ct(api, 100)
    api.ok("POST", "/cluster/ha/resources", sid="ct:100", state="stopped")
    assert api.run("POST", ct_path(100, "/status/start")) == "OK"
    wait_until(lambda: ct_status(api, 100) == "running")
    assert api.ok("GET", "/cluster/ha/resources/ct:100")["state"] == "started"
    refused = api.request("DELETE", ct_path(100))
    assert refused.reason == "unable to remove CT 100 - used in HA resources and purge parameter not set."
    assert api.run("DELETE", ct_path(100), purge=1, force=1) == "OK"
    assert api.ok("GET", "/cluster/ha/resources") == []


def test_the_ha_manager_restarts_a_container_stopped_behind_its_back_only_if_it_should_run(api, pve):
    create_ct(api, 100)
    create_ct(api, 101, start=1)
    api.ok("POST", "/cluster/ha/resources", sid="ct:100", state="started")
    api.ok("POST", "/cluster/ha/resources", sid="ct:101", state="stopped")
    wait_until(lambda: ct_status(api, 100) == "running", what="HA starts ct:100")
    wait_until(lambda: ct_status(api, 101) == "stopped", what="HA stops ct:101")
    pid = api.ok("GET", ct_path(100, "/status/current"))["pid"]

    pve.call(pve.pve.stop_behind_back, 100)
    assert pve.call(lambda: pve.pve.ct(100).ha_state) == "started"
    wait_until(lambda: ct_status(api, 100) == "running", what="HA starts ct:100 again")
    assert api.ok("GET", ct_path(100, "/status/current"))["pid"] != pid
    manager_passes(pve, 3)
    assert ct_status(api, 101) == "stopped", "HA leaves a container it wants stopped alone"

    pve.call(setattr, pve.pve, "ha_manager_enabled", False)
    pve.call(pve.pve.stop_behind_back, 100)
    manager_passes(pve, 3)
    assert ct_status(api, 100) == "stopped", "a paused manager does nothing"
    pve.call(pve.pve.ha_converge)
    assert ct_status(api, 100) == "running", "ha_converge() is one pass, paused or not"


def manager_passes(pve, count: int) -> None:
    """Wait until the background HA manager has had `count` more chances to act."""
    start = pve.call(lambda: pve.pve.ha_ticks)
    wait_until(lambda: pve.call(lambda: pve.pve.ha_ticks) >= start + count, what=f"{count} HA manager passes")


def test_a_container_that_cannot_start_ends_in_the_ha_error_state(api, pve):
    create_ct(api, 100)
    pve.call(setattr, pve.pve.ct(100), "start_error", "startup for container '100' failed")
    api.ok("POST", "/cluster/ha/resources", sid="ct:100", max_restart=0)
    wait_until(lambda: "ct:100" in pve.call(lambda: set(pve.pve.ha_errors)), what="the error state")
    refused = api.request("PUT", "/cluster/ha/resources/ct:100", state="started")
    assert refused.reason == "service 'ct:100' in error state, must be disabled and fixed first"
    api.ok("PUT", "/cluster/ha/resources/ct:100", state="disabled")
    assert ct_status(api, 100) == "stopped"


# ------------------------------------------------------------------------------------------------- faults


def test_fail_task_ends_the_task_with_the_message_once(api, pve):
    create_ct(api, 100)
    pve.call(pve.pve.fail_task, "POST", ct_path(100, "/status/start"), "startup for container '100' failed")
    task = api.task(api.ok("POST", ct_path(100, "/status/start")))
    assert task["exitstatus"] == "startup for container '100' failed" and task["type"] == "vzstart"
    assert ct_status(api, 100) == "stopped"
    assert api.run("POST", ct_path(100, "/status/start")) == "OK"


def test_fail_http_answers_the_status_with_the_message_as_reason_once(api, pve):
    create_ct(api, 100)
    pve.call(pve.pve.fail_http, "GET", "/nodes/{node}/lxc/{vmid}/status/current", 500, "got timeout")
    failed = api.request("GET", ct_path(100, "/status/current"))
    assert (failed.status_code, failed.reason) == (500, "got timeout")
    assert failed.json() == {"data": None, "message": "got timeout\n"}
    assert ct_status(api, 100) == "stopped"


def test_hang_makes_the_client_time_out(api, pve):
    pve.call(pve.pve.hang, "GET", "/cluster/resources", 5)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        api.session.get(api.base + "/cluster/resources", timeout=0.3, verify=api.cafile)
    assert time.monotonic() - started < 2
    assert api.ok("GET", "/cluster/resources") is not None


def test_an_offline_node_answers_595(api, pve):
    pve.call(pve.pve.node_offline, NODE)
    answer = api.request("GET", f"/nodes/{NODE}/lxc")
    assert (answer.status_code, answer.reason) == (595, "No route to host")
    assert [n["status"] for n in api.ok("GET", "/nodes")] == ["offline"]
    pve.call(pve.pve.node_offline, NODE, False)
    assert api.ok("GET", f"/nodes/{NODE}/lxc") == []


def test_refuse_connections_refuses_new_connections_for_a_while_then_listens_on_the_same_port(api, pve):
    api.ok("GET", "/version")  # a connection this client keeps open
    pve.call(pve.pve.refuse_connections, 1)
    with pytest.raises(requests.exceptions.ConnectionError, match="refused"):
        Api(pve).request("GET", "/version")
    assert api.ok("GET", "/version"), "a connection already open is kept"

    def answers() -> bool:
        try:
            return Api(pve).request("GET", "/version").ok
        except requests.exceptions.ConnectionError:
            return False

    wait_until(answers, what="the fake to listen again")


def test_clear_faults_drops_every_rule_left(api, pve):
    create_ct(api, 100)
    pve.call(pve.pve.fail_http, "GET", "/version", 503, "Service Unavailable", None)
    pve.call(pve.pve.fail_task, "POST", ct_path(100, "/status/start"), "startup failed", None)
    pve.call(pve.pve.hang, "GET", "/cluster/resources", 30, None)
    pve.call(pve.pve.node_offline, NODE)
    pve.call(pve.pve.clear_faults)
    assert api.ok("GET", "/version") and api.ok("GET", "/cluster/resources") is not None
    assert api.run("POST", ct_path(100, "/status/start")) == "OK"


def test_take_ids_after_nextid_lets_another_client_take_the_id_before_the_create(api, pve):
    pve.call(pve.pve.take_ids_after_nextid, 1)
    assert api.ok("GET", "/cluster/nextid", vmid=105) == "105", "asking whether an id is free does not count"
    assert api.ok("GET", "/cluster/nextid") == "100"
    taken = api.request(
        "POST", f"/nodes/{NODE}/lxc", vmid=100, ostemplate=TEMPLATE_VOLID, rootfs=f"{DRBD}:8", hostname="mine"
    )
    assert (taken.status_code, taken.reason) == (500, f"CT 100 already exists on node '{NODE}'")
    assert api.ok("GET", ct_path(100, "/config"))["hostname"] == "somebody-else"
    assert ct_status(api, 100) == "stopped"
    assert api.ok("GET", "/cluster/nextid") == "101"
    create_ct(api, 101)
    assert api.ok("GET", "/cluster/nextid") == "102", "only `count` ids are taken"


def test_fail_create_leaving_container_fails_the_task_and_keeps_the_container(api, pve):
    message = "unable to create CT 101 - rsync: write failed: No space left on device"
    pve.call(pve.pve.fail_create_leaving_container, message, 1, "ct101")
    create_ct(api, 100)  # another hostname: not affected
    upid = api.ok(
        "POST", f"/nodes/{NODE}/lxc", vmid=101, ostemplate=TEMPLATE_VOLID, rootfs=f"{DRBD}:8", hostname="ct101"
    )
    task = api.task(upid)
    assert (task["type"], task["exitstatus"]) == ("vzcreate", message)
    log = [line["t"] for line in api.ok("GET", f"/nodes/{NODE}/tasks/{urllib.parse.quote(upid, safe='')}/log")]
    assert log[-2:] == [message, f"TASK ERROR: {message}"]
    config = api.ok("GET", ct_path(101, "/config"))
    assert config["rootfs"] == f"{DRBD}:vm-101-disk-0,size=8G" and "lock" not in config, "left behind, unlocked"
    assert api.run("DELETE", ct_path(101), purge=1) == "OK"
    create_ct(api, 101)  # `times` used up: the next create of the hostname succeeds


# ------------------------------------------------------------------------------------- token and requests


def test_only_the_project_token_gets_in_and_every_request_is_recorded(api, pve):
    anonymous = requests.get(api.base + "/nodes", verify=pve.cafile, timeout=5)
    assert anonymous.status_code == 401
    create_ct(api, 100)
    sent = pve.call(pve.pve.requests_sent, "POST", "/nodes/pve1/lxc")
    assert len(sent) == 1
    assert sent[0].params == {"vmid": "100", "ostemplate": TEMPLATE_VOLID, "rootfs": f"{DRBD}:8", "hostname": "ct100"}
    assert pve.pve_api() == {
        "host": "127.0.0.1",
        "port": pve.port,
        "token_id": "proxmoxwp@pve!ansible",
        "token_secret": pve.pve.token_secret,
        "validate_certs": True,
        "ca_file": pve.cafile,
        "fingerprint": None,
        "timeout": 10,
    }
