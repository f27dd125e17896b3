"""The hot reads in one process: CPU time and context switches per request, with 1 and with N threads at once.

bench/api_load.py measures the API behind gunicorn; this measures what is left when gunicorn is taken away, and
shows why a read costs more when threads run it at once: each release of the GIL (sqlite3 releases it around every
step of a statement) while other threads wait hands it over, at two context switches. It calls the WSGI apps
directly: the baseline of bench/baseline_app.py, and `GET /status` and `GET /action/getbak` both as served (through
api/read_gate.py on SQLite) and without the gate, on services seeded as api_load.py seeds them.

    .venv/bin/python bench/read_threads.py                 # 1,000 services, 1 and 8 threads, 3 rounds
    .venv/bin/python bench/read_threads.py --help

It prints a table and writes bench/results/read_threads-<date>.json. It starts no process and opens no socket.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import api_load  # noqa: E402
from baseline_app import create_baseline_app  # noqa: E402
from werkzeug.test import EnvironBuilder  # noqa: E402


def switches() -> int:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_nvcsw + usage.ru_nivcsw


def measure(app, environs: list[dict], threads: int, per_thread: int) -> dict:
    """Each of `threads` threads calls `app` `per_thread` times with environs picked at random."""

    def call(environ: dict) -> None:
        statuses: list[str] = []
        body = b"".join(app(dict(environ), lambda status, _headers, _exc=None: statuses.append(status)))
        if not statuses[0].startswith("200") or not body:
            raise RuntimeError(f"{environ['PATH_INFO']} answered {statuses[0]}")

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(per_thread):
            call(rng.choice(environs))

    for environ in environs[:200]:  # warm: compiled statements, pool connections
        call(environ)
    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    requests = threads * per_thread
    switched, cpu, wall = switches(), time.process_time(), time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return {
        "cpu_ms_per_request": (time.process_time() - cpu) / requests * 1000,
        "wall_ms_per_request": (time.perf_counter() - wall) / requests * 1000,
        "switches_per_request": (switches() - switched) / requests,
    }


def environ_for(path: str, token: bool) -> dict:
    headers = {"Authorization": f"Bearer {api_load.TOKEN}"} if token else {}
    base, _, query = path.partition("?")
    return EnvironBuilder(method="GET", path=base, query_string=query or None, headers=headers).get_environ()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=1000, help="services to seed (1000)")
    parser.add_argument("--threads", type=int, default=8, help="threads of the concurrent measurement (8)")
    parser.add_argument("--requests", type=int, default=12000, help="requests per measurement (12000)")
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each case; the median is shown (3)")
    options = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="proxmoxwp-bench-"))
    try:
        inventory = api_load.parse_args([]).inventory
        env = {
            **{key: value for key, value in os.environ.items() if not key.startswith("PROXMOXWP_")},
            "PROXMOXWP_DATA_DIR": str(work / "data"),
            "PROXMOXWP_API_TOKENS": api_load.TOKEN,
            "PROXMOXWP_INVENTORY": str(inventory),
        }
        subprocess.run([str(api_load.BIN / "proxmoxwp"), "db", "upgrade"], env=env, check=True, capture_output=True)
        from api import create_app
        from api.config import load_settings

        settings = load_settings(data_dir=work / "data", api_tokens=[api_load.TOKEN], inventory=inventory)
        ids = sorted(api_load.seed(settings, options.services, random.Random(1)))
        served = create_app(settings)
        apps = {"baseline": create_baseline_app(), "served": served, "ungated": getattr(served.wsgi_app, "app", None)}
        cases = [("baseline GET /ping", "baseline", [environ_for("/ping", False)])]
        for path in ("/status", "/action/getbak"):
            environs = [environ_for(f"{path}?service_id={i}", True) for i in ids]
            cases.append((f"GET {path}", "served", environs))
            if apps["ungated"] is not None:
                cases.append((f"GET {path}, no gate", "ungated", environs))
        rows = []
        for name, which, environs in cases:
            row: dict = {"case": name}
            for threads in (1, options.threads):
                runs = [
                    measure(apps[which], environs, threads, options.requests // threads) for _ in range(options.rounds)
                ]
                row[threads] = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
            rows.append(row)
            print(
                f"{name:<30} 1 thread {row[1]['cpu_ms_per_request']:.3f} CPU ms  |  {options.threads} threads "
                f"{row[options.threads]['cpu_ms_per_request']:.3f} CPU ms, "
                f"{row[options.threads]['switches_per_request']:.2f} switches per request",
                flush=True,
            )
        out = BENCH / "results" / f"read_threads-{datetime.now(UTC):%Y-%m-%d-%H%M%S}.json"
        out.write_text(
            json.dumps(
                {
                    "benchmark": "read_threads",
                    "date": datetime.now(UTC).isoformat(),
                    "revision": api_load.git_revision(),
                    "machine": api_load.machine(),
                    "settings": vars(options),
                    "rows": [
                        {key if isinstance(key, str) else f"{key}_threads": v for key, v in row.items()} for row in rows
                    ],
                },
                indent=2,
            )
            + "\n"
        )
        print(f"written to {out}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
