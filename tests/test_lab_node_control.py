"""The lab's control of its nodes (lab/pve/control.py, `proxmoxwp lab node fail|restore|list`): a request on the
service's Unix socket fails a node of the served cluster, whose HA guest the HA manager then recovers on another
node, and brings the node back; what cannot be done is refused with a reason."""

from __future__ import annotations

import stat

import pytest
import requests
from conftest import wait_until
from sites import load_client_module

from lab.pve import control

pytestmark = pytest.mark.cluster


@pytest.fixture
def lab_dir(tmp_path):
    # Deeper than a Unix socket's address may be (107 bytes), as a clone's lab directory can be.
    deep = tmp_path / ("d" * 120)
    deep.mkdir()
    return deep


@pytest.fixture
def controlled(pve, lab_dir):
    def setup(model):
        model.add_node("pve2")
        model.ha_recovery_delay = 0.5
        ct = model.add_ct(
            300, name="site", node="pve2", status="running", config={"rootfs": "drbd1:vm-300-disk-0,size=8G"}
        )
        ct.ha_state = "started"

    pve.call(setup, pve.pve)
    pve.serve_node("pve2")
    server = pve.call(control.serve, pve.pve, lab_dir, pve.endpoints)
    yield pve
    pve.call(server.close)


def test_a_node_failed_through_the_socket_has_its_ha_site_recovered_then_comes_back(controlled, lab_dir):
    assert stat.S_IMODE((lab_dir / control.SOCKET).stat().st_mode) == 0o600

    failed = control.send(lab_dir, {"command": "fail", "node": "pve2"})

    assert failed["nodes"] == {"pve1": "online", "pve2": "failed"} and failed["ha_recovery_delay"] == 0.5
    assert failed["api"] == {"pve1": "listening", "pve2": "stopped"}, "a failed node's API goes down with it"
    where = lambda: controlled.call(lambda: (controlled.pve.ct(300).node, controlled.pve.ct(300).status))  # noqa: E731
    wait_until(lambda: where() == ("pve1", "running"), what="CT 300 recovered on pve1")
    restored = control.send(lab_dir, {"command": "restore", "node": "pve2"})
    assert restored["nodes"] == {"pve1": "online", "pve2": "online"}
    assert restored["api"] == {"pve1": "listening", "pve2": "listening"}
    assert control.send(lab_dir, {"command": "nodes"})["nodes"]["pve2"] == "online"


def test_an_unknown_node_or_command_is_refused_with_the_reason(controlled, lab_dir):
    assert control.send(lab_dir, {"command": "fail", "node": "pve9"}) == {
        "ok": False,
        "error": "no node 'pve9': the lab's nodes are pve1, pve2",
    }
    assert control.send(lab_dir, {"command": "reboot"})["error"] == (
        "unknown command 'reboot': fail, restore, api-stop, api-start, nodes"
    )
    assert controlled.call(lambda: dict(controlled.pve.failed_nodes)) == {}


def test_a_node_s_api_stopped_through_the_socket_refuses_while_the_other_hosts_answer(controlled, lab_dir):
    stopped = control.send(lab_dir, {"command": "api-stop", "node": "pve1"})

    assert stopped["api"] == {"pve1": "stopped", "pve2": "listening"}
    assert stopped["nodes"] == {"pve1": "online", "pve2": "online"}, "only pveproxy is down, not the node"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{controlled.url}/api2/json/version", verify=controlled.cafile, timeout=5)
    client = load_client_module().PveClient(controlled.pve_api_hosts(), task_timeout=30)
    assert 300 in {entry["vmid"] for entry in client.get("/cluster/resources", type="vm")}
    started = control.send(lab_dir, {"command": "api-start", "node": "pve1"})
    assert started["api"]["pve1"] == "listening"
    assert requests.get(f"{controlled.url}/api2/json/version", verify=controlled.cafile, timeout=5).status_code == 401
