"""The whole system in the lab, end to end: on the run's shared lab (tests/shared_lab.py: `proxmoxwp lab up` on this
machine, real LXC containers behind the lab's Proxmox VE API, PowerDNS, the lab proxy on a real nginx, the API under
gunicorn and a worker), two sites on different plans through the API only, with the seed's request shapes: one lives
through every operation, the other, on the bigger plan, beside it. Each step asserts what a customer sees: pages
through the proxy by names resolved through the lab's DNS.

The first site is made by the README's walkthrough itself: its shell block is read from README.md and run step by
step with bash, only the default lab's addresses swapped for the shared lab's, so the README cannot drift from what
works.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlencode

import pytest
import yaml
from conftest import ROOT
from labs import lab_pve_get, lxc_containers
from readme import shell_block
from shared_lab import RunningLab

from api import login_links
from api.jobs.secrets import SecretBox
from api.waiting import wait_for

pytestmark = pytest.mark.containers

PUBLIC_IP = "127.0.0.1"  # the lab proxy listens on loopback: the "public" address the subdomains point to
TITLE = "My WordPress site"  # inventory/lab/group_vars/all/wordpress.yml
TODAY = datetime.now(UTC).strftime("%d%m%Y")
DOWN = (502, 504)  # what the proxy answers for a site whose container is stopped
ADMIN_PREFIX = yaml.safe_load((ROOT / "inventory" / "lab" / "group_vars" / "all" / "naming.yml").read_text())[
    "proxmoxwp_wordpress_admin_prefix"
]
XMLRPC_LIST = "<?xml version='1.0'?><methodCall><methodName>system.listMethods</methodName></methodCall>"
XMLRPC_MULTICALL = (
    "<?xml version='1.0'?><methodCall><methodName>system.multicall</methodName><params><param><value><array>"
    "<data></data></array></value></param></params></methodCall>"
)


# About thirty-five jobs, in real containers.
@pytest.mark.timeout(2700)
def test_a_site_lives_its_whole_life_beside_another_on_a_bigger_plan(shared_lab: RunningLab):
    lab = shared_lab
    readme_site, premium_site = 1001, 7102  # 1001: the walkthrough's own service id
    sites = {readme_site: "basic", premium_site: "premium"}

    # create-site on the bigger plan, as Paymenter sends it; meanwhile the README's walkthrough makes the other
    body = {"service_id": premium_site, "email": f"owner{premium_site}@example.com", "plan": "premium",
            "public_ip": PUBLIC_IP}  # fmt: skip
    premium = lab.call("POST", "/create-site", json=body)
    page, readme_answer = follow_the_readme_walkthrough(lab, readme_site)
    assert f"<title>{TITLE}" in page, page[:500]
    lab.job(premium)
    names = {service_id: lab.site(service_id)["subdomain"] for service_id in sites}
    for service_id, name in names.items():
        assert lab.site(service_id)["state"] == "active"
        assert lab.resolve(name) == [PUBLIC_IP], "the subdomain resolves through the lab's DNS"
        assert lab.title(name) == TITLE
        code, _ = lab.visit(name, https=False)
        assert code == 301, "plain HTTP is sent to HTTPS"
    assert_on_a_strict_cluster(lab, sites)

    # each site's administrator has a login of its own, from the inventory's prefix, as the API answered it
    admins = {service_id: wordpress_logins(lab, service_id) for service_id in sites}
    assert admins == {readme_site: [readme_answer["admin_user"]], premium_site: [premium.json()["admin_user"]]}
    assert admins[readme_site] != admins[premium_site]
    assert all(re.fullmatch(rf"{ADMIN_PREFIX}-[a-z0-9]{{6}}", login) for (login,) in admins.values()), admins
    assert_hardened(lab, readme_site, names[readme_site], admins[readme_site][0])
    assert xmlrpc_status(lab, names[premium_site]) == 200, "the premium plan allows XML-RPC"

    # two customers side by side: the worker runs their jobs in parallel. The basic site goes through every
    # operation (its upgrade brings it to premium); the premium one checks what its plan gives and is deleted.
    with ThreadPoolExecutor(max_workers=len(sites)) as pool:
        lives = [pool.submit(life_of_a_site, lab, readme_site, names[readme_site]),
                 pool.submit(life_on_the_bigger_plan, lab, premium_site, names[premium_site])]  # fmt: skip
        for life in lives:
            life.result()


def readme_walkthrough() -> tuple[str, list[str]]:
    """The shell block of the README's walkthrough: what comes before step 1, and the numbered steps."""
    block = shell_block(after="### Walkthrough: a site in the lab")
    prelude, *steps = re.split(r"\n(?=# \d+\. )", block)
    assert len(steps) == 3, "the walkthrough's steps: create, watch the job, open the site"
    for default in DEFAULT_ADDRESSES:
        assert default in block, f"the walkthrough no longer uses {default}: teach this test its new form"
    return prelude, steps


DEFAULT_ADDRESSES = (
    "http://127.0.0.1:8080",
    ":8443",
)  # the default lab's API and proxy (HTTPS), as the README has them


def readme_shell(lab: RunningLab, prelude: str) -> dict[str, str]:
    """The reader's shell after the walkthrough's first lines (PATH, TOKEN), run once as a reader runs them, in the
    repository and with the lab's environment."""
    # TOKEN is a plain shell variable there: exported here only so that `env` shows it to the next steps
    script = f"{prelude}\nexport TOKEN\nenv -0"
    done = subprocess.run(["bash", "-c", script], cwd=ROOT, env=lab.env, capture_output=True, timeout=120,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    shell = dict(entry.split("=", 1) for entry in done.stdout.decode().split("\0") if "=" in entry)
    assert len(shell.get("TOKEN", "")) >= 16, "the walkthrough's first lines give the lab's token"
    return shell


def run_readme_step(lab: RunningLab, shell: dict[str, str], step: str) -> str:
    """One step of the walkthrough with bash in that shell; the default lab's addresses in it are the shared lab's."""
    for default, ours in zip(DEFAULT_ADDRESSES, (lab.api_url, f":{lab.https_port}"), strict=True):
        step = step.replace(default, ours)
    done = subprocess.run(["bash", "-c", step], cwd=ROOT, env=shell, capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip
    assert done.returncode == 0, f"{step}\n--- stderr ---\n{done.stderr}"
    return done.stdout


def follow_the_readme_walkthrough(lab: RunningLab, service_id: int) -> tuple[str, dict]:
    """Create the site, watch its job until it succeeds, open it through the lab proxy; the page it gives and
    create-site's answer."""
    prelude, (create, watch, visit) = readme_walkthrough()
    assert f'"service_id": {service_id}' in create
    shell = readme_shell(lab, prelude)
    answer = json.loads(run_readme_step(lab, shell, create))
    assert answer["success"] is True and answer["job_id"], answer

    last: dict = {}

    def created() -> dict | None:
        jobs = json.loads(run_readme_step(lab, shell, watch))["jobs"]
        last.update(next(job for job in jobs if job["id"] == answer["job_id"]))
        return dict(last) if last["state"] not in ("queued", "running") else None

    def seen() -> str:
        progress = lab.call("GET", f"/jobs/{answer['job_id']}").json()["job"].get("progress")
        return f"progress {progress}; {lab.explain(last)}"

    job = wait_for(created, timeout=900, interval=2.0, what="the walkthrough's create-site job", last_seen=seen,
                   error=pytest.fail.Exception)  # fmt: skip
    assert job["state"] == "succeeded", lab.explain(job)
    return run_readme_step(lab, shell, visit), answer


def life_on_the_bigger_plan(lab: RunningLab, service_id: int, name: str) -> None:
    assert_premium(lab, service_id, name)
    assert_logins(lab, service_id, name)
    assert_deleted(lab, service_id, [name])


def assert_logins(lab: RunningLab, service_id: int, name: str) -> None:
    """One-click login as the customer's browser follows it through the lab proxy: the link opens wp-admin once; the
    same link again, and one past its lifetime, are refused. Then a new administrator password logs in, set by a
    real run of site_login.yml (which also gives the site its key again)."""
    sid = {"service_id": service_id}
    answer = lab.call("POST", "/action/login-link", json=sid)
    assert answer.status_code == 200, answer.text  # the creation gave the site its key
    link = answer.json()
    assert link["login_url"].startswith(f"https://{name}/wp-login.php?")
    path = link["login_url"].removeprefix(f"https://{name}")
    assert logged_in_by(lab, name, path), "the link opens wp-admin"
    status, _, page = fetch(lab, name, path)
    assert status == 403 and "already used" in page, (status, page[:500])

    key = login_links.site_key(lab_secret_box(lab), SimpleNamespace(service_id=service_id, subdomain=name))
    expired, _ = login_links.token(key, link["admin_user"], 60, now=time.time() - 120)
    status, _, page = fetch(lab, name, login_links.link("", expired))
    assert status == 403 and "expired" in page, (status, page[:500])

    changed = lab.call("POST", "/action/admin-password", json=sid)
    assert changed.status_code == 202, changed.text
    lab.job(changed)
    form = urlencode({"log": changed.json()["admin_user"], "pwd": changed.json()["admin_password"]})
    assert logged_in_by(lab, name, "/wp-login.php", form), "the new password logs in"


def logged_in_by(lab: RunningLab, name: str, path: str, form: str | None = None) -> bool:
    """Whether a fresh browser that requests `path` (posting `form` when given) and follows WordPress's redirect with
    the cookies it got sees the dashboard."""
    with tempfile.TemporaryDirectory() as jar_dir:
        jar = ["--cookie-jar", f"{jar_dir}/jar", "--cookie", f"{jar_dir}/jar"]
        status, headers, _ = fetch(lab, name, path, form, extra=jar, content_type="application/x-www-form-urlencoded")
        if status != 302 or not headers.get("location", "").endswith("/wp-admin/"):
            return False
        status, _, page = fetch(lab, name, "/wp-admin/", extra=jar)
        return status == 200 and "Dashboard" in page


def life_of_a_site(lab: RunningLab, service_id: int, name: str) -> None:
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
    lab.job(lab.call("POST", "/wp/upgrade/", json={**sid, "plan": "premium"}))
    assert_premium(lab, service_id, name)
    assert_deleted(lab, service_id, [name, domain])


def assert_premium(lab: RunningLab, service_id: int, name: str) -> None:
    """The site is on the premium plan: its container runs with that plan's memory and disk, and it answers."""
    assert lab.site(service_id)["plan"] == "premium"
    assert container_memory_mb(lab, service_id) == 2048
    assert "size=16G" in pve_config(lab, service_id)["rootfs"], "the lab records the disk size (overlay has none)"
    assert lab.title(name) == TITLE
    assert xmlrpc_status(lab, name) == 200, "the plan allows XML-RPC (an upgraded site gets it with the plan)"


def assert_deleted(lab: RunningLab, service_id: int, names: list[str]) -> None:
    """delete-site leaves nothing of the site (name, page, proxy hosts, container), and deleting again is fine."""
    sid = {"service_id": service_id}
    vmid = lab.site(service_id)["vmid"]
    lab.job(lab.call("POST", "/delete-site", json=sid))
    assert lab.resolve(names[0]) == [] and lab.visit(names[0])[0] == 0
    hosts = [h["domain_names"] for h in lab.proxy_hosts()]
    assert all(name not in host for host in hosts for name in names), hosts
    assert not any(str(vmid) in ct for ct in lxc_containers(Path(lab.env["PROXMOXWP_DATA_DIR"]) / "lab" / "lxc"))
    again = lab.call("POST", "/delete-site", json=sid)
    assert again.status_code in (200, 202) and again.json()["success"] is True


def fetch(
    lab: RunningLab,
    name: str,
    path: str,
    data: str | None = None,
    extra: list[str] | None = None,
    content_type: str = "text/xml",
) -> tuple[int, dict[str, str], str]:
    """A visitor's request through the lab proxy over HTTPS (a POST of `data` when given, curl's `extra` options):
    the status, the headers (names in lower case) and the body."""
    (address,) = lab.resolve(name)
    argv = ["curl", "-sk", "-i", "--max-time", "30", "--resolve", f"{name}:{lab.https_port}:{address}", *(extra or [])]
    if data is not None:
        argv += ["-H", f"Content-Type: {content_type}", "--data-binary", "@-"]
    done = subprocess.run([*argv, f"https://{name}:{lab.https_port}{path}"], input=data or "", capture_output=True,
                          text=True, timeout=60, check=True)  # fmt: skip
    head, _, body = done.stdout.partition("\n\n")  # text mode reads curl's CRLFs as newlines
    status, *lines = head.split("\n")
    headers = {key.strip().lower(): value.strip() for key, _, value in (line.partition(":") for line in lines)}
    return int(status.split()[1]), headers, body


def xmlrpc_status(lab: RunningLab, name: str) -> int:
    status, _, body = fetch(lab, name, "/xmlrpc.php", XMLRPC_LIST)
    assert status != 200 or "system.multicall" in body, body[:500]
    return status


def assert_hardened(lab: RunningLab, service_id: int, name: str, admin: str) -> None:
    """What issue 17 found open, as a visitor sees it through the lab proxy, and inside the site's container."""
    status, headers, front = fetch(lab, name, "/")
    assert status == 200
    assert headers.get("strict-transport-security") == "max-age=31536000", headers
    assert headers.get("x-content-type-options") == "nosniff" and headers.get("x-frame-options") == "SAMEORIGIN"
    assert "x-powered-by" not in headers, "PHP's expose_php is off"
    assert fetch(lab, name, "/xmlrpc.php", XMLRPC_MULTICALL)[0] == 403
    assert fetch(lab, name, "/readme.html")[0] == 404 and fetch(lab, name, "/license.txt")[0] == 404
    listed = [fetch(lab, name, path) for path in ("/wp-json/wp/v2/users", "/?rest_route=/wp/v2/users", "/?author=1")]
    assert [answer[0] for answer in listed][1:] == [401, 404], [answer[:2] for answer in listed]
    assert listed[0][0] != 200, "the pretty REST path lists no users either"
    seen = [front, fetch(lab, name, "/?feed=rss2")[2], *(answer[2] for answer in listed)]
    assert not [page for page in seen if admin in page], "the administrator's login is nowhere a visitor looks"

    assert ":3306 " not in attach(lab, service_id, "ss", "-Htln"), "MariaDB listens on its unix socket only"
    assert "passwordauthentication no" in attach(lab, service_id, "sshd", "-T").splitlines()

    # Ansible logs each module's invocation to the container's journal: none of the site's secrets may be there.
    secrets = json.loads(attach(lab, service_id, "cat", "/etc/proxmoxwp/wordpress-secrets.json"))
    secrets["login_key"] = attach(lab, service_id, "cat", "/etc/proxmoxwp/wordpress-login-key").strip()
    journal = attach(lab, service_id, "journalctl", "--no-pager", "--output", "verbose")
    assert "Invoked with" in journal, "the journal holds the modules' invocations"
    assert not [name for name, value in secrets.items() if value in journal], "no secret is in the journal"


def wordpress_logins(lab: RunningLab, service_id: int) -> list[str]:
    """The logins WordPress has in the site's container."""
    return attach(lab, service_id, "mysql", "wordpress", "-NBe", "SELECT user_login FROM wp_users").split()


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


def lab_secret_box(lab: RunningLab) -> SecretBox:
    """The lab API's secret material, from which it derives each site's login key."""
    return SecretBox(lab.env.get("PROXMOXWP_SECRET_KEY") or None, Path(lab.env["PROXMOXWP_DATA_DIR"]) / "private")


def change_title(lab: RunningLab, service_id: int, title: str) -> None:
    """The customer renames the site (in WordPress's settings; here straight in its database)."""
    assert re.fullmatch(r"[A-Za-z ]+", title), "the test's own titles only: they go into SQL as they are"
    query = f"UPDATE wp_options SET option_value='{title}' WHERE option_name='blogname'"  # noqa: S608
    attach(lab, service_id, "mysql", "wordpress", "-e", query)


def assert_on_a_strict_cluster(lab: RunningLab, sites: dict[int, str]) -> None:
    """The lab is as strict as Proxmox VE where the sites are concerned: three nodes, and each site placed on one of
    them, in an unprivileged container (PVE's id map) whose net0 has the Proxmox firewall on."""
    nodes = lab_pve_get(Path(lab.env["PROXMOXWP_DATA_DIR"]), "/nodes")
    assert sorted(node["node"] for node in nodes.json()["data"]) == ["pve1", "pve2", "pve3"], nodes.text
    for service_id in sites:
        assert lab.site(service_id)["node"] in ("pve1", "pve2", "pve3")
        config = pve_config(lab, service_id)
        assert config["unprivileged"] == 1 and "firewall=1" in config["net0"], config
        assert attach(lab, service_id, "cat", "/proc/self/uid_map").split() == ["0", "100000", "65536"]


def pve_config(lab: RunningLab, service_id: int) -> dict:
    """The site container's configuration as the lab's Proxmox VE API gives it (from the node it is on)."""
    site = lab.site(service_id)
    data_dir = Path(lab.env["PROXMOXWP_DATA_DIR"])
    answer = lab_pve_get(data_dir, f"/nodes/{site['node']}/lxc/{site['vmid']}/config")
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
