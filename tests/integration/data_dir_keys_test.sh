#!/usr/bin/env bash
# End-to-end (issue 12): a data directory opens only with its own keys, and a store edited
# behind ekm's back is refused.
# - ekmd, `ekm` and `ekm init` refuse a data directory whose root.key was removed (never a new
#   one), swapped for another data directory's, is a symbolic link, not a regular file, or
#   owned by another user; the audit signing key the same: one line on stderr, exit non-zero,
#   nothing created or changed in the data directory.
# - An EK row (cmk_provider, cmk_key_id, wrapped), an environment's current-EK pointer or the
#   workspace default CMK edited with sqlite3: every use of the environment fails with an
#   error naming it and "the store was modified outside ekm", and no data key is ever wrapped
#   under the edited EK (locally and through ekmd).
#   data_dir_keys_test.sh EKM_BINARY EKMD_BINARY
set -uo pipefail
EKM=$1
EKMD=$2
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
setup_test data-dir-keys-test
D="$T/data"
OTHER="$T/other"
sql() { sqlite3 -cmd ".timeout 5000" "$D/ekm.db" "$@"; }

"$EKM" --data-dir "$D" init >"$T/init.out" || fail "init"
ADMIN_TOKEN=$(sed -n 's/^admin token: //p' "$T/init.out")
check "init another data directory" "$EKM" --data-dir "$OTHER" init >/dev/null
check "workspace create" "$EKM" --data-dir "$D" workspace create acme >/dev/null
for e in prod dev; do check "environment create $e" "$EKM" --data-dir "$D" environment create acme $e >/dev/null; done
echo "card 4242" | "$EKM" --data-dir "$D" encrypt -w acme -e prod --text >"$T/ct" || fail "encrypt"
decrypts() { "$EKM" --data-dir "$D" decrypt -w acme -e prod <"$T/ct" >"$T/pt" && grep -q "card 4242" "$T/pt"; }
check "decrypt" decrypts

# What the data directory holds: names, types and content.
snapshot() { (cd "$D" && find . -printf '%p %y %U %m\n' | sort && find . -type f -exec sha256sum {} + | sort); }
# refused LABEL SUBSTRING: ekmd, a local command and `ekm init` all refuse with one line naming
# SUBSTRING, and the data directory is exactly as before.
refused() {
  local label=$1 want=$2
  snapshot >"$T/before"
  # ekmd must not start: if it does, timeout stops it (and the check fails on its log lines).
  expect_error "$label: ekmd refuses" "$want" -- timeout 10 "$EKMD" --data-dir "$D" --listen 127.0.0.1:0
  expect_error "$label: ekm refuses" "$want" -- "$EKM" --data-dir "$D" environment list acme
  expect_error "$label: ekm init refuses" "$want" -- "$EKM" --data-dir "$D" init
  snapshot >"$T/after"
  check "$label: nothing created or changed" cmp -s "$T/before" "$T/after"
}
works() { check "$1: works again" decrypts; }

# --- the root key file ---------------------------------------------------------------------
mv "$D/root.key" "$T/root.key.saved"
refused "root.key missing" "root key file $D/root.key is missing"
check "root.key missing: no new root key" test ! -e "$D/root.key"
cp -p "$OTHER/root.key" "$D/root.key"
refused "root.key of another data directory" "is not the root key of this store"
rm "$D/root.key"
ln -s "$T/root.key.saved" "$D/root.key"
refused "root.key a symbolic link" "is a symbolic link"
rm "$D/root.key"
mkdir -m 700 "$D/root.key"
refused "root.key a directory" "is not a regular file"
rmdir "$D/root.key"
cp -p "$T/root.key.saved" "$D/root.key"
chown 4242 "$D/root.key"
refused "root.key of another user" "owned by uid 4242"
chown "$(id -u)" "$D/root.key"
works "the root key back"

# --- the audit signing key -----------------------------------------------------------------
mv "$D/audit-signing.key" "$T/audit.saved"
refused "audit-signing.key missing" "audit signing key file $D/audit-signing.key is missing"
check "audit-signing.key missing: no new one" test ! -e "$D/audit-signing.key"
cp -p "$OTHER/audit-signing.key" "$D/audit-signing.key"
refused "audit-signing.key of another data directory" "is not the audit signing key of this store"
rm "$D/audit-signing.key"
ln -s "$T/audit.saved" "$D/audit-signing.key"
refused "audit-signing.key a symbolic link" "is a symbolic link"
rm "$D/audit-signing.key"
cp -p "$T/audit.saved" "$D/audit-signing.key"
chown 4242 "$D/audit-signing.key"
refused "audit-signing.key of another user" "owned by uid 4242"
chown "$(id -u)" "$D/audit-signing.key"
works "the audit signing key back"

# --- rows edited with sqlite3 --------------------------------------------------------------
PROD=$(sql "SELECT e.id FROM environments e JOIN workspaces w ON w.id = e.workspace_id WHERE w.name = 'acme' AND e.name = 'prod'")
DEV=$(sql "SELECT e.id FROM environments e JOIN workspaces w ON w.id = e.workspace_id WHERE w.name = 'acme' AND e.name = 'dev'")
dks() { sql "SELECT COUNT(*) FROM data_keys"; }
# tampered LABEL: a new scope and a decrypt of prod both fail naming prod; no DK is created.
tampered() {
  local n; n=$(dks)
  expect_error "$1: encrypt refused" "acme/prod" -- "$EKM" --data-dir "$D" encrypt -w acme -e prod -s "new-$RANDOM" --text <<<"x"
  grep -q "the store was modified outside ekm" "$T/err" || fail "$1: the error does not say so: $(cat "$T/err")"
  expect_error "$1: decrypt refused" "the store was modified outside ekm" -- "$EKM" --data-dir "$D" decrypt -w acme -e prod <"$T/ct"
  check "$1: no data key created" test "$(dks)" = "$n"
}
KEYID=$(sql "SELECT cmk_key_id FROM environment_keys WHERE environment_id = $PROD AND version = 1")
sql "UPDATE environment_keys SET cmk_key_id = 'arn:aws:kms:us-east-1:999999999999:key/attacker' WHERE environment_id = $PROD"
tampered "EK row's cmk_key_id"
sql "UPDATE environment_keys SET cmk_key_id = '$KEYID' WHERE environment_id = $PROD"
works "cmk_key_id put back"
sql "UPDATE environment_keys SET cmk_provider = 'imported' WHERE environment_id = $PROD"
tampered "EK row's cmk_provider"
sql "UPDATE environment_keys SET cmk_provider = 'platform' WHERE environment_id = $PROD"
works "cmk_provider put back"
WRAPPED=$(sql "SELECT hex(wrapped) FROM environment_keys WHERE environment_id = $PROD AND version = 1")
sql "UPDATE environment_keys SET wrapped = (SELECT wrapped FROM environment_keys WHERE environment_id = $DEV) WHERE environment_id = $PROD AND version = 1"
tampered "EK row's wrapped (another environment's EK)"
sql "UPDATE environment_keys SET wrapped = X'$WRAPPED' WHERE environment_id = $PROD AND version = 1"
works "wrapped put back"
# The current-EK pointer moved to an EK row the attacker added.
sql "INSERT INTO environment_keys (environment_id, version, cmk_provider, cmk_key_id, wrapped, created_at) SELECT $PROD, 2, cmk_provider, cmk_key_id, wrapped, created_at FROM environment_keys WHERE environment_id = $DEV AND version = 1; UPDATE environments SET current_ek_version = 2 WHERE id = $PROD"
tampered "current-EK pointer"
# Through ekmd too (a fresh process: nothing cached).
check "ekmd starts on the edited store" start_ekmd ekmd --data-dir "$D"
check "setup_tokens" setup_tokens "$D" "$S" acme
n=$(dks)
code=$(curl -sS -o "$T/body" -w '%{http_code}' -X POST -H "Authorization: Bearer $APP_TOKEN" -H 'Content-Type: application/json' \
  --data '{"plaintext": "eA==", "scope": "via-ekmd"}' "$S/v1/workspaces/acme/environments/prod/encrypt")
check "ekmd: encrypt refused" test "$code" != 200
check "ekmd: the answer says the store was modified" grep -q "the store was modified outside ekm" "$T/body"
check "ekmd: no data key created" test "$(dks)" = "$n"
stop_ekmd
# The workspace default CMK: a new environment would get its first EK under it.
WS=$(sql "SELECT id FROM workspaces WHERE name = 'acme'")
sql "INSERT INTO workspace_default_keys (workspace_id, cmk_provider, cmk_key_id, set_at, actor) VALUES ($WS, 'aws-kms', 'arn:aws:kms:us-east-1:999999999999:key/attacker', 0, 'cli:mallory')"
expect_error "workspace default CMK: environment create refused" "the store was modified outside ekm" -- \
  "$EKM" --data-dir "$D" environment create acme fresh
check "workspace default CMK: no environment created" test "$(sql "SELECT COUNT(*) FROM environments WHERE name = 'fresh'")" = 0
summary
