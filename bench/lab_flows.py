"""Lab flow benchmark: create-site to the first 200 through the lab proxy, from a warm pool, from the golden image and
from bare Debian, and the time of every other operation, all through the API of real labs (`proxmoxwp lab up`) in
one run.

Three labs run side by side, each in a data directory, on loopback ports, a bridge and a /24 of its own: the golden
lab (its `images` directory holds the golden archive, which its `lab up` builds), the bare lab (`lab up
--no-golden` with an empty `images` directory of its own, so sites install WordPress from Debian's packages) and
the pool's lab (the golden image, one node, and a warm pool of one member: docs/pool.md). All share one Debian
rootfs cache, built by the first `lab up`. Each round creates one site from the pool (once the member is ready; the
pool is refilled before the next path, so no refill runs beside it), then one per other path, alternating which goes
first, and times the create-site request to the first 200 with the site's title through the lab proxy.
On the golden lab's site, every other operation is then timed from its request until its job succeeded AND the
customer sees the result (the page down, up again, the backup listed, the name gone...). The table shows medians,
the ratio bare / golden for create-to-200, and each operation relative to the golden create-to-200 of the same run.
Each job's time is split into its calls to the cluster and the edge (the tasks of the modules that talk to Proxmox
VE, NPM and DNS, from the task events the worker stored) and the rest, its overhead. First of all, with no lab up,
it runs bench/api_load.py (--api-rounds), so that one run gives the whole table of bench/README.md.
One-time costs (`lab up` of each lab) are reported apart. Both labs are taken down at the end, also on error or
Ctrl-C, and the temporary directory is removed unless --keep.

    .venv/bin/python bench/lab_flows.py              # 1 round, about 20 minutes from empty caches
    .venv/bin/python bench/lab_flows.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

import dns.resolver  # noqa: E402  (dnspython, a dependency of the project)

from api.build_host.mounts import remove_tree  # noqa: E402
from api.build_host.network import bridge_exists, free_subnet, remove_bridge, table_exists, table_name  # noqa: E402
from api.waiting import wait_for  # noqa: E402
from lab.ports import free_port  # noqa: E402

PROXMOXWP = ROOT / ".venv" / "bin" / "proxmoxwp"
SUBNET_POOL = "10.234.0.0/16"  # neither the tests' pools (10.231, 10.232) nor the default lab's 10.77
TITLE = "My WordPress site"  # inventory/lab/group_vars/all/wordpress.yml
ARCHIVE = "debian-12-proxmoxwp-wordpress_amd64.tar.zst"
PORTS = ("PVE_PORT", "NPM_PORT", "HTTP_PORT", "HTTPS_PORT", "PDNS_API_PORT")
LAB_UP_TIMEOUT = 1800.0
LAB_DOWN_TIMEOUT = 300.0
CREATE_TIMEOUT = 1200.0  # the bare path installs ~60 packages from the mirror
OPERATION_TIMEOUT = 600.0
POLL = 0.2
# The modules whose tasks are the calls to the cluster and the edge (Proxmox VE, NPM, DNS): a job's overhead is its
# time less theirs (docs: bench/README.md, "Job overhead"). proxmoxwp_files runs in the site's container.
CALL_MODULES = "proxmoxwp.hosting.proxmoxwp_"
NOT_CALLS = ("proxmoxwp.hosting.proxmoxwp_files",)


class BenchError(Exception):
    """A problem that ends the run with one readable line."""


class RunningLab:
    """One lab of this run: its environment, `lab up` / `lab down`, its API and what a visitor sees."""

    def __init__(
        self, name: str, directory: Path, shared_cache: Path, images: Path, golden: bool, pool: int = 0
    ) -> None:
        self.name = name
        self.golden = golden
        self.pool = pool
        self.data_dir = directory / name
        files = self.data_dir / "lab"
        files.mkdir(mode=0o700, parents=True)
        (files / "cache").symlink_to(shared_cache)
        (files / "images").symlink_to(images)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROXMOXWP_")}
        env.update({f"PROXMOXWP_LAB_{port}": str(free_port()) for port in PORTS})
        self.bridge = f"pwpb{secrets.token_hex(2)}"
        env.update(
            PATH=f"{PROXMOXWP.parent}{os.pathsep}{os.environ.get('PATH', '')}",
            PROXMOXWP_DATA_DIR=str(self.data_dir),
            PROXMOXWP_LAB_BIND=f"127.0.0.1:{free_port()}",
            PROXMOXWP_LAB_DNS_PORT=str(free_port(udp=True)),
            PROXMOXWP_LAB_BRIDGE=self.bridge,
            PROXMOXWP_LAB_NETWORK=str(free_subnet(SUBNET_POOL)),
            PROXMOXWP_PUBLIC_IPS="127.0.0.1/32",
        )
        if pool:  # one node, whose worker keeps `pool` members ready (docs/pool.md)
            env.update(PROXMOXWP_LAB_NODES="pve1", PROXMOXWP_LAB_POOL_SIZE=str(pool))
        self.env = env
        self.https_port = int(env["PROXMOXWP_LAB_HTTPS_PORT"])
        self.dns_port = int(env["PROXMOXWP_LAB_DNS_PORT"])
        self.api_url = ""
        self.token = ""
        self.started = False

    # --- lab up / down ---

    def up(self) -> dict:
        """`lab up`; its seconds and each output line with the second it appeared (which part took how long)."""
        argv = [str(PROXMOXWP), "lab", "up"] + ([] if self.golden else ["--no-golden"])
        self.started = True  # from here on, `lab down` is due
        started = time.monotonic()
        process = subprocess.Popen(
            argv, env=self.env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )  # fmt: skip
        lines: list[tuple[float, str]] = []

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append((round(time.monotonic() - started, 1), line.rstrip()))
                print(f"  [{self.name} {lines[-1][0]:6.1f} s] {line.rstrip()}", flush=True)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            code = process.wait(timeout=LAB_UP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
            raise BenchError(f"{self.name}: lab up took more than {LAB_UP_TIMEOUT:.0f} s") from None
        except BaseException:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
            raise
        seconds = time.monotonic() - started
        reader.join(timeout=5)
        if code != 0:
            tail = "\n".join(line for _, line in lines[-20:])
            raise BenchError(f"{self.name}: lab up exited with {code}:\n{tail}")
        status = self.lab("status", "--json", timeout=120)
        info = json.loads(status.stdout)
        if not info.get("up"):
            raise BenchError(f"{self.name}: lab status says not everything is up: {status.stdout[-2000:]}")
        self.api_url = info["api_url"]
        self.token = Path(info["token_file"]).read_text().strip()
        archive = self.data_dir / "lab" / "images" / ARCHIVE
        if archive.exists() != self.golden:
            raise BenchError(f"{self.name}: the golden archive is {'missing' if self.golden else 'present'}")
        return {"seconds": seconds, "output": lines}

    def lab(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(PROXMOXWP), "lab", *args], env=self.env, cwd=ROOT, capture_output=True, text=True,
            timeout=timeout, stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip

    def down(self) -> list[str]:
        """`lab down`, then make sure our bridge and its nft table are gone; the problems, if any."""
        problems = []
        if self.started:
            try:
                done = self.lab("down", timeout=LAB_DOWN_TIMEOUT)
                if done.returncode != 0:
                    problems.append(f"{self.name}: lab down exited with {done.returncode}: {done.stderr[-500:]}")
            except subprocess.TimeoutExpired:
                problems.append(f"{self.name}: lab down took more than {LAB_DOWN_TIMEOUT:.0f} s")
        if bridge_exists(self.bridge) or table_exists(table_name(self.bridge)):
            problems.append(f"{self.name}: bridge {self.bridge} was left; removed it")
            remove_bridge(self.bridge)
        return problems

    # --- the API ---

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.api_url}{path}", data=data, method=method)  # noqa: S310
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310 (our lab, on loopback)
                return answer.status, json.loads(answer.read() or b"{}")
        except urllib.error.HTTPError as error:
            text = error.read()
            try:
                return error.code, json.loads(text)
            except ValueError:
                return error.code, {"raw": text.decode(errors="replace")[:500]}

    def request(self, path: str, body: dict) -> dict:
        """POST that must be accepted (202, or 200 with a job); its answer."""
        code, answer = self.call("POST", path, body)
        if code not in (200, 202) or "job_id" not in answer:
            raise BenchError(f"{self.name}: POST {path} {body} answered {code}: {answer}")
        return answer

    def job_state(self, job_id: object) -> dict:
        code, answer = self.call("GET", f"/jobs/{job_id}")
        if code != 200:
            raise BenchError(f"{self.name}: GET /jobs/{job_id} answered {code}: {answer}")
        job = answer["job"]
        if job["state"] in ("failed", "cancelled"):
            raise BenchError(f"{self.name}: job {job_id} {job['state']}: {job.get('message')}")
        return job

    def status(self, service_id: int) -> dict:
        return self.call("GET", f"/status?service_id={service_id}")[1]

    def job_split(self, job_id: int) -> dict[str, float]:
        """From the task events the worker stored in the lab's database (each with its module, start and duration):
        the seconds the job's tasks spent in the modules that call the cluster and the edge (`calls_seconds`), and
        the seconds from the job's start to its first task's (`first_task_seconds`: the worker, ansible-runner and
        ansible-playbook starting, the inventory and the playbook read)."""
        database = self.data_dir / "private" / "proxmoxwp.sqlite3"
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
            rows = connection.execute("SELECT data FROM job_events WHERE job_id = ? AND event = 'runner_on_ok'",
                                      (job_id,)).fetchall()  # fmt: skip
            (started,) = connection.execute("SELECT started_at FROM jobs WHERE id = ?", (job_id,)).fetchone()
        total, first = 0.0, None
        for (data,) in rows:
            summary = json.loads(data or "{}")
            action = summary.get("action") or ""
            if action.startswith(CALL_MODULES) and action not in NOT_CALLS:
                total += float(summary.get("duration") or 0)
            if summary.get("start"):
                start = datetime.fromisoformat(summary["start"])
                first = start if first is None else min(first, start)
        job_start = datetime.fromisoformat(started).replace(tzinfo=UTC)
        return {"calls_seconds": total, "first_task_seconds": (first - job_start).total_seconds() if first else None}

    def pool_ready(self) -> dict:
        """Wait until the worker has every member of the pool ready (after `lab up`, or after a site took one)."""

        def full() -> bool:
            code, health = self.call("GET", "/health?deep=1")
            return code == 200 and sum((health.get("pool") or {}).get("ready", {}).values()) >= self.pool

        started = time.monotonic()
        wait_for(full, timeout=CREATE_TIMEOUT, what=f"{self.name}: the pool to fill", interval=POLL, error=BenchError)
        return {"seconds": time.monotonic() - started}

    # --- what a visitor sees ---

    def visit(self, name: str) -> tuple[int, str]:
        """GET https://<name>/ through the lab proxy on loopback (0 when nothing answers)."""
        url = f"https://{name}:{self.https_port}/"
        done = subprocess.run(
            ["curl", "-sk", "--max-time", "15", "--resolve", f"{name}:{self.https_port}:127.0.0.1", "-o", "-",
             "-w", "\n%{http_code}", url],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        body, _, code = done.stdout.rpartition("\n")
        return int(code or 0), body

    def up_with_title(self, name: str) -> bool:
        code, body = self.visit(name)
        return code == 200 and re.search(rf"<title>\s*{re.escape(TITLE)}", body) is not None

    def not_up(self, name: str) -> bool:
        return self.visit(name)[0] != 200

    def resolves(self, name: str) -> bool:
        """The lab's DNS has an A record for `name`."""
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.dns_port
        resolver.cache = None
        resolver.lifetime = 5
        try:
            return bool(resolver.resolve(name, "A"))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return False

    # --- timed flows ---

    def timed(self, what: str, path: str, body: dict, visible: Callable[[dict], bool], timeout: float) -> dict:
        """Seconds from the request to its job succeeded and `visible(answer)` true, both; with the parts."""
        started = time.monotonic()
        answer = self.request(path, body)
        job_id = answer["job_id"]
        marks: dict[str, float] = {}

        def done() -> bool:
            if "job" not in marks:
                job = self.job_state(job_id)
                if job["state"] == "succeeded":
                    marks["job"] = time.monotonic() - started
                    marks["job_duration_seconds"] = job.get("duration_seconds")
            if "visible" not in marks and visible(answer):
                marks["visible"] = time.monotonic() - started
            return "job" in marks and "visible" in marks

        wait_for(done, timeout=timeout, what=f"{self.name}: {what}", interval=POLL, error=BenchError)
        seconds = time.monotonic() - started
        print(
            f"  {self.name:6} {what:<22} {seconds:7.1f} s  (job succeeded {marks['job']:.1f} s, "
            f"visible {marks['visible']:.1f} s)",
            flush=True,
        )
        split = self.job_split(job_id)
        return {"seconds": seconds, "job_seconds": marks["job"], "visible_seconds": marks["visible"],
                "job_duration_seconds": marks["job_duration_seconds"], "job_id": job_id, **split,
                "overhead_seconds": marks["job_duration_seconds"] - split["calls_seconds"]}  # fmt: skip

    def create(self, service_id: int) -> tuple[str, dict]:
        """create-site → the first 200 with the site's title through the proxy; the subdomain and the timing."""
        body = {"service_id": service_id, "email": "owner@example.com", "plan": "basic", "public_ip": "127.0.0.1"}
        names: dict[str, str] = {}

        def visible(answer: dict) -> bool:
            names["name"] = answer["subdomain"]
            return self.up_with_title(answer["subdomain"])

        timing = self.timed("create → first 200", "/create-site", body, visible, CREATE_TIMEOUT)
        return names["name"], timing

    def operations(self, service_id: int, name: str) -> dict[str, dict]:
        """Every other operation on a running site, each until the customer sees its result."""
        sid = {"service_id": service_id}
        up = lambda _answer: self.up_with_title(name)  # noqa: E731
        down = lambda _answer: self.not_up(name)  # noqa: E731
        times: dict[str, dict] = {}

        def listed(answer: dict) -> bool:
            code, listing = self.call("GET", f"/action/getbak?service_id={service_id}")
            backups = {b.get("name"): b.get("state") for b in listing.get("backups", [])}
            return code == 200 and backups.get(answer["bak"]) == "present"

        times["mkbak"] = self.timed("mkbak", "/action/mkbak", sid, listed, OPERATION_TIMEOUT)
        bak = self.call("GET", f"/action/getbak?service_id={service_id}")[1]["backups"][0]["name"]
        times["rollback"] = self.timed("rollback", "/action/rollback", {**sid, "bak": bak}, up, OPERATION_TIMEOUT)

        def unlisted(_answer: dict) -> bool:
            code, listing = self.call("GET", f"/action/getbak?service_id={service_id}")
            return code == 200 and bak not in {b.get("name") for b in listing.get("backups", [])}

        times["delbak"] = self.timed("delbak", "/action/delbak", {**sid, "bak": bak}, unlisted, OPERATION_TIMEOUT)
        for action, visible in (("stop", down), ("start", up), ("restart", up), ("reset", up)):
            body = {**sid, "action": action}
            times[f"power {action}"] = self.timed(f"power {action}", "/action/power", body, visible, OPERATION_TIMEOUT)
        times["toggle off"] = self.timed(
            "toggle off", "/action/toggle", sid, lambda _a: self.visit(name)[0] == 404, OPERATION_TIMEOUT
        )
        times["toggle on"] = self.timed("toggle on", "/action/toggle", sid, up, OPERATION_TIMEOUT)
        times["suspend"] = self.timed("suspend", "/suspend-site", sid, down, OPERATION_TIMEOUT)
        times["unsuspend"] = self.timed("unsuspend", "/unsuspend-site", sid, up, OPERATION_TIMEOUT)

        def premium(_answer: dict) -> bool:
            return self.status(service_id).get("plan") == "premium" and self.up_with_title(name)

        times["upgrade"] = self.timed("upgrade to premium", "/wp/upgrade/", {**sid, "plan": "premium"}, premium,
                                      OPERATION_TIMEOUT)  # fmt: skip
        times["delete-site"] = self.delete(service_id, name)
        return times

    def delete(self, service_id: int, name: str) -> dict:
        gone = lambda _answer: not self.resolves(name) and self.not_up(name)  # noqa: E731
        return self.timed("delete-site", "/delete-site", {"service_id": service_id}, gone, OPERATION_TIMEOUT)


def command_output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).strip().splitlines()[0] if (done.stdout + done.stderr).strip() else ""


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "")  # fmt: skip
    memory = next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in line)
    return {
        "cpus": os.cpu_count(), "cpu": cpu, "memory_gb": round(int(memory) / 1024 / 1024, 1),
        "kernel": platform.release(), "python": platform.python_version(),
    }  # fmt: skip


def versions() -> dict:
    head = command_output(["git", "-C", str(ROOT), "rev-parse", "HEAD"])
    dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True,
                                check=False).stdout.strip())  # fmt: skip
    return {
        "commit": head, "dirty_tree": dirty, "lxc": command_output(["lxc-start", "--version"]),
        "nginx": command_output(["nginx", "-v"]), "pdns": command_output(["pdns_server", "--version"]),
        "ansible": command_output([str(PROXMOXWP.parent / "ansible-playbook"), "--version"]),
    }  # fmt: skip


def others_running() -> list[str]:
    """Other test or lab runs on the machine (their command lines, shortened), to say the machine was shared."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if "pytest" in cmd:
            found.append(cmd[:160])
    return sorted(set(found))


def cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def api_load(rounds: int, directory: Path) -> dict:
    """bench/api_load.py with `rounds` rounds, waiting for a quiet machine before each measurement: its result."""
    out = directory / "api_load"
    argv = [sys.executable, str(BENCH / "api_load.py"), "--rounds", str(rounds), "--wait-quiet", "30",
            "--output", str(out)]  # fmt: skip
    print(f"API reads: {' '.join(argv[1:])}", flush=True)
    done = subprocess.run(argv, cwd=ROOT, stdin=subprocess.DEVNULL, timeout=1800, check=False)
    written = sorted(out.glob("api_load-*.json"))
    if done.returncode != 0 or not written:
        raise BenchError(f"api_load.py exited with {done.returncode}")
    return json.loads(written[-1].read_text())


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1, help="sites per path (and operation runs), default 1")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (labs' files and logs)")
    parser.add_argument("--api-rounds", type=int, default=3,
                        help="rounds of bench/api_load.py run first, in the same run (default 3; 0: none)")  # fmt: skip
    options = parser.parse_args()
    if os.geteuid() != 0:
        print("error: the lab needs root", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    directory = Path(tempfile.mkdtemp(prefix="proxmoxwp-labflows-", dir="/var/tmp"))
    labs: list[RunningLab] = []
    problems: list[str] = []
    code = 1
    try:
        shared = directory / "shared"
        (shared / "cache").mkdir(parents=True)
        (shared / "images").mkdir()
        bare_images = directory / "bare-images"
        bare_images.mkdir()
        # first, on the machine with no lab up: the API's reads against the baseline (bench/api_load.py)
        api_reads = api_load(options.api_rounds, directory) if options.api_rounds else None
        busy0 = cpu_busy()
        sharing = {"at_start": others_running()}
        load = {"at_start": os.getloadavg()}

        golden = RunningLab("golden", directory, shared / "cache", shared / "images", golden=True)
        labs.append(golden)
        print(f"lab up (golden, builds the rootfs and the golden image) in {golden.data_dir}", flush=True)
        one_time = {"lab_up_golden": golden.up()}
        bare = RunningLab("bare", directory, shared / "cache", bare_images, golden=False)  # its /24 after golden's
        labs.append(bare)
        print(f"lab up --no-golden (bare, rootfs cached) in {bare.data_dir}", flush=True)
        one_time["lab_up_bare"] = bare.up()
        pooled = RunningLab("pool", directory, shared / "cache", shared / "images", golden=True, pool=1)
        labs.append(pooled)
        print(f"lab up (one node, a pool of one) in {pooled.data_dir}", flush=True)
        one_time["lab_up_pool"] = pooled.up()
        one_time["pool_first_fill"] = pooled.pool_ready()

        create: dict[str, list[dict]] = {"pool": [], "golden": [], "bare": []}
        operations: list[dict[str, dict]] = []
        bare_deletes: list[dict] = []
        for round_ in range(1, options.rounds + 1):
            order = (golden, bare) if round_ % 2 else (bare, golden)
            print(f"round {round_}: pool, then {' then '.join(lab.name for lab in order)}", flush=True)
            # the pool's member is taken, then the pool refilled before the other paths, so no refill runs beside them
            pooled.pool_ready()
            name, timing = pooled.create(4000 + round_)
            stats = pooled.job_state(timing["job_id"]).get("stats") or {}
            if stats.get("from_pool") is not True:
                raise BenchError(f"pool: the site of round {round_} did not take the pool's member over: {stats}")
            timing["subdomain"] = name
            create["pool"].append(timing)
            timing["refill"] = pooled.pool_ready()
            for lab in order:
                service_id = (2000 if lab is golden else 3000) + round_
                name, timing = lab.create(service_id)
                timing["subdomain"] = name
                create[lab.name].append(timing)
                if lab is golden:
                    operations.append(lab.operations(service_id, name))
                else:
                    bare_deletes.append(lab.delete(service_id, name))
            sharing[f"round_{round_}"] = others_running()
        busy1 = cpu_busy()
        load["at_end"] = os.getloadavg()
        sharing["at_end"] = others_running()

        golden_create = median([t["seconds"] for t in create["golden"]])
        bare_create = median([t["seconds"] for t in create["bare"]])
        pool_create = median([t["seconds"] for t in create["pool"]])
        operation_names = list(operations[0]) if operations else []
        summary = {
            "create_to_first_200": {
                "pool": pool_create, "golden": golden_create, "bare": bare_create,
                "ratio_bare_to_golden": bare_create / golden_create,
                "ratio_pool_to_golden": pool_create / golden_create,
            },
            "operations": {
                op: {"median_seconds": median([r[op]["seconds"] for r in operations]),
                     "ratio_to_golden_create": median([r[op]["seconds"] for r in operations]) / golden_create,
                     "job_median_seconds": median([r[op]["job_duration_seconds"] for r in operations]),
                     "calls_median_seconds": median([r[op]["calls_seconds"] for r in operations]),
                     "overhead_median_seconds": median([r[op]["overhead_seconds"] for r in operations]),
                     "visible_median_seconds": median([r[op]["visible_seconds"] for r in operations]),
                     "first_task_median_seconds": median([r[op]["first_task_seconds"] or 0 for r in operations])}
                for op in operation_names
            },
            "create_overhead_median_seconds": {
                path: median([t["overhead_seconds"] for t in create[path]]) for path in create
            },
            "api_reads": api_reads,
            "bare_delete_median_seconds": median([t["seconds"] for t in bare_deletes]),
            "one_time_seconds": {k: v["seconds"] for k, v in one_time.items()},
        }  # fmt: skip
        result = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "rounds": options.rounds,
            "machine": machine(),
            "versions": versions(),
            "shared_machine": {
                "other_pytest_processes": sharing, "loadavg": load,
                "machine_cpu_busy_fraction": (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]),
            },
            "summary": summary,
            "create": create,
            "operations": operations,
            "bare_delete": bare_deletes,
            "one_time": one_time,
        }  # fmt: skip

        print("\n| flow | median (s) | rounds (s) | ratio |\n|---|---:|---|---:|")
        for path in ("pool", "golden", "bare"):
            values = ", ".join(f"{t['seconds']:.1f}" for t in create[path])
            ratio = median([t["seconds"] for t in create[path]]) / golden_create
            print(f"| create → first 200, {path} | {median([t['seconds'] for t in create[path]]):.1f} | {values} | "
                  f"{ratio:.2f} |")  # fmt: skip
        print(
            "\noperations on the golden lab's site: request → visible and job succeeded (median), the job's own "
            "time, its calls to the cluster and the edge, its overhead (job − calls); ratio = time / golden create\n"
        )
        print("| operation | median (s) | rounds (s) | visible (s) | job (s) | calls (s) | overhead (s) | "
              "to first task (s) | ratio |\n|---|---:|---|---:|---:|---:|---:|---:|---:|")  # fmt: skip
        for op in operation_names:
            runs = [r[op] for r in operations]
            values = ", ".join(format(r["seconds"], ".1f") for r in runs)
            o = summary["operations"][op]
            print(f"| {op} | {o['median_seconds']:.1f} | {values} | {o['visible_median_seconds']:.1f} | "
                  f"{o['job_median_seconds']:.1f} | {o['calls_median_seconds']:.1f} | "
                  f"{o['overhead_median_seconds']:.1f} | {o['first_task_median_seconds']:.2f} | "
                  f"{o['ratio_to_golden_create']:.2f} |")  # fmt: skip
        if api_reads:
            print("\nAPI reads at 16 connections against the bare Flask baseline, same run (bench/api_load.py)\n")
            print("| endpoint | req/s | p99 ms | ratio | CPU ratio |\n|---|---:|---:|---:|---:|")
            for row in api_reads["summary"]:
                print(f"| {row['endpoint']} | {row['requests_per_second']:.0f} | {row['p99_ms']:.1f} | "
                      f"{row['ratio_to_baseline']:.3f} | {row['cpu_ratio_to_baseline']:.3f} |")  # fmt: skip
        up_golden, up_bare = one_time["lab_up_golden"]["seconds"], one_time["lab_up_bare"]["seconds"]
        print(f"\none-time: lab up (golden, with rootfs and golden image) {up_golden:.0f} s, "
              f"lab up --no-golden (rootfs cached) {up_bare:.0f} s, lab up of the pool's lab "
              f"{one_time['lab_up_pool']['seconds']:.0f} s and its first fill "
              f"{one_time['pool_first_fill']['seconds']:.0f} s")  # fmt: skip
        print(f"machine CPU busy during the run: {result['shared_machine']['machine_cpu_busy_fraction']:.0%}; "
              f"other pytest processes: {'yes' if any(sharing.values()) else 'none seen'}")  # fmt: skip
        out = BENCH / "results" / f"lab_flows-{datetime.now(UTC):%Y-%m-%d-%H%M%S}.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written to {out.relative_to(ROOT)}")
        code = 0
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        for lab in reversed(labs):
            print(f"lab down ({lab.name})", flush=True)
            try:
                problems += lab.down()
            except Exception as exc:  # keep cleaning the other lab
                problems.append(f"{lab.name}: {exc}")
        for problem in problems:
            print(f"cleanup: {problem}", file=sys.stderr)
        if options.keep:
            print(f"kept {directory}")
        else:
            remove_tree(directory)
    return code if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
