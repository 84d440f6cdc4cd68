#!/usr/bin/env bash
# End-to-end (issue 12, defect 1): data keys cached by ekmd before a CMK change keep working
# after the repack moved them to the new environment key and destroyed the old one, past the
# key cache TTL, on the first attempt; and while the new CMK is revoked, the answer is the
# CMK's refusal, never "destroyed after a repack … retry". Against moto (the customer's AWS
# KMS); the revocation is an IAM Deny that moto enforces. The environment's key cache TTL is
# 2 s while ekmd's is 30 s: ekmd purges expired keys every 30 s (min(TTL, 30 s)), so an expired
# DK is still cached when it is next used, as between two purges in production.
#   repack_ttl_test.sh EKM_BINARY EKMD_BINARY
set -uo pipefail
EKM=$1
EKMD=$2
SRC=$(cd "$(dirname "$0")/../.." && pwd)
T=$(mktemp -d /tmp/ekm-repack-ttl-test.XXXXXX)
PEERS=()     # moto, started with setsid: its pid is its process group
EKMD_PID=""
cleanup() {
  local p
  [ -n "$EKMD_PID" ] && kill -9 "$EKMD_PID" 2>/dev/null
  for p in "${PEERS[@]}"; do kill -TERM -- "-$p" 2>/dev/null; done
  sleep 0.2
  for p in "${PEERS[@]}"; do kill -KILL -- "-$p" 2>/dev/null; done
  rm -rf "$T"
}
trap cleanup EXIT
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

for v in $(env | sed -n 's/^\(AWS_[A-Z0-9_]*\)=.*/\1/p; s/^\(EKM_[A-Z0-9_]*\)=.*/\1/p'); do unset "$v"; done
export HOME="$T/home" AWS_EC2_METADATA_DISABLED=true
mkdir -p "$HOME"

PY=${EKM_PYTHON3:-$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null)}
if [ -z "$PY" ] || ! "$PY" -c 'import moto, boto3' 2>/dev/null; then
  echo "FAIL: no python3 with moto and boto3 (set EKM_PYTHON3)"; echo "0 passed, 1 failed"; exit 1
fi
MOTO_SERVER=$(dirname "$PY")/moto_server
[ -x "$MOTO_SERVER" ] || MOTO_SERVER=$(command -v moto_server)
# json FILE EXPR: the Python expression EXPR over d = the JSON in FILE ('' on any error).
json() { "$PY" -c 'import json,sys
try:
  d = json.load(open(sys.argv[1]))
  v = eval(sys.argv[2])
  print(json.dumps(v) if isinstance(v, (dict, list, bool)) or v is None else v)
except Exception as e:
  print("")' "$1" "$2"; }

start_moto() {
  local port
  for _ in 1 2 3; do
    port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    setsid "$MOTO_SERVER" -H 127.0.0.1 -p "$port" >"$T/moto.log" 2>&1 &
    PEERS+=($!)
    disown
    for _ in $(seq 100); do
      if curl -fs "http://127.0.0.1:$port/moto-api/" >/dev/null 2>&1; then MOTO="http://127.0.0.1:$port"; return 0; fi
      kill -0 "${PEERS[-1]}" 2>/dev/null || break
      sleep 0.1
    done
  done
  echo "moto_server did not start:"; tail -5 "$T/moto.log"; return 1
}
if ! start_moto || ! "$PY" "$SRC/tests/peers/moto_setup.py" --endpoint "$MOTO" --out "$T/setup.json" >"$T/setup.log" 2>&1; then
  cat "$T/setup.log" 2>/dev/null
  echo "FAIL: the AWS peer did not start"; echo "0 passed, 1 failed"; exit 1
fi
S_JSON="$T/setup.json"
MAIN_ARN=$(json "$S_JSON" "d['keys']['main']['arn']")
ROT_ARN=$(json "$S_JSON" "d['keys']['rotating']['arn']")
creds() {  # USER: the AWS SDK environment variables of a setup.json user
  echo "AWS_ACCESS_KEY_ID=$(json "$S_JSON" "d['users']['$1']['access_key_id']")"
  echo "AWS_SECRET_ACCESS_KEY=$(json "$S_JSON" "d['users']['$1']['secret_access_key']")"
}
mapfile -t AS_PLATFORM < <(creds ekm-platform)
# iam_deny on|off: the customer revokes (or restores) the platform's kms:Decrypt in IAM.
iam_deny() {
  "$PY" - "$1" "$MOTO" "$S_JSON" <<'PYEOF'
import json, sys, boto3
on, endpoint, setup = sys.argv[1] == "on", sys.argv[2], json.load(open(sys.argv[3]))
admin = setup["users"]["ekm-admin"]
iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id=admin["access_key_id"],
                   aws_secret_access_key=admin["secret_access_key"])
if on:
    iam.put_user_policy(UserName="ekm-platform", PolicyName="revoked", PolicyDocument=json.dumps(
        {"Version": "2012-10-17",
         "Statement": [{"Effect": "Deny", "Action": "kms:Decrypt", "Resource": "*"}]}))
else:
    iam.delete_user_policy(UserName="ekm-platform", PolicyName="revoked")
PYEOF
}

# --- ekmd; the environment's key cache TTL 2 s ----------------------------------------------
D="$T/data"
mkdir -p "$D"
env AWS_REGION=us-east-1 "AWS_ENDPOINT_URL=$MOTO" "${AS_PLATFORM[@]}" "$EKMD" --data-dir "$D" \
  --listen 127.0.0.1:0 --key-cache-ttl 30 >"$T/ekmd.log" 2>&1 &
EKMD_PID=$!
S=""
for _ in $(seq 200); do
  port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$T/ekmd.log" | head -1)
  if [ -n "$port" ] && curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
    S="http://127.0.0.1:$port"; break
  fi
  sleep 0.05
done
if [ -z "$S" ]; then echo "ekmd did not start:"; cat "$T/ekmd.log"; echo "0 passed, 1 failed"; exit 1; fi
check "setup_tokens" setup_tokens "$D" "$S" acme
code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $OWNER_TOKEN" \
  -H 'Content-Type: application/json' --data '{"name":"prod"}' "$S/v1/workspaces/acme/environments")
check "create environment ($code)" test "$code" = 201
check "environment key cache TTL 2 s" grep -q "key-cache-ttl *2s" \
  <(env EKM_TOKEN="$OWNER_TOKEN" "$EKM" --server "$S" environment set -w acme -e prod --key-cache-ttl 2s)

app() { env EKM_TOKEN="$APP_TOKEN" "$EKM" --server "$S" "$@"; }
SCOPES=(orders invoices users)
for s in "${SCOPES[@]}"; do
  echo -n "data of $s" | app encrypt -w acme -e prod -s "$s" --text >"$T/$s.ct" || fail "encrypt $s"
done
# decrypt_all LABEL: every scope's ciphertext decrypts, each on its first attempt.
decrypt_all() {
  local s
  for s in "${SCOPES[@]}"; do
    app decrypt -w acme -e prod <"$T/$s.ct" >"$T/out" 2>"$T/err"
    check "$1: $s decrypts on the first attempt ($(head -c 300 "$T/err"))" grep -qx "data of $s" "$T/out"
  done
}
decrypt_all "before any change"  # ekmd now caches each scope's DK under EK v1
# repacked EK_VERSION: waits until the repack to EK_VERSION finished and destroyed every older EK.
repacked() {
  local want=$1
  for _ in $(seq 300); do
    curl -sS -H "Authorization: Bearer $KM_TOKEN" "$S/v1/workspaces/acme/environments/prod/repack" >"$T/repack.json"
    if [ "$(json "$T/repack.json" "d['state'] == 'finished' and d['ek_version'] == $want and all(k['state'] == 'destroyed' for k in d['inventory'] if k['ek_version'] < $want)")" = true ]; then
      return 0
    fi
    sleep 0.1
  done
  echo "  (repack: $(cat "$T/repack.json"))"; return 1
}

# --- 1. the first customer key: repack from EK v1 (platform) to v2, then past the TTL ------
env EKM_TOKEN="$KM_TOKEN" "$EKM" --server "$S" key set -w acme -e prod --aws-kms-arn "$MAIN_ARN" >"$T/set.out" 2>&1
check "key set ($(tail -1 "$T/set.out"))" grep -q "v2" "$T/set.out"
check "repack to EK v2 finished, EK v1 destroyed" repacked 2
decrypt_all "right after the repack (cached)"
sleep 3  # past the TTL of 2 s
decrypt_all "past the TTL after the repack"

# --- 2. a replacement (emergency, by the owner): repack to v3, then the new CMK is revoked --
env EKM_TOKEN="$OWNER_TOKEN" "$EKM" --server "$S" key set -w acme -e prod --aws-kms-arn "$ROT_ARN" \
  --emergency --reason "issue 12 test: replace the key" >"$T/replace.out" 2>&1
check "emergency replacement ($(tail -1 "$T/replace.out"))" grep -q "v3" "$T/replace.out"
check "repack to EK v3 finished, EK v2 destroyed" repacked 3
decrypt_all "right after the second repack (cached under the destroyed EK v2)"
check "revoke: IAM denies kms:Decrypt" iam_deny on
sleep 3
for s in "${SCOPES[@]}"; do
  for attempt in 1 2; do
    app decrypt -w acme -e prod <"$T/$s.ct" >"$T/out" 2>"$T/err"
    rc=$?
    check "revoked: $s attempt $attempt fails" test $rc -ne 0
    check "revoked: $s attempt $attempt is the CMK's refusal ($(head -c 300 "$T/err"))" \
      grep -q "the customer main key is unavailable" "$T/err"
    check "revoked: $s attempt $attempt does not blame a destroyed key" bash -c "! grep -qi 'destroyed' '$T/err'"
  done
done
code=$(curl -sS -o "$T/api.json" -w '%{http_code}' -X POST -H "Authorization: Bearer $APP_TOKEN" \
  -H 'Content-Type: application/json' \
  --data "{\"ciphertext\": \"$(tr -d '\n' <"$T/orders.ct")\"}" "$S/v1/workspaces/acme/environments/prod/decrypt")
check "revoked: the API answers 409 failed_precondition ($code)" \
  test "$code:$(json "$T/api.json" "d['error']['code']")" = 409:failed_precondition
check "revoked: the API names the CMK, not a destroyed key" \
  test "$(json "$T/api.json" "'customer main key is unavailable' in d['error']['message'] and 'destroyed' not in json.dumps(d)")" = true

# --- 3. access restored: everything decrypts again, nothing was lost -------------------------
check "restore: IAM Deny removed" iam_deny off
back=false
for _ in $(seq 150); do  # ekmd asks the KMS again after its backoff (a bound, not a timing check)
  if app decrypt -w acme -e prod <"$T/orders.ct" >/dev/null 2>&1; then back=true; break; fi
  sleep 0.2
done
check "restored: decrypts again" test "$back" = true
decrypt_all "after the restore"

kill -TERM "$EKMD_PID"; wait "$EKMD_PID"; EKMD_PID=""
summary
