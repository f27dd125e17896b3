#!/usr/bin/env bash
# Run the whole test suite, installing what it needs first.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -k lab -x       # arguments go to both pytest runs
#
# Steps: install (scripts/install.sh --dev: Debian packages, .venv, the project with its test tools);
# ruff check and ruff format --check; yamllint; ansible-lint (production profile, offline); pytest with
# SQLite and huey on SQLite; pytest again with a throwaway PostgreSQL cluster and redis-server, both
# started here on free loopback ports in a temporary directory, and stopped and removed at the end whatever
# happens. Every step runs even when an earlier one failed; the exit status is non-zero if any failed.
#
# Environment:
#   PROXMOXWP_TEST_SQLITE_ONLY=1  skip the PostgreSQL + Redis run (quick local runs)
#   PROXMOXWP_TEST_SERVERS_ONLY=1 skip the SQLite run: only the PostgreSQL + Redis one
#   PROXMOXWP_TEST_SKIP_LINT=1    skip ruff, yamllint and ansible-lint
#   PROXMOXWP_TEST_SKIP_INSTALL=1 use .venv as it is
#   PROXMOXWP_TEST_KEEP_TMP=1     keep the temporary directory (pytest's tmp_path folders, server logs)
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
export DEBIAN_FRONTEND=noninteractive PIP_NO_INPUT=1 PYTHONUNBUFFERED=1
export PATH="$ROOT/.venv/bin:$PATH"
PYTEST_ARGS=("$@")
LINT_PATHS=()
for path in api tests bench scripts; do
  [[ -e $path ]] && LINT_PATHS+=("$path") # git keeps no empty folder: a fresh clone may lack one
done

STEP_NAMES=()
STEP_RESULTS=()
FAILED=0
SCRATCH=""
PG_DATA=""
PG_BIN=""
PG_PID=""
REDIS_PID=""

say() { printf '\n==> %s\n' "$*"; }

record() {
  STEP_NAMES+=("$1")
  STEP_RESULTS+=("$2")
  [[ $2 == PASS* || $2 == SKIP* ]] || FAILED=1
}

step() {
  # step NAME COMMAND...: run it, record PASS or FAIL with its exit status and time.
  local name=$1 started=$SECONDS rc=0
  shift
  say "$name"
  "$@" </dev/null || rc=$?
  if [[ $rc -eq 0 ]]; then
    record "$name" "PASS ($((SECONDS - started))s)"
  else
    record "$name" "FAIL (exit $rc, $((SECONDS - started))s)"
  fi
  return "$rc"
}

pytest_step() {
  # pytest_step NAME [ENV=VALUE...]: pytest's exit status 5 (no test ran) is a failure too.
  local name=$1 started=$SECONDS rc=0
  shift
  say "$name"
  env -u PROXMOXWP_TEST_DATABASE_URL -u PROXMOXWP_TEST_QUEUE_URL -u PROXMOXWP_TEST_SKIP_CLUSTER "$@" \
    "$ROOT/.venv/bin/python" -m pytest "${PYTEST_ARGS[@]}" </dev/null || rc=$?
  case $rc in
    0) record "$name" "PASS ($((SECONDS - started))s)" ;;
    5) record "$name" "FAIL (no test ran)" ;;
    *) record "$name" "FAIL (pytest exit $rc, $((SECONDS - started))s)" ;;
  esac
}

summary() {
  local i
  printf '\n==> summary\n'
  for i in "${!STEP_NAMES[@]}"; do
    printf '  %-44s %s\n' "${STEP_NAMES[$i]}" "${STEP_RESULTS[$i]}"
  done
  if [[ $FAILED -eq 0 ]]; then
    printf 'ALL STEPS PASSED\n'
  else
    printf 'SOME STEPS FAILED\n'
  fi
}

# --- the throwaway servers ---

as_postgres() {
  # PostgreSQL refuses to run as root: as root, run its programs as the `postgres` user.
  if [[ $EUID -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_ports() {
  # Two distinct free TCP ports on 127.0.0.1.
  "$ROOT/.venv/bin/python" - <<'EOF'
import socket

sockets = [socket.socket() for _ in range(2)]
for sock in sockets:
    sock.bind(("127.0.0.1", 0))
print(*(sock.getsockname()[1] for sock in sockets))
for sock in sockets:
    sock.close()
EOF
}

wait_for() {
  # wait_for SECONDS WHAT COMMAND...: poll COMMAND until it succeeds, or fail after SECONDS.
  local timeout=$1 what=$2 deadline=$((SECONDS + $1))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "test.sh: $what did not come up within ${timeout}s" >&2
      return 1
    fi
    sleep 0.2
  done
}

start_postgresql() {
  local port=$1 password dir="$SCRATCH/postgresql"
  PG_BIN=/usr/lib/postgresql/15/bin
  if [[ ! -x $PG_BIN/initdb ]]; then
    PG_BIN=$(find /usr/lib/postgresql -path '*/bin/initdb' 2>/dev/null | sort -V | tail -n 1 | xargs -r dirname)
  fi
  if [[ -z $PG_BIN || ! -x $PG_BIN/initdb ]]; then
    echo "test.sh: PostgreSQL's programs are not installed (Debian package postgresql)" >&2
    return 1
  fi
  password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  mkdir -p "$dir"
  printf '%s\n' "$password" >"$dir/password"
  if [[ $EUID -eq 0 ]]; then
    chown -R postgres: "$dir"
  fi
  chmod 700 "$dir"
  as_postgres "$PG_BIN/initdb" --pgdata="$dir/data" --username=postgres --pwfile="$dir/password" \
    --auth=scram-sha-256 --encoding=UTF8 --no-locale --no-sync >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2
    return 1
  }
  PG_DATA="$dir/data"
  as_postgres "$PG_BIN/pg_ctl" --pgdata="$PG_DATA" --log="$dir/server.log" --wait --timeout=60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 -c fsync=off \
-c synchronous_commit=off -c full_page_writes=off" start >/dev/null || {
    cat "$dir/server.log" >&2
    return 1
  }
  PG_PID=$(head -n 1 "$PG_DATA/postmaster.pid")
  PGPASSWORD=$password "$PG_BIN/createdb" --host=127.0.0.1 --port="$port" --username=postgres proxmoxwp_test ||
    return 1
  DATABASE_URL="postgresql://postgres:$password@127.0.0.1:$port/proxmoxwp_test"
  echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (pid $PG_PID)"
}

start_redis() {
  local port=$1 dir="$SCRATCH/redis"
  if ! command -v redis-server >/dev/null; then
    echo "test.sh: redis-server is not installed (Debian package redis-server)" >&2
    return 1
  fi
  mkdir -p "$dir"
  redis-server --bind 127.0.0.1 --port "$port" --protected-mode yes --save '' --appendonly no \
    --dir "$dir" --logfile "$dir/redis.log" --daemonize no &
  REDIS_PID=$!
  if ! wait_for 30 "redis-server" redis_answers "$port"; then
    cat "$dir/redis.log" >&2
    return 1
  fi
  QUEUE_URL="redis://127.0.0.1:$port/0"
  echo "$(redis-server --version | awk '{print $1, $2, $3}') on 127.0.0.1:$port (pid $REDIS_PID)"
}

redis_answers() {
  alive "$REDIS_PID" && [[ $(redis-cli -h 127.0.0.1 -p "$1" ping) == PONG ]]
}

start_servers() {
  local ports
  ports=$(free_ports) || return 1
  read -r PG_PORT REDIS_PORT <<<"$ports"
  start_postgresql "$PG_PORT" && start_redis "$REDIS_PORT"
}

alive() {
  # The process runs (a zombie, ended but not yet collected by its parent, does not count).
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

stop_servers() {
  # Stops both servers (SIGTERM, then SIGKILL after a bounded wait); fails if either is still running.
  local i left=""
  if [[ -n $REDIS_PID ]] && alive "$REDIS_PID"; then
    kill -TERM "$REDIS_PID" 2>/dev/null
    for ((i = 0; i < 100; i++)); do
      alive "$REDIS_PID" || break
      sleep 0.1
    done
    kill -KILL "$REDIS_PID" 2>/dev/null
    wait "$REDIS_PID" 2>/dev/null
  fi
  if [[ -n $PG_DATA && -f $PG_DATA/postmaster.pid ]]; then
    as_postgres "$PG_BIN/pg_ctl" --pgdata="$PG_DATA" --mode=fast --wait --timeout=30 stop >/dev/null 2>&1 ||
      as_postgres "$PG_BIN/pg_ctl" --pgdata="$PG_DATA" --mode=immediate --wait --timeout=30 stop \
        >/dev/null 2>&1
  fi
  if [[ -n $PG_PID ]] && alive "$PG_PID"; then
    kill -KILL "$PG_PID" 2>/dev/null # its backends end when they see the postmaster gone
  fi
  for i in $REDIS_PID $PG_PID; do
    if alive "$i"; then
      left+=" $i"
    fi
  done
  REDIS_PID=""
  PG_PID=""
  PG_DATA=""
  if [[ -n $left ]]; then
    echo "test.sh: server processes still running:$left" >&2
    return 1
  fi
  echo "PostgreSQL and Redis stopped"
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  stop_servers >/dev/null
  if [[ -n $SCRATCH && ${PROXMOXWP_TEST_KEEP_TMP:-0} == 1 ]]; then
    echo "test.sh: kept $SCRATCH" >&9
  elif [[ -n $SCRATCH ]]; then
    rm -rf "$SCRATCH"
  fi
  exit "$rc"
}

exec 9>&2 # the messages of the traps reach the caller's stderr even while a step's output is redirected
trap cleanup EXIT
trap 'echo "test.sh: interrupted" >&9; exit 130' INT
trap 'echo "test.sh: terminated" >&9; exit 143' TERM
trap 'exit 129' HUP

# --- the steps ---

if [[ ${PROXMOXWP_TEST_SKIP_INSTALL:-0} == 1 ]]; then
  record "install" "SKIP (PROXMOXWP_TEST_SKIP_INSTALL=1)"
elif ! step "install (scripts/install.sh --dev)" bash scripts/install.sh --dev; then
  summary
  exit 1
fi

if [[ ${PROXMOXWP_TEST_SKIP_LINT:-0} == 1 ]]; then
  record "lint" "SKIP (PROXMOXWP_TEST_SKIP_LINT=1)"
else
  step "ruff check" ruff check "${LINT_PATHS[@]}"
  step "ruff format --check" ruff format --check "${LINT_PATHS[@]}"
  step "yamllint" yamllint --strict .
  step "ansible-lint (production profile)" ansible-lint
fi

# This run's own temporary directory, also for pytest: pytest keeps only its three newest base folders
# under /tmp/pytest-of-USER, so another run on the machine would delete this one's SQLite files.
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/proxmoxwp-test.XXXXXX") || exit 1
chmod 755 "$SCRATCH" # the postgres user reaches its data directory inside
export PYTEST_DEBUG_TEMPROOT="$SCRATCH"

if [[ ${PROXMOXWP_TEST_SERVERS_ONLY:-0} == 1 ]]; then
  record "pytest: SQLite + huey/SQLite" "SKIP (PROXMOXWP_TEST_SERVERS_ONLY=1)"
else
  pytest_step "pytest: SQLite + huey/SQLite"
fi

if [[ ${PROXMOXWP_TEST_SQLITE_ONLY:-0} == 1 ]]; then
  record "pytest: PostgreSQL + Redis" "SKIP (PROXMOXWP_TEST_SQLITE_ONLY=1)"
else
  if step "start PostgreSQL and Redis" start_servers; then
    # Tests marked `cluster` (against the fake PVE) or `containers` (real LXC) never touch the API's database:
    # they ran in the SQLite pass already.
    SKIP_CLUSTER=0
    [[ ${PROXMOXWP_TEST_SERVERS_ONLY:-0} == 1 ]] || SKIP_CLUSTER=1
    pytest_step "pytest: PostgreSQL + Redis" \
      PROXMOXWP_TEST_DATABASE_URL="$DATABASE_URL" PROXMOXWP_TEST_QUEUE_URL="$QUEUE_URL" \
      PROXMOXWP_TEST_SKIP_CLUSTER="$SKIP_CLUSTER"
  else
    record "pytest: PostgreSQL + Redis" "FAIL (servers did not start)"
  fi
  step "stop PostgreSQL and Redis" stop_servers
fi

summary
[[ $FAILED -eq 0 ]]
