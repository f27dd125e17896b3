"""docs/production.md, walked on this machine: every project command of the guide runs, in the guide's order, as the
guide writes it, against the fake Proxmox VE cluster, the NPM double and the session's PowerDNS.

The walk runs as root in a mount namespace of its own. /etc, /var/lib, /root and /opt are overlays whose changes
land in the test's folders, and this checkout appears at /opt/proxmoxwp (an overlay too), so the guide's paths are
real and nothing it makes (the user proxmoxwp, /etc/proxmoxwp, the data dir, inventory/production) reaches this
machine or the checkout. Between the commands, the walk does what the guide's prose asks of the operator: fill in
the inventory and the vault with the fake cluster's and the doubles' facts, edit the settings file, set
`proxmoxwp_pve_ostemplate` to the volid `image upload` printed, run the doctor again.

What differs from a real controller, and why:
- `systemd-run` is tests/systemd_run.py (no systemd is PID 1 here): it runs the command as the user, with the
  settings file and the environment systemd would give, so the file modes the guide sets are put to the test.
- `scripts/install.sh --no-lab` installs from the run's wheels instead of the package index (tests/wheels.py).
- The fake cluster has no container to log in to: the inventory sets `proxmoxwp_wordpress_install: false`, and
  the containers' gateway is loopback (tests/test_doctor.py says why).
- `image build` is the one command not run here: the run's golden image is built by it (tests/lxc.py,
  `lab_golden_image`), and the walk uploads that archive.
- The commands left out act on this machine's own services or on the guide's placeholder names (NOT_RUN).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import guide
import pytest
import yaml
from conftest import ROOT, TESTS
from mount_namespace import in_private_mounts
from sites import cluster, stored_templates
from systemd_run import SYSTEMD_PATH

from lab.supervisor.parts import GoldenImagePart

pytestmark = pytest.mark.containers  # the run's golden image (tests/lxc.py)

INSTALL_DIR = Path("/opt/proxmoxwp")
OVERLAID = ("/etc", "/var/lib", "/root", "/opt")
PUBLIC_IP = "127.0.0.10"  # in place of the guide's 203.0.113.10, NPM's public address: tests stay on loopback
SERVICE_ID = 990001
# The controller's commands the walk leaves out, by program, with the reason.
NOT_RUN = {
    "systemctl": "no systemd runs here; the units are checked by tests/test_deploy.py",
    "journalctl": "no systemd runs here",
    "apt-get": "it would install into this machine",
    "nginx": "this machine's nginx; the site file passes `nginx -t` in tests/test_deploy.py",
    "curl": "the guide's names (api.example.net, wp990001.sites.example.net) are placeholders",
}
BUILT_ELSEWHERE = "proxmoxwp image build"  # by tests/lxc.py's lab_golden_image, the run's one build


def left_out(command: guide.Command) -> str | None:
    """Why the walk does not run this controller command; None when it does."""
    if command.program in NOT_RUN:
        return NOT_RUN[command.program]
    if "/etc/nginx/" in command.text:
        return NOT_RUN["nginx"]
    if command.text.endswith(BUILT_ELSEWHERE):
        return "run by tests/lxc.py (lab_golden_image): the run's golden image"
    return None


def test_the_walk_leaves_out_no_project_command_but_the_image_build():
    project = guide.project_commands()
    assert {c.program.rsplit("/", 1)[-1] for c in project} == {
        "proxmoxwp", "ansible-playbook", "ansible-vault", "install.sh", "install-services.sh",
    }  # fmt: skip
    assert [c.text for c in project if left_out(c)] == [guide.one(r"proxmoxwp image build$")]
    for command in guide.commands():
        assert command.where != "controller" or command.program in NOT_RUN or command.text, command


def dump(path: Path, values: dict) -> None:
    path.write_text("---\n" + yaml.safe_dump(values, sort_keys=False, width=120))


def example(name: str) -> dict:
    return yaml.safe_load((ROOT / "inventory" / "production.example" / "group_vars" / "all" / name).read_text())


def operator_files(folder: Path, pve, edge_peers) -> Path:
    """What the operator writes into inventory/production/group_vars/all/ before encrypting the vault (step 5): the
    example's files with this cluster's and edge's facts; the secrets go to vault.yml only."""
    inventory = folder / "inventory"
    inventory.mkdir(parents=True)
    pve_api, edge = pve.pve_api(), edge_peers.settings
    proxmox = example("proxmox.yml")
    proxmox["proxmoxwp_pve_api"].update(host=pve_api["host"], port=pve_api["port"], token_id=pve_api["token_id"])
    proxmox.update(
        proxmoxwp_ct_gateway="127.0.0.1",
        # the fake cluster has containers in its model only: nothing to install WordPress into
        proxmoxwp_wordpress_install=False,
    )
    dump(inventory / "proxmox.yml", proxmox)
    edges = example("edge.yml")
    edges["proxmoxwp_npm_api"].update(
        url=edge["proxmoxwp_npm_api"]["url"], identity=edge["proxmoxwp_npm_api"]["identity"]
    )
    edges["proxmoxwp_npm_api"]["validate_certs"] = False  # the double speaks HTTP
    edges["proxmoxwp_dns"] = {
        "provider": "powerdns",
        "powerdns": {
            "api_url": edge["proxmoxwp_dns"]["powerdns"]["api_url"],
            "api_key": "{{ vault_powerdns_api_key }}",
        },
        "zone": edge_peers.zone,
        "ttl": 60,
    }
    edges["proxmoxwp_acme_check"] = edge["proxmoxwp_acme_check"]
    dump(inventory / "edge.yml", edges)
    dump(inventory / "naming.yml", {**example("naming.yml"), "proxmoxwp_base_zone": edge_peers.zone})
    dump(
        inventory / "vault.yml",
        {
            "vault_proxmoxwp_pve_token_secret": pve_api["token_secret"],
            "vault_npm_secret": edge["proxmoxwp_npm_api"]["secret"],
            "vault_powerdns_api_key": edge["proxmoxwp_dns"]["powerdns"]["api_key"],
        },
    )
    (folder / "pve-ca.pem").write_text(Path(pve_api["ca_file"]).read_text())
    return folder


# What the operator does by hand after a command of the guide (the command's text as a regular expression). $OUT is
# the walk's output folder, $STEP the number of the command that just ran.
AFTER = {
    r"^cp -r inventory/production\.example inventory/production$": """
        cp "$OPERATOR"/inventory/*.yml inventory/production/group_vars/all/
        install -m 0644 "$OPERATOR/pve-ca.pem" /etc/proxmoxwp/pve-ca.pem
    """,
    r"ansible-vault encrypt": """
        sed -i -e 's|^#PROXMOXWP_VAULT_PASSWORD_FILE=|PROXMOXWP_VAULT_PASSWORD_FILE=|' /etc/proxmoxwp/proxmoxwp.env
        printf 'PROXMOXWP_PUBLIC_IPS=%s\\nPROXMOXWP_DNS_RESOLVERS=%s\\n' "$PUBLIC_IP" "$RESOLVERS" \\
          >>/etc/proxmoxwp/proxmoxwp.env
    """,
    r"proxmoxwp image upload$": """
        sed -i "s|^proxmoxwp_pve_ostemplate:.*|proxmoxwp_pve_ostemplate: $(cat "$OUT/$STEP.out")|" \\
          inventory/production/group_vars/all/proxmox.yml
    """,
}
DOCTOR = r"proxmoxwp doctor$"  # run again once the image is uploaded: "run the doctor again"

PRELUDE = """
set -u
for dir in $OVERLAID; do
  name=$(echo "$dir" | tr / _)
  mkdir -p "$LAYERS/$name" "$LAYERS/$name.work"
  mount -t overlay overlay -o "lowerdir=$dir,upperdir=$LAYERS/$name,workdir=$LAYERS/$name.work" "$dir"
done
mkdir -p "$LAYERS/checkout" "$LAYERS/checkout.work" /opt/proxmoxwp
mount -t overlay overlay -o "lowerdir=$CHECKOUT,upperdir=$LAYERS/checkout,workdir=$LAYERS/checkout.work" /opt/proxmoxwp
mkdir -p /var/lib/proxmoxwp-build/images
touch "/var/lib/proxmoxwp-build/images/$ARCHIVE_NAME"
mount --bind -o ro "$GOLDEN" "/var/lib/proxmoxwp-build/images/$ARCHIVE_NAME"
cd /
step() {  # step N EXPECTED-STATUS COMMAND: run it in this shell (a `cd` or `export` lasts), stop when unexpected
  STEP=$1
  printf '%s\\n' "$3" >"$OUT/$1.command"
  eval "$3" >"$OUT/$1.out" 2>"$OUT/$1.err" </dev/null
  local status=$?
  echo "$status" >"$OUT/$1.status"
  [[ $status == "$2" ]] || exit 3
}
"""


def walk_script(steps: list[tuple[str, int]]) -> str:
    lines = [PRELUDE]
    for number, (command, status) in enumerate(steps):
        lines.append(f"step {number} {status} {shlex.quote(command)}")
        for pattern, edit in AFTER.items():
            if re.search(pattern, command):
                lines.append(edit)
    return "\n".join(lines)


def guide_steps() -> list[tuple[str, int]]:
    """The controller's commands the walk runs, with the exit status each must have, in the guide's order."""
    steps = []
    for command in guide.commands():
        if command.where != "controller" or left_out(command):
            continue
        text = command.text.replace("203.0.113.10", PUBLIC_IP)
        if re.search(DOCTOR, text) and not any(re.search(DOCTOR, done) for done, _ in steps):
            steps.append((text, 1))  # "Until the golden image is uploaded (step 7), pve.template fails"
            continue
        steps.append((text, 0))
        if re.search(r"proxmoxwp image upload$", text):
            steps.append((next(t for t, _ in steps if re.search(DOCTOR, t)), 0))
    return steps


@pytest.fixture
def systemd_run_double(tmp_path) -> Path:
    folder = tmp_path / "double-bin"
    folder.mkdir()
    double = folder / "systemd-run"
    double.write_text(f'#!/bin/sh\nexec {sys.executable} {TESTS / "systemd_run.py"} "$@"\n')
    double.chmod(0o755)
    return folder


def outputs(out: Path, number: int) -> str:
    return "".join(
        (out / f"{number}.{part}").read_text()
        for part in ("command", "out", "err")
        if (out / f"{number}.{part}").exists()
    )


@pytest.mark.cluster
@pytest.mark.timeout(1500)
def test_an_operator_walks_the_guide_from_a_blank_controller_to_a_site(
    pve, edge_peers, dns_resolvers, lab_golden_image, product_wheels, systemd_run_double, tmp_path
):
    steps = guide_steps()
    # Section 3, "The firewall", on a node: the datacenter firewall on (`pvesh set /cluster/firewall/options`).
    pve.call(pve.pve.set_datacenter_firewall, True)
    out, layers = tmp_path / "out", tmp_path / "layers"
    out.mkdir()
    layers.mkdir()
    (tmp_path / "walk.sh").write_text(walk_script(steps))
    environment = {
        "PATH": f"{systemd_run_double}:{SYSTEMD_PATH}",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "OVERLAID": " ".join(OVERLAID),
        "LAYERS": str(layers),
        "CHECKOUT": str(ROOT),
        "GOLDEN": str(lab_golden_image),
        "ARCHIVE_NAME": GoldenImagePart.archive_name,
        "OUT": str(out),
        "OPERATOR": str(operator_files(tmp_path / "operator", pve, edge_peers)),
        "PUBLIC_IP": PUBLIC_IP,
        "RESOLVERS": dns_resolvers,
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(product_wheels),
    }
    accounts = Path("/etc/passwd").read_text()
    walked = subprocess.run(
        in_private_mounts("bash", str(tmp_path / "walk.sh")),
        env=environment, capture_output=True, text=True, timeout=1400, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    ran = sorted(int(p.stem) for p in out.glob("*.status"))
    assert walked.returncode == 0, (walked.stderr[-2000:], outputs(out, ran[-1]) if ran else "nothing ran")
    assert ran == list(range(len(steps)))

    def after(pattern: str, nth: int = 0, part: str = "out") -> str:
        """What the nth command matching `pattern` printed on stdout (`part="err"`: on stderr)."""
        number = [n for n, (text, _) in enumerate(steps) if re.search(pattern, text)][nth]
        return (out / f"{number}.{part}").read_text()

    assert "installed: .venv/bin/proxmoxwp serve" in after(r"install\.sh --no-lab$")
    assert "user proxmoxwp: made" in after(r"install-services\.sh$")
    assert "--now: nothing to start without systemd" in after(r"install-services\.sh --now$")
    assert "database at revision" in after(r"proxmoxwp db upgrade$")
    # the doctor, as the services' user with their settings: only the image is missing, then nothing
    first, second = after(DOCTOR), after(DOCTOR, 1)
    assert re.findall(r"^FAIL +(\S+):", first, re.MULTILINE) == ["pve.template"], first
    assert "FAIL" not in second and second.strip().endswith("all ok"), second
    # the image: uploaded under its own name, then under the new one; sites are created from the first
    volid, rolled = after(r"image upload$").strip(), after(r"image upload --filename").strip()
    assert (volid, rolled) == (
        "local:vztmpl/debian-12-proxmoxwp-wordpress_amd64.tar.zst",
        "local:vztmpl/debian-12-proxmoxwp-wordpress-2027.01_amd64.tar.zst",
    )
    assert {volid, rolled} <= stored_templates(pve).keys()
    progress = after(r"image upload$", part="err")
    assert "checksum verified by Proxmox VE" in progress and "Warning" not in progress, progress
    assert [c.params.get("ostemplate") for c in pve.call(pve.pve.requests_sent, "POST", "/lxc")] == [volid]
    # the site by hand: made with its DNS record and proxy host, then removed with them
    for pattern in (r"site_create\.yml", r"site_delete\.yml"):
        assert re.search(r"localhost +: ok=\d+ +changed=[1-9]\d* +unreachable=0 +failed=0", after(pattern))
    assert cluster(pve) == {}
    subdomain = edge_peers.subdomain(SERVICE_ID)
    assert edge_peers.addresses(subdomain) == [] and subdomain not in edge_peers.hosts()
    header, *failed_jobs = after(r"jobs list --state failed$").splitlines()
    assert header.split()[:2] == ["ID", "SERVICE"] and failed_jobs == []
    # nothing of the walk reached this machine or the checkout
    assert not Path("/etc/proxmoxwp").exists() and not (ROOT / "inventory" / "production").exists()
    assert Path("/etc/passwd").read_text() == accounts
