#!/usr/bin/env bash
# End-to-end: the tamper-evident audit log (docs/audit.md). Records are edited, deleted and
# reordered in the SQLite store with the sqlite3 CLI and `ekm audit verify` catches each one,
# naming it; a cut-off tail is caught against a kept checkpoint; data-plane usage counts
# appear through ekmd (--audit-usage-interval 1) and in local mode.
#   audit_test.sh EKM_BINARY EKMD_BINARY
set -uo pipefail
EKM=$1
EKMD=$2
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
setup_test audit-test

D="$T/data"
L() { "$EKM" --data-dir "$D" "$@"; }
check "init" bash -c "'$EKM' --data-dir '$D' init >'$T/init.out'"
# ekmd writes no bootstrap-admin-token over a directory `ekm init` made: the admin token is init's.
ADMIN_TOKEN=$(sed -n 's/^admin token: //p' "$T/init.out")
check "init prints the admin token" grep -q '^ekm_' <<<"$ADMIN_TOKEN"
check "the audit signing key is 0600 PKCS#8" test "$(stat -c %a "$D/audit-signing.key")" = 600
check "PKCS#8 PEM" grep -q "BEGIN PRIVATE KEY" "$D/audit-signing.key"

# --- server mode: records, usage counts, checkpoints -----------------------------------------
check "ekmd starts" start_ekmd ekmd --data-dir "$D" --audit-usage-interval 1 \
  --audit-checkpoint-interval 3600
setup_tokens "$D" "$S" acme || fail "setup_tokens"
R() { EKM_TOKEN=$1 "$EKM" --server "$S" "${@:2}"; }
check "environment create" R "$OWNER_TOKEN" environment create acme prod >/dev/null
echo hello >"$T/p"
for _ in 1 2 3; do
  R "$APP_TOKEN" encrypt -w acme -e prod <"$T/p" >"$T/ct" || fail "encrypt"
done
check "decrypt" cmp -s "$T/p" <(R "$APP_TOKEN" decrypt -w acme -e prod <"$T/ct")
usage_seen() {
  for _ in $(seq 100); do
    R "$AUDITOR_TOKEN" --json audit list -w acme -t data_plane.usage >"$T/usage.jsonl" 2>/dev/null
    python3 - "$T/usage.jsonl" <<'PY' && return 0
import json, sys
enc = dec = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    for c in r["detail"]["counts"]:
        assert c["scope"] == "default", c
        enc += c["count"] if c["operation"] == "encrypt" else 0
        dec += c["count"] if c["operation"] == "decrypt" else 0
sys.exit(0 if (enc, dec) == (3, 1) else 1)
PY
    sleep 0.1
  done
  return 1
}
check "usage counts appear (3 encrypt, 1 decrypt, one record per minute, not per request)" usage_seen
check "workspace.created is recorded in the workspace chain" grep -q workspace.created \
  <(R "$AUDITOR_TOKEN" audit list -w acme)
check "and in the platform chain" grep -q '"workspace":"acme"' \
  <(R "$ADMIN_TOKEN" --json audit list --platform -t workspace.created)
check "GET …/audit filters by environment" python3 -c '
import json, sys, urllib.request
q = urllib.request.Request(sys.argv[1] + "/v1/workspaces/acme/audit?environment=prod&limit=1000",
                           headers={"Authorization": "Bearer " + sys.argv[2]})
r = json.load(urllib.request.urlopen(q))
assert r["records"] and all(x["environment"] == "prod" for x in r["records"]), r
assert all(len(x["hash"]) == 64 and x["seq"] >= 1 for x in r["records"]), r' "$S" "$AUDITOR_TOKEN"
check "export is JSON lines" bash -c "curl -fsS -H 'Authorization: Bearer $AUDITOR_TOKEN' -D '$T/h' '$S/v1/workspaces/acme/audit/export' >'$T/e' && grep -qi 'content-type: application/x-ndjson' '$T/h'"
R "$AUDITOR_TOKEN" audit public-key >"$T/audit.pub"
check "public key (PEM, kept by the auditor)" grep -q 'BEGIN PUBLIC KEY' "$T/audit.pub"
check "checkpoint --output" R "$AUDITOR_TOKEN" audit checkpoint -w acme --output "$T/kept.json" 2>/dev/null
check "verify through the server" grep -q "^ok:" \
  <(R "$AUDITOR_TOKEN" audit verify -w acme --checkpoint "$T/kept.json" --public-key "$T/audit.pub")
# http_as TOKEN ARGS...: curl with a bearer token; prints the HTTP status.
http_as() { curl -s -o "$T/err.json" -w '%{http_code}' -H "Authorization: Bearer $1" "${@:2}"; }
code=$(http_as "$ADMIN_TOKEN" "$S/v1/workspaces/nope/audit")
check "audit of an unknown workspace is 404 (to the admin)" test "$code" = 404
code=$(http_as "$AUDITOR_TOKEN" "$S/v1/workspaces/nope/audit")
check "…and 403 to an auditor of another workspace" test "$code" = 403
code=$(http_as "$AUDITOR_TOKEN" "$S/v1/workspaces/acme/audit?limit=0")
check "limit=0 is 400" test "$code" = 400
# The roles of the audit routes (the rule column of src/ekm/api/operations.cc): admin, owner or auditor for a workspace's chain, the
# admin alone for the platform chain; the public key to admin, owner and auditor.
check "owner reads the audit" test "$(http_as "$OWNER_TOKEN" "$S/v1/workspaces/acme/audit")" = 200
check "key-manager may not read the audit" test "$(http_as "$KM_TOKEN" "$S/v1/workspaces/acme/audit")" = 403
check "app may not export the audit" test "$(http_as "$APP_TOKEN" "$S/v1/workspaces/acme/audit/export")" = 403
check "auditor may not read the platform chain" test "$(http_as "$AUDITOR_TOKEN" "$S/v1/audit")" = 403
check "admin reads the platform chain" test "$(http_as "$ADMIN_TOKEN" "$S/v1/audit")" = 200
check "app may not read the public key" test "$(http_as "$APP_TOKEN" "$S/v1/audit/public-key")" = 403
check "no token: 401" test "$(http_as "" "$S/v1/workspaces/acme/audit")" = 401
code=$(http_as "$ADMIN_TOKEN" -X POST -H 'Content-Type: application/json' -d '{"x":1}' \
  "$S/v1/audit/checkpoints")
check "a checkpoint request with fields is 400" test "$code" = 400
code=$(http_as "$AUDITOR_TOKEN" -X POST "$S/v1/audit/checkpoints")
check "POST /v1/audit/checkpoints refuses an auditor" test "$code" = 403
code=$(http_as "$ADMIN_TOKEN" -X POST "$S/v1/audit/checkpoints")
check "POST /v1/audit/checkpoints is 201" test "$code" = 201
# An export over 1 MiB (each refusal is a record): verify reads one of any length, line by line.
check "4000 refusals recorded" python3 - "$S" "$KM_TOKEN" <<'PY'
import http.client, sys, time, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
c = http.client.HTTPConnection(u.hostname, u.port)
n = 0
while n < 4000:
    c.request("GET", "/v1/workspaces/acme/audit", headers={"Authorization": "Bearer " + sys.argv[2]})
    r = c.getresponse()
    r.read()
    if r.status == 429:
        time.sleep(float(r.getheader("Retry-After", "1")))
        continue
    assert r.status == 403, r.status
    n += 1
PY
stop_ekmd
q() { sqlite3 "$D/ekm.db" "$1"; }
check "ekmd checkpoints every advanced chain at shutdown" test \
  "$(q "SELECT MAX(seq) FROM audit_checkpoints WHERE chain='acme'")" = \
  "$(q "SELECT MAX(seq) FROM audit_records WHERE chain='acme'")"

# --- local mode: verify, then tamper with the store --------------------------------------------
echo data | L encrypt -w acme -e prod >/dev/null
check "local mode counts usage when the service closes" grep -q '"operation":"encrypt","scope":"default"\|"count":1,"operation":"encrypt"' \
  <(L --json audit list -w acme -t data_plane.usage)
check "local verify passes" grep -q "^ok:" <(L audit verify -w acme)
L audit export -w acme >"$T/export.jsonl"
check "the export is over 1 MiB" test "$(stat -c %s "$T/export.jsonl")" -gt 1048576
check "offline verify of an export passes" grep -q "^ok:" \
  <(L audit verify --input "$T/export.jsonl" --checkpoint "$T/kept.json" --public-key "$T/audit.pub")
check "…and of one on standard input" grep -q "^ok: 40[0-9][0-9] record" \
  <(L audit verify --input - <"$T/export.jsonl")
DB="$D/ekm.db"
cp "$DB" "$T/pristine.db"
restore() { cp "$T/pristine.db" "$DB"; rm -f "$DB-wal" "$DB-shm"; }
id_of() { sqlite3 "$DB" "SELECT id FROM audit_records WHERE chain='acme' AND seq=$1"; }

# An edit: one record's detail changed in place.
ID=$(id_of 2)
sqlite3 "$DB" "UPDATE audit_records SET detail='{\"edited\":true}' WHERE id=$ID"
expect_error "an edited record is caught and named" "record seq 2 (id $ID" -- L audit verify -w acme
check "…as edited" grep -q "edited" "$T/out"
restore

# A deletion.
ID=$(id_of 3)
sqlite3 "$DB" "DELETE FROM audit_records WHERE id=$ID"
expect_error "a deleted record is caught" "seq 3 before it are missing" -- L audit verify -w acme
restore

# A reorder: two records swap places (their ids).
A=$(id_of 2); B=$(id_of 3)
sqlite3 "$DB" "UPDATE audit_records SET id=-1 WHERE id=$A; UPDATE audit_records SET id=$A WHERE id=$B; UPDATE audit_records SET id=$B WHERE id=-1"
expect_error "a reorder is caught and named" "record seq 3" -- L audit verify -w acme
check "…as out of order" grep -q "out of order\|does not link" "$T/out"
restore

# A cut-off tail: still a valid chain alone, caught against the kept checkpoint.
KEPT_SEQ=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["seq"])' "$T/kept.json")
sqlite3 "$DB" "DELETE FROM audit_records WHERE chain='acme' AND seq>=$((KEPT_SEQ - 1)); DELETE FROM audit_checkpoints"
check "the cut chain alone verifies (why checkpoints are kept outside)" grep -q "^ok:" <(L audit verify -w acme)
expect_error "a cut-off tail is caught against the kept checkpoint" "the tail after it was cut off" -- \
  L audit verify -w acme --checkpoint "$T/kept.json" --public-key "$T/audit.pub"
restore

# A forged checkpoint file.
python3 -c '
import json, sys
c = json.load(open(sys.argv[1])); c["seq"] += 1
json.dump(c, open(sys.argv[2], "w"))' "$T/kept.json" "$T/forged.json"
expect_error "a forged checkpoint is caught" "invalid signature" -- \
  L audit verify --input "$T/export.jsonl" --checkpoint "$T/forged.json" --public-key "$T/audit.pub"
expect_error "verify needs a chain" "no chain given" -- L audit verify

summary
