#!/usr/bin/env bash
# Set up ProxmoxWP on this machine and bring the local lab up.
#
#   sudo scripts/install.sh            # install with the lab, then `proxmoxwp lab up`
#   sudo scripts/install.sh --no-lab   # the product only: no lab, nothing started
#   sudo scripts/install.sh --dev      # what the test suite needs (scripts/test.sh runs this); not started
#
# Run as root on Debian 12 (or as a user with sudo). Installs the Debian packages the project needs, makes
# .venv in the repository with the system's python3, installs the project into it with the PostgreSQL and
# Redis clients and the lab (extra `lab`; --dev: also the test and lint tools, ansible-test's environments,
# and the PostgreSQL and Redis servers the suite starts for itself), then runs `proxmoxwp lab up`.
# Non-interactive, and safe to run again: it only adds what is missing. PROXMOXWP_* settings in the
# environment reach `proxmoxwp lab up` (see README.md). With
# PROXMOXWP_INSTALL_TIMES=FILE, the seconds each step took are appended to FILE as "step seconds" lines
# (scripts/test.sh reports the Debian packages apart from the rest).
set -euo pipefail

usage() { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

START_LAB=1
DEV=0
for arg in "$@"; do
  case $arg in
    --no-lab) START_LAB=0 ;;
    --dev) DEV=1 START_LAB=0 ;;
    -h | --help) usage && exit 0 ;;
    *) echo "install.sh: unknown option $arg (try --help)" >&2 && exit 2 ;;
  esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export DEBIAN_FRONTEND=noninteractive

# The lab (docs/lab.md): LXC with debootstrap, nftables and zstd for the containers; nginx for the lab's proxy
# and PowerDNS for its DNS, each run as a process of the lab's own on loopback ports. The install does not
# start the system's nginx or pdns (with_services_held).
# iputils-ping: `proxmoxwp doctor` pings the containers' gateway. acl lets an unprivileged container's root through
# the lab's private directories (setfacl); e2fsprogs makes and grows the small plans' real disks (docs/lab-pve.md).
DEBIAN_PACKAGES=(python3 python3-venv python3-dev python3-pip build-essential git curl ca-certificates sqlite3
  libffi-dev libssl-dev openssh-client rsync lxc debootstrap nftables iproute2 iputils-ping zstd nginx
  pdns-server pdns-backend-sqlite3 acl e2fsprogs)
# The servers the test suite starts for itself, on loopback, in temporary directories; PHP, PHPUnit and the
# Laravel components the Paymenter extension's tests run on (paymenter/README.md); systemd for systemd-analyze,
# which checks the units of deploy/systemd (a controller that runs them has it already); Chromium and its driver,
# in which the extension's Overview is watched following a job (tests/test_paymenter_overview.py).
DEV_DEBIAN_PACKAGES=(postgresql redis-server systemd
  php-cli php-curl php-mbstring php-xml phpunit php-laravel-framework php-guzzlehttp-guzzle php-monolog
  chromium chromium-driver)

say() { printf '==> %s\n' "$*"; }

as_root() {
  if [[ $EUID -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo --preserve-env=DEBIAN_FRONTEND "$@"
  else
    echo "install.sh: run this as root (or install sudo): $*" >&2
    exit 1
  fi
}

missing_packages() {
  local package
  for package in "$@"; do
    dpkg-query -W -f='${Status}\n' "$package" 2>/dev/null | grep -q '^install ok installed$' ||
      printf '%s\n' "$package"
  done
}

install_debian_packages() {
  local missing
  mapfile -t missing < <(missing_packages "$@")
  if [[ ${#missing[@]} -eq 0 ]]; then
    say "Debian packages: all present"
    return
  fi
  say "Debian packages: installing ${missing[*]}"
  as_root apt-get update -q
  with_services_held as_root apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
}

with_services_held() {
  # Packages such as postgresql and redis-server start a system-wide server when installed; the project
  # starts its own. A policy-rc.d that answers 101 (see invoke-rc.d(8)) holds them back during the install.
  local policy=/usr/sbin/policy-rc.d rc=0
  if [[ -e $policy ]]; then
    "$@"
    return
  fi
  as_root sh -c "printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy"
  "$@" || rc=$?
  as_root rm -f "$policy"
  return "$rc"
}

make_venv() {
  local python
  python=$(command -v python3) || {
    echo "install.sh: python3 is not installed" >&2
    exit 1
  }
  if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "install.sh: ProxmoxWP needs Python 3.11; $python is $("$python" --version 2>&1)" >&2
    exit 1
  fi
  if [[ -x .venv/bin/python ]] && ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    say "the existing .venv is not Python 3.11: making it again"
    rm -rf .venv
  fi
  if [[ ! -x .venv/bin/python ]]; then
    say "making .venv with $python ($("$python" --version 2>&1))"
    "$python" -m venv .venv
  fi
}

pip_install() {
  # Installs the project with the given extras; skipped when pyproject.toml has not changed since.
  local extras=$1 stamp digest
  stamp=.venv/.proxmoxwp-installed-$extras
  digest=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [[ -f $stamp && $(cat "$stamp") == "$digest" ]] && .venv/bin/python -c 'import api' 2>/dev/null; then
    say "Python packages ($extras): up to date"
    return
  fi
  say "Python packages: pip install -e '.[$extras]'"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$extras]"
  printf '%s\n' "$digest" >"$stamp"
}

timed() {
  # timed STEP COMMAND...: run it; note its seconds in $PROXMOXWP_INSTALL_TIMES when that is set.
  local step=$1 started=$SECONDS
  shift
  "$@"
  if [[ -n ${PROXMOXWP_INSTALL_TIMES:-} ]]; then
    printf '%s %s\n' "$step" "$((SECONDS - started))" >>"$PROXMOXWP_INSTALL_TIMES"
  fi
}

python_environment() {
  make_venv
  pip_install "$1"
}

ansible_test_environments() {
  # ansible-test's sanity environments for tests/test_collection.py, made here while the package index is at hand
  # (tests/collection.py says why the test tools of the dev extra cannot serve); kept between runs.
  say "ansible-test: sanity environments of the collection (python -m tests.collection prime)"
  .venv/bin/python -m tests.collection prime
}

dev_environment() {
  python_environment dev
  ansible_test_environments
}

if [[ $DEV == 1 ]]; then
  timed debian-packages install_debian_packages "${DEBIAN_PACKAGES[@]}" "${DEV_DEBIAN_PACKAGES[@]}"
  timed python-packages dev_environment
  exit 0
fi
timed debian-packages install_debian_packages "${DEBIAN_PACKAGES[@]}"
if [[ $START_LAB == 0 ]]; then
  timed python-packages python_environment postgres,redis
  say "installed: .venv/bin/proxmoxwp serve and .venv/bin/proxmoxwp worker (README.md, docs/operations.md)"
  exit 0
fi
timed python-packages python_environment postgres,redis,lab
say "starting the lab"
.venv/bin/proxmoxwp lab up
say "done: '.venv/bin/proxmoxwp lab status' shows the lab, '.venv/bin/proxmoxwp lab down' stops it"
