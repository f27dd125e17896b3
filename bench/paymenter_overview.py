"""Paymenter Overview benchmark: what one render of the extension's Overview costs, against one API call.

It builds a throw-away data directory (SQLite), runs `proxmoxwp db upgrade`, seeds services as bench/api_load.py
does, starts `proxmoxwp serve` on a free loopback port, and runs bench/paymenter_overview.php against the
seeded service with the most backups and domains: one GET /status (the baseline), the Overview's three calls one
after another, and the whole Overview page (three calls at once, then the view). It prints the medians and
their ratios to the baseline, writes bench/results/paymenter_overview-<date>.json, and stops the server, also on
error or Ctrl-C.

    .venv/bin/python bench/paymenter_overview.py              # 200 rounds
    .venv/bin/python bench/paymenter_overview.py --help
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from api_load import BENCH, BIN, ROOT, TOKEN, BenchError, Server, git_revision, machine, run_bounded, seed

from lab.ports import free_port

BASELINE = "one GET /status"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200, help="renders of each kind (200)")
    parser.add_argument("--services", type=int, default=100, help="services to seed (100)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2, as `proxmoxwp serve`)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker (8)")
    parser.add_argument("--output", type=Path, default=BENCH / "results", help="where the JSON goes")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (server log, database)")
    return parser.parse_args(argv)


def _interrupted(signum, _frame):
    raise BenchError(f"interrupted by signal {signum}")


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    php = shutil.which("php")
    if php is None:
        print("paymenter_overview: php is missing (scripts/install.sh --dev installs it)", file=sys.stderr)
        return 2
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupted)
    workdir = Path(tempfile.mkdtemp(prefix="proxmoxwp-bench-"))
    server = None
    try:
        inventory = ROOT / "inventory" / "lab"
        env = {key: value for key, value in os.environ.items() if not key.startswith("PROXMOXWP_")}
        env.update(
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            PROXMOXWP_DATA_DIR=str(workdir / "data"),
            PROXMOXWP_API_TOKENS=TOKEN,
            PROXMOXWP_INVENTORY=str(inventory),
        )
        run_bounded([str(BIN / "proxmoxwp"), "db", "upgrade"], env, timeout=300)

        from api.config import load_settings

        settings = load_settings(data_dir=workdir / "data", api_tokens=[TOKEN], inventory=inventory)
        expected = seed(settings, options.services, random.Random(1))
        service_id, shown = max(expected.items(), key=lambda item: item[1]["backups"] + item[1]["domains"])

        port = free_port()
        size = ["--workers", str(options.workers), "--threads", str(options.threads)]
        server = Server(
            "proxmoxwp serve",
            [str(BIN / "proxmoxwp"), "serve", "--bind", f"127.0.0.1:{port}", *size],
            env,
            workdir / "api.log",
            port,
        )
        server.wait_ready("/health")
        print(
            f"service {service_id}: {shown['backups']} backups, {shown['domains']} domains; "
            f"{options.rounds} rounds; server: {options.workers} workers x {options.threads} threads",
            flush=True,
        )
        output = run_bounded(
            [php, str(BENCH / "paymenter_overview.php"), server.url(""), TOKEN, str(service_id), str(options.rounds)],
            env,
            timeout=600,
        )
        measured = json.loads(output)
        medians = {name: statistics.median(times) for name, times in measured["milliseconds"].items()}
        print(f"\n{'':<22}{'median ms':>10}{'p90 ms':>9}{'ratio':>8}")
        for name, times in measured["milliseconds"].items():
            p90 = statistics.quantiles(times, n=10)[-1]
            print(f"{name:<22}{medians[name]:>10.2f}{p90:>9.2f}{medians[name] / medians[BASELINE]:>8.2f}")
        now = datetime.now()
        report = {
            "benchmark": "paymenter_overview",
            "date": now.astimezone().isoformat(timespec="seconds"),
            "revision": git_revision(),
            "machine": machine(),
            "php": run_bounded([php, "-r", "echo PHP_VERSION;"], env, timeout=30),
            "settings": {**vars(options), "output": str(options.output), "service": service_id, **shown},
            "median_ms": medians,
            "ratio_to_baseline": {name: value / medians[BASELINE] for name, value in medians.items()},
            "page_bytes": measured["page_bytes"],
            "milliseconds": measured["milliseconds"],
        }
        options.output.mkdir(parents=True, exist_ok=True)
        path = options.output / f"paymenter_overview-{now:%Y-%m-%d-%H%M%S}.json"
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwritten to {path}")
        return 0
    except BenchError as error:
        print(f"paymenter_overview: {error}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.stop()
        if options.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
