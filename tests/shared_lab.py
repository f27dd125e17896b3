"""The run's shared lab (a pytest plugin, `pytest_plugins = ["tests.shared_lab"]`): one `proxmoxwp lab up` for every
test that needs the whole system, instead of a lab per test.

`shared_lab` (session) brings the lab up in a data directory of its own, on free loopback ports, its own bridge and a
free /24, with the run's Debian rootfs and golden image (tests/lxc.py builds each once per run), and gives a
RunningLab: the API as Paymenter calls it, what a visitor sees (DNS, pages through the lab proxy) and the lab's
parts. Every test that takes it is put in one pytest-xdist group (tests/conftest.py SHARED_FIXTURES), so they
share the one lab on one worker; the test marked `lab_down` runs last among them and takes the lab down
(tests/test_lab.py). At the end of the session, whatever happened, the lab is taken down and anything it left
(processes, bridge) removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.resolver
import psutil
import pytest
import requests
from conftest import wait_until
from labs import lab_command, lab_environment

from api.build_host.network import IP_FORWARD, our_tables, remove_bridge

JOB_TIMEOUT = 600
SERVICES = ("dns", "pve", "proxy", "api", "worker")  # the lab's processes


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lab_down: takes the shared lab down; runs after every other test of the lab")


@dataclass
class RunningLab:
    env: dict[str, str]
    api_url: str
    token: str
    dns_port: int
    http_port: int
    https_port: int
    pdns_url: str
    pdns_key: str
    npm_url: str
    status: dict
    forwarding_before: str = ""  # /proc/sys/net/ipv4/ip_forward before `up`
    others_before: tuple[str, ...] = ()  # the nftables tables of other bridges of ours before `up`

    # --- the API, as Paymenter calls it ---

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return requests.request(method, f"{self.api_url}{path}", headers=headers, timeout=60, **kwargs)

    def job(self, answer: requests.Response, expect: str = "succeeded") -> dict:
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["job_id"]

        def finished() -> dict | None:
            job = self.call("GET", f"/jobs/{job_id}").json()["job"]
            return job if job["state"] in ("succeeded", "failed", "cancelled") else None

        job = wait_until(finished, JOB_TIMEOUT, 0.5, f"job {job_id} ({answer.request.path_url})")
        assert job["state"] == expect, self.explain(job)
        return job

    def explain(self, job: dict) -> str:
        """What a failed assertion on a job prints: its state and reason first (a long job dict is cut short in
        pytest's summary), then the worker log's end."""
        log = Path(self.env["PROXMOXWP_DATA_DIR"]) / "lab" / "worker.log"
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:]) if log.exists() else "(no worker log)"
        return (f"job {job['id']} {job['kind']} {job['state']}: task {job.get('failed_task')!r}: {job.get('message')}"
                f"\n--- worker log ---\n{tail}")  # fmt: skip

    def site(self, service_id: int) -> dict:
        return self.call("GET", "/status", params={"service_id": service_id}).json()

    # --- what a visitor sees ---

    def resolve(self, name: str) -> list[str]:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.dns_port
        resolver.cache = None
        try:
            return sorted(r.to_text() for r in resolver.resolve(name, "A"))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []

    def visit(self, name: str, path: str = "/", https: bool = True) -> tuple[int, str]:
        """GET a page of `name` through the lab proxy at the address the lab's DNS gives, as `curl --resolve` does
        (the lab's certificates are self-signed: -k). (0, "") when the name does not resolve."""
        addresses = self.resolve(name)
        if not addresses:
            return 0, ""
        port = self.https_port if https else self.http_port
        url = f"{'https' if https else 'http'}://{name}:{port}{path}"
        done = subprocess.run(
            ["curl", "-sk", "--max-time", "30", "--resolve", f"{name}:{port}:{addresses[0]}", "-o", "-",
             "-w", "\n%{http_code}", url],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        body, _, code = done.stdout.rpartition("\n")
        return int(code or 0), body

    def title(self, name: str) -> str | None:
        code, body = self.visit(name)
        if code != 200:
            return None
        found = re.search(r"<title>(.*?)</title>", body, re.S)
        return found.group(1).strip() if found else None

    # --- the lab's own parts, to check what is left ---

    def proxy_hosts(self) -> list[dict]:
        token = requests.post(
            f"{self.npm_url}/tokens", json=json.loads(Path(self.env["E2E_NPM_LOGIN"]).read_text()), timeout=10
        ).json()["token"]
        return requests.get(
            f"{self.npm_url}/nginx/proxy-hosts", headers={"Authorization": f"Bearer {token}"}, timeout=10
        ).json()

    def publish(self, zone: str, name: str, address: str) -> None:
        """Create `zone` in the lab's DNS (as the customer's DNS provider would hold it) with `name` A `address`."""
        headers = {"X-API-Key": self.pdns_key}
        base = f"{self.pdns_url}/api/v1/servers/localhost/zones"
        body = {"name": f"{zone}.", "kind": "Native", "nameservers": [f"ns1.{zone}."]}
        made = requests.post(base, json=body, headers=headers, timeout=10)
        assert made.status_code in (201, 409), made.text
        rrset = {"name": f"{name}.", "type": "A", "ttl": 60, "changetype": "REPLACE",
                 "records": [{"content": address, "disabled": False}]}  # fmt: skip
        patched = requests.patch(f"{base}/{zone}.", json={"rrsets": [rrset]}, headers=headers, timeout=10)
        assert patched.status_code == 204, patched.text


def processes_of(data_dir: Path) -> set[int]:
    """Live processes whose environment or command line names this lab's data directory, and their descendants
    (nginx clears its workers' environment): whatever the lab started."""
    found = set()
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if process.pid == os.getpid() or process.status() == psutil.STATUS_ZOMBIE:
                continue
            named = process.environ().get("PROXMOXWP_DATA_DIR") == str(data_dir)
            if named or any(str(data_dir) in arg for arg in process.cmdline()):
                found.add(process.pid)
                found.update(child.pid for child in process.children(recursive=True))
    return found


def claim_the_lab(lab_cache: Path) -> None:
    """Fail when another worker of the run has the lab already: the tests that take it were not grouped onto one
    worker, and each would bring a lab of its own up (slow, and not what they claim to share)."""
    owner = lab_cache / "shared-lab.owner"
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    try:
        descriptor = os.open(owner, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pytest.fail(
            f"the shared lab was started already by worker {owner.read_text()!r}, and {worker!r} asks for it too: "
            "its tests must run on one worker (pytest-xdist --dist loadgroup; pytest 9.2 breaks that grouping, "
            "pytest-xdist issue #1386)"
        )
    with os.fdopen(descriptor, "w") as handle:
        handle.write(worker)


@contextlib.contextmanager
def running_lab(data_dir: Path, env: dict[str, str]) -> Iterator[RunningLab]:
    """`proxmoxwp lab up` in `data_dir` with `env` (tests/labs.py lab_environment), checked and described; down at
    the end whatever the outcome, with anything a failure left removed."""
    lab_files = data_dir / "lab"
    try:
        before = lab_command(env, "status", "--json")
        assert before.returncode == 3, before.stdout + before.stderr
        states = {part["name"]: part["state"] for part in json.loads(before.stdout)["parts"]}
        # the golden image is the run's cache, which another worker may have filled: only its place is checked
        assert states.pop("image") in ("present", "absent")
        assert states == {"bridge": "stopped", **dict.fromkeys(SERVICES, "stopped")}

        forwarding_before, others_before = IP_FORWARD.read_text(), tuple(our_tables())
        up = lab_command(env, "up")
        assert up.returncode == 0, up.stdout + up.stderr
        status = json.loads(lab_command(env, "status", "--json").stdout)
        assert status["up"], status
        parts = {part["name"]: part for part in status["parts"]}
        npm_info = json.loads((lab_files / "proxy" / "npm.json").read_text())
        login = data_dir / "npm-login.json"
        login.write_text(json.dumps({"identity": npm_info["identity"],
                                     "secret": Path(npm_info["secret_file"]).read_text().strip()}))  # fmt: skip
        env["E2E_NPM_LOGIN"] = str(login)
        yield RunningLab(
            env=env,
            api_url=status["api_url"],
            token=Path(status["token_file"]).read_text().strip(),
            dns_port=int(env["PROXMOXWP_LAB_DNS_PORT"]),
            http_port=int(env["PROXMOXWP_LAB_HTTP_PORT"]),
            https_port=int(env["PROXMOXWP_LAB_HTTPS_PORT"]),
            pdns_url=parts["dns"]["url"],
            pdns_key=(lab_files / "dns" / "api-key").read_text().strip(),
            npm_url=npm_info["url"],
            status=status,
            forwarding_before=forwarding_before,
            others_before=others_before,
        )
    finally:
        # The `lab_down` test has checked what `down` leaves; here only what a failure left is removed.
        lab_command(env, "down", timeout=600)
        for pid in processes_of(data_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        remove_bridge(env["PROXMOXWP_LAB_BRIDGE"])


@pytest.fixture(scope="session")
def shared_lab(lab_cache, lab_dir, lab_rootfs, tmp_path_factory) -> Iterator[RunningLab]:
    """The run's lab, up with the golden image; down at the end of the session whatever the outcome."""
    claim_the_lab(lab_cache)
    data_dir = tmp_path_factory.mktemp("shared-lab")
    with running_lab(data_dir, lab_environment(data_dir, lab_dir)) as lab:
        yield lab
