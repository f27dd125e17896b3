#!/usr/bin/env bash
# Run the whole test suite, installing what it needs first.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -k lab -x       # arguments go to both pytest passes
#
# Phases:
#   install  scripts/install.sh --dev: Debian packages (their time is shown apart), .venv with the test tools;
#            then, beside the tests, the product's wheels for the clean-install test (it installs offline).
#   lint     ruff check, ruff format --check, yamllint, ansible-lint (production profile, offline), beside
#            pass 1 (they need little of the machine while the tests wait on containers and servers).
#   pass 1   every test, on SQLite with huey on SQLite.
#   pass 2   the tests marked `db` (what depends on the database and the queue), on a throwaway PostgreSQL
#            cluster and a redis-server started here on free loopback ports, stopped and removed at the end;
#            it runs beside pass 1 and its output is shown after pass 1's.
#   check    nothing of the run is left: no process, container, bridge, nftables table, mount, loop device
#            or temporary file of the product.
# Both passes run their tests in parallel (pytest-xdist, `--dist loadgroup`: tests that share a lab or a
# container are in one group and run on one worker). Every phase runs even when an earlier one failed; the exit
# status is non-zero if any failed. At the end: the wall time of every phase and tier, and the 15 slowest tests
# of each pass. Under CI=true a skipped test fails its pass unless tests/skip_policy.py allows it.
#
# Environment:
#   PROXMOXWP_TEST_WORKERS=N      parallel pytest workers of each pass (default: the CPUs plus one for pass 1 and
#                                 the CPUs for pass 2, which runs beside it; 0 runs each pass in one process)
#   PROXMOXWP_TEST_SQLITE_ONLY=1  skip pass 2 (quick local runs)
#   PROXMOXWP_TEST_SERVERS_ONLY=1 skip pass 1: only pass 2
#   PROXMOXWP_TEST_SKIP_LINT=1    skip the linters
#   PROXMOXWP_TEST_SKIP_INSTALL=1 use .venv as it is
#   PROXMOXWP_TEST_KEEP_TMP=1     keep the temporary directory (pytest's tmp_path folders, server logs)
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
export DEBIAN_FRONTEND=noninteractive PIP_NO_INPUT=1 PYTHONUNBUFFERED=1
export PATH="$ROOT/.venv/bin:$PATH"
PYTEST_ARGS=("$@")
LINT_PATHS=()
for path in api lab tests bench scripts plugins; do
  [[ -e $path ]] && LINT_PATHS+=("$path") # git keeps no empty folder: a fresh clone may lack one
done
# Pass 1 takes a worker more than the CPUs (its container tests wait on I/O); pass 2, beside it, one per CPU.
WORKERS=${PROXMOXWP_TEST_WORKERS:-$(($(nproc) + 1))}
PASS2_WORKERS=${PROXMOXWP_TEST_WORKERS:-$(nproc)}

STEP_NAMES=()
STEP_RESULTS=()
STEP_SECONDS=()
FAILED=0
SCRATCH=""
PG_DATA=""
PG_BIN=""
PG_PID=""
REDIS_PID=""
LINT_PID=""
PASS2_PID=""
WHEELS_PID=""
RUN_STARTED=$SECONDS

say() { printf '\n==> %s\n' "$*"; }

record() {
  # record NAME RESULT SECONDS: one row of the table at the end.
  STEP_NAMES+=("$1")
  STEP_RESULTS+=("$2")
  STEP_SECONDS+=("${3:-}")
  [[ $2 == PASS* || $2 == SKIP* || $2 == INFO* ]] || FAILED=1
}

step() {
  # step NAME COMMAND...: run it, record PASS or FAIL with its exit status and time.
  local name=$1 started=$SECONDS rc=0
  shift
  say "$name"
  "$@" </dev/null || rc=$?
  if [[ $rc -eq 0 ]]; then
    record "$name" "PASS" "$((SECONDS - started))"
  else
    record "$name" "FAIL (exit $rc)" "$((SECONDS - started))"
  fi
  return "$rc"
}

run_pytest() {
  # run_pytest WORKERS STATUS_FILE TIMES_FILE [PYTEST OPTIONS...] -- [ENV=VALUE...]: one pass; "RC SECONDS" is
  # written to STATUS_FILE, the pass's tiers, slowest tests and timeline to TIMES_FILE (tests/timing.py).
  local workers=$1 status=$2 times=$3 started=$SECONDS rc=0 options=() parallel=()
  shift 3
  while [[ $# -gt 0 && $1 != -- ]]; do
    options+=("$1")
    shift
  done
  shift
  if ((workers > 0)); then
    parallel=(-n "$workers" --dist loadgroup --no-loadscope-reorder)
  fi
  env -u PROXMOXWP_TEST_DATABASE_URL -u PROXMOXWP_TEST_QUEUE_URL PROXMOXWP_TEST_TIMES="$times" "$@" \
    "$ROOT/.venv/bin/python" -m pytest "${parallel[@]}" --durations=15 "${options[@]}" "${PYTEST_ARGS[@]}" \
    </dev/null || rc=$?
  printf '%s %s\n' "$rc" "$((SECONDS - started))" >"$status"
}

record_pass() {
  # record_pass NAME STATUS_FILE: pytest's exit status 5 (no test ran) is a failure too.
  local name=$1 rc seconds
  read -r rc seconds <"$2" || {
    record "$name" "FAIL (did not finish)"
    return
  }
  case $rc in
    0) record "$name" "PASS" "$seconds" ;;
    5) record "$name" "FAIL (no test ran)" "$seconds" ;;
    *) record "$name" "FAIL (pytest exit $rc)" "$seconds" ;;
  esac
}

workers_text() {
  if (($1 > 0)); then echo "$1 workers"; else echo "one process"; fi
}

# --- lint, beside pass 1 ---

lint_all() {
  # Each linter in turn; "NAME RC SECONDS" lines in $SCRATCH/lint.results, their output in $SCRATCH/lint.log.
  local name rc started
  for name in "ruff check" "ruff format --check" "yamllint" "ansible-lint (production profile)"; do
    started=$SECONDS
    rc=0
    printf '\n--- %s\n' "$name"
    case $name in
      "ruff check") ruff check "${LINT_PATHS[@]}" || rc=$? ;;
      "ruff format --check") ruff format --check "${LINT_PATHS[@]}" || rc=$? ;;
      yamllint) yamllint --strict . || rc=$? ;;
      # offline, ansible-lint installs this collection into ANSIBLE_HOME (default ~/.ansible): the run's own one
      ansible-lint*) mkdir -p "$SCRATCH/ansible-home" && ANSIBLE_HOME="$SCRATCH/ansible-home" ansible-lint --nocolor || rc=$? ;;
    esac
    printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - started))" >>"$SCRATCH/lint.results"
  done
}

start_wheels() {
  # The product's wheels for tests/test_clean_install.py, which installs a fresh clone from them with pip's
  # --no-index: the package index is reached here, while installing, and not by a test. Fetched beside the
  # first tests (about two minutes, mostly waiting on the index); the test waits for the .status file.
  export PROXMOXWP_TEST_WHEELHOUSE="$SCRATCH/wheelhouse"
  mkdir -p "$PROXMOXWP_TEST_WHEELHOUSE"
  (
    rc=0
    .venv/bin/python -m pip download -q --disable-pip-version-check -d "$PROXMOXWP_TEST_WHEELHOUSE" \
      "setuptools>=77" ".[postgres,redis,lab]" || rc=$?
    echo "$SECONDS" >"$SCRATCH/wheelhouse.seconds"
    echo "$rc" >"$PROXMOXWP_TEST_WHEELHOUSE/.status"
  ) >"$SCRATCH/wheelhouse.log" 2>&1 </dev/null &
  WHEELS_PID=$!
  WHEELS_STARTED=$SECONDS
}

finish_wheels() {
  local rc finished
  [[ -n $WHEELS_PID ]] || return 0
  wait "$WHEELS_PID"
  WHEELS_PID=""
  rc=$(cat "$PROXMOXWP_TEST_WHEELHOUSE/.status" 2>/dev/null || echo "?")
  finished=$(cat "$SCRATCH/wheelhouse.seconds" 2>/dev/null || echo "$SECONDS")
  if [[ $rc == 0 ]]; then
    record "install: wheels, beside pass 1" "PASS" "$((finished - WHEELS_STARTED))"
  else
    say "install: the wheels for the clean-install test could not be fetched"
    cat "$SCRATCH/wheelhouse.log"
    record "install: wheels, beside pass 1" "FAIL (exit $rc)"
  fi
}

start_lint() {
  if [[ ${PROXMOXWP_TEST_SKIP_LINT:-0} == 1 ]]; then
    record "lint" "SKIP (PROXMOXWP_TEST_SKIP_LINT=1)"
    return
  fi
  say "lint: started beside pass 1 (its output follows pass 1)"
  LINT_STARTED=$SECONDS
  lint_all >"$SCRATCH/lint.log" 2>&1 </dev/null &
  LINT_PID=$!
}

finish_lint() {
  local name rc seconds
  [[ -n $LINT_PID ]] || return 0
  wait "$LINT_PID"
  LINT_PID=""
  say "lint (ran beside pass 1, $((SECONDS - LINT_STARTED))s of wall time until here)"
  cat "$SCRATCH/lint.log"
  while IFS=$'\t' read -r name rc seconds; do
    if [[ $rc == 0 ]]; then
      record "lint: $name" "PASS" "$seconds"
    else
      record "lint: $name" "FAIL (exit $rc)" "$seconds"
    fi
  done <"$SCRATCH/lint.results"
  [[ -s $SCRATCH/lint.results ]] || record "lint" "FAIL (the linters did not run)"
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
  redis-server --bind 127.0.0.1 --port "$port" --protected-mode yes --save "" --appendonly no --databases 64 \
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


# --- what a run must not leave behind ---

leftovers() {
  # Everything of this run still on the machine, one line each: processes started from the run's directory,
  # LXC containers, overlay mounts and loop devices under it, bridges and nftables tables of the tests' labs.
  local pid mount table link
  for pid in $(pgrep -f -- "$SCRATCH" 2>/dev/null); do
    [[ $pid == "$$" || $pid == "$BASHPID" ]] || printf 'process %s: %s\n' "$pid" "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"
  done
  while read -r _ mount _; do
    [[ $mount == "$SCRATCH"* ]] && printf 'mount %s\n' "$mount"
  done </proc/mounts
  losetup --list --noheadings --output NAME,BACK-FILE 2>/dev/null | grep -F -- "$SCRATCH" | sed 's/^/loop device /'
  # the NAT table of a bridge (family ip) and the sites' firewall on it (families inet and bridge, lab/pve)
  for table in $(nft --json list tables 2>/dev/null | python3 -c 'import json,sys
for e in json.load(sys.stdin).get("nftables", []):
    table = e.get("table", {})
    if table.get("name", "").startswith(tuple(f"proxmoxwp_{kind}pwp{t}" for kind in ("", "fw_") for t in "te")):
        print(table["family"] + "/" + table["name"])' 2>/dev/null); do
    printf 'nftables table %s\n' "$table"
  done
  for link in $(ip -o link show type bridge 2>/dev/null | awk -F': ' '{print $2}' | grep -E '^pwp[te]'); do
    printf 'bridge %s\n' "$link"
  done
  # temporary files of the product outside the run's directory (a killed worker's, for instance)
  temporary_entries | sed 's/^/temporary file /'
}

temporary_entries() {
  local entry
  for entry in "${TMPDIR:-/tmp}"/proxmoxwp* "${TMPDIR:-/tmp}"/pwp*; do
    [[ -e $entry && $entry != "$SCRATCH" ]] && printf '%s\n' "$entry"
  done | LC_ALL=C sort
}

check_nothing_left() {
  local found
  # what an earlier run left (one killed before its teardown) is reported at the start, not blamed on this one
  found=$(comm -13 <(printf '%s\n' "${LEFT_BEFORE[@]}" | LC_ALL=C sort) <(leftovers | LC_ALL=C sort))
  if [[ -n $found ]]; then
    echo "test.sh: the run left these behind:" >&2
    printf '  %s\n' "$found" >&2
    return 1
  fi
  echo "no process, container, mount, loop device, bridge, nftables table or temporary file of the run is left"
}

# --- the table at the end ---

summary() {
  local i total=$((SECONDS - RUN_STARTED))
  printf '\n==> summary: wall time of each phase\n'
  for i in "${!STEP_NAMES[@]}"; do
    printf '  %-48s %-22s %s\n' "${STEP_NAMES[$i]}" "${STEP_RESULTS[$i]}" "${STEP_SECONDS[$i]:+${STEP_SECONDS[$i]}s}"
  done
  printf '  %-48s %-22s %s\n' "the whole run, Debian packages apart" "" "$((total - DEBIAN_SECONDS))s"
  for i in "${!PASS_TIMES[@]}"; do
    [[ -s ${PASS_TIMES[$i]} ]] && "$ROOT/.venv/bin/python" "$ROOT/tests/timing.py" "${PASS_NAMES[$i]}" "${PASS_TIMES[$i]}"
  done
  if [[ $FAILED -eq 0 ]]; then
    printf 'ALL STEPS PASSED\n'
  else
    printf 'SOME STEPS FAILED\n'
  fi
}

stop_background() {
  # stop_background PID SIGNAL: signal the children of a background job of this script, then wait for it.
  [[ -n $1 ]] || return 0
  pkill "-$2" -P "$1" 2>/dev/null
  wait "$1" 2>/dev/null
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  stop_background "$PASS2_PID" INT # pytest tears its fixtures down on SIGINT, as on Ctrl-C
  stop_background "$LINT_PID" TERM
  stop_background "$WHEELS_PID" TERM
  stop_servers >/dev/null
  if [[ -n $SCRATCH && ${PROXMOXWP_TEST_KEEP_TMP:-0} == 1 ]]; then
    echo "test.sh: kept $SCRATCH" >&9
  elif [[ -n $SCRATCH ]]; then
    rm -rf --one-file-system "$SCRATCH"
  fi
  exit "$rc"
}

exec 9>&2 # the messages of the traps reach the caller's stderr even while a step's output is redirected
trap cleanup EXIT
trap 'echo "test.sh: interrupted" >&9; exit 130' INT
trap 'echo "test.sh: terminated" >&9; exit 143' TERM
trap 'exit 129' HUP

# --- the phases ---

# This run's own temporary directory, also for pytest: pytest keeps only its three newest base folders
# under /tmp/pytest-of-USER, so another run on the machine would delete this one's SQLite files.
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/proxmoxwp-test.XXXXXX") || exit 1
chmod 755 "$SCRATCH" # the postgres user reaches its data directory inside
export PYTEST_DEBUG_TEMPROOT="$SCRATCH"
mapfile -t LEFT_BEFORE < <(leftovers)
if [[ ${#LEFT_BEFORE[@]} -gt 0 ]]; then
  echo "test.sh: these were on the machine before this run (a run killed before its teardown leaves them);" \
    "this run does not touch them:" >&2
  printf '  %s\n' "${LEFT_BEFORE[@]}" >&2
  echo "  remove them by hand once nothing uses them (ip link delete BRIDGE; nft delete table FAMILY NAME)" >&2
fi
DEBIAN_SECONDS=0
PASS_NAMES=()
PASS_TIMES=()

if [[ ${PROXMOXWP_TEST_SKIP_INSTALL:-0} == 1 ]]; then
  record "install" "SKIP (PROXMOXWP_TEST_SKIP_INSTALL=1)"
else
  started=$SECONDS
  rc=0
  say "install (scripts/install.sh --dev)"
  PROXMOXWP_INSTALL_TIMES="$SCRATCH/install.times" bash scripts/install.sh --dev </dev/null || rc=$?
  while read -r name seconds; do
    case $name in
      debian-packages) DEBIAN_SECONDS=$seconds && record "install: Debian packages (apart)" "INFO" "$seconds" ;;
      python-packages) record "install: .venv and Python packages" "PASS" "$seconds" ;;
    esac
  done <"$SCRATCH/install.times"
  if [[ $rc -ne 0 ]]; then
    record "install" "FAIL (exit $rc)" "$((SECONDS - started))"
    summary
    exit 1
  fi
fi

start_wheels

# Pass 2 runs beside pass 1, its output kept for after it: while pass 1's workers wait on containers and on the
# images they are built from, the CPUs take pass 2's API and job tests.
PASS2=0
if [[ ${PROXMOXWP_TEST_SQLITE_ONLY:-0} == 1 ]]; then
  record "pass 2: PostgreSQL + Redis" "SKIP (PROXMOXWP_TEST_SQLITE_ONLY=1)"
elif step "pass 2: start PostgreSQL and Redis" start_servers; then
  PASS2=1
  PASS_NAMES+=("pass 2: PostgreSQL + Redis (tests marked db)")
  PASS_TIMES+=("$SCRATCH/pass2.json")
  say "pass 2: PostgreSQL + Redis, tests marked db ($(workers_text "$PASS2_WORKERS"), beside pass 1; output after it)"
  run_pytest "$PASS2_WORKERS" "$SCRATCH/pass2.status" "$SCRATCH/pass2.json" -m db -- \
    PROXMOXWP_TEST_DATABASE_URL="$DATABASE_URL" PROXMOXWP_TEST_QUEUE_URL="$QUEUE_URL" \
    >"$SCRATCH/pass2.log" 2>&1 &
  PASS2_PID=$!
else
  record "pass 2: PostgreSQL + Redis" "FAIL (servers did not start)"
fi

start_lint
if [[ ${PROXMOXWP_TEST_SERVERS_ONLY:-0} == 1 ]]; then
  record "pass 1: SQLite + huey/SQLite" "SKIP (PROXMOXWP_TEST_SERVERS_ONLY=1)"
else
  PASS_NAMES=("pass 1: SQLite + huey/SQLite" "${PASS_NAMES[@]}")
  PASS_TIMES=("$SCRATCH/pass1.json" "${PASS_TIMES[@]}")
  say "pass 1: SQLite + huey/SQLite, every test ($(workers_text "$WORKERS"))"
  run_pytest "$WORKERS" "$SCRATCH/pass1.status" "$SCRATCH/pass1.json" --
  record_pass "pass 1: SQLite + huey/SQLite" "$SCRATCH/pass1.status"
fi
finish_lint
finish_wheels

if [[ $PASS2 == 1 ]]; then
  wait "$PASS2_PID"
  PASS2_PID=""
  say "pass 2: PostgreSQL + Redis, tests marked db (ran beside pass 1)"
  cat "$SCRATCH/pass2.log"
  record_pass "pass 2: PostgreSQL + Redis (tests marked db)" "$SCRATCH/pass2.status"
  step "pass 2: stop PostgreSQL and Redis" stop_servers
fi

step "check: nothing of the run is left" check_nothing_left

summary
[[ $FAILED -eq 0 ]]
