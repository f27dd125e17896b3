"""The lab's control of its nodes (lab/pve/control.py, `proxmoxwp lab node fail|restore|list`): a request on the
service's Unix socket fails a node of the served cluster, whose HA guest the HA manager then recovers on another
node, and brings the node back; what cannot be done is refused with a reason."""

from __future__ import annotations

import stat

import pytest
from conftest import wait_until

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
    server = pve.call(control.serve, pve.pve, lab_dir)
    yield pve
    pve.call(server.close)


def test_a_node_failed_through_the_socket_has_its_ha_site_recovered_then_comes_back(controlled, lab_dir):
    assert stat.S_IMODE((lab_dir / control.SOCKET).stat().st_mode) == 0o600

    failed = control.send(lab_dir, {"command": "fail", "node": "pve2"})

    assert failed == {"ok": True, "nodes": {"pve1": "online", "pve2": "failed"}, "ha_recovery_delay": 0.5}
    where = lambda: controlled.call(lambda: (controlled.pve.ct(300).node, controlled.pve.ct(300).status))  # noqa: E731
    wait_until(lambda: where() == ("pve1", "running"), what="CT 300 recovered on pve1")
    restored = control.send(lab_dir, {"command": "restore", "node": "pve2"})
    assert restored["nodes"] == {"pve1": "online", "pve2": "online"}
    assert control.send(lab_dir, {"command": "nodes"})["nodes"]["pve2"] == "online"


def test_an_unknown_node_or_command_is_refused_with_the_reason(controlled, lab_dir):
    assert control.send(lab_dir, {"command": "fail", "node": "pve9"}) == {
        "ok": False,
        "error": "no node 'pve9': the lab's nodes are pve1, pve2",
    }
    assert control.send(lab_dir, {"command": "reboot"})["error"].startswith("unknown command 'reboot'")
    assert controlled.call(lambda: dict(controlled.pve.failed_nodes)) == {}
