#!/usr/bin/env bash
# End-to-end: uploaded key material (BYOK without a KMS) with the documented openssl commands,
# run verbatim, against `ekm` in local mode and against a real ekmd.
#   key_material_test.sh EKM_BINARY EKMD_BINARY
set -uo pipefail
EKM=$1
EKMD=$2
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
setup_test key-material-test  # nothing here talks to AWS; isolated from it anyway

for sub in "key import-params" "key import" "key delete-material"; do
  # shellcheck disable=SC2086
  check "ekm $sub --help" "$EKM" $sub --help >/dev/null
done

# The documented commands (README, docs/lifecycle.md), verbatim but for DIR.
wrap() {  # DIR: material.bin -> material.wrapped, in the current directory
  local DIR=$1
  openssl pkeyutl -encrypt -pubin -inkey "$DIR"/wrapping-key.pem -in material.bin -out material.wrapped -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256
}

# as TOKEN_VARIABLE COMMAND...: runs COMMAND with EKM_TOKEN set to that role's token (server
# mode; local mode ignores it).
as() { local v=$1; shift; EKM_TOKEN="${!v:-}" "$@"; }

flow() {  # LABEL MODE_ARGS...: the whole life of uploaded material in one environment
  local label=$1; shift
  local W="$T/$label"
  mkdir -p "$W"
  # Through ekmd, setup_tokens made the workspace.
  [ "$label" = server ] || check "$label: workspace create" "$EKM" "$@" workspace create acme >/dev/null
  check "$label: environment create prod" as ADMIN_TOKEN "$EKM" "$@" environment create acme prod >/dev/null
  check "$label: environment create dev" as ADMIN_TOKEN "$EKM" "$@" environment create acme dev >/dev/null
  echo "before the import" >"$W/p-before"
  as APP_TOKEN "$EKM" "$@" encrypt -w acme -e prod --text <"$W/p-before" >"$W/ct-before" || fail "$label: encrypt before"

  as KM_TOKEN "$EKM" "$@" key import-params --workspace acme --environment prod --out "$W/params" >"$W/params.out" 2>&1
  check "$label: import-params" test $? = 0
  check "$label: wrapping-key.pem is a public key" grep -q "BEGIN PUBLIC KEY" "$W/params/wrapping-key.pem"
  check "$label: wrapping-key.pem mode 0644" test "$(stat -c %a "$W/params/wrapping-key.pem")" = 644
  check "$label: import-token mode 0600" test "$(stat -c %a "$W/params/import-token")" = 600
  check "$label: prints the openssl commands" grep -q "rsa_oaep_md:sha256" "$W/params.out"
  expect_error "$label: no overwrite without --force" "exists already" -- \
    as KM_TOKEN "$EKM" "$@" key import-params --workspace acme --environment prod --out "$W/params"

  (
    cd "$W" || exit 1
    openssl rand -out material.bin 32
    wrap "$W/params"
    # Wrong wrappings the admin might produce.
    openssl pkeyutl -encrypt -pubin -inkey "$W/params/wrapping-key.pem" -in material.bin -out pkcs1.wrapped
    openssl pkeyutl -encrypt -pubin -inkey "$W/params/wrapping-key.pem" -in material.bin -out sha1.wrapped -pkeyopt rsa_padding_mode:oaep
  ) || fail "$label: openssl"
  expect_error "$label: PKCS#1 v1.5 refused" "not PKCS#1 v1.5" -- \
    as KM_TOKEN "$EKM" "$@" key import -w acme -e prod --material "$W/pkcs1.wrapped" --token-file "$W/params/import-token"
  expect_error "$label: OAEP-SHA1 refused" "RSAES-OAEP with SHA-256" -- \
    as KM_TOKEN "$EKM" "$@" key import -w acme -e prod --material "$W/sha1.wrapped" --token-file "$W/params/import-token"
  expect_error "$label: clear material refused" "exactly 512 bytes" -- \
    as KM_TOKEN "$EKM" "$@" key import -w acme -e prod --material "$W/material.bin" --token-file "$W/params/import-token"
  head -c 43 /dev/zero | tr '\0' 'A' >"$W/wrong-token"
  expect_error "$label: wrong token refused" "not the current import token" -- \
    as KM_TOKEN "$EKM" "$@" key import -w acme -e prod --material "$W/material.wrapped" --token-file "$W/wrong-token"

  as KM_TOKEN "$EKM" "$@" key import --workspace acme --environment prod --material "$W/material.wrapped" --token-file "$W/params/import-token" >"$W/import.out" 2>&1
  check "$label: import" test $? = 0
  check "$label: import prints the validation" grep -q "now uses imported key material imported:" "$W/import.out"
  check "$label: key show names the imported key" grep -q "provider:      imported" <(as KM_TOKEN "$EKM" "$@" key show -w acme -e prod)
  expect_error "$label: a token imports once" "used already" -- \
    as KM_TOKEN "$EKM" "$@" key import -w acme -e prod --material "$W/material.wrapped" --token-file "$W/params/import-token"

  echo "under the uploaded key" >"$W/p-after"
  as APP_TOKEN "$EKM" "$@" encrypt -w acme -e prod --text <"$W/p-after" >"$W/ct-after" || fail "$label: encrypt after"
  check "$label: decrypt after" cmp -s "$W/p-after" <(as APP_TOKEN "$EKM" "$@" decrypt -w acme -e prod <"$W/ct-after")
  check "$label: decrypt data from before" cmp -s "$W/p-before" <(as APP_TOKEN "$EKM" "$@" decrypt -w acme -e prod <"$W/ct-before")

  # A token of another environment.
  as KM_TOKEN "$EKM" "$@" key import-params -w acme -e dev --out "$W/dev-params" >/dev/null 2>&1 || fail "$label: dev import-params"
  (cd "$W" && cp material.bin dev.bin && openssl pkeyutl -encrypt -pubin -inkey dev-params/wrapping-key.pem -in dev.bin -out dev.wrapped -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256) || fail "$label: dev wrap"
  expect_error "$label: another environment's token refused" "another environment" -- \
    as KM_TOKEN "$EKM" "$@" key import -w acme -e prod --material "$W/dev.wrapped" --token-file "$W/dev-params/import-token"

  # Deleting the material: a revocation.
  expect_error "$label: delete needs --confirm ENV" "does not match the environment" -- \
    as KM_TOKEN "$EKM" "$@" key delete-material -w acme -e prod --confirm dev
  check "$label: delete-material" as KM_TOKEN "$EKM" "$@" key delete-material -w acme -e prod --confirm prod >/dev/null
  check "$label: key show says Deleted" grep -q "state:         Deleted" <(as KM_TOKEN "$EKM" "$@" key show -w acme -e prod)
  expect_error "$label: delete twice" "never imported, or deleted already" -- \
    as KM_TOKEN "$EKM" "$@" key delete-material -w acme -e prod --confirm prod
}

# --- local mode: each command is a new process, so no key cache outlives the deletion -------
D="$T/data"
check "init" "$EKM" --data-dir "$D" init >/dev/null
flow local --data-dir "$D"
W="$T/local"
expect_error "local: data unavailable after the deletion" "was deleted at" -- \
  "$EKM" --data-dir "$D" decrypt -w acme -e prod <"$W/ct-after"
# The same material again (new parameters, same material.bin): everything decrypts again.
"$EKM" --data-dir "$D" key import-params -w acme -e prod --out "$W/params" --force --expires-in 1h >/dev/null 2>&1 || fail "local: import-params --force"
(cd "$W" && wrap "$W/params") || fail "local: wrap again"
check "local: re-import the same material" "$EKM" --data-dir "$D" key import -w acme -e prod --material "$W/material.wrapped" --token-file "$W/params/import-token" >/dev/null
check "local: data back after re-import" cmp -s "$W/p-after" <("$EKM" --data-dir "$D" decrypt -w acme -e prod <"$W/ct-after")
check "local: old data back too" cmp -s "$W/p-before" <("$EKM" --data-dir "$D" decrypt -w acme -e prod <"$W/ct-before")
check "local: --json delete-material" grep -q '"in_use": true' <("$EKM" --data-dir "$D" --json key delete-material -w acme -e prod --confirm prod)

# --- server mode ----------------------------------------------------------------------------
D2="$T/server-data"
check "ekmd starts" start_ekmd ekmd --data-dir "$D2"
check "setup_tokens" setup_tokens "$D2" "$S" acme
flow server --server "$S"
W="$T/server"
# ekmd keeps unwrapped keys for the key cache TTL; the re-import must work whatever the cache.
as KM_TOKEN "$EKM" --server "$S" key import-params -w acme -e prod --out "$W/params" --force >/dev/null 2>&1 || fail "server: import-params --force"
(cd "$W" && wrap "$W/params") || fail "server: wrap again"
check "server: re-import the same material" as KM_TOKEN "$EKM" --server "$S" key import -w acme -e prod --material "$W/material.wrapped" --token-file "$W/params/import-token" >/dev/null
check "server: data back after re-import" cmp -s "$W/p-after" <(as APP_TOKEN "$EKM" --server "$S" decrypt -w acme -e prod <"$W/ct-after")

# The API as documented (docs/api.md).
API="$S/v1/workspaces/acme/environments/dev/key"
code=$(curl -sS -o "$T/ip.json" -w '%{http_code}' -H "Authorization: Bearer $KM_TOKEN" -X POST -H 'Content-Type: application/json' --data '{"expires_in_seconds": 3600}' "$API/import-params")
check "API: import-params 200" test "$code" = 200
check "API: import-params fields" python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
assert j["algorithm"] == "RSAES_OAEP_SHA_256" and j["material_size"] == 32, j
assert j["wrapping_key_pem"].startswith("-----BEGIN PUBLIC KEY-----") and len(j["import_token"]) == 43
assert j["expires_at"].endswith("Z")' "$T/ip.json"
python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["wrapping_key_pem"], end="")' "$T/ip.json" >"$T/api-key.pem"
python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["import_token"], end="")' "$T/ip.json" >"$T/api-token"
(cd "$T" && openssl rand -out api.bin 32 && openssl pkeyutl -encrypt -pubin -inkey api-key.pem -in api.bin -out api.wrapped -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256) || fail "API: wrap"
body() { printf '{"material": "%s", "import_token": "%s"}' "$(base64 -w0 "$1")" "$2"; }
code=$(curl -sS -o "$T/bad.json" -w '%{http_code}' -H "Authorization: Bearer $KM_TOKEN" -X POST -H 'Content-Type: application/json' --data "$(body "$T/api.wrapped" AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA)" "$API/import")
check "API: wrong token is 403" test "$code" = 403
code=$(curl -sS -o "$T/bad.json" -w '%{http_code}' -H "Authorization: Bearer $KM_TOKEN" -X POST -H 'Content-Type: application/json' --data "$(body "$T/api.bin" "$(cat "$T/api-token")")" "$API/import")
check "API: wrong size is 400" test "$code" = 400
code=$(curl -sS -o "$T/ok.json" -w '%{http_code}' -H "Authorization: Bearer $KM_TOKEN" -X POST -H 'Content-Type: application/json' --data "$(body "$T/api.wrapped" "$(cat "$T/api-token")")" "$API/import")
check "API: import 200" test "$code" = 200
check "API: import answers the validation" grep -q '"provider":"imported"' "$T/ok.json"
code=$(curl -sS -o "$T/del.json" -w '%{http_code}' -H "Authorization: Bearer $KM_TOKEN" -X DELETE "$API/material")
check "API: DELETE material 200" test "$code" = 200
code=$(curl -sS -o "$T/del.json" -w '%{http_code}' -H "Authorization: Bearer $KM_TOKEN" -X DELETE "$API/material")
check "API: DELETE material twice is 404" test "$code" = 404

stop_ekmd
summary
