#!/usr/bin/env bash
# End-to-end (issue 12): destroying a key destroys it on disk. With ekmd running on the data
# directory (its connection keeps the WAL open, as in production), crypto-shredding an
# environment, the end of a repack and deleting imported key material leave no copy of the
# destroyed wrapped EKs and DKs or of the sealed material in any file of the data directory
# (ekm.db, -wal, -shm, -journal), raw, hex or base64; nor after kill -9. And an import token
# is locked after 5 failed imports, counted across processes (ekm in local mode and ekmd on
# one store), with one error whatever made the unwrap fail.
#   destruction_test.sh EKM_BINARY EKMD_BINARY
set -uo pipefail
EKM=$1
EKMD=$2
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
setup_test destruction-test
D="$T/data"

as() { local v=$1; shift; EKM_TOKEN="${!v:-}" "$@"; }
sql() { sqlite3 "$D/ekm.db" "$@"; }
env_id() { sql "SELECT e.id FROM environments e JOIN workspaces w ON w.id = e.workspace_id WHERE w.name = 'acme' AND e.name = '$1'"; }
# The hex of every wrapped EK and DK of an environment, one a line.
key_blobs() {
  local id; id=$(env_id "$1")
  sql "SELECT hex(wrapped) FROM environment_keys WHERE environment_id = $id AND length(wrapped) > 0 UNION ALL SELECT hex(wrapped) FROM data_keys WHERE environment_id = $id AND length(wrapped) > 0"
}
# holds HEXFILE: some file of the data directory holds some blob of HEXFILE (one hex a line),
# raw, hex or base64; names them in $T/scan.out. Exit status 0: found, 10: not found, anything
# else: the scan failed (so a broken scan never passes as "not found").
holds() {
  python3 - "$D" "$1" >"$T/scan.out" 2>&1 <<'EOF'
import base64, os, sys
root, listing = sys.argv[1], sys.argv[2]
blobs = [bytes.fromhex(line.strip()) for line in open(listing) if line.strip()]
assert blobs, "nothing to look for"
found = []
for name in sorted(os.listdir(root)):
    data = open(os.path.join(root, name), "rb").read()
    for i, b in enumerate(blobs):
        forms = [b, b.hex().encode(), b.hex().upper().encode(), base64.b64encode(b)[:-4],
                 base64.urlsafe_b64encode(b).rstrip(b"=")[:-4]]
        if any(f in data for f in forms):
            found.append("blob %d of %d in %s" % (i + 1, len(blobs), name))
print("; ".join(found))
sys.exit(0 if found else 10)
EOF
}
# gone LABEL HEXFILE: no file of the data directory holds any blob of HEXFILE.
gone() {
  holds "$2"
  case $? in
    10) pass ;;
    0) fail "$1: $(cat "$T/scan.out")" ;;
    *) fail "$1: the scan failed: $(cat "$T/scan.out")" ;;
  esac
}
wrap() {  # DIR IN OUT: the documented openssl command
  openssl pkeyutl -encrypt -pubin -inkey "$1/wrapping-key.pem" -in "$2" -out "$3" -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256
}

check "ekmd starts" start_ekmd ekmd --data-dir "$D" --key-cache-ttl 1
check "setup_tokens" setup_tokens "$D" "$S" acme
for e in prod dev stage; do
  check "environment create $e" as ADMIN_TOKEN "$EKM" --server "$S" environment create acme $e >/dev/null
done
for scope in orders invoices; do
  echo "data of $scope" | as APP_TOKEN "$EKM" --server "$S" encrypt -w acme -e prod -s $scope >/dev/null || fail "encrypt prod/$scope"
done
echo "dev data" | as APP_TOKEN "$EKM" --server "$S" encrypt -w acme -e dev >/dev/null || fail "encrypt dev"
key_blobs prod >"$T/prod.hex"
key_blobs dev >"$T/dev-v1.hex"
check "prod has an EK and two DKs to look for" test "$(wc -l <"$T/prod.hex")" = 3
check "the scan sees live keys" holds "$T/prod.hex"

# Imported material in dev: a CMK change, so ekmd's repack moves dev's DK to EK v2 and
# destroys EK v1.
W="$T/w"; mkdir -p "$W"
as KM_TOKEN "$EKM" --server "$S" key import-params -w acme -e dev --out "$W/dev" >/dev/null 2>&1 || fail "import-params dev"
openssl rand -out "$W/material.bin" 32
wrap "$W/dev" "$W/material.bin" "$W/material.wrapped" || fail "wrap"
check "import into dev" as KM_TOKEN "$EKM" --server "$S" key import -w acme -e dev --material "$W/material.wrapped" --token-file "$W/dev/import-token" >/dev/null
sql "SELECT hex(sealed_material) FROM key_material WHERE environment_id = $(env_id dev)" >"$T/material.hex"
for _ in $(seq 200); do
  [ "$(sql "SELECT COUNT(*) FROM environment_keys WHERE environment_id = $(env_id dev) AND version = 1 AND destroyed_at IS NOT NULL")" = 1 ] && break
  sleep 0.05
done
check "the repack destroyed dev's EK v1" test "$(sql "SELECT length(wrapped) FROM environment_keys WHERE environment_id = $(env_id dev) AND version = 1")" = 0
gone "dev's EK v1 after the repack (ekmd running)" "$T/dev-v1.hex"

check "delete-material dev" as KM_TOKEN "$EKM" --server "$S" key delete-material -w acme -e dev --confirm dev >/dev/null
gone "deleted material (ekmd running)" "$T/material.hex"

check "shred prod" as OWNER_TOKEN "$EKM" --server "$S" environment shred -w acme -e prod --confirm prod --yes-destroy-all-data >/dev/null
gone "shredded prod's EK and DKs (ekmd running)" "$T/prod.hex"

# --- the import token lock, counted in the store across processes ------------------------
as KM_TOKEN "$EKM" --server "$S" key import-params -w acme -e stage --out "$W/stage" >/dev/null 2>&1 || fail "import-params stage"
openssl pkeyutl -encrypt -pubin -inkey "$W/stage/wrapping-key.pem" -in "$W/material.bin" -out "$W/pkcs1.wrapped" || fail "pkcs1 wrap"
head -c 16 /dev/urandom >"$W/short.bin"
wrap "$W/stage" "$W/short.bin" "$W/short.wrapped" || fail "short wrap"
wrap "$W/stage" "$W/material.bin" "$W/stage.wrapped" || fail "stage wrap"
attempt() {  # N MODE FILE: one failed import, its stderr in $T/attempt-N
  local n=$1 mode=$2 file=$3
  if [ "$mode" = local ]; then
    "$EKM" --data-dir "$D" key import -w acme -e stage --material "$file" --token-file "$W/stage/import-token" >/dev/null 2>"$T/attempt-$n"
  else
    as KM_TOKEN "$EKM" --server "$S" key import -w acme -e stage --material "$file" --token-file "$W/stage/import-token" >/dev/null 2>"$T/attempt-$n"
  fi
  [ $? -ne 0 ] || fail "attempt $n ($mode) succeeded"
  # The same text whatever the cause, but for the count.
  sed 's/[0-9] of 5/N of 5/g' "$T/attempt-$n" >"$T/attempt-$n.norm"
}
attempt 1 local "$W/pkcs1.wrapped"
attempt 2 server "$W/short.wrapped"
attempt 3 local "$W/short.wrapped"
attempt 4 server "$W/pkcs1.wrapped"
attempt 5 local "$W/short.wrapped"
check "one error for a bad padding and for a wrong length" cmp -s "$T/attempt-1.norm" "$T/attempt-2.norm"
for n in 3 4 5; do check "attempt $n: the same error" cmp -s "$T/attempt-1.norm" "$T/attempt-$n.norm"; done
absent "the error does not say which" "$T/attempt-1" -iE -e 'OAEP decoding|16 bytes|key material is [0-9]'
check "the error counts the attempts" grep -q "5 of 5" "$T/attempt-5"
expect_error "locked for ekm in local mode" "locked after 5 failed" -- \
  "$EKM" --data-dir "$D" key import -w acme -e stage --material "$W/stage.wrapped" --token-file "$W/stage/import-token" >/dev/null
expect_error "locked for ekmd too" "locked after 5 failed" -- \
  as KM_TOKEN "$EKM" --server "$S" key import -w acme -e stage --material "$W/stage.wrapped" --token-file "$W/stage/import-token" >/dev/null
as KM_TOKEN "$EKM" --server "$S" key show -w acme -e stage >"$T/show" 2>&1
check "stage is still on the platform key" grep -q "provider:      platform" "$T/show"

# kill -9: whatever ekmd leaves behind holds no destroyed key either.
kill9_ekmd
cat "$T/prod.hex" "$T/dev-v1.hex" "$T/material.hex" >"$T/all.hex"
gone "every destroyed blob (after kill -9)" "$T/all.hex"
# And ekmd comes back on what it left, and stops cleanly (exit status 0, no crash report).
check "ekmd starts after the kill -9" start_ekmd ekmd --data-dir "$D" --key-cache-ttl 1
check "…and serves" grep -q "provider:      platform" \
  <(as KM_TOKEN "$EKM" --server "$S" key show -w acme -e stage 2>&1)
stop_ekmd
summary
