#!/usr/bin/env bash
# End-to-end (part D of issue 5): `ekm data-key generate` and `ekm key validate` in local mode
# and against a real ekmd, and the batch routes with curl.
#   api_v1_test.sh EKM_BINARY EKMD_BINARY
set -uo pipefail
EKM=$1
EKMD=$2
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
setup_test api-v1

for cmd in "data-key generate" "key validate"; do
  # shellcheck disable=SC2086
  check "--help: $cmd" "$EKM" $cmd --help >/dev/null
done

# A scenario run in both modes: $1 is a label, the rest the mode's flags. Tokens are the
# role's: app for the data plane, key-manager for key validate.
scenario() {
  local m=$1; shift
  local E=("$EKM" "$@")
  EKM_TOKEN=$APP_TOKEN "${E[@]}" data-key generate -w acme -e prod --scope blobs >"$T/$m.wrapped"
  check "$m: data-key generate prints the wrapped key alone" \
    bash -c "[ \$(wc -l <'$T/$m.wrapped') -eq 1 ] && grep -q '^ekm1:' '$T/$m.wrapped'"
  EKM_TOKEN=$APP_TOKEN "${E[@]}" data-key generate -w acme -e prod --with-plaintext --bytes 16 >"$T/$m.both"
  check "$m: --with-plaintext adds the key, base64" \
    bash -c "[ \$(sed -n 2p '$T/$m.both' | base64 -d | wc -c) -eq 16 ]"
  head -1 "$T/$m.both" | EKM_TOKEN=$APP_TOKEN "${E[@]}" decrypt -w acme -e prod >"$T/$m.key"
  check "$m: decrypt of the wrapped key returns the plaintext key" \
    bash -c "[ \"\$(base64 -w0 <'$T/$m.key')\" = \"\$(sed -n 2p '$T/$m.both')\" ]"
  check "$m: data-key generate --json" grep -q '"scope": "blobs"' \
    <(EKM_TOKEN=$APP_TOKEN "${E[@]}" --json data-key generate -w acme -e prod --scope blobs)
  expect_error "$m: data key too small" "16 to 64 bytes" -- \
    env EKM_TOKEN="$APP_TOKEN" "${E[@]}" data-key generate -w acme -e prod --bytes 8
  check "$m: key validate of the platform key" grep -q "nothing was changed" \
    <(EKM_TOKEN=$KM_TOKEN "${E[@]}" key validate -w acme -e prod --platform)
  expect_error "$m: key validate needs a key" "no key given" -- \
    env EKM_TOKEN="$KM_TOKEN" "${E[@]}" key validate -w acme -e prod
  check "$m: key validate changed nothing" grep -q '"ek_version": 1' \
    <(EKM_TOKEN=$KM_TOKEN "${E[@]}" --json key show -w acme -e prod)
  check "$m: the dry run is an event" grep -q '"dry_run":true' \
    <(EKM_TOKEN=$AUDITOR_TOKEN "${E[@]}" --json events -w acme -e prod --type key.validated)
}

D="$T/data"
"$EKM" --data-dir "$D" init >/dev/null
ADMIN_TOKEN="" OWNER_TOKEN="" KM_TOKEN="" APP_TOKEN="" AUDITOR_TOKEN=""  # local mode: no tokens
"$EKM" --data-dir "$D" workspace create acme >/dev/null
"$EKM" --data-dir "$D" environment create acme prod >/dev/null
scenario local --data-dir "$D"

SD="$T/server-data"
check "ekmd starts" start_ekmd ekmd --data-dir "$SD"
setup_tokens "$SD" "$S" acme || fail "setup_tokens"
curl -fsS -H "Authorization: Bearer $OWNER_TOKEN" -H 'Content-Type: application/json' \
  -d '{"name":"prod"}' "$S/v1/workspaces/acme/environments" >/dev/null
scenario server --server "$S"

# Batch: per-item results in order, 1000 items at most.
B="$S/v1/workspaces/acme/environments/prod"
post() { curl -sS -H "Authorization: Bearer $APP_TOKEN" -H 'Content-Type: application/json' -d @- "$@"; }
echo '{"items":[{"plaintext":"b25l"},{"plaintext":"!!"},{"plaintext":"dHdv","scope":"orders"}]}' \
  | post "$B/encrypt/batch" >"$T/batch.json"
check "encrypt/batch: results in order, the bad item its own error" python3 -c "
import json; r = json.load(open('$T/batch.json'))['items']
assert 'ciphertext' in r[0] and r[1]['error']['code'] == 'invalid_argument' and r[2]['scope'] == 'orders', r"
python3 -c "
import json; r = json.load(open('$T/batch.json'))['items']
print(json.dumps({'items': [{'ciphertext': r[2]['ciphertext']}, {'ciphertext': 'ekm1:AAAA'},
                            {'ciphertext': r[0]['ciphertext']}]}))" | post "$B/decrypt/batch" >"$T/dec.json"
check "decrypt/batch: plaintexts in order, the bad item its own error" python3 -c "
import json; r = json.load(open('$T/dec.json'))['items']
assert r[0]['plaintext'] == 'dHdv' and 'error' in r[1] and r[2]['plaintext'] == 'b25l', r"
python3 -c "import json; print(json.dumps({'items': [{'plaintext': 'AA=='}] * 1001}))" \
  | post -o "$T/big.json" -w '%{http_code}' "$B/encrypt/batch" >"$T/big.code"
check "1001 items: 400 naming the limit" bash -c "[ \$(cat '$T/big.code') = 400 ] && grep -q 'at most 1000' '$T/big.json'"
# The roles of part D's routes (the rule column of src/ekm/api/operations.cc): the data plane is the
# app's, key validate a key changer's.
code_as() { curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $1" "${@:2}"; }
check "encrypt/batch refuses a key-manager token" test "$(code_as "$KM_TOKEN" \
  -H 'Content-Type: application/json' -d '{"items":[{"plaintext":"b25l"}]}' "$B/encrypt/batch")" = 403
check "generate-data-key refuses an owner token" test "$(code_as "$OWNER_TOKEN" \
  -H 'Content-Type: application/json' -d '{}' "$B/generate-data-key")" = 403
check "key/validate refuses an app token" test "$(code_as "$APP_TOKEN" \
  -H 'Content-Type: application/json' -d '{"provider":"platform"}' "$B/key/validate")" = 403
check "key/validate refuses an auditor token" test "$(code_as "$AUDITOR_TOKEN" \
  -H 'Content-Type: application/json' -d '{"provider":"platform"}' "$B/key/validate")" = 403
check "GET the environment as an auditor" test "$(code_as "$AUDITOR_TOKEN" "$B")" = 200
check "GET the environment refuses an app token" test "$(code_as "$APP_TOKEN" "$B")" = 403
check "decrypt/batch without a token is 401" test "$(code_as "" \
  -H 'Content-Type: application/json' -d '{"items":[]}' "$B/decrypt/batch")" = 401
KEY_B64=$(sed -n 2p "$T/server.both")
check "the key to look for (base64 of 16 bytes)" test "$(printf '%s' "$KEY_B64" | base64 -d | wc -c)" = 16
stop_ekmd
absent "no key bytes in ekmd's log" "$T/ekmd.log" -F -e "$KEY_B64" -e "$(printf '%s' "$KEY_B64" | base64 -d | xxd -p -c 64)"

summary
