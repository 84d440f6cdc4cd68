#!/usr/bin/env bash
# End-to-end: ekmd reads its key cache settings from a --config TOML file,
# and `ekm environment status` / `ekm cache stats` answer the same in local and server mode.
#   key_status_test.sh EKM_BINARY EKMD_BINARY
set -uo pipefail
EKM=$1
EKMD=$2
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
setup_test key-status-test

for sub in "environment status" "cache" "cache stats"; do
  # shellcheck disable=SC2086
  check "ekm $sub --help" "$EKM" $sub --help >/dev/null
done
check "ekmd --help names --key-cache-max-entries" grep -q -- --key-cache-max-entries <("$EKMD" --help)

D="$T/data"
check "init" "$EKM" --data-dir "$D" init >"$T/init.out"
ADMIN_TOKEN=$(sed -n 's/^admin token: \(ekm_.*\)$/\1/p' "$T/init.out")
check "workspace create" "$EKM" --data-dir "$D" workspace create acme >/dev/null
check "environment create" "$EKM" --data-dir "$D" environment create acme prod >/dev/null
echo hello >"$T/p"
check "encrypt" "$EKM" --data-dir "$D" encrypt -w acme -e prod <"$T/p" >"$T/ct"

# --- local mode -----------------------------------------------------------------------------
check "local: status is healthy" grep -q "state:          healthy" \
  <("$EKM" --data-dir "$D" environment status -w acme -e prod)
"$EKM" --data-dir "$D" --json environment status -w acme -e prod >"$T/st.json"
check "local: status --json" python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
assert s["state"] == "healthy" and s["key_cache_ttl_seconds"] == 300, s
assert s["grace_period_seconds"] == 0 and s["last_error"] is None and s["last_success"], s
assert s["cmk"] == {"provider": "platform", "key_id": "root"}, s' "$T/st.json"
expect_error "local: unknown environment" "nope" -- \
  "$EKM" --data-dir "$D" environment status -w acme -e nope
check "local: cache stats" grep -q "TTL:            300s" <("$EKM" --data-dir "$D" cache stats)

# --- server mode, settings from a TOML config file ------------------------------------------
cat >"$T/ekmd.toml" <<TOML
data-dir = "$D"
listen = "127.0.0.1:0"
key-cache-ttl = 60
key-cache-max-entries = 500
TOML
check "ekmd starts from --config" start_ekmd ekmd --config "$T/ekmd.toml"
check "the config's TTL is logged" grep -q "key cache TTL 60s" "$T/ekmd.log"
check "setup_tokens" setup_tokens "$D" "$S" acme
check "server: decrypt" cmp -s "$T/p" <(EKM_TOKEN=$APP_TOKEN "$EKM" --server "$S" decrypt -w acme -e prod <"$T/ct")
EKM_TOKEN=$ADMIN_TOKEN "$EKM" --server "$S" --json cache stats >"$T/cache.json"
check "server: cache stats from the config" python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
assert s["ttl_seconds"] == 60 and s["max_entries"] == 500, s
assert s["provider_calls"]["ok"] >= 1 and s["entries"] >= 2, s' "$T/cache.json"
EKM_TOKEN=$KM_TOKEN "$EKM" --server "$S" --json environment status -w acme -e prod >"$T/st2.json"
check "server: status --json uses the deployment TTL" python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
assert s["state"] == "healthy" and s["key_cache_ttl_seconds"] == 60, s' "$T/st2.json"
check "GET /v1/key-cache" grep -q '"hits"' <(curl -fsS -H "Authorization: Bearer $ADMIN_TOKEN" "$S/v1/key-cache")
check "GET …/status" grep -q '"state":"healthy"' \
  <(curl -fsS -H "Authorization: Bearer $AUDITOR_TOKEN" "$S/v1/workspaces/acme/environments/prod/status")
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $AUDITOR_TOKEN" "$S/v1/workspaces/acme/environments/nope/status")
check "GET …/status of an unknown environment is 404" test "$code" = 404
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ADMIN_TOKEN" -X POST "$S/v1/key-cache")
check "POST /v1/key-cache is 405" test "$code" = 405
stop_ekmd
summary
