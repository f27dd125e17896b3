"""The whole system in the lab, end to end: `proxmoxwp lab up` on this machine (real LXC containers behind the lab's
Proxmox VE API, PowerDNS, the lab proxy on a real nginx, the API under gunicorn and a worker), then the whole life
of two sites on different plans through the API only, with the seed's request shapes. Each step asserts what a
customer sees: pages through the proxy by names resolved through the lab's DNS.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dns.resolver
import pytest
import requests
from conftest import wait_until
from labs import lab_command, lab_environment, lab_pve_get, lxc_containers

from lab.network import bridge_exists, table_exists

pytestmark = pytest.mark.containers

PUBLIC_IP = "127.0.0.1"  # the lab proxy listens on loopback: the "public" address the subdomains point to
TITLE = "My WordPress site"  # inventory/lab/group_vars/all/wordpress.yml
TODAY = datetime.now(UTC).strftime("%d%m%Y")
JOB_TIMEOUT = 600
DOWN = (502, 504)  # what the proxy answers for a site whose container is stopped


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


@pytest.fixture(scope="module")
def running_lab(lab_dir, lab_rootfs, tmp_path_factory) -> Iterator[RunningLab]:
    """`proxmoxwp lab up` in a data directory of its own, on free loopback ports and a free /24, sharing this run's
    Debian rootfs and golden image caches; `lab down` at the end, and a check that it left nothing."""
    data_dir = tmp_path_factory.mktemp("lab-e2e")
    env = lab_environment(data_dir, lab_dir)
    lab_files = data_dir / "lab"
    bridge = env["PROXMOXWP_LAB_BRIDGE"]
    up = lab_command(env, "up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        status = json.loads(lab_command(env, "status", "--json").stdout)
        assert status["up"], status
        parts = {part["name"]: part for part in status["parts"]}
        pdns_dir = lab_files / "dns"
        proxy_dir = lab_files / "proxy"
        npm_info = json.loads((proxy_dir / "npm.json").read_text())
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
            pdns_key=(pdns_dir / "api-key").read_text().strip(),
            npm_url=npm_info["url"],
            status=status,
        )
    finally:
        down = lab_command(env, "down", timeout=600)
        left = lxc_containers(lab_files / "lxc")
        assert down.returncode == 0, down.stdout + down.stderr
        assert left == [], f"lab down left containers: {left}"
        assert not bridge_exists(bridge) and not table_exists(bridge)
        after = json.loads(lab_command(env, "status", "--json").stdout)
        assert [p["name"] for p in after["parts"] if p["running"] and not p.get("optional")] == []


# The lab's start (Debian rootfs and golden image, unless this run built them already) and about sixty jobs.
@pytest.mark.timeout(2700)
def test_two_sites_live_their_whole_life_through_the_api(running_lab: RunningLab):
    lab = running_lab
    sites = {7101: "basic", 7102: "premium"}

    # create-site, as Paymenter sends it; the answer carries what the welcome e-mail needs
    answers = {}
    for service_id, plan in sites.items():
        body = {"service_id": service_id, "email": f"owner{service_id}@example.com", "plan": plan,
                "public_ip": PUBLIC_IP}  # fmt: skip
        answers[service_id] = lab.call("POST", "/create-site", json=body)
    for answer in answers.values():
        lab.job(answer)
    names = {service_id: lab.site(service_id)["subdomain"] for service_id in sites}
    for service_id, name in names.items():
        assert lab.site(service_id)["state"] == "active"
        assert lab.resolve(name) == [PUBLIC_IP], "the subdomain resolves through the lab's DNS"
        assert lab.title(name) == TITLE
        code, _ = lab.visit(name, https=False)
        assert code == 301, "plain HTTP is sent to HTTPS"

    # the two lives side by side, as two customers would: the worker runs their jobs in parallel
    with ThreadPoolExecutor(max_workers=len(sites)) as pool:
        lives = [pool.submit(life_of_a_site, lab, sid, name, sites[sid]) for sid, name in names.items()]
        for life in lives:
            life.result()


def life_of_a_site(lab: RunningLab, service_id: int, name: str, plan: str) -> None:
    sid = {"service_id": service_id}

    # two backups, named as the seed names them
    made = [lab.call("POST", "/action/mkbak", json=sid) for _ in range(2)]
    assert [answer.json()["bak"] for answer in made] == [f"BAK{TODAY}-1", f"BAK{TODAY}-2"]
    for answer in made:
        lab.job(answer)
    listed = lab.call("GET", "/action/getbak", params=sid).json()["backups"]
    assert [b["name"] for b in listed] == [f"BAK{TODAY}-1", f"BAK{TODAY}-2"]

    # the customer changes the site; rolling back to -1 takes the change away
    change_title(lab, service_id, "Changed after the backups")
    assert lab.title(name) == "Changed after the backups"
    lab.job(lab.call("POST", "/action/rollback", json={**sid, "bak": f"BAK{TODAY}-1"}))
    assert lab.title(name) == TITLE

    # power: stop takes the site down, start and restart bring it back
    lab.job(lab.call("POST", "/action/power", json={**sid, "action": "stop"}))
    assert lab.visit(name)[0] in DOWN and lab.site(service_id)["state"] == "stopped"
    lab.job(lab.call("POST", "/action/power", json={**sid, "action": "start"}))
    assert lab.title(name) == TITLE
    lab.job(lab.call("POST", "/action/power", json={**sid, "action": "restart"}))
    assert lab.title(name) == TITLE

    # reset: the site as it was installed
    change_title(lab, service_id, "Changed before the reset")
    lab.job(lab.call("POST", "/action/power", json={**sid, "action": "reset"}))
    assert lab.title(name) == TITLE

    # a custom domain the customer points at us first; one pointing elsewhere is refused
    zone = f"customer{service_id}.test"
    domain = f"www.{zone}"
    lab.publish(zone, domain, PUBLIC_IP)
    lab.job(lab.call("POST", "/action/setdomain", json={**sid, "domain": domain}))
    assert lab.title(domain) == TITLE, "the site answers on its custom domain"
    code, body = lab.visit(domain)
    assert code == 200 and f"https://{domain}" in body, "WordPress links to the domain it is seen on"
    assert f"//{name}" not in body, "and not back to the subdomain"
    lab.publish(zone, f"shop.{zone}", "198.51.100.20")
    refused = lab.call("POST", "/action/setdomain", json={**sid, "domain": f"shop.{zone}"})
    assert refused.status_code == 422, refused.text
    domains = lab.call("GET", "/action/getdomain", params=sid).json()
    assert [(d["domain"], d["state"]) for d in domains["domains"]] == [(domain, "active")]

    # the toggle: off, nothing answers through the proxy; on, both names answer again
    off = lab.call("POST", "/action/toggle", json=sid)
    assert off.json()["proxy_enabled"] is False
    lab.job(off)
    assert lab.visit(name)[0] == 404 and lab.visit(domain)[0] == 404
    on = lab.call("POST", "/action/toggle", json=sid)
    assert on.json()["proxy_enabled"] is True
    lab.job(on)
    assert lab.title(name) == TITLE and lab.title(domain) == TITLE

    # suspend: down, and the customer cannot start it; unsuspend brings it back
    lab.job(lab.call("POST", "/suspend-site", json=sid))
    assert lab.visit(name)[0] in DOWN
    refused = lab.call("POST", "/action/power", json={**sid, "action": "start"})
    assert refused.status_code == 409, refused.text
    lab.job(lab.call("POST", "/unsuspend-site", json=sid))
    assert lab.title(name) == TITLE

    # upgrade: the container gets the premium plan's memory and disk
    if plan != "premium":
        lab.job(lab.call("POST", "/wp/upgrade/", json={**sid, "plan": "premium"}))
    assert lab.site(service_id)["plan"] == "premium"
    assert container_memory_mb(lab, service_id) == 2048
    assert "size=16G" in pve_config(lab, service_id)["rootfs"], "the lab records the disk size (overlay has none)"
    assert lab.title(name) == TITLE

    # delete-site: nothing of the site is left, and deleting again is fine
    vmid = lab.site(service_id)["vmid"]
    lab.job(lab.call("POST", "/delete-site", json=sid))
    assert lab.resolve(name) == [] and lab.visit(name)[0] == 0
    hosts = [h["domain_names"] for h in lab.proxy_hosts()]
    assert all(name not in names and domain not in names for names in hosts), hosts
    assert not any(str(vmid) in ct for ct in lxc_containers(Path(lab.env["PROXMOXWP_DATA_DIR"]) / "lab" / "lxc"))
    again = lab.call("POST", "/delete-site", json=sid)
    assert again.status_code in (200, 202) and again.json()["success"] is True


def container(lab: RunningLab, service_id: int) -> str:
    """The LXC name of a site's container, from the lab's PVE naming (prefix + vmid)."""
    vmid = lab.site(service_id)["vmid"]
    lxcpath = Path(lab.env["PROXMOXWP_DATA_DIR"]) / "lab" / "lxc"
    (found,) = [ct for ct in lxc_containers(lxcpath) if ct.endswith(f"-{vmid}")]
    return found


def attach(lab: RunningLab, service_id: int, *command: str) -> str:
    lxcpath = Path(lab.env["PROXMOXWP_DATA_DIR"]) / "lab" / "lxc"
    done = subprocess.run(
        ["lxc-attach", "-P", str(lxcpath), "-n", container(lab, service_id), "--", *command],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def change_title(lab: RunningLab, service_id: int, title: str) -> None:
    """The customer renames the site (in WordPress's settings; here straight in its database)."""
    assert re.fullmatch(r"[A-Za-z ]+", title), "the test's own titles only: they go into SQL as they are"
    query = f"UPDATE wp_options SET option_value='{title}' WHERE option_name='blogname'"  # noqa: S608
    attach(lab, service_id, "mysql", "wordpress", "-e", query)


def pve_config(lab: RunningLab, service_id: int) -> dict:
    """The site container's configuration as the lab's Proxmox VE API gives it."""
    vmid = lab.site(service_id)["vmid"]
    answer = lab_pve_get(Path(lab.env["PROXMOXWP_DATA_DIR"]), f"/nodes/{{node}}/lxc/{vmid}/config")
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def container_memory_mb(lab: RunningLab, service_id: int) -> int:
    """The memory limit the container really runs with (its cgroup), in MiB."""
    lxcpath = Path(lab.env["PROXMOXWP_DATA_DIR"]) / "lab" / "lxc"
    for key in ("memory.max", "memory.limit_in_bytes"):
        done = subprocess.run(["lxc-cgroup", "-P", str(lxcpath), "-n", container(lab, service_id), key],
                              capture_output=True, text=True, check=False)  # fmt: skip
        if done.returncode == 0 and done.stdout.strip().isdigit():
            return int(done.stdout.strip()) // 1024**2
    pytest.fail("the container's memory limit cannot be read")
