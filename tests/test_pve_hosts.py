"""Several Proxmox VE API hosts (api.hosts): the order the client asks them in, which failures move on to the next,
and the client against a fake cluster whose nodes each serve the API on their own endpoint."""

from __future__ import annotations

import hashlib
import os
import ssl

import pytest
import requests
from sites import cluster, load_client_module, load_module_util, run_playbook, site_ct, site_inventory
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError, ProtocolError, SSLError

from lab.pve.serving import ServedPve

HOSTS = load_module_util("proxmoxwp_pve_hosts")
URL = "/api2/json/version"


# ------------------------------------------------------------------------------------------------- the rules


def test_hosts_come_from_the_list_each_completed_from_the_shared_settings():
    api = {"host": "ignored", "port": 8006, "ca_file": "/etc/ca.pem", "fingerprint": None}
    listed = HOSTS.api_hosts(dict(api, hosts=[{"host": "pve1"}, {"host": "pve2", "port": 443, "fingerprint": "ab"}]))
    assert listed == [
        HOSTS.ApiHost("pve1", 8006, None, "/etc/ca.pem"),
        HOSTS.ApiHost("pve2", 443, "ab", "/etc/ca.pem"),
    ]
    assert [h.where for h in listed] == ["pve1:8006", "pve2:443"]
    # the form every existing inventory has: one host
    assert HOSTS.api_hosts(dict(api, host="pve.example.net")) == [
        HOSTS.ApiHost("pve.example.net", 8006, None, "/etc/ca.pem")
    ]
    assert HOSTS.api_hosts({"host": "pve1"})[0].port == 8006


@pytest.mark.parametrize(
    ("api", "message"),
    [
        ({"host": "https://pve1:8006"}, "api.host must be a host name or address, without scheme or path"),
        ({"hosts": [{"host": "pve1"}, {"host": "pve1/api2"}]}, "api.hosts[2].host must be a host name"),
        ({"hosts": [{"host": "pve1"}, {"host": "pve1", "port": 8006}]}, "api.hosts names pve1:8006 twice"),
        ({"host": ""}, "api.host is empty"),
    ],
)
def test_a_wrong_host_is_named(api, message):
    with pytest.raises(ValueError, match="^" + message.replace("[", r"\[").replace("]", r"\]")):
        HOSTS.api_hosts(api)


def test_the_host_that_answered_is_asked_first_then_the_others_in_order():
    order = HOSTS.HostOrder(3)
    assert order.order() == [0, 1, 2]
    order.answered(2)
    assert order.order() == [2, 0, 1]
    order.answered(1)
    assert order.order() == [1, 0, 2]
    assert HOSTS.HostOrder(1).order() == [0]


def _wrapped(reason: Exception) -> requests.exceptions.RequestException:
    """What requests raises when urllib3 gave up with this reason."""
    error = MaxRetryError(None, URL, reason)
    if isinstance(reason, SSLError):
        return requests.exceptions.SSLError(error)
    return requests.exceptions.ConnectionError(error)


def test_only_a_request_that_never_reached_a_server_moves_on():
    verify = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    never_sent = {
        "refused": _wrapped(NewConnectionError(None, "Failed to establish a new connection: [Errno 111] refused")),
        "no name": _wrapped(NameResolutionError("pve9", None, OSError("Name or service not known"))),
        "connect timeout": requests.exceptions.ConnectTimeout(
            MaxRetryError(None, URL, NewConnectionError(None, "Connection to pve1 timed out. (connect timeout=10)"))
        ),
        "untrusted certificate": _wrapped(SSLError(verify)),
        "wrong pin": _wrapped(SSLError('Fingerprints did not match. Expected "00", got "ab"')),
    }
    maybe_sent = {
        "read timeout": requests.exceptions.ReadTimeout("Read timed out. (read timeout=30)"),
        "dropped mid-way": _wrapped(ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))),
        "tls error reading the answer": _wrapped(SSLError(ssl.SSLEOFError(8, "EOF occurred in violation of protocol"))),
    }
    assert {name: HOSTS.sent_nothing(exc) for name, exc in never_sent.items()} == dict.fromkeys(never_sent, True)
    assert {name: HOSTS.sent_nothing(exc) for name, exc in maybe_sent.items()} == dict.fromkeys(maybe_sent, False)


# --------------------------------------------------------------------------- the client and the fake cluster


def two_nodes(pve: ServedPve) -> None:
    """pve2 in the fake cluster (unless the model has it already) with its own API endpoint."""
    pve.call(lambda: "pve2" in pve.pve.nodes or pve.pve.add_node("pve2"))
    pve.serve_node("pve2")


def sent(pve: ServedPve, method: str, suffix: str) -> int:
    return len(pve.call(pve.pve.requests_sent, method, suffix))


@pytest.mark.cluster
def test_each_node_serves_the_one_cluster_with_its_own_certificate(pve):
    two_nodes(pve)
    client_module = load_client_module()
    pve.call(site_ct, pve.pve, 100, 70)
    first, second = pve.endpoints["pve1"], pve.endpoints["pve2"]
    assert first.port != second.port and first.fingerprint != second.fingerprint
    assert first.port == pve.port and first.fingerprint == pve.fingerprint
    for node in ("pve1", "pve2"):
        # one CA file trusts every node; a pin fits its own node only
        alone = client_module.PveClient(pve.pve_api_hosts([node]), task_timeout=5)
        assert [ct["vmid"] for ct in alone.get("/cluster/resources", type="vm")] == [100]
        pinned = client_module.PveClient(pve.pve_api_hosts([node], pin=True), task_timeout=5)
        assert pinned.get("/version")["version"]
    crossed = pve.pve_api_hosts(["pve1"], pin=True)
    crossed["hosts"][0]["fingerprint"] = second.fingerprint
    with pytest.raises(client_module.PveApiError, match=r"fingerprint is .*, not the pinned api\.fingerprint"):
        client_module.PveClient(crossed, task_timeout=5).get("/version")

    # A stopped endpoint refuses connections like a down host, and answers again once started.
    pve.stop_endpoint("pve1")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(pve.url + URL, verify=pve.cafile, timeout=5)
    pve.start_endpoint("pve1")
    assert requests.get(pve.url + URL, verify=pve.cafile, timeout=5).status_code == 401  # there, wants the token


@pytest.mark.cluster
def test_the_client_goes_on_to_the_next_host_and_keeps_to_it(pve):
    two_nodes(pve)
    client_module = load_client_module(BACKOFF=0)
    pve.call(site_ct, pve.pve, 100, 71)
    warnings: list[str] = []
    client = client_module.PveClient(pve.pve_api_hosts(), task_timeout=10, warn=warnings.append)
    first, second = (f"127.0.0.1:{pve.endpoints[node].port}" for node in ("pve1", "pve2"))
    assert client.where == first

    pve.stop_endpoint("pve1")
    # a POST never received by pve1 is sent to pve2, once; its task is polled there
    upid = client.post("/nodes/pve1/lxc/100/status/start")
    assert client.wait_task(upid, "start of CT 100")["exitstatus"] == "OK"
    assert client.where == second
    assert pve.call(lambda: pve.pve.ct(100).status) == "running"
    assert sent(pve, "POST", "/lxc/100/status/start") == 1
    assert warnings == [
        f"The Proxmox VE API at {first} did not answer (Failed to establish a new connection: [Errno 111] "
        f"Connection refused); {second} answered instead"
    ]
    # pve1 back: the client keeps to pve2, which answered, for the rest of its life
    pve.start_endpoint("pve1")
    pve.stop_endpoint("pve2")
    assert client.get("/version")["version"] and client.where == first
    assert len(warnings) == 2

    # every host down: one error naming each, after the rounds
    pve.stop_endpoint("pve1")
    with pytest.raises(client_module.PveApiError) as caught:
        client.get("/version")
    assert caught.value.message.startswith("No Proxmox VE API host answered (GET /version; tried each 4 times): ")
    assert f"{first}: Failed to establish" in caught.value.message
    assert f"{second}: Failed to establish" in caught.value.message


@pytest.mark.cluster
def test_an_answer_from_a_live_host_is_never_sent_again_to_another(pve):
    two_nodes(pve)
    client_module = load_client_module(BACKOFF=0)
    pve.call(site_ct, pve.pve, 100, 72)
    client = client_module.PveClient(dict(pve.pve_api_hosts(), timeout=1), task_timeout=10)
    snapshots = "/nodes/pve1/lxc/100/snapshot"

    pve.call(pve.pve.fail_http, "POST", snapshots, 500, "snapshot feature is not available")
    with pytest.raises(client_module.PveApiError) as caught:
        client.post(snapshots, snapname="first")
    assert caught.value.status == 500
    assert sent(pve, "POST", snapshots) == 1, "the POST went to one host only"

    # no answer in time: PVE may be doing it, so no other host is asked either
    pve.call(pve.pve.hang, "POST", snapshots, 3)
    with pytest.raises(client_module.PveApiError) as caught:
        client.post(snapshots, snapname="second")
    assert caught.value.message.endswith("whether PVE carried out the request is unknown")
    assert sent(pve, "POST", snapshots) == 2

    # a node that is offline (595) is an answer too
    pve.call(pve.pve.node_offline, "pve1")
    with pytest.raises(client_module.PveApiError) as caught:
        client.get(snapshots)
    assert caught.value.status == 595
    assert client.where == f"127.0.0.1:{pve.port}"


@pytest.mark.cluster
def test_a_host_whose_certificate_is_refused_is_passed_over_with_a_warning(pve):
    two_nodes(pve)
    client_module = load_client_module(BACKOFF=0)
    api = pve.pve_api_hosts(pin=True)
    api["hosts"][0]["fingerprint"] = "00" * 32  # pve1 renewed its certificate, the inventory has the old pin
    warnings: list[str] = []
    client = client_module.PveClient(api, task_timeout=10, warn=warnings.append)
    assert client.get("/version")["version"]
    assert client.where == f"127.0.0.1:{pve.endpoints['pve2'].port}"
    assert len(warnings) == 1
    assert f"127.0.0.1:{pve.port} did not answer (the server certificate's SHA-256 fingerprint is" in warnings[0]
    assert "not the pinned api.fingerprint 00:00" in warnings[0]


@pytest.mark.cluster
def test_an_upload_goes_to_the_next_host_whole(pve, tmp_path):
    two_nodes(pve)
    client_module = load_client_module(BACKOFF=0)
    archive = tmp_path / "debian-12-test_amd64.tar.zst"
    archive.write_bytes(os.urandom(2 * 1024**2 + 5))
    client = client_module.PveClient(pve.pve_api_hosts(), task_timeout=30)
    pve.stop_endpoint("pve1")
    upid = client.upload(
        "/nodes/pve1/storage/local/upload",
        str(archive),
        content="vztmpl",
        checksum=hashlib.sha256(archive.read_bytes()).hexdigest(),
        **{"checksum-algorithm": "sha256"},
    )
    client.wait_task(upid, "upload")  # the checksum PVE verifies: the file arrived whole at the second host
    listed = client.get("/nodes/pve1/storage/local/content", content="vztmpl")
    assert {v["volid"]: v["size"] for v in listed}[f"local:vztmpl/{archive.name}"] == archive.stat().st_size


# --------------------------------------------------------------------------------- a site, with a node's API down

SERVICE = 4301
PUBLIC_IP = "203.0.113.10"


@pytest.mark.cluster
def test_a_site_is_made_and_powered_through_the_second_host_while_the_first_is_down(pve, edge_peers, tmp_path):
    two_nodes(pve)
    inventory = site_inventory(tmp_path, pve.pve_api_hosts(), edge_peers.settings)
    pve.stop_endpoint("pve1")

    def run(playbook: str, **variables):
        done = run_playbook(inventory, tmp_path / "runs", playbook, service_id=SERVICE, **variables)
        assert done.ok, f"{playbook} failed: {done.failed_task}: {done.message}"
        return done

    vmid = run("site_create.yml", plan="basic", public_ip=PUBLIC_IP).stats["vmid"]
    assert cluster(pve)[vmid]["status"] == "running"
    run("site_power.yml", power_action="stop")
    assert cluster(pve)[vmid]["status"] == "stopped"
    run("site_power.yml", power_action="start")
    assert cluster(pve)[vmid]["status"] == "running"
