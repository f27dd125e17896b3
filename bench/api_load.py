"""API load benchmark: `GET /status` and `GET /action/getbak` against a minimal Flask endpoint, in one run.

It builds a throw-away data directory (SQLite by default, or the PostgreSQL database given with
--database-url), runs `proxmoxwp db upgrade`, seeds services with backups, domains and jobs, starts
`proxmoxwp serve` and a baseline (bench/baseline_app.py: one JSON endpoint, no database, served by the same
gunicorn set-up) on free loopback ports, and loads each endpoint in turn with concurrent keep-alive clients
(wrk with bench/load.lua; a Python load tool if wrk is missing). It prints a table, writes
bench/results/api_load-<date>.json, and stops every process it started, also on error or Ctrl-C.

    .venv/bin/python bench/api_load.py                 # 1,000 services, 10 s per endpoint
    .venv/bin/python bench/api_load.py --help
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from api.waiting import wait_for  # noqa: E402
from lab.ports import free_port  # noqa: E402

BIN = Path(sys.executable).parent
TOKEN = "bench-token-0123456789abcdef"
FIRST_SERVICE_ID = 1001
PACKAGES = ("flask", "werkzeug", "gunicorn", "sqlalchemy", "pydantic")
TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A problem that ends the run with one readable line."""


# ---- processes -------------------------------------------------------------------------------------------


class Server:
    """A server process in its own process group; its output goes to a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path, port: int) -> None:
        self.name, self.log, self.port = name, log, port
        self.handle = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self, path: str, timeout: float = 60.0) -> None:
        def answers() -> bool:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with status {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.url(path), timeout=2) as answer:  # noqa: S310 - loopback
                    return answer.status == 200
            except (urllib.error.URLError, OSError):
                return False

        wait_for(
            answers,
            timeout=timeout,
            what=f"{self.name} to answer {path}",
            error=lambda message: BenchError(f"{message}:\n{self.tail()}"),
        )

    def cpu_seconds(self) -> float:
        """User + system CPU time of every live process in the server's process group."""
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == self.proc.pid:  # pgrp
                total += int(fields[11]) + int(fields[12])  # utime + stime
        return total / TICKS

    def tail(self, lines: int = 30) -> str:
        self.handle.flush()
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=20)
            # the master is gone; kill whatever of its group is left (workers, if any)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        finally:
            self.handle.close()


def run_bounded(args: list[str], env: dict[str, str], timeout: float) -> str:
    """Run a command in its own process group; kill the group when it ends, times out or is interrupted."""
    proc = subprocess.Popen(
        args,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{args[0]} did not finish within {timeout:.0f} s") from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(args)} failed with status {proc.returncode}:\n{output[-3000:]}")
    return output


# ---- the database ----------------------------------------------------------------------------------------


def seed(settings, count: int, rng: random.Random) -> dict[int, dict]:
    """Insert `count` services with backups, domains and jobs; return what each one should show."""
    from sqlalchemy import func, select

    from api.models import Backup, Domain, Job, JobState, Service, ServiceState
    from api.runtime import Runtime

    runtime = Runtime(settings)
    inventory = runtime.inventory
    plans = sorted(inventory.plans)
    now = datetime.now(UTC)
    expected: dict[int, dict] = {}
    try:
        with runtime.db.session(write=True) as session:
            if session.scalar(select(func.count()).select_from(Service)):
                raise BenchError("the database already has services: give an empty database")
            last_jobs: dict[int, Job] = {}
            services: dict[int, Service] = {}
            for service_id in range(FIRST_SERVICE_ID, FIRST_SERVICE_ID + count):
                plan_name = rng.choice(plans)
                created = now - timedelta(days=rng.randint(30, 900), seconds=rng.randint(0, 86_400))
                states = [ServiceState.ACTIVE, ServiceState.STOPPED, ServiceState.SUSPENDED]
                state = rng.choices(states, [90, 6, 4])[0]
                service = Service(
                    service_id=service_id,
                    email=f"customer{service_id}@example.com",
                    plan=plan_name,
                    public_ip="203.0.113.10",
                    subdomain=inventory.subdomain(service_id),
                    admin_user=inventory.naming.new_admin_user(),
                    state=state,
                    vmid=10_000 + service_id,
                    node=f"pve{service_id % 3 + 1}",
                    ip=f"10.20.{service_id // 250 % 250}.{service_id % 250 + 2}",
                    proxy_enabled=True,
                    created_at=created,
                    updated_at=created,
                )
                session.add(service)
                services[service_id] = service
            session.flush()  # the services first: jobs, backups and domains refer to them
            for service_id, service in services.items():
                plan_name, plan = service.plan, inventory.plans[service.plan]
                moment = service.created_at

                def job(kind: str, params: dict, stats: dict | None = None, *, sid=service_id) -> Job:
                    nonlocal moment
                    moment += timedelta(hours=rng.randint(1, 200))
                    finished = moment + timedelta(seconds=rng.randint(20, 400))
                    row = Job(
                        service_id=sid,
                        kind=kind,
                        params={"service_id": sid, **params},
                        state=JobState.SUCCEEDED,
                        attempts=1,
                        max_attempts=2,
                        created_at=moment,
                        started_at=moment,
                        heartbeat_at=finished,
                        finished_at=finished,
                        rc=0,
                        stats=stats,
                        progress_done=12,
                        progress_total=12,
                    )
                    session.add(row)
                    return row

                last = job(
                    "create",
                    {"email": service.email, "plan": plan_name, "subdomain": service.subdomain},
                    {"vmid": service.vmid, "node": service.node, "ip": service.ip},
                )
                backups = rng.randint(0, min(plan.backups, 5))
                for number in range(1, backups + 1):
                    day = moment + timedelta(days=number)
                    name = f"BAK{day:%d%m%Y}-{number}"
                    session.add(Backup(service_id=service_id, name=name, state="present", created_at=day))
                    last = job("mkbak", {"bak": name})
                domains = rng.randint(0, min(plan.domains, 3))
                for number in range(1, domains + 1):
                    name = f"shop{number}-customer{service_id}.example.com"
                    session.add(Domain(service_id=service_id, domain=name, state="active", created_at=moment))
                    last = job("domain_add", {"domain": name, "subdomain": service.subdomain})
                last_jobs[service_id] = last
                heading_to = None
                if service.state == ServiceState.ACTIVE and rng.random() < 0.1:
                    # a power job waiting for a worker: /status shows where the site is heading
                    heading_to = ServiceState.STOPPED
                    session.add(
                        Job(
                            service_id=service_id,
                            kind="power",
                            params={"service_id": service_id, "power_action": "stop"},
                            heading_to=heading_to,
                            state=JobState.QUEUED,
                            max_attempts=2,
                            created_at=now,
                        )
                    )
                expected[service_id] = {"backups": backups, "domains": domains, "heading_to": heading_to}
            session.flush()
            for service_id, last in last_jobs.items():
                services[service_id].last_job_id = last.id
    finally:
        runtime.db.dispose()
    return expected


def unseed(settings, count: int) -> None:
    """Delete the seeded services from a database given with --database-url (the rest goes by cascade)."""
    from sqlalchemy import delete

    from api.db import Database
    from api.models import Service

    database = Database(settings.database_url)
    last_id = FIRST_SERVICE_ID + count - 1
    try:
        with database.session(write=True) as session:
            session.execute(delete(Service).where(Service.service_id.between(FIRST_SERVICE_ID, last_id)))
    except Exception as exc:
        print(f"api_load: could not delete the seeded services: {exc}", file=sys.stderr)
    finally:
        database.dispose()


def check_answers(api: Server, expected: dict[int, dict]) -> None:
    """Before loading: the seeded services answer 200 with what was seeded, and the token is required."""

    def get(path: str, token: str | None = TOKEN) -> tuple[int, dict]:
        request = urllib.request.Request(api.url(path))  # noqa: S310 - loopback
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
                return answer.status, json.load(answer)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    for service_id in random.Random(7).sample(sorted(expected), min(20, len(expected))):
        want = expected[service_id]
        status, body = get(f"/status?service_id={service_id}")
        if status != 200 or (
            body["quotas"]["backups"]["used"],
            body["quotas"]["domains"]["used"],
            body["heading_to"],
        ) != (want["backups"], want["domains"], want["heading_to"]):
            raise BenchError(f"/status of {service_id} answered {status} {body}, expected {want}")
        status, body = get(f"/action/getbak?service_id={service_id}")
        if status != 200 or len(body["backups"]) != want["backups"]:
            raise BenchError(f"/action/getbak of {service_id} answered {status} {body}, expected {want}")
    status, _ = get(f"/status?service_id={FIRST_SERVICE_ID}", token=None)
    if status != 401:
        raise BenchError(f"/status without a token answered {status}, expected 401")


# ---- load ------------------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    server: Server
    path: str  # the service id is appended when `with_ids`
    expect: str  # "2xx" or a status
    with_ids: bool
    token: bool
    # run in a thread beside the load until the event is set (a stream of commits, for instance)
    beside: Callable[[threading.Event], None] | None = None


def committing(database_url: str, ids: list[int], every: float) -> Callable[[threading.Event], None]:
    """A commit every `every` seconds that changes nothing an answer shows (a service's updated_at): each one makes
    the API forget the answers it kept (api/read_answers.py), so the reads beside it are read anew."""

    def run(stop: threading.Event) -> None:
        from sqlalchemy import update

        from api.db import Database
        from api.models import Service

        database, rng = Database(database_url), random.Random(2)
        try:
            while not stop.wait(every):
                with database.session(write=True) as session:
                    session.execute(
                        update(Service)
                        .where(Service.service_id == rng.choice(ids))
                        .values(updated_at=datetime.now(UTC))
                    )
        finally:
            database.dispose()

    return run


@dataclass
class Measurement:
    requests: int
    seconds: float
    latency_ms: dict[str, float]
    unexpected_status: int
    first_unexpected_status: str
    socket_errors: dict[str, int]
    server_cpu_seconds: float = 0.0
    tool_cpu_seconds: float = 0.0
    other_cpu_seconds: float = 0.0  # used by processes outside the benchmark meanwhile: noise
    extra: dict = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return self.unexpected_status + sum(self.socket_errors.values())

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk_load(target: Target, ids_file: Path, options, seconds: int, env: dict[str, str]) -> Measurement:
    run_env = {
        **env,
        "BENCH_PATH": target.path,
        "BENCH_IDS_FILE": str(ids_file) if target.with_ids else "",
        "BENCH_TOKEN": TOKEN if target.token else "",
        "BENCH_EXPECT": target.expect,
    }
    args = [
        options.wrk,
        f"-t{options.wrk_threads}",
        f"-c{options.connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(BENCH / "load.lua"),
        target.server.url("/"),
    ]
    output = run_bounded(args, run_env, timeout=seconds + 60)
    line = next((x for x in output.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise BenchError(f"wrk printed no result:\n{output[-3000:]}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    latency = {key: value / 1000 for key, value in data["latency_us"].items()}
    socket_errors = dict(data["socket_errors"])
    return Measurement(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        latency_ms=latency,
        unexpected_status=data["unexpected_status"],
        first_unexpected_status=data["first_unexpected_status"],
        socket_errors=socket_errors,
    )


def python_load(target: Target, ids: list[int], options, seconds: float) -> Measurement:
    """The fallback: one thread per connection, keep-alive http.client; slower and less precise than wrk."""
    headers = {"Accept": "application/json"}
    if target.token:
        headers["Authorization"] = f"Bearer {TOKEN}"
    stop_at = time.monotonic() + seconds
    lock = threading.Lock()
    latencies: list[float] = []
    unexpected: list[int] = []
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}

    def expected(status: int) -> bool:
        return 200 <= status < 300 if target.expect == "2xx" else status == int(target.expect)

    def client(number: int) -> None:
        rng = random.Random(number)
        mine: list[float] = []
        bad: list[int] = []
        connection = http.client.HTTPConnection("127.0.0.1", target.server.port, timeout=10)
        try:
            while time.monotonic() < stop_at:
                path = target.path + (str(rng.choice(ids)) if target.with_ids else "")
                started = time.perf_counter()
                try:
                    connection.request("GET", path, headers=headers)
                    answer = connection.getresponse()
                    answer.read()
                except (OSError, http.client.HTTPException):
                    with lock:
                        errors["read"] += 1
                    connection.close()
                    connection = http.client.HTTPConnection("127.0.0.1", target.server.port, timeout=10)
                    continue
                mine.append((time.perf_counter() - started) * 1000)
                if not expected(answer.status):
                    bad.append(answer.status)
        finally:
            connection.close()
            with lock:
                latencies.extend(mine)
                unexpected.extend(bad)

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(options.connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 30)
    elapsed = time.monotonic() - started
    ordered = sorted(latencies) or [0.0]

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    return Measurement(
        requests=len(latencies),
        seconds=elapsed,
        latency_ms={
            "mean": statistics.fmean(ordered),
            "stdev": statistics.pstdev(ordered),
            "max": ordered[-1],
            "p50": pct(50),
            "p90": pct(90),
            "p99": pct(99),
        },
        unexpected_status=len(unexpected),
        first_unexpected_status=str(unexpected[0]) if unexpected else "",
        socket_errors=errors,
    )


def own_cpu_seconds() -> float:
    """CPU time of this process and its waited-for children (wrk)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def busy_cpu_seconds() -> float:
    """CPU time spent by the whole machine so far (all CPUs, everything but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / TICKS


def wait_until_quiet(limit: float, threshold: float = 0.15) -> float:
    """Wait (up to `limit` seconds) until the CPUs are less than `threshold` busy over one second."""
    deadline = time.monotonic() + limit
    capacity = os.cpu_count() or 1
    while True:
        before = busy_cpu_seconds()
        time.sleep(1.0)
        share = (busy_cpu_seconds() - before) / capacity
        if share < threshold or time.monotonic() >= deadline:
            return share


def load(target: Target, ids: list[int], ids_file: Path, options, seconds: float, env) -> Measurement:
    server_before, own_before, busy_before = (
        target.server.cpu_seconds(),
        own_cpu_seconds(),
        busy_cpu_seconds(),
    )
    stop = threading.Event()
    beside = threading.Thread(target=target.beside, args=(stop,), daemon=True) if target.beside else None
    if beside is not None:
        beside.start()
    try:
        if options.tool == "wrk":
            result = wrk_load(target, ids_file, options, seconds, env)
        else:
            result = python_load(target, ids, options, seconds)
    finally:
        stop.set()
        if beside is not None:
            beside.join(timeout=30)
    result.server_cpu_seconds = target.server.cpu_seconds() - server_before
    result.tool_cpu_seconds = own_cpu_seconds() - own_before
    busy = busy_cpu_seconds() - busy_before
    result.other_cpu_seconds = max(0.0, busy - result.server_cpu_seconds - result.tool_cpu_seconds)
    return result


def find_wrk(choice: str) -> str | None:
    if choice == "python":
        return None
    found = shutil.which("wrk")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing; installing it with apt-get (Debian package `wrk`)", flush=True)
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(
                ["apt-get", "install", "-y", "-q", "wrk"],
                check=True,
                timeout=300,
                stdout=subprocess.DEVNULL,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
        found = shutil.which("wrk")
    if found is None and choice == "wrk":
        raise BenchError("wrk is not installed: `apt-get install -y wrk` (Debian), or use --tool python")
    if found is None:
        print("wrk is not installed (`apt-get install -y wrk`); falling back to the Python load tool")
    return found


def wrk_version(wrk: str) -> str:
    # `wrk -v` prints its version and usage and exits with status 1
    result = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=30, check=False)
    return (result.stdout + result.stderr).strip().splitlines()[0]


# ---- report ----------------------------------------------------------------------------------------------


def machine() -> dict:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, IndexError):
        memory = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    return {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_before": os.getloadavg(),
    }


def git_revision() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "api"], capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty(api)" if dirty else "")


def other_share(measurement: Measurement) -> float:
    """The share of the machine's CPUs used by processes outside the benchmark during a measurement."""
    capacity = measurement.seconds * (os.cpu_count() or 1)
    return measurement.other_cpu_seconds / capacity if capacity else 0.0


def cpu_per_request(measurement: Measurement) -> float:
    """Milliseconds of server CPU time per request."""
    return 1000 * measurement.server_cpu_seconds / measurement.requests if measurement.requests else 0.0


def summarise(rounds: list[dict[str, Measurement]], names: list[str], baseline: str) -> list[dict]:
    """Per endpoint: the round with the median throughput, and the median of the per-round ratios."""
    rows = []
    for name in names:
        runs = sorted((r[name] for r in rounds), key=lambda m: m.rps)
        middle = runs[len(runs) // 2]
        ratios = [r[name].rps / r[baseline].rps if r[baseline].rps else 0.0 for r in rounds]
        cpu_ratios = [cpu_per_request(r[baseline]) / (cpu_per_request(r[name]) or 1.0) for r in rounds]
        rows.append(
            {
                "endpoint": name,
                "requests_per_second": round(middle.rps, 1),
                "p50_ms": round(middle.latency_ms["p50"], 2),
                "p90_ms": round(middle.latency_ms["p90"], 2),
                "p99_ms": round(middle.latency_ms["p99"], 2),
                "errors": sum(r[name].errors for r in rounds),
                "ratio_to_baseline": round(statistics.median(ratios), 3),
                "server_cpu_ms_per_request": round(cpu_per_request(middle), 3),
                # baseline CPU per request / this endpoint's: what the throughput ratio would be on a machine
                # where the server has the CPUs to itself; far less disturbed by other processes
                "cpu_ratio_to_baseline": round(statistics.median(cpu_ratios), 3),
                "other_cpu_share_max": round(max(other_share(r[name]) for r in rounds), 3),
            }
        )
    return rows


def print_table(rows: list[dict]) -> None:
    columns = [
        ("req/s", 9),
        ("p50 ms", 8),
        ("p99 ms", 8),
        ("errors", 7),
        ("ratio", 7),
        ("CPU ms/req", 11),
        ("CPU ratio", 10),
    ]
    header = f"{'endpoint':<28}" + "".join(f" {title:>{width}}" for title, width in columns)
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['endpoint']:<28} {row['requests_per_second']:>9.1f} {row['p50_ms']:>8.2f} "
            f"{row['p99_ms']:>8.2f} {row['errors']:>7} {row['ratio_to_baseline']:>7.3f} "
            f"{row['server_cpu_ms_per_request']:>11.3f} {row['cpu_ratio_to_baseline']:>10.3f}"
        )


# ---- main ------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=1000, help="services to seed (default 1000)")
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per endpoint (10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unrecorded load first (2)")
    parser.add_argument("--rounds", type=int, default=1, help="measure every endpoint this many times (1)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent keep-alive clients (16)")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (1)")
    parser.add_argument(
        "--commit-every-ms",
        type=int,
        default=10,
        metavar="MS",
        help="also measure the reads with a commit every MS milliseconds beside them, which makes the API read every "
        "answer anew (10; 0: not)",
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers of both servers (2)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker of both servers (8)")
    parser.add_argument(
        "--database-url",
        default="",
        help="an EMPTY PostgreSQL database (postgresql://…) instead of SQLite in the temporary directory",
    )
    parser.add_argument(
        "--inventory",
        type=Path,
        default=ROOT / "inventory" / "lab",
        help="PROXMOXWP_INVENTORY (inventory/lab)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=int,
        default=0,
        metavar="SECONDS",
        help="before each measurement, wait up to SECONDS for the machine to be less than 15%% busy (0: no)",
    )
    parser.add_argument("--tool", choices=["auto", "wrk", "python"], default="auto", help="load tool (auto)")
    parser.add_argument("--output", type=Path, default=BENCH / "results", help="where the JSON goes")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the data and the ids")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, database)")
    options = parser.parse_args(argv)
    if options.services < 1 or options.rounds < 1 or not 1 <= options.duration <= 600 or options.warmup < 0:
        parser.error("--services and --rounds must be at least 1, --duration 1 to 600, --warmup 0 or more")
    if options.connections < options.wrk_threads:
        parser.error("--connections must be at least --wrk-threads")
    return options


def _interrupted(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    proxmoxwp = BIN / "proxmoxwp"
    if not proxmoxwp.is_file():
        print(
            f"api_load: {proxmoxwp} is missing: run this with the project's virtualenv Python",
            file=sys.stderr,
        )
        return 2
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupted)

    workdir = Path(tempfile.mkdtemp(prefix="proxmoxwp-bench-"))
    servers: list[Server] = []
    seeded_into = None  # the settings of a --database-url database once this run has seeded it
    failed = True
    try:
        machine_before = machine()
        wrk = find_wrk(options.tool)
        options.tool, options.wrk = ("wrk", wrk) if wrk else ("python", None)
        env = {key: value for key, value in os.environ.items() if not key.startswith("PROXMOXWP_")}
        env.update(
            {
                "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                "PROXMOXWP_DATA_DIR": str(workdir / "data"),
                "PROXMOXWP_API_TOKENS": TOKEN,
                "PROXMOXWP_INVENTORY": str(options.inventory),
            }
        )
        if options.database_url:
            env["PROXMOXWP_DATABASE_URL"] = options.database_url

        print(f"upgrading the schema in {options.database_url or workdir / 'data'}", flush=True)
        run_bounded([str(proxmoxwp), "db", "upgrade"], env, timeout=300)

        from api.config import load_settings

        settings = load_settings(
            data_dir=workdir / "data",
            database_url=options.database_url,
            api_tokens=[TOKEN],
            inventory=options.inventory,
        )
        started = time.monotonic()
        expected = seed(settings, options.services, random.Random(options.seed))
        if options.database_url:
            seeded_into = settings
        ids = sorted(expected)
        ids_file = workdir / "ids.txt"
        ids_file.write_text("".join(f"{i}\n" for i in ids))
        seeded = {
            "services": len(ids),
            "backups": sum(e["backups"] for e in expected.values()),
            "domains": sum(e["domains"] for e in expected.values()),
            "queued_jobs": sum(1 for e in expected.values() if e["heading_to"]),
        }
        print(f"seeded {seeded} in {time.monotonic() - started:.1f} s", flush=True)

        size = ["--workers", str(options.workers), "--threads", str(options.threads)]
        api_port, baseline_port = free_port(), free_port()
        api = Server(
            "proxmoxwp serve",
            [str(proxmoxwp), "serve", "--bind", f"127.0.0.1:{api_port}", *size],
            env,
            workdir / "api.log",
            api_port,
        )
        servers.append(api)
        baseline = Server(
            "baseline",
            [sys.executable, str(BENCH / "baseline_app.py"), "--bind", f"127.0.0.1:{baseline_port}", *size],
            env,
            workdir / "baseline.log",
            baseline_port,
        )
        servers.append(baseline)
        api.wait_ready("/health")
        baseline.wait_ready("/ping")
        check_answers(api, expected)

        targets = [
            Target("baseline GET /ping", baseline, "/ping", "2xx", with_ids=False, token=False),
            Target("GET /status", api, "/status?service_id=", "200", with_ids=True, token=True),
            Target("GET /action/getbak", api, "/action/getbak?service_id=", "200", with_ids=True, token=True),
        ]
        if options.commit_every_ms:
            # the same reads while the database changes all the time: nearly every answer is read anew
            every = options.commit_every_ms / 1000
            targets += [
                Target(f"{target.name}, commits", api, target.path, "200", with_ids=True, token=True,
                       beside=committing(settings.database_url, ids, every))
                for target in targets[1:]
            ]  # fmt: skip
        names = [t.name for t in targets]
        print(
            f"load: {options.tool}, {options.connections} connections, {options.duration} s per endpoint, "
            f"{options.rounds} round(s); servers: gthread, {options.workers} workers x {options.threads} "
            "threads",
            flush=True,
        )
        if options.warmup > 0:
            for target in targets:
                load(target, ids, ids_file, options, options.warmup, env)
        rounds: list[dict[str, Measurement]] = []
        db_note = ", the database server included" if options.database_url else ""
        for number in range(1, options.rounds + 1):
            results = {}
            for target in targets:
                results[target.name] = measured = load(target, ids, ids_file, options, options.duration, env)
                print(
                    f"  round {number}: {target.name:<22} {measured.rps:9.1f} req/s  "
                    f"p50 {measured.latency_ms['p50']:.2f} ms  p99 {measured.latency_ms['p99']:.2f} ms  "
                    f"(other processes: {other_share(measured):.0%} of the CPUs{db_note})",
                    flush=True,
                )
            rounds.append(results)

        rows = summarise(rounds, names, names[0])
        print()
        print_table(rows)
        now = datetime.now()
        report = {
            "benchmark": "api_load",
            "date": now.astimezone().isoformat(timespec="seconds"),
            "revision": git_revision(),
            "machine": {**machine_before, "load_average_after": os.getloadavg()},
            "versions": {name: version(name) for name in PACKAGES},
            "tool": options.tool,
            "tool_version": wrk_version(options.wrk) if options.tool == "wrk" else "python",
            "database": "postgresql" if options.database_url else "sqlite",
            "settings": {
                "connections": options.connections,
                "wrk_threads": options.wrk_threads,
                "duration_s": options.duration,
                "warmup_s": options.warmup,
                "rounds": options.rounds,
                "wait_quiet_s": options.wait_quiet,
                "gunicorn": {
                    "worker_class": "gthread",
                    "workers": options.workers,
                    "threads": options.threads,
                },
            },
            "seeded": seeded,
            "summary": rows,
            "rounds": [
                {
                    name: {
                        "requests": m.requests,
                        "seconds": round(m.seconds, 3),
                        "requests_per_second": round(m.rps, 1),
                        "latency_ms": {k: round(v, 3) for k, v in m.latency_ms.items()},
                        "unexpected_status": m.unexpected_status,
                        "first_unexpected_status": m.first_unexpected_status,
                        "socket_errors": m.socket_errors,
                        "server_cpu_seconds": round(m.server_cpu_seconds, 2),
                        "load_tool_cpu_seconds": round(m.tool_cpu_seconds, 2),
                        "other_cpu_seconds": round(m.other_cpu_seconds, 2),
                    }
                    for name, m in results.items()
                }
                for results in rounds
            ],
        }
        options.output.mkdir(parents=True, exist_ok=True)
        path = options.output / f"api_load-{now:%Y-%m-%d-%H%M%S}.json"
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwritten to {path}")
        noisy = max(row["other_cpu_share_max"] for row in rows)
        if noisy > 0.1:
            print(
                f"api_load: other processes used up to {noisy:.0%} of the CPUs during the run"
                + (" (the PostgreSQL server counts among them)" if options.database_url else "")
                + "; the figures may be disturbed by them",
                file=sys.stderr,
            )
        failed = any(row["errors"] for row in rows)
        if failed:
            print("api_load: some requests failed (see errors above)", file=sys.stderr)
        return 1 if failed else 0
    except BenchError as exc:
        print(f"api_load: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("api_load: interrupted", file=sys.stderr)
        failed = False
        return 130
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        for server in reversed(servers):
            server.stop()
        if seeded_into is not None:
            unseed(seeded_into, options.services)
        if options.keep or failed:
            print(f"api_load: logs and data kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
