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
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
setup_test repack-ttl-test
if ! start_aws_peer "$SRC"; then
  fail "the AWS peer did not start"; summary; exit 1
fi
S_JSON="$T/setup.json"
MAIN_ARN=$(json "$S_JSON" "d['keys']['main']['arn']")
ROT_ARN=$(json "$S_JSON" "d['keys']['rotating']['arn']")
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
start_ekmd ekmd AWS_REGION=us-east-1 "AWS_ENDPOINT_URL=$MOTO" "${AS_PLATFORM[@]}" \
  --data-dir "$D" --key-cache-ttl 30 || { fail "ekmd did not start"; summary; exit 1; }
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
    absent "revoked: $s attempt $attempt does not blame a destroyed key" "$T/err" -i -e destroyed
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

stop_ekmd
summary
