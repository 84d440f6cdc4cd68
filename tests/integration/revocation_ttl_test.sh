#!/usr/bin/env bash
# Revocation and outages through the real ekmd binary, with its own clock and key cache TTL (the
# in-process tests use a fake clock): an environment on an AWS KMS CMK (moto, IAM checks on),
# data written by every path (single, batch, stream), then
#   1. the customer removes the platform's access (an IAM Deny: moto checks IAM policies, not key
#      policies): every path refuses within the TTL plus a bound, with the CMK's refusal (409);
#      access restored and `ekm key validate` run: everything decrypts again, nothing lost;
#   2. AWS KMS times out, resets connections, then refuses connections (the fault proxy, then the
#      proxy stopped): once the TTL has run out, every request answers 503 + Retry-After within
#      --aws-call-deadline plus a bound (no request hangs), and the status says "degraded".
# Between the two, the 24 h rule at ekmd's default period over HTTP: two first "Update key" of
# one environment sent at once (one wins, the other is refused), then a replacement refused.
#   revocation_ttl_test.sh EKM_BINARY EKMD_BINARY SOURCE_DIR
set -uo pipefail
EKM=$1
EKMD=$2
SRC=$3
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
setup_test revocation-ttl-test

if ! start_aws_peer "$SRC" proxy; then
  fail "the AWS peer did not start"; summary; exit 1
fi
PROXY_GROUP=$LAST_PEER
fault() { curl -fsS -X POST -d "$1" "$PROXY/__fault__" >/dev/null; }
fault_clear() { curl -fsS -X POST "$PROXY/__fault__/clear" >/dev/null; }

MAIN_ARN=$(json "$T/setup.json" "d['keys']['main']['arn']")
ROT_ARN=$(json "$T/setup.json" "d['keys']['rotating']['arn']")
mapfile -t AS_PLATFORM < <(creds ekm-platform)
mapfile -t AS_ADMIN < <(creds ekm-admin)
TTL=2
# Generous bounds (a loaded CI machine, the sanitizer build): what they catch is a revocation
# that is never seen, or a request that waits on a dead KMS for ever.
REVOKE_BOUND=$((TTL + 10))
DEADLINE=3
D="$T/data"
lekm() { env AWS_REGION=us-east-1 "AWS_ENDPOINT_URL=$MOTO" "${AS_PLATFORM[@]}" "$EKM" --data-dir "$D" "$@"; }
lekm init >"$T/init.out" 2>&1 && lekm workspace create acme >/dev/null &&
  lekm environment create acme prod >/dev/null &&
  lekm key set -w acme -e prod --aws-kms-arn "$MAIN_ARN" >"$T/keyset.out" 2>&1 || fail "local set-up"
ADMIN_TOKEN=$(sed -n 's/^admin token: \(ekm_.*\)$/\1/p' "$T/init.out")

# iam_platform deny|allow: the customer takes the platform's access away, or gives it back.
iam_platform() {
  env "${AS_ADMIN[@]}" "$PY" - "$MOTO" "$1" <<'EOF'
import json, sys, boto3
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1")
if sys.argv[2] == "deny":
    iam.put_user_policy(UserName="ekm-platform", PolicyName="revoked", PolicyDocument=json.dumps(
        {"Version": "2012-10-17",
         "Statement": [{"Effect": "Deny", "Action": "kms:*", "Resource": "*"}]}))
else:
    iam.delete_user_policy(UserName="ekm-platform", PolicyName="revoked")
EOF
}

check "ekmd starts" start_ekmd ekmd AWS_REGION=us-east-1 "AWS_ENDPOINT_URL=$PROXY" "${AS_PLATFORM[@]}" \
  --data-dir "$D" --key-cache-ttl "$TTL" --aws-call-timeout 1 --aws-call-deadline "$DEADLINE"
if ! setup_tokens "$D" "$S" acme; then
  fail "setup_tokens"; summary; exit 1
fi
app() { env EKM_TOKEN="$APP_TOKEN" "$EKM" --server "$S" "$@"; }
E=/v1/workspaces/acme/environments/prod
# api METHOD PATH [BODY]: body in $T/api.json, headers in $T/api.h, status in $CODE, seconds in $SECS
api() {
  local args=(-sS -o "$T/api.json" -D "$T/api.h" -w '%{http_code} %{time_total}' --max-time 60
              -H "Authorization: Bearer $APP_TOKEN" -X "$1" "$S$2")
  [ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
  read -r CODE SECS < <(curl "${args[@]}" || echo "000 0")
}

# --- data by every path ------------------------------------------------------------------
head -c $((3 * 65536 + 11)) /dev/urandom >"$T/p"
echo -n "single message" | app encrypt -w acme -e prod --text >"$T/single.ct" || fail "encrypt single"
app encrypt -w acme -e prod -s files <"$T/p" >"$T/stream.ct" || fail "encrypt stream"
api POST "$E/encrypt/batch" '{"items":[{"plaintext":"YmF0Y2ggb25l"},{"plaintext":"YmF0Y2ggdHdv","scope":"other"}]}'
check "encrypt batch ($CODE)" test "$CODE" = 200
BATCH_DEC=$(json "$T/api.json" "json.dumps({'items': [{'ciphertext': i['ciphertext']} for i in d['items']]})")

every_path_reads() {  # LABEL
  check "$1: single" grep -q "single message" <(app decrypt -w acme -e prod <"$T/single.ct")
  app decrypt -w acme -e prod <"$T/stream.ct" >"$T/back" 2>/dev/null
  check "$1: stream" cmp -s "$T/p" "$T/back"
  api POST "$E/decrypt/batch" "$BATCH_DEC"
  check "$1: batch ($CODE)" test "$CODE:$(json "$T/api.json" "[i.get('plaintext') for i in d['items']]")" = \
    '200:["YmF0Y2ggb25l", "YmF0Y2ggdHdv"]'
  api POST "$E/encrypt" '{"plaintext":"bmV3"}'
  check "$1: encrypt ($CODE)" test "$CODE" = 200
}
every_path_reads "before"

# --- 1. revocation -------------------------------------------------------------------------
iam_platform deny || fail "IAM deny"
t0=$(date +%s%N)
revoked=0
for _ in $(seq $((REVOKE_BOUND * 4))); do
  if ! app decrypt -w acme -e prod <"$T/single.ct" >/dev/null 2>"$T/err"; then revoked=1; break; fi
  sleep 0.25
done
lag_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "revoked: decrypt refused within ${REVOKE_BOUND}s (after ${lag_ms} ms; TTL ${TTL}s)" test "$revoked" = 1
check "revoked: the CMK's refusal, not another error" has "$T/err" "customer main key is unavailable" "AccessDenied"
expect_error "revoked: stream decrypt" "customer main key is unavailable" -- \
  env EKM_TOKEN="$APP_TOKEN" "$EKM" --server "$S" decrypt -w acme -e prod <"$T/stream.ct"
expect_error "revoked: stream encrypt" "customer main key is unavailable" -- \
  env EKM_TOKEN="$APP_TOKEN" "$EKM" --server "$S" encrypt -w acme -e prod -s files <"$T/p"
api POST "$E/decrypt/batch" "$BATCH_DEC"
# A refusal is each item's own error (docs/api.md: only an unreachable KMS fails the whole batch).
check "revoked: batch decrypt, every item refused ($CODE)" \
  test "$CODE:$(json "$T/api.json" "all(i['error']['code'] == 'failed_precondition' and 'customer main key is unavailable' in i['error']['message'] for i in d['items']) and len(d['items']) == 2")" = 200:true
api POST "$E/encrypt" '{"plaintext":"bmV3","scope":"fresh"}'
check "revoked: encrypt into a new scope 409 ($CODE)" test "$CODE" = 409
env EKM_TOKEN="$KM_TOKEN" "$EKM" --server "$S" --json environment status -w acme -e prod >"$T/st.json"
check "revoked: status unavailable" test "$(json "$T/st.json" "d['state']")" = unavailable

iam_platform allow || fail "IAM allow"
check "restored: key validate ends the backoff" env EKM_TOKEN="$KM_TOKEN" "$EKM" --server "$S" \
  key validate -w acme -e prod --aws-kms-arn "$MAIN_ARN" >/dev/null
every_path_reads "restored"
env EKM_TOKEN="$KM_TOKEN" "$EKM" --server "$S" --json environment status -w acme -e prod >"$T/st.json"
check "restored: status healthy" test "$(json "$T/st.json" "d['state']")" = healthy

# --- the 24 h rule at ekmd's default period, and two first key sets racing ---------------
# The first customer key of an environment starts the period; two "Update key" sent at once
# must not both pass: exactly one is set, the other is told about the period.
R=/v1/workspaces/acme/environments/race
owner_api() { curl -sS -o "$T/o.json" -w '%{http_code}' -H "Authorization: Bearer $OWNER_TOKEN" \
  -H 'Content-Type: application/json' -X POST --data-binary "$2" "$S$1"; }
check "race: environment created" test "$(owner_api /v1/workspaces/acme/environments '{"name":"race"}')" = 201
echo -n "race data" | app encrypt -w acme -e race --text >"$T/race.ct" || fail "race: encrypt"
put_key() {  # ARN OUT: Update key as the key-manager; status in OUT.code, body in OUT
  curl -sS -o "$2" -w '%{http_code}' -H "Authorization: Bearer $KM_TOKEN" \
    -H 'Content-Type: application/json' -X PUT --data-binary "{\"aws_kms_arn\":\"$1\"}" \
    "$S$R/key" >"$2.code"
}
put_key "$MAIN_ARN" "$T/race1" &
p1=$!
put_key "$ROT_ARN" "$T/race2" &
p2=$!
wait "$p1" "$p2"
codes=$( (cat "$T/race1.code"; echo; cat "$T/race2.code"; echo) | sort | tr '\n' ' ')
check "race: one Update key wins, the other is refused (${codes})" test "$codes" = "200 409 "
loser=$T/race1; winner_arn=$ROT_ARN
[ "$(cat "$T/race1.code")" = 200 ] && { loser=$T/race2; winner_arn=$MAIN_ARN; }
# The loser either saw the winner's change when it began (the period) or when it was written (the
# store's check inside the transaction): a clear refusal either way, never a second key.
check "race: the refusal says why ($(json "$loser" "d['error']['message']"))" \
  test "$(json "$loser" "d['error']['code'] == 'failed_precondition' and ('may be replaced once per 24 h' in d['error']['message'] or 'changed while this change was being made' in d['error']['message'])")" = true
curl -sS -o "$T/k.json" -H "Authorization: Bearer $KM_TOKEN" "$S$R/key"
check "race: the winner's key is the environment's" test "$(json "$T/k.json" "d['cmk']['key_id']")" = "$winner_arn"
other_arn=$MAIN_ARN; [ "$winner_arn" = "$MAIN_ARN" ] && other_arn=$ROT_ARN
put_key "$other_arn" "$T/race3"
check "race: a replacement afterwards is refused by the period ($(cat "$T/race3.code"))" \
  test "$(cat "$T/race3.code"):$(json "$T/race3" "'may be replaced once per 24 h' in d['error']['message'] and 'next replacement is allowed at' in d['error']['message'] and 'emergency' in d['error']['hint']")" = 409:true
for _ in $(seq 100); do
  curl -sS -o "$T/rp.json" -H "Authorization: Bearer $KM_TOKEN" "$S$R/repack"
  [ "$(json "$T/rp.json" "d['state']")" = finished ] && break
  sleep 0.1
done
check "race: the repack finished ($(json "$T/rp.json" "d['state']"))" test "$(json "$T/rp.json" "d['state']")" = finished
check "race: data from before decrypts" grep -q "race data" <(app decrypt -w acme -e race <"$T/race.ct")

# --- 2. outages: timeout, reset, refused --------------------------------------------------
outage() {  # LABEL: after the TTL, every request 503 + Retry-After within the deadline
  local label=$1
  sleep $((TTL + 1))
  api POST "$E/decrypt" "{\"ciphertext\":\"$(cat "$T/single.ct")\"}"
  check "$label: decrypt 503 unavailable ($CODE in ${SECS}s)" \
    test "$CODE:$(json "$T/api.json" "d['error']['code']")" = 503:unavailable
  check "$label: Retry-After" grep -qi '^retry-after: [0-9]' "$T/api.h"
  check "$label: answered within the deadline (${SECS}s <= ${DEADLINE}s + 5s)" \
    awk -v s="$SECS" -v d="$DEADLINE" 'BEGIN { exit !(s <= d + 5) }'
  check "$label: the KMS cannot be reached" grep -q "cannot be reached" "$T/api.json"
  api POST "$E/encrypt/batch" '{"items":[{"plaintext":"eA=="}]}'
  check "$label: batch 503 ($CODE in ${SECS}s)" test "$CODE" = 503
  expect_error "$label: stream decrypt" "cannot be reached" -- \
    env EKM_TOKEN="$APP_TOKEN" "$EKM" --server "$S" decrypt -w acme -e prod <"$T/stream.ct"
  env EKM_TOKEN="$KM_TOKEN" "$EKM" --server "$S" --json environment status -w acme -e prod >"$T/st.json"
  check "$label: status degraded" test "$(json "$T/st.json" "d['state']")" = degraded
}
recover() {  # LABEL
  fault_clear
  check "$1: key validate ends the backoff" env EKM_TOKEN="$KM_TOKEN" "$EKM" --server "$S" \
    key validate -w acme -e prod --aws-kms-arn "$MAIN_ARN" >/dev/null
  every_path_reads "$1"
}
fault '{"target":"*","kind":"timeout","delay_ms":8000,"count":-1}'
outage "KMS timeout"
recover "after the timeouts"
fault '{"target":"*","kind":"reset","count":-1}'
outage "connection reset"
recover "after the resets"
kill -TERM -- "-$PROXY_GROUP" 2>/dev/null
outage "connection refused"

stop_ekmd
summary
