#!/usr/bin/env bash
# End-to-end: no admin token can obtain a token that reads data (issue 12). Through ekmd and the
# CLI, as a platform and its customer would: the admin creates a workspace's first owner and no
# app, key-manager or auditor token, no second owner while one is valid, and cannot revoke owner
# tokens; the owner manages the rest; once every owner token is revoked the admin may create
# one, a recovery the workspace's own audit chain shows. Then the README's "Using ekm" block,
# run verbatim (only the port and PATH changed).
#   token_custody_test.sh EKM_BINARY EKMD_BINARY SOURCE_DIR
set -uo pipefail
EKM=$1
EKMD=$2
SRC=$3
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
setup_test token-custody-test
at_exit '[ -s "$T/readme/ekmd.pid" ] && kill -9 "$(cat "$T/readme/ekmd.pid")" 2>/dev/null'

D="$T/data"
check "ekmd starts" start_ekmd ekmd --data-dir "$D"
for _ in $(seq 50); do [ -s "$D/bootstrap-admin-token" ] && break; sleep 0.1; done
ADMIN=$(head -n1 "$D/bootstrap-admin-token")
R() { EKM_TOKEN=$1 "$EKM" --server "$S" "${@:2}"; }
# quiet COMMAND…: its output hidden, its errors shown only when it fails.
quiet() { "$@" >/dev/null 2>"$T/quiet.err" || { cat "$T/quiet.err" >&2; return 1; }; }
check "admin: workspace create" quiet R "$ADMIN" workspace create acme
check "admin: environment create" quiet R "$ADMIN" environment create acme prod

# The admin never creates a token that reads data, and says who does.
for role in app key-manager auditor; do
  expect_error "admin creating a $role token is refused" "created by its owner" -- \
    R "$ADMIN" token create -w acme -r "$role"
  check "…with the way to do it" grep -qF -- "-w acme -r owner" "$T/err"
done
OWNER=$(R "$ADMIN" token create -w acme -r owner 2>/dev/null)
check "admin creates acme's first owner" grep -Eq '^ekm_[0-9a-f]{16}_' <<<"$OWNER"
OWNER_ID=$(cut -d_ -f2 <<<"$OWNER")
expect_error "admin creating a second owner while one is valid" "has a valid owner token" -- \
  R "$ADMIN" token create -w acme -r owner
expect_error "admin revoking an owner token" "cannot revoke owner tokens" -- \
  R "$ADMIN" token revoke "$OWNER_ID"

# The owner manages its workspace's tokens, a second owner too.
APP=$(R "$OWNER" token create -w acme -r app -e prod 2>/dev/null)
check "owner creates an app token" grep -Eq '^ekm_' <<<"$APP"
AUDITOR=$(R "$OWNER" token create -w acme -r auditor 2>/dev/null)
check "owner creates an auditor token" grep -Eq '^ekm_' <<<"$AUDITOR"
OWNER2=$(R "$OWNER" token create -w acme -r owner 2>/dev/null)
check "owner creates a second owner" grep -Eq '^ekm_' <<<"$OWNER2"
check "owner revokes the other owner" quiet R "$OWNER" token revoke "$(cut -d_ -f2 <<<"$OWNER2")"
echo "card 4242" >"$T/p"
R "$APP" encrypt -w acme -e prod <"$T/p" >"$T/ct" || fail "app encrypt"

# Every owner token revoked (the owner revokes its own): the admin may create one again, and
# acme's audit chain shows that recovery to its auditor.
check "owner revokes its own token" quiet R "$OWNER" token revoke "$OWNER_ID"
OWNER3=$(R "$ADMIN" token create -w acme -r owner --description "recovery INC-7" 2>/dev/null)
check "admin recovers the workspace with a new owner" grep -Eq '^ekm_' <<<"$OWNER3"
ADMIN_ID=$(cut -d_ -f2 <<<"$ADMIN")
R "$AUDITOR" --json audit list -w acme -t token.created >"$T/created.jsonl" 2>"$T/err" ||
  fail "audit list: $(cat "$T/err")"
check "acme's chain shows the recovery: the admin, the role, the token id, never the secret" \
  python3 - "$T/created.jsonl" "$ADMIN_ID" "$(cut -d_ -f2 <<<"$OWNER3")" "${OWNER3:21}" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
last = recs[-1]
assert last["actor"] == "token:" + sys.argv[2], last
assert last["detail"]["role"] == "owner" and last["detail"]["token_id"] == sys.argv[3], last
assert last["detail"]["created_by_role"] == "admin" and last["detail"]["recovery"] is True, last
assert recs[0]["detail"]["recovery"] is False, recs[0]  # the first owner: not a recovery
assert all(sys.argv[4] not in json.dumps(r) for r in recs)
PY
check "…and the revocations, by the owner" python3 -c '
import json, sys
recs = [json.loads(l) for l in sys.stdin]
assert [r["detail"]["revoked_by_role"] for r in recs] == ["owner", "owner"], recs' \
  < <(R "$AUDITOR" --json audit list -w acme -t token.revoked)
check "the platform chain has the admin's token creations too" grep -q '"workspace":"acme"' \
  <(R "$ADMIN" --json audit list --platform -t token.created)
check "the app token still decrypts" cmp -s "$T/p" <(R "$APP" decrypt -w acme -e prod <"$T/ct")
stop_ekmd

# --- README.md "Using ekm": the block verbatim, on a free port, with a wait for ekmd -----------
mkdir -p "$T/readme/bin"
ln -s "$(realpath "$EKM")" "$T/readme/bin/ekm"
ln -s "$(realpath "$EKMD")" "$T/readme/bin/ekmd"
RPORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
awk '/^## Using ekm/ {on = 1} on && /^```sh/ {grab = 1; next} grab && /^```/ {exit} grab' \
  "$SRC/README.md" >"$T/readme/block.sh"
check "the README's block is found" grep -q "token create --workspace acme --role owner" "$T/readme/block.sh"
{
  echo "set -e"
  sed -e "s|^export PATH=\$PWD/build/quickstart:\$PATH|export PATH=$T/readme/bin:\$PATH|" \
      -e "s|127\.0\.0\.1:8080|127.0.0.1:$RPORT|g" \
      -e 's|^\(ekmd .*\) &$|{ set +e; \1 \& echo $! >ekmd.pid; wait $!; echo $? >ekmd.rc; } \&\nfor _ in $(seq 200); do curl -fsS "http://127.0.0.1:'"$RPORT"'/healthz" >/dev/null 2>\&1 \&\& break; sleep 0.05; done|' \
      "$T/readme/block.sh"
} >"$T/readme/run.sh"
head -c 100000 /dev/urandom >"$T/readme/invoices.pdf"
cp "$T/readme/invoices.pdf" "$T/readme/original.pdf"
(cd "$T/readme" && env -u EKM_TOKEN -u EKM_SERVER -u EKM_DATA_DIR bash run.sh >out 2>err)
rc=$?
check "the README block runs, every command exiting 0 (rc $rc: $(tail -n 3 "$T/readme/err" | tr '\n' ' '))" test $rc -eq 0
check "…the round trip returns the file" cmp -s "$T/readme/original.pdf" "$T/readme/invoices.pdf"
check "…\`ekm token list\` as the owner lists the app token" grep -q "app" "$T/readme/out"
# The README's ekmd (its output in the block's stderr): SIGTERM, exit status 0, no crash report.
kill -TERM "$(cat "$T/readme/ekmd.pid")"
for _ in $(seq 600); do [ -s "$T/readme/ekmd.rc" ] && break; sleep 0.05; done
check "the README's ekmd exits 0 on SIGTERM (exit status: $(cat "$T/readme/ekmd.rc" 2>/dev/null || echo none))" \
  test "$(cat "$T/readme/ekmd.rc" 2>/dev/null)" = 0
check "…and it did run (its log)" grep -q "listening on" "$T/readme/err"
absent "…and logged no crash report" "$T/readme/err" -E -e "$CRASH_PATTERN"
summary
