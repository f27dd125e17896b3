#!/usr/bin/env bash
# Install the API and the worker of this checkout as systemd services (docs/operations.md, "Running as a service").
#
#   sudo deploy/install-services.sh          # install the user, folders, settings file and units; start nothing
#   sudo deploy/install-services.sh --now    # the same, then upgrade the database as proxmoxwp, enable and start
#
# Run as root, after scripts/install.sh --no-lab made .venv in this checkout. Safe to run again: it makes only what
# is missing and never overwrites /etc/proxmoxwp/proxmoxwp.env or the token file; the units are installed again
# (with this checkout's path in place of /opt/proxmoxwp), so an upgrade's changes to them arrive.
#   - the system user and group proxmoxwp (home: the data dir, no shell)
#   - /etc/proxmoxwp (0750 root:proxmoxwp) with proxmoxwp.env from deploy/proxmoxwp.env.example (0640) and
#     api-tokens holding one random token (0640 root:proxmoxwp)
#   - the data dir /var/lib/proxmoxwp (0700 proxmoxwp:proxmoxwp)
#   - proxmoxwp-api.service and proxmoxwp-worker.service in /etc/systemd/system, then `systemctl daemon-reload`
# Without a running systemd (a container, a chroot) it installs the files and says that nothing was reloaded.
set -euo pipefail

usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

NOW=0
for arg in "$@"; do
  case $arg in
    --now) NOW=1 ;;
    -h | --help) usage && exit 0 ;;
    *) echo "install-services.sh: unknown option $arg (try --help)" >&2 && exit 2 ;;
  esac
done

if [[ $EUID -ne 0 ]]; then
  echo "install-services.sh: run this as root" >&2
  exit 1
fi

DEPLOY=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CHECKOUT=$(dirname "$DEPLOY")
USER_NAME=proxmoxwp
ETC_DIR=/etc/proxmoxwp
ENV_FILE=$ETC_DIR/proxmoxwp.env
TOKENS_FILE=$ETC_DIR/api-tokens
DATA_DIR=/var/lib/proxmoxwp # the units' StateDirectory=proxmoxwp
UNIT_DIR=/etc/systemd/system
UNITS=(proxmoxwp-api.service proxmoxwp-worker.service)

say() { printf '==> %s\n' "$*"; }

if [[ ! -x $CHECKOUT/.venv/bin/proxmoxwp ]]; then
  echo "install-services.sh: $CHECKOUT/.venv/bin/proxmoxwp is missing: run scripts/install.sh --no-lab first" >&2
  exit 1
fi

if id -u "$USER_NAME" >/dev/null 2>&1; then
  say "user $USER_NAME: present"
else
  useradd --system --user-group --home-dir "$DATA_DIR" --no-create-home --shell /usr/sbin/nologin \
    --comment "ProxmoxWP services" "$USER_NAME"
  say "user $USER_NAME: made"
fi

install -d -m 0750 -o root -g "$USER_NAME" "$ETC_DIR"
install -d -m 0700 -o "$USER_NAME" -g "$USER_NAME" "$DATA_DIR"
# an existing data dir (made by root, or by an older install) becomes the service's
chown "$USER_NAME:$USER_NAME" "$DATA_DIR"
chmod 0700 "$DATA_DIR"

if [[ -e $ENV_FILE ]]; then
  say "$ENV_FILE: kept as it is"
else
  # the example's paths name /opt/proxmoxwp; this checkout may be elsewhere
  sed "s|/opt/proxmoxwp|$CHECKOUT|g" "$DEPLOY/proxmoxwp.env.example" |
    install -m 0640 -o root -g "$USER_NAME" /dev/stdin "$ENV_FILE"
  say "$ENV_FILE: made from deploy/proxmoxwp.env.example (edit it: the inventory, the vault password file)"
fi

if [[ -e $TOKENS_FILE ]]; then
  say "$TOKENS_FILE: kept as it is"
else
  # 32 random bytes in URL-safe base64; the token is not printed (it would stay in the terminal's scrollback)
  (umask 077 && "$CHECKOUT/.venv/bin/python" -c 'import secrets; print(secrets.token_urlsafe(32))' >"$TOKENS_FILE")
  chown "root:$USER_NAME" "$TOKENS_FILE"
  chmod 0640 "$TOKENS_FILE"
  say "$TOKENS_FILE: made with one token (give it to Paymenter; add one a line)"
fi

install -d -m 0755 "$UNIT_DIR"
for unit in "${UNITS[@]}"; do
  sed "s|/opt/proxmoxwp|$CHECKOUT|g" "$DEPLOY/systemd/$unit" | install -m 0644 /dev/stdin "$UNIT_DIR/$unit"
  say "$UNIT_DIR/$unit: installed"
done

if [[ ! -d /run/systemd/system ]]; then
  # sd_booted(3): that folder exists only when systemd is PID 1
  say "systemd is not running on this machine: the files are installed, nothing was reloaded or started"
  [[ $NOW == 0 ]] || say "--now: nothing to start without systemd"
  exit 0
fi
systemctl daemon-reload
# `proxmoxwp db upgrade` as the services' user, with their settings: files it makes in the data dir are theirs
UPGRADE=(systemd-run --pipe --wait --quiet -p "User=$USER_NAME" -p "EnvironmentFile=$ENV_FILE"
  -p "Environment=LANG=C.UTF-8" -p StateDirectory=proxmoxwp -p "WorkingDirectory=$CHECKOUT"
  "$CHECKOUT/.venv/bin/proxmoxwp" db upgrade)
if [[ $NOW == 1 ]]; then
  "${UPGRADE[@]}"
  systemctl enable --now "${UNITS[@]}"
  say "started: systemctl status ${UNITS[*]}; logs: journalctl -u proxmoxwp-api -u proxmoxwp-worker"
else
  say "installed; make or upgrade the database as the services' user with their settings, then start them:"
  echo "    ${UPGRADE[*]}"
  echo "    systemctl enable --now ${UNITS[*]}"
fi
