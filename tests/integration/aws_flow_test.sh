#!/usr/bin/env bash
# End-to-end: the seed's whole "bring your own key" flow against a real AWS KMS peer (moto), as
# an AWS admin follows the guide (../shared/seeds/aws-kms-to-ekm-guide.txt): get the key policy
# statement, paste it into the key policy, check it, paste the key ARN, "Update key", and every
# way that goes wrong. In local mode (the CLI on a data directory) and against a running ekmd
# (curl on the HTTP API). Loopback only; every process started here is killed on exit.
#   aws_flow_test.sh EKM_BINARY EKMD_BINARY SOURCE_DIR
set -uo pipefail
EKM=$1
EKMD=$2
SRC=$3
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
setup_test aws-flow-test  # no AWS_* or EKM_* from outside: nothing reaches a real AWS account

# --- the AWS peer: moto with IAM checks on, and the fault proxy in front of it -------------
if ! start_aws_peer "$SRC" proxy; then
  fail "the AWS peer did not start"; summary; exit 1
fi
fault() { curl -fsS -X POST -d "$1" "$PROXY/__fault__" >/dev/null; }
fault_clear() { curl -fsS -X POST "$PROXY/__fault__/clear" >/dev/null; }
kms_calls() { curl -fsS "$PROXY/__fault__/stats" >"$T/stats.json" && json "$T/stats.json" "d['forwarded'].get('$1', 0)"; }

S_JSON="$T/setup.json"
ACCOUNT=$(json "$S_JSON" "d['account']")
MAIN_ARN=$(json "$S_JSON" "d['keys']['main']['arn']")
MAIN_ID=$(json "$S_JSON" "d['keys']['main']['key_id']")
ROT_ARN=$(json "$S_JSON" "d['keys']['rotating']['arn']")
ROT_ALIAS_ARN=$(json "$S_JSON" "d['keys']['rotating']['alias_arn']")
DISABLED_ALIAS_ARN=$(json "$S_JSON" "d['keys']['disabled']['alias_arn']")
PLATFORM_ARN=$(json "$S_JSON" "d['users']['ekm-platform']['arn']")
NOKEY_ARN="arn:aws:kms:us-east-1:$ACCOUNT:key/00000000-0000-0000-0000-000000000000"
mapfile -t AS_PLATFORM < <(creds ekm-platform)
mapfile -t AS_NO_DECRYPT < <(creds ekm-no-decrypt)
# shellcheck disable=SC2034  # used through lekm_as (a nameref)
mapfile -t AS_DESCRIBE < <(creds ekm-describe)
WRONG_SECRET=AWS_SECRET_ACCESS_KEY=$(printf 'x%.0s' $(seq 40))
# Local mode goes straight to moto through the per-service overrides; ekmd goes through the
# proxy with the general override (both as the AWS SDKs read them).
LOCAL_AWS=(AWS_REGION=us-east-1 "AWS_ENDPOINT_URL_KMS=$MOTO" "AWS_ENDPOINT_URL_STS=$MOTO")
D="$T/data"
lekm() { env "${LOCAL_AWS[@]}" "${AS_PLATFORM[@]}" "$EKM" --data-dir "$D" "$@"; }
lekm_as() {  # USER-ENV-ARRAY-NAME ARGS...: local ekm with another principal's credentials
  local -n who=$1; shift
  env "${LOCAL_AWS[@]}" "${who[@]}" "$EKM" --data-dir "$D" "$@"
}

# --- help -----------------------------------------------------------------------------------
for sub in key "key policy" "key set" "key show" policy "policy check"; do
  # shellcheck disable=SC2086
  check "ekm $sub --help" "$EKM" $sub --help >/dev/null
done

# === local mode =============================================================================
lekm init >"$T/init.out" && lekm workspace create acme >/dev/null &&
  lekm environment create acme prod >/dev/null && lekm environment create acme dev >/dev/null ||
  fail "local set-up"
head -c $((1024 * 1024 + 7)) /dev/urandom >"$T/p1m"
echo -n "card 4242 before" | lekm encrypt -w acme -e prod --text >"$T/before.ct" || fail "encrypt before"
lekm encrypt -w acme -e prod -s files <"$T/p1m" >"$T/before1m.ct" || fail "encrypt 1 MiB before"

# --- step 1: "Permission to access key" → paste into the key policy → policy doctor ----------
lekm key policy -w acme -e prod >"$T/stmt.txt" 2>"$T/stmt.err"
check "key policy: exit 0" test $? -eq 0
check "key policy: statement names the platform principal (asked of STS)" has "$T/stmt.txt" "\"AWS\": \"$PLATFORM_ARN\""
check "key policy: Encrypt and Decrypt" has "$T/stmt.txt" '"kms:Encrypt"' '"kms:Decrypt"'
check "key policy: pinned to the workspace (confused deputy)" has "$T/stmt.txt" '"kms:EncryptionContext:ekm:workspace": "acme"'
check "key policy: stdout is only the statement (pasteable)" test "$(head -c1 "$T/stmt.txt")" = "{"
check "key policy: comment on stderr says where to paste" has "$T/stmt.err" "Statement"
lekm key policy -w acme -e prod --example >"$T/example.json" 2>/dev/null
check "key policy --example: exit 0" test $? -eq 0
check "key policy --example: valid JSON with a Statement array" \
  test "$(json "$T/example.json" "len(d['Statement']) >= 2 and d['Version'] == '2012-10-17'")" = true
check "key policy --example: contains the platform statement" \
  test "$(json "$T/example.json" "any(s.get('Principal', {}).get('AWS') == '$PLATFORM_ARN' for s in d['Statement'])")" = true
lekm --json key policy -w acme -e prod >"$T/stmt.json" 2>/dev/null
check "key policy --json: principal_arn" test "$(json "$T/stmt.json" "d['principal_arn']")" = "$PLATFORM_ARN"
# A configured principal is used as is: no AWS call, no credentials needed.
env EKM_AWS_PRINCIPAL_ARN="arn:aws:iam::$ACCOUNT:role/ekm-platform-role" "$EKM" --data-dir "$D" \
  key policy -w acme -e prod >"$T/stmt-role.txt" 2>/dev/null
check "key policy: EKM_AWS_PRINCIPAL_ARN without credentials" has "$T/stmt-role.txt" "role/ekm-platform-role"
expect_error "key policy: no credentials, no principal" "--aws-principal-arn" -- \
  env "${LOCAL_AWS[@]}" "$EKM" --data-dir "$D" key policy -w acme -e prod

# The guide's key policy: its "Enable IAM User Permissions" statement, a comma, then the paste.
guide_policy() {  # SEPARATOR (what follows the first statement's closing brace)
  printf '{\n  "Id": "key-consolepolicy-3",\n  "Version": "2012-10-17",\n  "Statement": [\n'
  printf '    {\n      "Sid": "Enable IAM User Permissions",\n      "Effect": "Allow",\n'
  printf '      "Principal": {\n        "AWS": "arn:aws:iam::%s:root"\n      },\n' "$ACCOUNT"
  printf '      "Action": "kms:*",\n      "Resource": "*"\n    }%s\n' "$1"
  cat "$T/stmt.txt"
  printf '  ]\n}\n'
}
guide_policy "," >"$T/policy.json"
lekm policy check "$T/policy.json" -w acme >"$T/check.out" 2>&1
check "policy check: pasted as the guide says: granted (exit 0)" test $? -eq 0
check "policy check: says so" has "$T/check.out" "lets ekm use the key"
lekm policy check - -w acme <"$T/policy.json" >/dev/null 2>&1
check "policy check: from standard input" test $? -eq 0
guide_policy "" >"$T/nocomma.json"  # the guide's warning: the comma between statements forgotten
lekm policy check "$T/nocomma.json" -w acme >"$T/check.out" 2>&1
check "policy check: missing comma: exit 1" test $? -eq 1
check "policy check: missing comma: line, column, and 'add a comma' after line 13" \
  has "$T/check.out" "line 14, column 1" "add a comma (,)" "ends on line 13"
check "policy check: missing comma: corrected policy offered" has "$T/check.out" "added a comma after line 13"
guide_policy ", /* Comma before next object */" >"$T/comment.json"  # the guide's text copied literally
lekm policy check "$T/comment.json" -w acme >"$T/check.out" 2>&1
check "policy check: the guide's /* comment */: exit 1" test $? -eq 1
check "policy check: the guide's /* comment */: named" has "$T/check.out" "line 13" "comment"
lekm --json policy check "$T/nocomma.json" -w acme >"$T/check.json" 2>/dev/null
check "policy check --json: syntax_error.line" test "$(json "$T/check.json" "d['syntax_error']['line']")" = 14
sed '/"kms:Decrypt"/d; s/"kms:Encrypt",/"kms:Encrypt"/' "$T/policy.json" >"$T/nodecrypt-policy.json"
lekm policy check "$T/nodecrypt-policy.json" -w acme >"$T/check.out" 2>&1
check "policy check: statement without kms:Decrypt: exit 1" test $? -eq 1

# --- step 2: "Update key" with the key ARN ---------------------------------------------------
lekm key set -w acme -e prod --aws-kms-arn "$MAIN_ARN" >"$T/set.out" 2>"$T/set.err"
check "key set: passes (exit 0) $(cat "$T/set.err")" test $? -eq 0
check "key set: round trip checks reported" has "$T/set.out" "[ok  ] encrypt" "[ok  ] decrypt" "[ok  ] store"
check "key set: encryption context named" has "$T/set.out" "ekm:workspace=acme" "ekm:environment=prod"
lekm key show -w acme -e prod >"$T/show.out" 2>&1
check "key show: provider, ARN, region, passed" \
  has "$T/show.out" "aws-kms" "$MAIN_ARN" "us-east-1" "passed, of aws-kms $MAIN_ARN"
lekm --json key show -w acme -e prod >"$T/show.json" 2>/dev/null
check "key show --json: cmk" test "$(json "$T/show.json" "d['cmk']['provider'] + ' ' + d['cmk']['key_id']")" = "aws-kms $MAIN_ARN"
check "key show --json: region" test "$(json "$T/show.json" "d['description']['region']")" = us-east-1
check "key show --json: last validation ok" test "$(json "$T/show.json" "d['last_validation']['ok']")" = true
EK_AFTER_SET=$(json "$T/show.json" "d['ek_version']")
check "key show --json: a new environment key (v2)" test "$EK_AFTER_SET" = 2
check "decrypt before key set" grep -q "card 4242 before" <(lekm decrypt -w acme -e prod <"$T/before.ct")
lekm decrypt -w acme -e prod <"$T/before1m.ct" >"$T/back"
check "decrypt 1 MiB before key set" cmp -s "$T/p1m" "$T/back"
echo -n "card 4242 after" | lekm encrypt -w acme -e prod --text >"$T/after.ct" || fail "encrypt after"
lekm encrypt -w acme -e prod -s files <"$T/p1m" >"$T/after1m.ct" || fail "encrypt 1 MiB after"
check "decrypt after key set" grep -q "card 4242 after" <(lekm decrypt -w acme -e prod <"$T/after.ct")
# The AWS key is really in the path: a principal that may not Decrypt cannot read data whose
# data key was made after Update key (a new scope: its DK is wrapped by the new EK).
echo -n "card 4242 new scope" | lekm encrypt -w acme -e prod -s after-set --text >"$T/after-ns.ct" ||
  fail "encrypt new scope after key set"
check "decrypt new scope after key set" grep -q "new scope" <(lekm decrypt -w acme -e prod <"$T/after-ns.ct")
expect_error "decrypt with a principal without kms:Decrypt" "AccessDenied" -- \
  lekm_as AS_NO_DECRYPT decrypt -w acme -e prod <"$T/after-ns.ct"
# Scopes that existed before move on to a new data key under the new EK at their next use:
# data encrypted in them after Update key needs the customer's key too.
expect_error "old scope, written after Update key, needs the customer's key" "AccessDenied" -- \
  lekm_as AS_NO_DECRYPT decrypt -w acme -e prod <"$T/after.ct"
# Those refusals started the environment's backoff, which every process keeps to (the next
# retry is stored); validating the key with the platform's own principal proves access and ends
# it at once, as an operator does after fixing access (docs/lifecycle.md).
check "key validate ends the backoff" lekm key validate -w acme -e prod --aws-kms-arn "$MAIN_ARN" >/dev/null
check "decrypt right after key validate" grep -q "card 4242 after" <(lekm decrypt -w acme -e prod <"$T/after.ct")

# --- step 3: every way "Update key" goes wrong, and nothing changes -------------------------
expect_error "ARN with a leading space" "starts with a space (character 1)" -- \
  lekm key set -w acme -e prod --aws-kms-arn " $MAIN_ARN"
expect_error "ARN with a trailing space" "ends with a space (character $((${#MAIN_ARN} + 1)))" -- \
  lekm key set -w acme -e prod --aws-kms-arn "$MAIN_ARN "
grep -qF "remove the space" "$T/err" || fail "trailing space: hint says remove it: $(cat "$T/err")"
expect_error "bare key id" "not an ARN" -- lekm key set -w acme -e prod --aws-kms-arn "$MAIN_ID"
grep -qF "key/$MAIN_ID" "$T/err" || fail "bare key id: hint shows the ARN form: $(cat "$T/err")"
expect_error "IAM role ARN pasted by mistake" "IAM ARN" -- \
  lekm key set -w acme -e prod --aws-kms-arn "arn:aws:iam::$ACCOUNT:role/ekm-platform-role"
grep -qF "Principal" "$T/err" || fail "IAM role ARN: hint says it belongs in the Principal: $(cat "$T/err")"
# prod has had a customer key since a moment ago: a replacement now is refused by the 24-hour
# rule before any AWS call, so the checks below of how AWS refuses a key go through the
# emergency path, which validates the same way.
WHY="validation test"
expect_error "replacement inside 24 h" "once per 24 h" -- \
  lekm key set -w acme -e prod --aws-kms-arn "$ROT_ARN"
expect_error "nonexistent key" "NotFoundException" -- lekm key set -w acme -e prod --emergency --reason "$WHY" --aws-kms-arn "$NOKEY_ARN"
grep -qF "region" "$T/err" || fail "nonexistent key: region advice: $(cat "$T/err")"
expect_error "key ARN in the wrong region" "NotFoundException" -- \
  lekm key set -w acme -e prod --emergency --reason "$WHY" --aws-kms-arn "${MAIN_ARN/us-east-1/eu-west-1}"
expect_error "principal without kms:Decrypt" "AccessDenied" -- \
  lekm_as AS_NO_DECRYPT key set -w acme -e prod --emergency --reason "$WHY" --aws-kms-arn "$ROT_ARN"
grep -qF "ekm key policy --workspace acme --environment prod" "$T/err" ||
  fail "no decrypt: hint names 'ekm key policy': $(cat "$T/err")"
grep -qF "kms:Decrypt" "$T/err" || fail "no decrypt: names kms:Decrypt: $(cat "$T/err")"
expect_error "wrong secret access key" "SignatureDoesNotMatch" -- \
  env "${LOCAL_AWS[@]}" "${AS_PLATFORM[@]}" "$WRONG_SECRET" "$EKM" --data-dir "$D" \
  key set -w acme -e prod --emergency --reason "$WHY" --aws-kms-arn "$ROT_ARN"
grep -qF "platform's own AWS credentials" "$T/err" || fail "wrong secret: names the platform's credentials: $(cat "$T/err")"
absent "wrong secret: the secret is not printed" "$T/err" -F -e "${WRONG_SECRET#*=}"
expect_error "unknown access key" "InvalidClientTokenId" -- \
  env "${LOCAL_AWS[@]}" "${AS_PLATFORM[@]}" AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE "$EKM" --data-dir "$D" \
  key set -w acme -e prod --emergency --reason "$WHY" --aws-kms-arn "$ROT_ARN"
expect_error "disabled key (DescribeKey permitted)" "Disabled" -- \
  lekm_as AS_DESCRIBE key set -w acme -e prod --emergency --reason "$WHY" --aws-kms-arn "$DISABLED_ALIAS_ARN"
grep -qF "enable the key" "$T/err" || fail "disabled key: says enable it: $(cat "$T/err")"
lekm --json key show -w acme -e prod >"$T/show.json" 2>/dev/null
check "after the failures: still the previous key" test "$(json "$T/show.json" "d['cmk']['key_id']")" = "$MAIN_ARN"
check "after the failures: same environment key" test "$(json "$T/show.json" "d['ek_version']")" = "$EK_AFTER_SET"
check "after the failures: last validation records the failure" \
  test "$(json "$T/show.json" "d['last_validation']['ok']")" = false
lekm key show -w acme -e prod >"$T/show.out" 2>&1
check "after the failures: key show names the key in force" has "$T/show.out" "key:           $MAIN_ARN"
check "after the failures: data still decrypts" grep -q "card 4242 after" <(lekm decrypt -w acme -e prod <"$T/after.ct")

# Alias ARN, with a principal that may read metadata: state, spec and rotation are shown.
lekm_as AS_DESCRIBE key set -w acme -e dev --aws-kms-arn "$ROT_ALIAS_ARN" >"$T/set.out" 2>"$T/set.err"
check "key set alias ARN: passes $(cat "$T/set.err")" test $? -eq 0
check "key set alias ARN: describe and rotation checked" has "$T/set.out" "[ok  ] describe" "rotation is enabled"
lekm_as AS_DESCRIBE key show -w acme -e dev >"$T/show.out" 2>&1
check "key show alias: resolves to the key, rotation enabled" \
  has "$T/show.out" "$ROT_ALIAS_ARN" "$ROT_ARN" "Enabled" "SYMMETRIC_DEFAULT" "rotation:      enabled"
echo -n "dev data" | lekm encrypt -w acme -e dev --text >"$T/dev.ct" || fail "encrypt dev"
# Inside 24 h of the alias ARN, going back is a replacement too: an emergency one.
check "key set --platform: back to the platform key" \
  lekm key set -w acme -e dev --platform --emergency --reason "$WHY" >/dev/null 2>&1
check "dev data decrypts after going back" grep -q "dev data" <(lekm decrypt -w acme -e dev <"$T/dev.ct")

# --- a key deleted after use: "deleted", never "copy the ARN again" ---------------------------
# An environment under the key, used, then AWS KMS answers NotFoundException (the fault proxy:
# moto never completes a key deletion): the error and the status say the key was deleted and
# its data cannot be recovered, not the "check the ARN" advice of "Update key".
lekm environment create acme gone >/dev/null 2>&1 || fail "environment create gone"
lekm key set -w acme -e gone --aws-kms-arn "$MAIN_ARN" >/dev/null 2>&1 || fail "key set gone"
echo -n "gone soon" | lekm encrypt -w acme -e gone --text >"$T/gone.ct" || fail "encrypt gone"
check "gone: decrypts while the key exists" grep -q "gone soon" <(lekm decrypt -w acme -e gone <"$T/gone.ct")
fault '{"target":"TrentService.Decrypt","kind":"NotFoundException","count":-1}'
expect_error "gone: the key not found after use" "NotFoundException" -- \
  env "${LOCAL_AWS[@]}" "${AS_PLATFORM[@]}" "AWS_ENDPOINT_URL_KMS=$PROXY" "$EKM" --data-dir "$D" \
  decrypt -w acme -e gone <"$T/gone.ct"
check "gone: the error says deleted, unrecoverable" has "$T/err" "it was deleted" "cannot be recovered"
absent "gone: the error does not say to copy the ARN again" "$T/err" -F -e 'copy it again'
lekm environment status -w acme -e gone >"$T/gone-status.txt" 2>&1
check "gone: status says what the error says" has "$T/gone-status.txt" "state:          unavailable" \
  "what to do: this key unwrapped the environment's keys until" "it was deleted"
absent "gone: status does not say to copy the ARN again" "$T/gone-status.txt" -F -e 'copy it again'
fault_clear

# === server mode: the same flow through ekmd's HTTP API =====================================
# --key-replacement-period 0: this flow replaces keys back to back
RP=(--key-replacement-period 0)
SERVER_AWS=(AWS_REGION=us-east-1 "AWS_ENDPOINT_URL=$PROXY" "${AS_PLATFORM[@]}")
check "ekmd starts" start_ekmd ekmd "${SERVER_AWS[@]}" --data-dir "$D" "${RP[@]}"
ADMIN_TOKEN=$(sed -n 's/^admin token: \(ekm_.*\)$/\1/p' "$T/init.out")
check "setup_tokens" setup_tokens "$D" "$S" acme
# api METHOD PATH [BODY]: the response body in $T/api.json, the status in $CODE
api() {
  # The key-manager's token unless API_TOKEN names another role's.
  local args=(-sS -o "$T/api.json" -w '%{http_code}' -H "Authorization: Bearer ${API_TOKEN:-$KM_TOKEN}" -X "$1" "$S$2")
  [ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
  CODE=$(curl "${args[@]}")
}
# api_error WHAT STATUS CODE SUBSTRING: the error JSON {"error":{"code","message","hint"}}
api_error() {
  local what=$1 status=$2 code=$3 want=$4
  if [ "$CODE" != "$status" ]; then fail "$what: HTTP $CODE, want $status: $(cat "$T/api.json")"; return; fi
  local shape
  shape=$(json "$T/api.json" "list(d) == ['error'] and sorted(d['error']) == ['code', 'hint', 'message'] and all(isinstance(x, str) and x for x in d['error'].values())")
  if [ "$shape" != true ]; then fail "$what: not the error shape: $(cat "$T/api.json")"; return; fi
  if [ "$(json "$T/api.json" "d['error']['code']")" != "$code" ]; then fail "$what: code is not $code: $(cat "$T/api.json")"; return; fi
  if ! json "$T/api.json" "d['error']['message'] + ' ' + d['error']['hint']" | grep -qF -- "$want"; then
    fail "$what: lacks '$want': $(cat "$T/api.json")"; return
  fi
  pass
}
key_path=/v1/workspaces/acme/environments/staging/key
arn_body() { "$PY" -c 'import json,sys; print(json.dumps({"aws_kms_arn": sys.argv[1]}))' "$1"; }

# Local-mode ciphertexts under the AWS key decrypt through ekmd (it unwraps with AWS KMS).
check "server: decrypts local ciphertext from before key set" \
  grep -q "card 4242 before" <(env EKM_TOKEN="$APP_TOKEN" "$EKM" --server "$S" decrypt -w acme -e prod <"$T/before.ct")
check "server: decrypts local ciphertext from after key set" \
  grep -q "card 4242 after" <(env EKM_TOKEN="$APP_TOKEN" "$EKM" --server "$S" decrypt -w acme -e prod <"$T/after.ct")

API_TOKEN=$OWNER_TOKEN api POST /v1/workspaces/acme/environments '{"name":"staging"}'
check "server: create environment staging ($CODE)" test "$CODE" = 201
echo -n "staging before" | env EKM_TOKEN="$APP_TOKEN" "$EKM" --server "$S" encrypt -w acme -e staging --text >"$T/s-before.ct" || fail "server: encrypt before"
env EKM_TOKEN="$APP_TOKEN" "$EKM" --server "$S" encrypt -w acme -e staging -s files <"$T/p1m" >"$T/s-before1m.ct" || fail "server: encrypt 1 MiB before"

api GET "$key_path/policy"
check "server: GET key/policy 200" test "$CODE" = 200
check "server: key/policy names the principal" test "$(json "$T/api.json" "d['principal_arn']")" = "$PLATFORM_ARN"
check "server: key/policy statement_text pinned to the workspace" \
  test "$(json "$T/api.json" "'\"kms:EncryptionContext:ekm:workspace\": \"acme\"' in d['statement_text']")" = true
api POST /v1/workspaces/acme/key-policy/check "$("$PY" -c 'import json,sys; print(json.dumps({"policy": open(sys.argv[1]).read()}))' "$T/policy.json")"
check "server: policy check granted ($CODE)" test "$CODE:$(json "$T/api.json" "d['ok'] and d['granted']")" = 200:true
api POST /v1/workspaces/acme/key-policy/check "$("$PY" -c 'import json,sys; print(json.dumps({"policy": open(sys.argv[1]).read()}))' "$T/nocomma.json")"
check "server: policy check missing comma: not ok, line 14" \
  test "$CODE:$(json "$T/api.json" "d['ok']"):$(json "$T/api.json" "d['syntax_error']['line']")" = 200:false:14
check "server: policy check missing comma: hint" \
  test "$(json "$T/api.json" "'add a comma' in d['syntax_error']['hint'] and 'line 13' in d['syntax_error']['hint']")" = true

# Error paths of PUT …/key, each before the key is set: nothing may change.
api PUT "$key_path" "$(arn_body " $MAIN_ARN")"
api_error "server: ARN with a leading space" 400 invalid_argument "starts with a space (character 1)"
api PUT "$key_path" "$(arn_body "$MAIN_ID")"
api_error "server: bare key id" 400 invalid_argument "not an ARN"
api PUT "$key_path" "$(arn_body "arn:aws:iam::$ACCOUNT:role/ekm-platform-role")"
api_error "server: IAM role ARN" 400 invalid_argument "IAM ARN"
api PUT "$key_path" '{}'
api_error "server: no key in the body" 400 invalid_argument "aws_kms_arn"
api PUT "$key_path" "not json"
check "server: body is not JSON: 400 invalid_argument with line and column" \
  test "$CODE:$(json "$T/api.json" "d['error']['code'] + str('line 1, column' in d['error']['message'])")" = 400:invalid_argumentTrue
api PUT "$key_path" "$(arn_body "$NOKEY_ARN")"
api_error "server: nonexistent key" 404 not_found "region"
fault '{"target":"TrentService.Encrypt","kind":"AccessDeniedException","count":1}'
api PUT "$key_path" "$(arn_body "$MAIN_ARN")"
api_error "server: access denied" 409 failed_precondition "ekm key policy --workspace acme --environment staging"
fault '{"target":"TrentService.Decrypt","kind":"DisabledException","count":1}'
api PUT "$key_path" "$(arn_body "$MAIN_ARN")"
api_error "server: disabled key" 409 failed_precondition "enable it"
fault '{"target":"TrentService.Encrypt","kind":"KMSInvalidStateException","count":1}'
api PUT "$key_path" "$(arn_body "$MAIN_ARN")"
api_error "server: key pending deletion" 409 failed_precondition "pending deletion"
fault '{"target":"*","kind":"KMSInternalException","count":-1}'
api PUT "$key_path" "$(arn_body "$MAIN_ARN")"
api_error "server: AWS KMS outage" 503 unavailable "AWS Health Dashboard"
fault_clear
fault '{"target":"TrentService.Encrypt","kind":"ThrottlingException","count":2}'
api PUT "$key_path" "$(arn_body "$MAIN_ARN")"
check "server: throttling is retried, then passes ($CODE)" test "$CODE:$(json "$T/api.json" "d['ok']")" = 200:true
fault_clear
api GET "$key_path"
check "server: key set after throttling" test "$(json "$T/api.json" "d['cmk']['key_id']")" = "$MAIN_ARN"
S_EK=$(json "$T/api.json" "d['ek_version']")
api PUT "$key_path" "$(arn_body "$ROT_ARN")"
check "server: Update key to another key 200" test "$CODE" = 200
check "server: 200 carries the checks" \
  test "$(json "$T/api.json" "d['ok'] and [c['name'] for c in d['checks'] if c['outcome'] == 'passed'][:3] == ['key id', 'encrypt', 'decrypt'] and d['checks'][-1]['name'] == 'store'")" = true
api GET "$key_path"
check "server: GET key: provider, ARN, region" \
  test "$(json "$T/api.json" "' '.join([d['cmk']['provider'], d['cmk']['key_id'], d['description']['region']])")" = "aws-kms $ROT_ARN us-east-1"
check "server: GET key: last validation passed" test "$(json "$T/api.json" "d['last_validation']['ok']")" = true
check "server: GET key: a new environment key" test "$(json "$T/api.json" "d['ek_version']")" = $((S_EK + 1))
S_EK=$((S_EK + 1))
api PUT "$key_path" "$(arn_body "$MAIN_ARN ")"
api_error "server: trailing space after a key was set" 400 invalid_argument "ends with a space"
api GET "$key_path"
check "server: failed Update key keeps the key" \
  test "$(json "$T/api.json" "d['cmk']['key_id']"):$(json "$T/api.json" "d['ek_version']")" = "$ROT_ARN:$S_EK"
env EKM_TOKEN="$KM_TOKEN" "$EKM" --server "$S" key show -w acme -e staging >"$T/show.out" 2>&1
check "server: ekm key show" has "$T/show.out" "aws-kms" "$ROT_ARN" "us-east-1"
expect_error "server: ekm key set bad ARN" "not an ARN" -- env EKM_TOKEN="$KM_TOKEN" "$EKM" --server "$S" key set -w acme -e staging --aws-kms-arn "$MAIN_ID"

# A new scope; old scopes move on to the new EK as well (checked in local mode above).
echo -n "staging after" | env EKM_TOKEN="$APP_TOKEN" "$EKM" --server "$S" encrypt -w acme -e staging -s after-set --text >"$T/s-after.ct" ||
  fail "server: encrypt after"
server_decrypts_all() {  # LABEL
  check "server $1: before" grep -q "staging before" <(env EKM_TOKEN="$APP_TOKEN" "$EKM" --server "$S" decrypt -w acme -e staging <"$T/s-before.ct")
  check "server $1: after" grep -q "staging after" <(env EKM_TOKEN="$APP_TOKEN" "$EKM" --server "$S" decrypt -w acme -e staging <"$T/s-after.ct")
  env EKM_TOKEN="$APP_TOKEN" "$EKM" --server "$S" decrypt -w acme -e staging <"$T/s-before1m.ct" >"$T/back" 2>/dev/null
  check "server $1: 1 MiB before" cmp -s "$T/p1m" "$T/back"
  check "server $1: local prod data" grep -q "card 4242 after" <(env EKM_TOKEN="$APP_TOKEN" "$EKM" --server "$S" decrypt -w acme -e prod <"$T/after.ct")
}
server_decrypts_all "decrypt"

# Restarts: graceful and crash. The environment key comes back through AWS KMS Decrypt.
stop_ekmd  # exits 0 on SIGTERM
decrypts_before=$(kms_calls TrentService.Decrypt)
check "ekmd restarts" start_ekmd ekmd "${SERVER_AWS[@]}" --data-dir "$D" "${RP[@]}"
server_decrypts_all "after SIGTERM restart"
check "after restart the EK was unwrapped by AWS KMS Decrypt" test "$(kms_calls TrentService.Decrypt)" -gt "$decrypts_before"
echo -n "staging crash" | env EKM_TOKEN="$APP_TOKEN" "$EKM" --server "$S" encrypt -w acme -e staging --text >"$T/s-crash.ct" || fail "server: encrypt before crash"
kill9_ekmd
check "ekmd restarts after kill -9" start_ekmd ekmd "${SERVER_AWS[@]}" --data-dir "$D" "${RP[@]}"
server_decrypts_all "after kill -9"
check "server after kill -9: data written just before" \
  grep -q "staging crash" <(env EKM_TOKEN="$APP_TOKEN" "$EKM" --server "$S" decrypt -w acme -e staging <"$T/s-crash.ct")
api GET "$key_path"
check "server after kill -9: still the AWS key" \
  test "$(json "$T/api.json" "d['cmk']['key_id']"):$(json "$T/api.json" "d['ek_version']")" = "$ROT_ARN:$S_EK"
stop_ekmd

# ekmd whose own credentials are the problem, straight against moto (real AWS error shapes).
D2="$T/data2"
"$EKM" --data-dir "$D2" init >"$T/init2.out" && "$EKM" --data-dir "$D2" workspace create acme >/dev/null &&
  "$EKM" --data-dir "$D2" environment create acme prod >/dev/null || fail "second data dir"
check "ekmd (no kms:Decrypt) starts" start_ekmd ekmd-nd AWS_REGION=us-east-1 "AWS_ENDPOINT_URL=$MOTO" "${AS_NO_DECRYPT[@]}" --data-dir "$D2" "${RP[@]}"
ADMIN_TOKEN=$(sed -n 's/^admin token: \(ekm_.*\)$/\1/p' "$T/init2.out")
check "setup_tokens (second data dir)" setup_tokens "$D2" "$S" acme
api PUT /v1/workspaces/acme/environments/prod/key "$(arn_body "$MAIN_ARN")"
api_error "server: principal without kms:Decrypt (moto)" 409 failed_precondition "ekm key policy --workspace acme --environment prod"
expect_error "server: ekm key set, access denied" "AccessDenied" -- \
  env EKM_TOKEN="$KM_TOKEN" "$EKM" --server "$S" key set -w acme -e prod --aws-kms-arn "$MAIN_ARN"
api GET /v1/workspaces/acme/environments/prod/key
check "server: access denied keeps the platform key" test "$(json "$T/api.json" "d['cmk']['provider']")" = platform
stop_ekmd
check "ekmd (wrong secret) starts" start_ekmd ekmd-ws AWS_REGION=us-east-1 "AWS_ENDPOINT_URL=$MOTO" "${AS_PLATFORM[@]}" "$WRONG_SECRET" --data-dir "$D2" "${RP[@]}"
api PUT /v1/workspaces/acme/environments/prod/key "$(arn_body "$MAIN_ARN")"
# The platform's own credentials: the operator's problem, not the caller's, and not transient:
# 409 failed_precondition as docs/api.md says (not 401/403, not a retryable 503).
check "server: wrong secret is 409 failed_precondition (HTTP $CODE)" \
  test "$CODE:$(json "$T/api.json" "d['error']['code']")" = 409:failed_precondition
check "server: wrong secret names SignatureDoesNotMatch and the platform's credentials" \
  test "$(json "$T/api.json" "'SignatureDoesNotMatch' in d['error']['message'] and 'platform' in d['error']['hint']")" = true
stop_ekmd
for log in "$T"/ekmd*.log; do
  absent "$(basename "$log") holds no secret" "$log" -F -e "${AS_PLATFORM[1]#*=}" -e "${WRONG_SECRET#*=}"
done

summary
