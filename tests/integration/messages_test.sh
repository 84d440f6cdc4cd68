#!/usr/bin/env bash
# End-to-end: messages that must say the right thing (issue 12, defect 8), through `ekm` in
# local and server mode and through ekmd's HTTP API: input that is no ciphertext at all (binary
# or text, small or 1 MB), the policy doctor's corrected policy, missing AWS credentials, and
# `environment status` after an error was resolved. No AWS peer: nothing leaves the machine.
#   messages_test.sh EKM_BINARY EKMD_BINARY SOURCE_DIR
set -uo pipefail
EKM=$1
EKMD=$2
SRC=$3
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
setup_test messages-test  # no AWS credentials anywhere, never the instance metadata service

D="$T/data"
"$EKM" --data-dir "$D" init >"$T/init.out" 2>"$T/init.err" || fail "init"
ADMIN_TOKEN=$(sed -n 's/^admin token: \(ekm_.*\)$/\1/p' "$T/init.out")
"$EKM" --data-dir "$D" workspace create acme >/dev/null || fail "workspace create"
"$EKM" --data-dir "$D" environment create acme prod >/dev/null || fail "environment create"

# --- input that is no ciphertext --------------------------------------------------------------
# 200 bytes that start like the binary form ("E") and a 1 MB text that starts with ekm1:, whose
# contents are no envelope: before, the first was "truncated" and the second "does not start
# with EKM or ekm1:".
python3 -c 'import os, sys; sys.stdout.buffer.write(b"E\x90" + os.urandom(198))' >"$T/junk200"
python3 -c 'import base64, os; print("ekm1:" + base64.urlsafe_b64encode(b"\x90" + os.urandom(1 << 20)).decode().rstrip("="))' >"$T/junk1m.txt"
head -c 300 "$T/junk1m.txt" >"$T/junk-short.txt"
NOT_EKM="not an ekm ciphertext: no ekm magic"
NOT_EKM_TEXT="the text starts with ekm1: but what follows does not decode to an ekm ciphertext"
decrypt_messages() {  # LABEL EKM-ARGS...
  local label=$1; shift
  expect_error "$label: 200 bytes of non-envelope" "$NOT_EKM" -- "$@" decrypt -w acme -e prod <"$T/junk200"
  absent "$label: 200 bytes of non-envelope not called truncated" "$T/err" -e truncated
  expect_error "$label: 1 MB text that is no envelope" "$NOT_EKM_TEXT" -- "$@" decrypt -w acme -e prod <"$T/junk1m.txt"
  expect_error "$label: rewrap of a text that is no envelope" "$NOT_EKM_TEXT" -- \
    "$@" rewrap -w acme -e prod --in "$T/junk-short.txt"
}
decrypt_messages local "$EKM" --data-dir "$D"

# --- the policy doctor ------------------------------------------------------------------------
# A Deny of the platform principal: named, and the corrected policy passes the doctor itself.
PRINCIPAL=arn:aws:iam::111122223333:role/ekm-platform
doctor() { "$EKM" --data-dir "$D" --aws-principal-arn "$PRINCIPAL" "$@"; }
doctor policy check "$SRC/testdata/policy/deny_overrides_allow.json" -w acme >"$T/doctor.txt" 2>&1
check "policy check: a Deny of the platform principal fails (exit 1)" test $? -eq 1
check "policy check: the Deny is named, and narrowed in the corrected policy" has "$T/doctor.txt" \
  'statement "NoDecryptForAnyone" (#2) denies kms:Decrypt to the platform principal' \
  'narrowed statement "NoDecryptForAnyone" (#2)'
doctor --json policy check "$SRC/testdata/policy/deny_overrides_allow.json" -w acme >"$T/doctor.json" 2>/dev/null
python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["corrected_policy"])' "$T/doctor.json" >"$T/corrected.json"
doctor policy check "$T/corrected.json" -w acme >"$T/doctor.txt" 2>&1
check "policy check: the corrected policy passes (exit 0)" test $? -eq 0
doctor policy check "$SRC/testdata/policy/statement_after_list.json" -w acme >"$T/doctor.txt" 2>&1
check "policy check: a statement after ] is told to move inside the list" has "$T/doctor.txt" \
  "line 12, column 3" "is outside the Statement list" "paste it before the ] on line 11"
doctor policy check "$SRC/testdata/policy/number_overflow.json" -w acme >"$T/doctor.txt" 2>&1
check "policy check: 1e999 at its own line and column, in ekm's words" has "$T/doctor.txt" \
  "error: line 12, column 48" "the number '1e999'"
absent "policy check: no nlohmann text" "$T/doctor.txt" -e 'json.exception'

# --- environment status after an error was resolved -----------------------------------------
# Uploaded key material deleted (a revocation), then imported again: while unavailable the
# status says what to do; once healthy the error is history ("resolved at"), with no "what to do".
L=("$EKM" --data-dir "$D")
import_material() {  # fresh import parameters, the same material, wrapped as docs/lifecycle.md says
  "${L[@]}" key import-params -w acme -e prod --out "$T/params" --force >/dev/null 2>&1 &&
    openssl pkeyutl -encrypt -pubin -inkey "$T/params/wrapping-key.pem" -in "$T/material.bin" \
      -out "$T/material.wrapped" -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 \
      -pkeyopt rsa_mgf1_md:sha256 &&
    "${L[@]}" key import -w acme -e prod --material "$T/material.wrapped" \
      --token-file "$T/params/import-token" >/dev/null 2>&1
}
openssl rand -out "$T/material.bin" 32
check "import key material" import_material
echo "under the uploaded key" >"$T/p"
"${L[@]}" encrypt -w acme -e prod --text <"$T/p" >"$T/ct" || fail "encrypt under the material"
check "delete the material" "${L[@]}" key delete-material -w acme -e prod --confirm prod >/dev/null
expect_error "decrypt after the deletion" "was deleted at" -- "${L[@]}" decrypt -w acme -e prod <"$T/ct"
"${L[@]}" environment status -w acme -e prod >"$T/status.txt" 2>&1
check "status while unavailable: the error is current, with what to do" \
  has "$T/status.txt" "state:          unavailable" "last error:     failed_precondition" \
  "what to do: import the same material again"
check "import the same material again" import_material
check "decrypt after the re-import" cmp -s "$T/p" <("${L[@]}" decrypt -w acme -e prod <"$T/ct")
healthy_status() {  # LABEL EKM-ARGS...
  local label=$1; shift
  "$@" environment status -w acme -e prod >"$T/status.txt" 2>&1
  check "$label: status healthy, the old error shown as resolved" \
    has "$T/status.txt" "state:          healthy" "last error (resolved at " "was deleted at"
  absent "$label: a resolved error's hint is not shown as what to do" "$T/status.txt" -e "what to do"
  "$@" --json environment status -w acme -e prod >"$T/status.json" 2>&1
  check "$label: --json last_error.resolved_at is the time the state became healthy" python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
assert s["state"] == "healthy", s
assert s["last_error"]["resolved_at"] == s["since"] and s["since"], s' "$T/status.json"
}
healthy_status local "${L[@]}"

# --- through ekmd ---------------------------------------------------------------------------
check "ekmd starts" start_ekmd ekmd --data-dir "$D"
check "setup_tokens" setup_tokens "$D" "$S" acme
decrypt_messages server env EKM_TOKEN="$APP_TOKEN" "$EKM" --server "$S"
healthy_status server env EKM_TOKEN="$KM_TOKEN" "$EKM" --server "$S"

# During a revocation the error's "tries the key again … at T" is the next retry the status
# shows, in ekmd and in `ekm` in local mode, which keeps to ekmd's schedule instead of starting
# a backoff of its own (key_cache_lifecycle_test checks the same with a clock it controls).
check "server: delete the material again" \
  env EKM_TOKEN="$KM_TOKEN" "$EKM" --server "$S" key delete-material -w acme -e prod --confirm prod >/dev/null
retry_at() { sed -n 's/.*tries the key again within [0-9]* s, at \([0-9T:-]*Z\).*/\1/p' "$1"; }
status_at() { "$@" environment status -w acme -e prod 2>&1 | sed -n 's/^next retry: *//p'; }
expect_error "server: decrypt during the revocation" "tries the key again within" -- \
  env EKM_TOKEN="$APP_TOKEN" "$EKM" --server "$S" decrypt -w acme -e prod <"$T/ct"
AT=$(retry_at "$T/err")
check "status (server): next retry is the error's ($AT)" \
  test -n "$AT" -a "$(status_at env EKM_TOKEN="$KM_TOKEN" "$EKM" --server "$S")" = "$AT"
check "status (local): next retry is ekmd's error's ($AT)" test "$(status_at "${L[@]}")" = "$AT"
early=$(( $(date -u +%s) + 1 < $(date -u -d "$AT" +%s) ))
expect_error "local: decrypt during the revocation" "tries the key again within" -- \
  "${L[@]}" decrypt -w acme -e prod <"$T/ct"
LAT=$(retry_at "$T/err")
check "status (local): next retry is the local error's ($LAT)" test -n "$LAT" -a "$(status_at "${L[@]}")" = "$LAT"
if [ "$early" = 1 ]; then
  check "local: before ekmd's next retry, the same next attempt ($AT / $LAT)" test "$LAT" = "$AT"
fi

# The API: JSON and streamed decrypt answer 400 with the same messages.
# api_error WHAT STATUS SUBSTRING CONTENT-TYPE BODY-FILE [PATH]
api_error() {
  local what=$1 status=$2 want=$3 type=$4 body=$5 path=${6:-decrypt} code
  code=$(curl -sS -o "$T/api.json" -w '%{http_code}' -H "Authorization: Bearer $APP_TOKEN" \
    -H "Content-Type: $type" --data-binary @"$body" "$S/v1/workspaces/acme/environments/prod/$path")
  if [ "$code" != "$status" ]; then fail "$what: HTTP $code, want $status: $(head -c 400 "$T/api.json")"; return; fi
  has "$T/api.json" "$want" || { fail "$what"; return; }
  pass
}
api_error "API: 200 bytes streamed" 400 "$NOT_EKM" application/octet-stream "$T/junk200"
api_error "API: 1 MB text streamed" 400 "$NOT_EKM_TEXT" application/octet-stream "$T/junk1m.txt"
python3 -c 'import json, sys; print(json.dumps({"ciphertext": open(sys.argv[1]).read().strip()[:4000]}))' "$T/junk1m.txt" >"$T/junk.json"
api_error "API: JSON decrypt of a text that is no envelope" 400 "$NOT_EKM_TEXT" application/json "$T/junk.json"
api_error "API: JSON rewrap of a text that is no envelope" 400 "$NOT_EKM_TEXT" application/json "$T/junk.json" rewrap
python3 -c 'import base64, json, sys; print(json.dumps({"ciphertext": base64.b64encode(open(sys.argv[1], "rb").read()).decode()}))' "$T/junk200" >"$T/junkb.json"
api_error "API: JSON decrypt of 200 bytes (base64)" 400 "$NOT_EKM" application/json "$T/junkb.json"

# --- the platform's own AWS credentials -------------------------------------------------------
# docs/api.md: missing credentials are 409 failed_precondition (the platform operator must
# configure them; not retryable); an unreachable credential endpoint is an outage, 503.
ARN="arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
put_key() {  # the "Update key" of a staging environment; status in $CODE, headers in $T/h
  CODE=$(curl -sS -D "$T/h" -o "$T/api.json" -w '%{http_code}' -X PUT -H "Authorization: Bearer $KM_TOKEN" \
    -H 'Content-Type: application/json' --data "{\"aws_kms_arn\": \"$ARN\"}" \
    "$S/v1/workspaces/acme/environments/staging/key")
}
"$EKM" --data-dir "$D" environment create acme staging >/dev/null 2>&1 || fail "environment create staging"
put_key
check "API: no AWS credentials: 409 failed_precondition (HTTP $CODE)" \
  has "$T/api.json" '"code":"failed_precondition"' "no AWS credentials found" "platform operator"
check "API: no AWS credentials: HTTP 409" test "$CODE" = 409
absent "API: no AWS credentials: no Retry-After" "$T/h" -i -e '^retry-after'
expect_error "server: ekm key set without AWS credentials" "no AWS credentials found" -- \
  env EKM_TOKEN="$KM_TOKEN" "$EKM" --server "$S" key set -w acme -e staging --aws-kms-arn "$ARN"
stop_ekmd
expect_error "local: ekm key set without AWS credentials" "no AWS credentials found" -- \
  "$EKM" --data-dir "$D" key set -w acme -e staging --aws-kms-arn "$ARN"
check "ekmd (ECS credentials endpoint unreachable) starts" \
  start_ekmd ekmd AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:9/credentials \
  AWS_ENDPOINT_URL=http://127.0.0.1:9 --data-dir "$D"
put_key
check "API: credentials endpoint unreachable: 503 (HTTP $CODE)" test "$CODE" = 503
stop_ekmd

summary
