# shellcheck shell=bash disable=SC2034  # (variables set here for the scripts that source it)
# Shared by the end-to-end scripts (tests/README.md "Helpers of the end-to-end scripts"):
# the preamble, checks, ekmd's start and stop, and the AWS peer. A script begins
#
#   set -uo pipefail
#   EKM=$1 EKMD=$2          # as given by CMake
#   # shellcheck source=lib.sh
#   source "$(dirname "$0")/lib.sh"
#   setup_test NAME         # T, HOME, isolation, the ekm wrapper, the exit trap
#
# and ends with `summary`, which stops every ekmd still running (checked like stop_ekmd), fails
# on any crash of ekm or sanitizer report, and prints the line CI reads.
failures=0
passes=0
pass() { passes=$((passes + 1)); }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
check() { local what=$1; shift; if "$@"; then pass; else fail "$what"; fi; }

# What a process writes when it dies badly (AddressSanitizer, LeakSanitizer, UBSan's "runtime
# error:", ThreadSanitizer, std::terminate, assert(), glibc's aborts); grep -E.
CRASH_PATTERN='ERROR: AddressSanitizer|ERROR: LeakSanitizer|AddressSanitizer:|runtime error:'
CRASH_PATTERN+='|ThreadSanitizer|terminate called|Assertion `|pure virtual method called'
CRASH_PATTERN+='|stack smashing detected|double free or corruption'

# expect_error WHAT SUBSTRING -- command...: non-zero exit (not a crash), one line on stderr
# naming SUBSTRING; stdout in $T/out, stderr in $T/err.
expect_error() {
  local what=$1 want=$2; shift 3
  "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  local err
  err=$(head -c 600 "$T/err")
  if [ $rc -eq 0 ]; then fail "$what: exit 0"; return; fi
  if [ $rc -ge 128 ]; then fail "$what: crashed (exit status $rc): $err"; return; fi
  if grep -qE "$CRASH_PATTERN" "$T/err"; then fail "$what: crash report: $err"; return; fi
  if [ "$(wc -l <"$T/err")" -ne 1 ]; then fail "$what: stderr is not one line: $(cat "$T/err")"; return; fi
  if ! grep -qF -- "$want" "$T/err"; then fail "$what: stderr lacks '$want': $err"; return; fi
  pass
}

# refused WHAT PATTERN -- COMMAND...: COMMAND (curl, openssl…) fails, not by a crash, and for
# the reason named: its output (stdout and stderr, in $T/refused.out) matches the extended
# regular expression PATTERN. A refusal check that a dead server or a typo cannot pass.
refused() {
  local what=$1 want=$2; shift 3
  "$@" >"$T/refused.out" 2>&1 </dev/null
  local rc=$?
  if [ $rc -eq 0 ]; then fail "$what: it succeeded"; return; fi
  if [ $rc -ge 128 ]; then fail "$what: crashed (exit status $rc)"; return; fi
  if ! grep -qiE -- "$want" "$T/refused.out"; then
    fail "$what: failed otherwise (exit $rc):" \
      "$(grep -iE -m 3 'error|fail|refused|alert' "$T/refused.out" | head -c 600)"
    return
  fi
  pass
}

# absent WHAT FILE GREP-ARGS...: a negative check that cannot pass by accident: FILE exists and
# is not empty (the command that wrote it did run), and `grep GREP-ARGS FILE` finds nothing
# (grep failing is a failure, not a pass). E.g. absent "no secret" "$T/ekmd.log" -F -e "$SECRET".
absent() {
  local what=$1 f=$2; shift 2
  if [ ! -s "$f" ]; then fail "$what: $f is missing or empty: nothing was checked"; return; fi
  grep -q "$@" -- "$f"
  case $? in
    1) pass ;;
    0) fail "$what: found in $f, line $(grep -n -m 3 "$@" -- "$f" | cut -d: -f1 | tr '\n' ' ')" ;;
    *) fail "$what: grep $* failed on $f" ;;
  esac
}

# has FILE SUBSTRING...: FILE contains every SUBSTRING (for check).
has() {
  local f=$1; shift
  local s
  for s in "$@"; do
    grep -qF -- "$s" "$f" || { echo "  (lacks '$s': $(head -c 600 "$f"))"; return 1; }
  done
}

# --- the preamble ---------------------------------------------------------------------------
# setup_test NAME: T (a new temp dir), HOME=$T/home, no AWS_* and none of the EKM_* variables
# ekm and ekmd read (nothing reaches a real AWS account, ~/.aws, the instance metadata service or
# another ekm), sanitizer reports written to $T/sanitizer (every process's, found by summary),
# EKM the wrapper $T/bin/ekm around the binary EKM named (EKM_BIN): it records an ekm killed by
# a signal, which summary fails on, whatever the check around it saw. The exit trap stops what
# is left (ekmd, at_exit commands) and removes T (kept with EKM_KEEP_TEST_DIR=1).
setup_test() {
  T=$(mktemp -d "/tmp/ekm-$1.XXXXXX")
  trap _lib_cleanup EXIT
  local v
  for v in $(env | sed -n 's/^\(AWS_[A-Z0-9_]*\)=.*/\1/p'); do unset "$v"; done
  unset EKM_TOKEN EKM_SERVER EKM_DATA_DIR EKM_CA_FILE EKM_CLIENT_CERT EKM_CLIENT_KEY \
    EKM_AWS_PRINCIPAL_ARN EKM_AWS_CA_FILE
  export HOME="$T/home" AWS_EC2_METADATA_DISABLED=true
  mkdir -p "$HOME" "$T/sanitizer" "$T/bin"
  local o
  for o in ASAN_OPTIONS UBSAN_OPTIONS TSAN_OPTIONS; do
    export "$o=${!o:+${!o}:}log_path=$T/sanitizer/${o%%_*}"
  done
  CRASH_LOG="$T/crashes"
  if [ -n "${EKM:-}" ]; then
    EKM_BIN=$(realpath "$EKM")
    {
      echo '#!/usr/bin/env bash'
      echo '# ekm, and a line in the crash log when it dies by a signal (lib.sh setup_test).'
      printf '%q "$@"\n' "$EKM_BIN"
      echo 'rc=$?'
      printf '[ $rc -ge 128 ] && echo "ekm $1 $2 $3: exit status $rc" >>%q\n' "$CRASH_LOG"
      echo 'exit $rc'
    } >"$T/bin/ekm"
    chmod +x "$T/bin/ekm"
    EKM="$T/bin/ekm"
  fi
}

AT_EXIT=()
# at_exit COMMAND: run by the exit trap (e.g. to stop background loops).
at_exit() { AT_EXIT+=("$1"); }
PEER_GROUPS=()  # process groups of peers (setsid): TERM, then KILL, on exit

_lib_cleanup() {
  local name c g
  for name in "${!EKMD_PIDS[@]}"; do kill -9 "${EKMD_PIDS[$name]}" 2>/dev/null; done
  for c in "${AT_EXIT[@]}"; do eval "$c"; done
  if [ ${#PEER_GROUPS[@]} -gt 0 ]; then
    for g in "${PEER_GROUPS[@]}"; do kill -TERM -- "-$g" 2>/dev/null; done
    sleep 0.2
    for g in "${PEER_GROUPS[@]}"; do kill -KILL -- "-$g" 2>/dev/null; done
  fi
  local before=$failures
  _lib_reports
  if [ "${EKM_KEEP_TEST_DIR:-0}" = 1 ]; then echo "kept $T"; else rm -rf "$T"; fi
  # A report that came after summary (from what was killed here) still fails the script.
  [ "$failures" -eq "$before" ] || exit 1
}

# Fails (and prints) once for every crash of ekm and every sanitizer report not seen yet.
_lib_reports() {
  local f
  if [ -s "${CRASH_LOG:-/nonexistent}" ]; then
    fail "ekm crashed: $(cat "$CRASH_LOG")"
    : >"$CRASH_LOG"
  fi
  for f in "$T"/sanitizer/*; do
    [ -e "$f" ] || continue
    fail "a sanitizer report ($(basename "$f")):"
    head -n 60 "$f"
    rm -f "$f"
  done
}

# The closing line CI reads, and the exit status.
summary() {
  local name
  for name in "${!EKMD_PIDS[@]}"; do stop_ekmd "$name"; done
  _lib_reports
  echo "$passes passed, $failures failed"
  [ "$failures" -eq 0 ]
}

# --- ekmd -----------------------------------------------------------------------------------
declare -A EKMD_PIDS=()
EKMD_PID=""   # the last ekmd started
EKMD_NAME=""
S="http://127.0.0.1:9"  # until ekmd runs: refused at once, so a failed start fails every check

# _lib_running PID: the process exists and has not exited (an exited child stays a zombie, which
# kill -0 still finds, until it is waited for).
_lib_running() { [ -r "/proc/$1/stat" ] && [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]; }

# start_ekmd NAME [VAR=VALUE...] [EKMD-ARGS...]: starts $EKMD with those variables and
# arguments (plus --listen 127.0.0.1:0 unless they give --listen or --config), its output in
# $T/NAME.log, and waits until it listens (and, over plain HTTP, answers /healthz). Sets
# EKMD_PID, EKMD_NAME, PORT and S (its URL). Returns 1, the log printed, when it does not start.
start_ekmd() {
  local name=$1; shift
  local envs=() a listen=1
  while [ $# -gt 0 ] && [[ $1 =~ ^[A-Za-z_][A-Za-z0-9_]*= ]]; do envs+=("$1"); shift; done
  for a in "$@"; do case $a in --listen|--listen=*|--config|--config=*) listen=0 ;; esac; done
  [ $listen = 1 ] && set -- "$@" --listen 127.0.0.1:0
  if [ -n "${EKMD_PIDS[$name]:-}" ]; then fail "start_ekmd: $name is running already"; return 1; fi
  local log="$T/$name.log"
  : >"$log"
  env "${envs[@]}" "$EKMD" "$@" >"$log" 2>&1 &
  local pid=$!
  EKMD_PIDS[$name]=$pid
  EKMD_PID=$pid
  EKMD_NAME=$name
  S="http://127.0.0.1:9"
  local i scheme port
  for i in $(seq 600); do
    read -r scheme port < <(sed -n 's/.*listening on \(https\{0,1\}\):\/\/127\.0\.0\.1:\([0-9]*\).*/\1 \2/p' "$log" | head -1)
    if [ -n "${port:-}" ]; then
      if [ "$scheme" = https ] || curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
        PORT=$port
        S="$scheme://127.0.0.1:$port"
        return 0
      fi
    fi
    _lib_running "$pid" || break
    sleep 0.05
  done
  echo "ekmd $name did not start:"; cat "$log"
  kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  unset "EKMD_PIDS[$name]"
  EKMD_PID=""
  return 1
}

EKMD_STOP_SECONDS=${EKMD_STOP_SECONDS:-30}
# stop_ekmd [NAME]: SIGTERM to the ekmd started as NAME (default the last one), waits for it
# (EKMD_STOP_SECONDS at most, then kill -9) and checks it: exit status 0 (not a signal, not a
# sanitizer's exit status, not a hang), and no crash or sanitizer report in its log or its
# report files. One pass or one fail; prints the log's tail on a failure.
stop_ekmd() {
  local name=${1:-$EKMD_NAME}
  local pid=${EKMD_PIDS[$name]:-}
  if [ -z "$pid" ]; then fail "stop_ekmd: no ekmd $name is running"; return 1; fi
  kill -TERM "$pid" 2>/dev/null
  local i
  for i in $(seq $((EKMD_STOP_SECONDS * 20))); do _lib_running "$pid" || break; sleep 0.05; done
  local hung=""
  if _lib_running "$pid"; then
    hung=" (still running ${EKMD_STOP_SECONDS} s after SIGTERM: killed)"
    kill -9 "$pid"
  fi
  wait "$pid" 2>/dev/null
  local rc=$?
  _lib_forget_ekmd "$name" "$pid"
  local bad
  bad=$(_lib_ekmd_problems "$name" "$pid")
  if [ $rc -ne 0 ] || [ -n "$hung" ] || [ -n "$bad" ]; then
    fail "ekmd $name: exit status $rc after SIGTERM$hung${bad:+; $bad}"
    echo "--- $T/$name.log, last lines ---"; tail -n 40 "$T/$name.log"
    return 1
  fi
  pass
}

# kill9_ekmd [NAME]: a crash on purpose (kill -9). Its log is still checked for a crash report
# made before the kill.
kill9_ekmd() {
  local name=${1:-$EKMD_NAME}
  local pid=${EKMD_PIDS[$name]:-}
  if [ -z "$pid" ]; then fail "kill9_ekmd: no ekmd $name is running"; return 1; fi
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  _lib_forget_ekmd "$name" "$pid"
  local bad
  bad=$(_lib_ekmd_problems "$name" "$pid")
  [ -z "$bad" ] || fail "ekmd $name before its kill -9: $bad"
}

_lib_forget_ekmd() {
  unset "EKMD_PIDS[$1]"
  [ "$EKMD_PID" = "$2" ] && EKMD_PID=""
}

# What went wrong in ekmd NAME (pid PID) by its log and sanitizer report files ('' if nothing).
_lib_ekmd_problems() {
  local f line
  line=$(grep -m 1 -E "$CRASH_PATTERN" "$T/$1.log" 2>/dev/null)
  [ -n "$line" ] && echo "its log has a crash report: $line"
  for f in "$T"/sanitizer/*."$2"; do
    [ -e "$f" ] || continue
    echo "a sanitizer report $(basename "$f"): $(grep -m 1 -E "$CRASH_PATTERN" "$f")"
  done
}

# --- API tokens ------------------------------------------------------------------
# setup_tokens DATA_DIR SERVER_URL WORKSPACE: call right after ekmd is up. Reads the bootstrap
# admin token ekmd wrote to DATA_DIR/bootstrap-admin-token (or ADMIN_TOKEN if already set),
# creates WORKSPACE (an existing one is fine) and exports ADMIN_TOKEN, OWNER_TOKEN, KM_TOKEN,
# APP_TOKEN and AUDITOR_TOKEN for it. As a platform would: the admin creates the workspace's
# owner (it may create no other role), the owner the others.
setup_tokens() {
  local dir=$1 url=$2 ws=$3 i
  if [ -z "${ADMIN_TOKEN:-}" ] || [ "${ADMIN_TOKEN:-}" = placeholder ]; then
    for i in $(seq 1 50); do [ -s "$dir/bootstrap-admin-token" ] && break; sleep 0.1; done
    ADMIN_TOKEN=$(head -n1 "$dir/bootstrap-admin-token" 2>/dev/null)
  fi
  export ADMIN_TOKEN
  local code
  code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $ADMIN_TOKEN" \
    -H 'Content-Type: application/json' --data "{\"name\": \"$ws\"}" "$url/v1/workspaces")
  if [ "$code" != 201 ] && [ "$code" != 409 ]; then
    echo "setup_tokens: creating workspace $ws answered HTTP $code" >&2
    return 1
  fi
  OWNER_TOKEN=$(mint_token "$url" "$ADMIN_TOKEN" owner "$ws") || return 1
  KM_TOKEN=$(mint_token "$url" "$OWNER_TOKEN" key-manager "$ws") || return 1
  APP_TOKEN=$(mint_token "$url" "$OWNER_TOKEN" app "$ws") || return 1
  AUDITOR_TOKEN=$(mint_token "$url" "$OWNER_TOKEN" auditor "$ws") || return 1
  export OWNER_TOKEN KM_TOKEN APP_TOKEN AUDITOR_TOKEN
}
# mint_token URL AS_TOKEN ROLE WORKSPACE [ENVIRONMENT]: prints a new token of ROLE.
mint_token() {
  local url=$1 as=$2 role=$3 ws=$4 env=${5:-} body out
  body="{\"role\": \"$role\", \"workspace\": \"$ws\", \"description\": \"test\""
  [ -n "$env" ] && body="$body, \"environments\": [\"$env\"]"
  body="$body}"
  out=$(curl -sS -X POST -H "Authorization: Bearer $as" -H 'Content-Type: application/json' \
    --data "$body" "$url/v1/tokens") || return 1
  out=$(printf '%s' "$out" | sed -n 's/.*"token": *"\(ekm_[^"]*\)".*/\1/p')
  [ -n "$out" ] || { echo "mint_token: no $role token for $ws" >&2; return 1; }
  printf '%s\n' "$out"
}

# --- the AWS peer (moto, and the fault proxy in front of it) --------------------------------
# start_aws_peer SOURCE_DIR [proxy]: moto_server with IAM checks on, prepared by
# tests/peers/moto_setup.py ($T/setup.json), and with `proxy` kms_fault_proxy.py in front of it
# (tests/peers/README.md). Sets PY (the python3 that has moto), MOTO and PROXY (URLs). Each runs
# in its own process group, stopped on exit. Returns 1, with what it printed, when one does
# not start.
start_aws_peer() {
  local src=$1 port
  PY=${EKM_PYTHON3:-$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null)}
  if [ -z "$PY" ] || ! "$PY" -c 'import moto, boto3' 2>/dev/null; then
    echo "no python3 with moto and boto3 (set EKM_PYTHON3)"; return 1
  fi
  local moto_server
  moto_server=$(dirname "$PY")/moto_server
  [ -x "$moto_server" ] || moto_server=$(command -v moto_server)
  MOTO=""
  for _ in 1 2 3; do
    port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    setsid "$moto_server" -H 127.0.0.1 -p "$port" >"$T/moto.log" 2>&1 &
    _lib_peer_group $!
    for _ in $(seq 100); do
      if curl -fs "http://127.0.0.1:$port/moto-api/" >/dev/null 2>&1; then
        MOTO="http://127.0.0.1:$port"; break 2
      fi
      _lib_running "$LAST_PEER" || break
      sleep 0.1
    done
  done
  if [ -z "$MOTO" ]; then echo "moto_server did not start:"; tail -5 "$T/moto.log"; return 1; fi
  if ! "$PY" "$src/tests/peers/moto_setup.py" --endpoint "$MOTO" --out "$T/setup.json" >"$T/setup.log" 2>&1; then
    cat "$T/setup.log"; return 1
  fi
  [ "${2:-}" = proxy ] || return 0
  setsid "$PY" "$src/tests/peers/kms_fault_proxy.py" --upstream "$MOTO" --port 0 \
    --setup "$T/setup.json" >"$T/proxy.out" 2>"$T/proxy.log" &
  _lib_peer_group $!
  for _ in $(seq 100); do
    port=$(head -1 "$T/proxy.out" 2>/dev/null)
    if [ -n "$port" ] && curl -fs "http://127.0.0.1:$port/__fault__/stats" >/dev/null 2>&1; then
      PROXY="http://127.0.0.1:$port"; return 0
    fi
    sleep 0.1
  done
  echo "fault proxy did not start:"; cat "$T/proxy.log"; return 1
}
# A process started with setsid: its pid is its process group, stopped (TERM, then KILL) on exit.
_lib_peer_group() {
  LAST_PEER=$1
  disown "$1"
  PEER_GROUPS+=("$1")
}
# json FILE EXPR: prints the Python expression EXPR over d = the JSON in FILE ('' on any error).
json() { "${PY:-python3}" -c 'import json,sys
try:
  d = json.load(open(sys.argv[1]))
  v = eval(sys.argv[2])
  print(json.dumps(v) if isinstance(v, (dict, list, bool)) or v is None else v)
except Exception as e:
  print("")' "$1" "$2"; }
# creds USER: the AWS SDK environment variables of a setup.json user, one a line.
creds() {
  echo "AWS_ACCESS_KEY_ID=$(json "$T/setup.json" "d['users']['$1']['access_key_id']")"
  echo "AWS_SECRET_ACCESS_KEY=$(json "$T/setup.json" "d['users']['$1']['secret_access_key']")"
}
