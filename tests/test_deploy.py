"""The services of deploy/: the systemd units, their settings file and the nginx configuration in front of the API.

The units name the install's paths (/opt/proxmoxwp for the checkout with its .venv, /etc/proxmoxwp for the
settings, /var/lib/proxmoxwp for the data dir). The tests put this checkout, this run's venv and a temporary data
dir in their place, as deploy/install-services.sh puts the checkout's path, and otherwise take the command line,
the working directory and the environment from the units as systemd would: the environment starts empty but for
systemd's PATH and the user's HOME, then Environment=, then EnvironmentFile= over it.

The processes run as root, not as the units' user: this machine has no running systemd to switch users, and a
user `proxmoxwp` made here would outlive the test. What the user changes (the modes of the data dir) is in
tests/test_private_files.py; what systemd adds (the sandbox) is checked by `systemd-analyze verify` only.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import requests
from conftest import BIN, ROOT, TOKEN, HttpApi, Process, wait_job, wait_until
from mount_namespace import in_private_mounts
from systemd_run import SYSTEMD_PATH, environment_file

from api.config import Settings
from lab.ports import free_port

DEPLOY = ROOT / "deploy"
UNITS = ("proxmoxwp-api.service", "proxmoxwp-worker.service")
INSTALL_DIR = "/opt/proxmoxwp"
INSTALL_VENV_BIN = f"{INSTALL_DIR}/.venv/bin"
SITE = {"service_id": 2001, "email": "owner@example.com", "plan": "basic", "public_ip": "203.0.113.10"}


def rendered(unit: str) -> str:
    """The unit as deploy/install-services.sh installs it for this checkout."""
    return (DEPLOY / "systemd" / unit).read_text().replace(INSTALL_DIR, str(ROOT))


def service_section(unit: str) -> list[tuple[str, str]]:
    """The [Service] section's settings in order, as (key, value)."""
    settings, section = [], None
    for line in rendered(unit).splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            settings.append((key.strip(), value.strip()))
    return settings


def one(unit: str, key: str) -> str:
    values = [value for k, value in service_section(unit) if k == key]
    assert len(values) == 1, f"{unit}: {key}= {values}"
    return values[0]


def test_both_units_pass_systemd_analyze_verify(tmp_path):
    for unit in UNITS:
        (tmp_path / unit).write_text(rendered(unit))
    verified = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / unit) for unit in UNITS)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    # a setting systemd does not understand is only a warning: nothing may be said at all
    assert verified.returncode == 0 and not (verified.stdout + verified.stderr).strip(), verified.stderr


def test_the_units_run_the_install_as_its_own_user_with_the_settings_file():
    for unit in UNITS:
        assert one(unit, "User") == one(unit, "Group") == "proxmoxwp"
        assert one(unit, "EnvironmentFile") == "/etc/proxmoxwp/proxmoxwp.env"  # required: no leading "-"
        assert one(unit, "ExecStart").startswith(f"{ROOT}/.venv/bin/proxmoxwp ")
        assert one(unit, "StateDirectory") == "proxmoxwp" and one(unit, "StateDirectoryMode") == "0700"
        assert one(unit, "KillMode") == "mixed" and one(unit, "Restart") == "on-failure"
        assert one(unit, "ProtectSystem") == "strict" and one(unit, "NoNewPrivileges") == "yes"


def test_the_settings_example_names_only_real_settings_and_no_secret():
    text = (DEPLOY / "proxmoxwp.env.example").read_text()
    named = set(re.findall(r"^#?(PROXMOXWP_[A-Z_]+)=", text, re.MULTILINE))
    known = {f"PROXMOXWP_{field.upper()}" for field in Settings.model_fields}
    assert named and named <= known, named - known
    values = environment_file(text)
    assert values["PROXMOXWP_DATA_DIR"] == "/var/lib/proxmoxwp"  # the units' StateDirectory=proxmoxwp
    assert not {"PROXMOXWP_API_TOKENS", "PROXMOXWP_SECRET_KEY", "PROXMOXWP_DATABASE_URL"} & set(values)


def unit_process(unit: str, settings: dict[str, str], data_dir: Path, log: Path, *replace: tuple[str, str]) -> Process:
    """Start the unit's ExecStart with the environment systemd would give it (in the current directory)."""
    environment = {"PATH": SYSTEMD_PATH, "HOME": str(data_dir), "USER": "root", "LOGNAME": "root"}
    for key, value in service_section(unit):
        if key == "Environment":
            environment.update(item.split("=", 1) for item in shlex.split(value))
    environment.update(settings)  # EnvironmentFile= wins over Environment=
    command = one(unit, "ExecStart").replace(str(ROOT / ".venv" / "bin"), str(BIN))
    for old, new in replace:
        assert old in command, command
        command = command.replace(old, new)
    return Process(shlex.split(command), environment, log)


@pytest.mark.db
def test_the_api_and_a_worker_started_as_the_units_say_answer_and_run_a_job(runtime, env, tmp_path, monkeypatch):
    working_directories = {one(unit, "WorkingDirectory") for unit in UNITS}
    assert working_directories == {str(ROOT)}
    monkeypatch.chdir(ROOT)  # WorkingDirectory=, which the processes inherit
    data_dir = Path(env["PROXMOXWP_DATA_DIR"])
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # StateDirectory=
    tokens = tmp_path / "api-tokens"
    tokens.write_text(TOKEN + "\n")
    tokens.chmod(0o640)
    example = environment_file((DEPLOY / "proxmoxwp.env.example").read_text().replace(INSTALL_DIR, str(ROOT)))
    test_settings = {key: value for key, value in env.items() if key != "PROXMOXWP_API_TOKENS"}
    settings = {**example, **test_settings, "PROXMOXWP_API_TOKENS_FILE": str(tokens)}
    assert settings.keys() >= example.keys()
    port = free_port()
    server = unit_process(
        "proxmoxwp-api.service", settings, data_dir, tmp_path / "api.log", ("127.0.0.1:8080", f"127.0.0.1:{port}")
    )
    worker = unit_process("proxmoxwp-worker.service", settings, data_dir, tmp_path / "worker.log")
    try:
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return requests.get(base + "/health", timeout=1).ok
            except requests.RequestException:
                return server.proc.poll() is not None and pytest.fail(server.output())

        wait_until(up, 30, what="the API started as proxmoxwp-api.service")
        answer = requests.post(
            base + "/create-site", json=SITE, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        )
        assert answer.status_code == 202, answer.text
        job = wait_job(HttpApi(base, TOKEN), answer.json()["job_id"])
        assert job["state"] == "succeeded", (job, worker.output())

        # KillMode=mixed: SIGTERM reaches the worker's main process alone, which must end within TimeoutStopSec
        stop_within = float(one("proxmoxwp-worker.service", "TimeoutStopSec"))
        os.kill(worker.proc.pid, signal.SIGTERM)
        worker.proc.wait(timeout=stop_within)
    finally:
        worker.stop()
        server.stop()
    # journald gets what they write: gunicorn's access lines and the worker's log, no log file of their own
    assert '"GET /health" 200' in server.output()
    assert "Executing api.jobs.queue" in worker.output(), worker.output()
    assert not list(data_dir.rglob("*.log"))


# Runs deploy/install-services.sh twice in a mount namespace of its own where /etc and /var/lib are overlays whose
# changes land in the test's folders: the user, the folders and the units it makes never reach this machine. Between
# the runs the operator edits the settings file; then prints what a person would look at.
INSTALL_TWICE = """
set -e
mount -t overlay overlay -o lowerdir=/etc,upperdir=$OVERLAYS/etc,workdir=$OVERLAYS/etc-work /etc
mount -t overlay overlay -o lowerdir=/var/lib,upperdir=$OVERLAYS/lib,workdir=$OVERLAYS/lib-work /var/lib
"$SCRIPT"
echo PROXMOXWP_WORKERS=2 >>/etc/proxmoxwp/proxmoxwp.env
"$SCRIPT"
echo "@@@"
getent passwd proxmoxwp
stat -c '%n %a %U:%G' /etc/proxmoxwp /etc/proxmoxwp/proxmoxwp.env /etc/proxmoxwp/api-tokens /var/lib/proxmoxwp
echo "@@@"
cat /etc/proxmoxwp/proxmoxwp.env
echo "@@@"
cat /etc/proxmoxwp/api-tokens
echo "@@@"
cat /etc/systemd/system/proxmoxwp-api.service
echo "@@@"
cat /etc/systemd/system/proxmoxwp-worker.service
"""


def test_install_services_makes_the_user_folders_settings_and_units_once_and_starts_nothing(tmp_path):
    overlays = tmp_path / "overlays"
    for name in ("etc", "etc-work", "lib", "lib-work"):
        (overlays / name).mkdir(parents=True)
    ran = subprocess.run(
        in_private_mounts("bash", "-c", INSTALL_TWICE),
        env={**os.environ, "OVERLAYS": str(overlays), "SCRIPT": str(DEPLOY / "install-services.sh")},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    said, files, settings, tokens, api_unit, worker_unit = ran.stdout.split("@@@\n")
    account, *modes = files.splitlines()

    assert account.split(":")[5:] == ["/var/lib/proxmoxwp", "/usr/sbin/nologin"]
    assert modes == [
        "/etc/proxmoxwp 750 root:proxmoxwp",
        "/etc/proxmoxwp/proxmoxwp.env 640 root:proxmoxwp",
        "/etc/proxmoxwp/api-tokens 640 root:proxmoxwp",
        "/var/lib/proxmoxwp 700 proxmoxwp:proxmoxwp",
    ]
    example = (DEPLOY / "proxmoxwp.env.example").read_text().replace(INSTALL_DIR, str(ROOT))
    assert settings == example + "PROXMOXWP_WORKERS=2\n", "the second run keeps the operator's settings"
    assert environment_file(settings)["PROXMOXWP_INVENTORY"] == f"{ROOT}/inventory/production"
    [token] = tokens.split()
    assert len(token) >= 16 and token not in ran.stdout.split("@@@")[0] + ran.stderr
    assert (api_unit, worker_unit) == (rendered(UNITS[0]), rendered(UNITS[1]))
    assert said.count("user proxmoxwp: made") == 1 and "user proxmoxwp: present" in said
    assert said.strip().splitlines()[-1].endswith("nothing was reloaded or started")  # no systemd here
    assert not (Path("/etc/proxmoxwp").exists() or list(Path("/etc/systemd/system").glob("proxmoxwp-*")))


def test_nginx_accepts_the_tls_configuration_with_its_placeholders_filled_in(tmp_path):
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=api.test",
         "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    site = (DEPLOY / "nginx" / "proxmoxwp-api.conf").read_text()
    for placeholder, value in {
        "api.example.net": "api.test",
        "/etc/ssl/certs/proxmoxwp-api.pem": str(tmp_path / "cert.pem"),
        "/etc/ssl/private/proxmoxwp-api.key": str(tmp_path / "key.pem"),
    }.items():
        assert placeholder in site
        site = site.replace(placeholder, value)
    (tmp_path / "site.conf").write_text(site)
    # what Debian's /etc/nginx/nginx.conf puts around a file of sites-enabled/, with this test's own files
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  include {tmp_path}/site.conf;\n}}\n"
    )
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    checked = subprocess.run(
        [nginx, "-t", "-p", f"{tmp_path}/", "-e", str(tmp_path / "error.log"), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr

    timeouts = [int(seconds) for seconds in re.findall(r"proxy_read_timeout (\d+)s;", site)]
    longest_wait = next(rule.le for rule in Settings.model_fields["max_wait_seconds"].metadata if hasattr(rule, "le"))
    assert timeouts and min(timeouts) > longest_wait  # a request may wait that long for its job
