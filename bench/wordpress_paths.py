"""WordPress provisioning benchmark: a started bare Debian container against one from the golden image.

For each path, the clock starts when the started container answers SSH and stops when the site is verified:
the `wordpress` role has run (packages on the bare path, the per-site part on both, its health check) and
the host fetched the front page with the site's title over HTTP. Both paths run in the same run, on the
same machine, in real LXC containers (`api/build_host`), in alternating rounds; the table shows medians and
the ratio bare / golden. One-time costs (the Debian rootfs, the golden image) are measured and reported
apart. Everything the script makes (containers, bridge, nft table, its temporary directory) is removed at
the end, also on error or Ctrl-C.

    .venv/bin/python bench/wordpress_paths.py               # 2 rounds
    .venv/bin/python bench/wordpress_paths.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from api.build_host import Containers, ensure_bridge, ensure_rootfs, free_subnet, remove_bridge, wait_ssh  # noqa: E402
from api.build_host.environment import build_environment  # noqa: E402
from api.build_host.mounts import remove_tree  # noqa: E402

SITE = {
    "wordpress_source": "debian",
    "wordpress_site_domain": "bench.sites.lab.test",
    "wordpress_site_title": "Benchmark site",
    "wordpress_admin_email": "owner@example.com",
    "wordpress_admin_password": "bench-password-0123456789",
}
PLAYBOOK = "- hosts: all\n  gather_facts: false\n  roles:\n    - role: wordpress\n"
SSH_ARGS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"


class BenchError(Exception):
    """A problem that ends the run with one readable line."""


def run(argv: list[str], env: dict[str, str], what: str) -> float:
    """Run a command; its duration in seconds. Its output is shown only when it fails."""
    started = time.monotonic()
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BenchError(f"{what} failed:\n{(result.stdout + result.stderr)[-3000:]}")
    return time.monotonic() - started


def front_page(ip: str) -> None:
    request = urllib.request.Request(f"http://{ip}/", headers={"Host": SITE["wordpress_site_domain"]})
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (our own container)
        body = answer.read().decode()
    if answer.status != 200 or SITE["wordpress_site_title"] not in body:
        raise BenchError(f"the front page of {ip} answered {answer.status} without the title")


class Lab:
    """This run's containers, bridge and files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.containers = Containers(directory / "lxc")
        self.bridge_name = f"pwpb{os.getpid() % 100000}"
        subnet = free_subnet("10.231.0.0/16")
        self.bridge = ensure_bridge(self.bridge_name, f"{subnet[1]}/{subnet.prefixlen}")
        self.subnet = subnet
        self.next_host = 10
        self.key = directory / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True)
        self.env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "PROXMOXWP_LAB_DIR": str(directory),
            "PROXMOXWP_LAB_BRIDGE": self.bridge_name,
            "PROXMOXWP_LAB_GATEWAY": f"{subnet[1]}/{subnet.prefixlen}",
            **build_environment(directory, self.bridge_name, f"{subnet[1]}/{subnet.prefixlen}"),
            "PROXMOXWP_LAB_BUILD_ADDRESS": self.address(),
        }

    def address(self) -> str:
        self.next_host += 1
        return f"{self.subnet[self.next_host]}/{self.subnet.prefixlen}"

    def started_container(self, name: str, source: Path) -> str:
        """Create and start a container; its IP once SSH answers (not timed: the clock starts after)."""
        address = self.address()
        self.containers.create(
            name, source=source, ip_cidr=address, gateway=str(self.subnet[1]), bridge=self.bridge_name,
            authorized_key=self.key.with_suffix(".pub").read_text(),
        )  # fmt: skip
        self.containers.start(name)
        ip = address.split("/")[0]
        wait_ssh(ip, timeout=60)
        return ip

    def provision(self, name: str, ip: str) -> float:
        """Seconds from SSH answering to a verified site."""
        inventory = self.directory / f"{name}.json"
        host = {
            "ansible_host": ip, "ansible_user": "root", "ansible_ssh_private_key_file": str(self.key),
            "ansible_ssh_common_args": SSH_ARGS, "ansible_python_interpreter": "/usr/bin/python3",
        }  # fmt: skip
        inventory.write_text(json.dumps({"all": {"hosts": {name: host}, "vars": SITE}}))
        playbook = self.directory / "provision.yml"
        playbook.write_text(PLAYBOOK)
        started = time.monotonic()
        run(["ansible-playbook", "-i", str(inventory), str(playbook)], self.env, f"provisioning {name}")
        front_page(ip)
        return time.monotonic() - started

    def close(self) -> None:
        for info in self.containers.list():
            self.containers.destroy(info.name)
        remove_bridge(self.bridge_name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="provision each path this many times")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    options = parser.parse_args()
    if os.geteuid() != 0:
        print("error: real LXC containers need root", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    directory = Path(tempfile.mkdtemp(prefix="proxmoxwp-bench-", dir="/var/tmp"))
    lab = None
    try:
        started = time.monotonic()
        rootfs = ensure_rootfs(directory / "cache")
        rootfs_seconds = time.monotonic() - started
        lab = Lab(directory)
        golden_seconds = run(
            ["ansible-playbook", "-i", "inventory/lab", "playbooks/template_build.yml"], lab.env, "template_build.yml"
        )
        golden = directory / "images" / "debian-12-proxmoxwp-wordpress_amd64.tar.zst"
        times: dict[str, list[float]] = {"bare": [], "golden": []}
        for round_ in range(1, options.rounds + 1):
            for path, source in (("bare", rootfs), ("golden", golden)):
                name = f"{path}{round_}"
                ip = lab.started_container(name, source)
                seconds = lab.provision(name, ip)
                times[path].append(seconds)
                lab.containers.destroy(name)
                print(f"round {round_} {path:6} {seconds:6.1f} s", flush=True)
        bare, gold = statistics.median(times["bare"]), statistics.median(times["golden"])
        result = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
            "rounds": options.rounds,
            "seconds": times,
            "median": {"bare": bare, "golden": gold},
            "ratio_bare_to_golden": bare / gold,
            "one_time": {"rootfs": rootfs_seconds, "golden_image": golden_seconds},
        }
        print(f"\n| path | median (s) | rounds |\n|---|---|---|\n| bare Debian | {bare:.1f} | {times['bare']} |")
        print(f"| golden image | {gold:.1f} | {times['golden']} |\nratio bare / golden: {bare / gold:.1f}")
        print(f"one-time: rootfs {rootfs_seconds:.0f} s, golden image {golden_seconds:.0f} s")
        out = BENCH / "results" / f"wordpress_paths-{datetime.now(UTC):%Y-%m-%d-%H%M%S}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written to {out.relative_to(ROOT)}")
        return 0
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if lab:
            lab.close()
        if options.keep:
            print(f"kept {directory}")
        else:
            remove_tree(directory)


if __name__ == "__main__":
    sys.exit(main())
