#!/usr/bin/env bash
# End-to-end: key rotation, rewrap, environment settings, events, crypto-shred
# and the workspace default CMK through the ekm CLI, in local mode and against a real ekmd.
#   lifecycle_test.sh EKM_BINARY EKMD_BINARY
set -uo pipefail
EKM=$1
EKMD=$2
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
setup_test lifecycle-test

D="$T/data"
"$EKM" --data-dir "$D" init >"$T/init.out"
ADMIN_TOKEN=$(sed -n 's/^admin token: \(ekm_.*\)$/\1/p' "$T/init.out")
"$EKM" --data-dir "$D" workspace create acme >/dev/null
"$EKM" --data-dir "$D" environment create acme prod >/dev/null
"$EKM" --data-dir "$D" environment create acme dev >/dev/null

for cmd in "key rotate" "rewrap" "environment shred" "environment set" "environment show" \
           "workspace set-default-key" "workspace show" "events"; do
  # shellcheck disable=SC2086
  check "--help: $cmd" "$EKM" $cmd --help >/dev/null
done

# A scenario run in both modes: $1 is a label, the rest the mode's flags.
scenario() {
  local m=$1; shift
  # Each call with the role it needs (local mode ignores the token): app for the data plane,
  # key-manager for key changes and reads, auditor for events.
  local A=(env "EKM_TOKEN=${APP_TOKEN:-}" "$EKM" "$@")
  local K=(env "EKM_TOKEN=${KM_TOKEN:-}" "$EKM" "$@")
  local U=(env "EKM_TOKEN=${AUDITOR_TOKEN:-}" "$EKM" "$@")
  echo -n "before rotation" | "${A[@]}" encrypt -w acme -e prod -s orders >"$T/$m.old.ct"
  echo -n "text form" | "${A[@]}" encrypt -w acme -e prod -s orders --text >"$T/$m.old.txt"
  check "$m: EK rotation" grep -q "environment key v.* -> v" <("${K[@]}" key rotate -w acme -e prod)
  check "$m: DK rotation of a scope" grep -q 'scope "orders"' <("${K[@]}" key rotate -w acme -e prod -s orders)
  check "$m: DK rotation, all scopes, JSON" grep -q '"kind": "dk"' <("${K[@]}" --json key rotate -w acme -e prod --all-scopes)
  # scopes and key history (GET …/scopes, …/key/history): a reader's.
  check "$m: scopes list the rotated scope" grep -qE '^orders +v[2-9]' <("${U[@]}" environment scopes -w acme -e prod)
  check "$m: scopes as JSON" grep -q '"max_messages_per_dk"' <("${U[@]}" --json environment scopes -w acme -e prod)
  "${K[@]}" key validate -w acme -e prod --platform >/dev/null 2>&1
  check "$m: key history has the validation" grep -q "key.validated" <("${U[@]}" key history -w acme -e prod)
  expect_error "$m: key history, bad limit" "--limit" -- "${U[@]}" key history -w acme -e prod --limit 0
  check "$m: old data decrypts" grep -q "before rotation" <("${A[@]}" decrypt -w acme -e prod <"$T/$m.old.ct")
  # rewrap: binary in, binary out, to a file; text stays text on stdout.
  "${A[@]}" rewrap -w acme -e prod --in "$T/$m.old.ct" --out "$T/$m.new.ct" 2>"$T/$m.rewrap.err"
  check "$m: rewrap reports the versions" grep -q "data key v[0-9]* -> v" "$T/$m.rewrap.err"
  check "$m: rewrapped ciphertext decrypts" grep -q "before rotation" <("${A[@]}" decrypt -w acme -e prod <"$T/$m.new.ct")
  absent "$m: rewrap never prints the plaintext" "$T/$m.new.ct" -a -e 'before rotation'
  "${A[@]}" rewrap -w acme -e prod <"$T/$m.old.txt" >"$T/$m.new.txt" 2>/dev/null
  check "$m: rewrap keeps the text form" grep -q "^ekm1:" "$T/$m.new.txt"
  check "$m: rewrapped text decrypts" grep -q "text form" <("${A[@]}" decrypt -w acme -e prod <"$T/$m.new.txt")
  expect_error "$m: rewrap in the wrong environment" 'belongs to workspace "acme", environment "prod"' -- "${A[@]}" rewrap -w acme -e dev --in "$T/$m.old.ct"
  # settings
  check "$m: environment set" grep -q "dk-rotation-period *7d" <("${K[@]}" environment set -w acme -e prod --dk-rotation-period 7d --key-cache-ttl 5m)
  check "$m: environment show marks defaults" grep -q "ek-rotation-period *none (manual) \*" <("${K[@]}" environment show -w acme -e prod)
  check "$m: settings JSON" grep -q '"key_cache_ttl_seconds": 300' <("${K[@]}" --json environment show -w acme -e prod)
  check "$m: --reset" grep -q "key-cache-ttl *deployment TTL \*" <("${K[@]}" environment set -w acme -e prod --reset key-cache-ttl --reset dk-rotation-period)
  expect_error "$m: bad duration" "not a duration" -- "${K[@]}" environment set -w acme -e prod --grace-period soon
  expect_error "$m: out of range" "between" -- "${K[@]}" environment set -w acme -e prod --ek-rotation-period 5m
  # events
  check "$m: events table" grep -q "ek.rotated" <("${U[@]}" events -w acme -e prod)
  check "$m: events --type as JSON lines" bash -c "EKM_TOKEN='${AUDITOR_TOKEN:-}' '$EKM' ${*} --json events -w acme --type dk.rotated | head -1 | python3 -c 'import json,sys; e=json.loads(sys.stdin.readline()); assert e[\"type\"]==\"dk.rotated\"'"
  check "$m: events --since" grep -q "settings_changed" <("${U[@]}" events -w acme --since 1h)
  expect_error "$m: events bad time" "is not a time" -- "${U[@]}" events -w acme --since yesterday
  # workspace default CMK
  check "$m: workspace show (platform)" grep -q "platform root (the platform-managed key)" <("${K[@]}" workspace show -w acme)
  expect_error "$m: default key needs a key" "no key given" -- "${K[@]}" workspace set-default-key -w acme
  check "$m: default key set (validated)" grep -q "new environments now start on platform root" <("${K[@]}" workspace set-default-key -w acme --provider platform --key-id root)
  check "$m: workspace show (set)" grep -q "set: .* by " <("${K[@]}" workspace show -w acme)
  expect_error "$m: default key refused" "platform provider has no key" -- "${K[@]}" workspace set-default-key -w acme --provider platform --key-id nope
  check "$m: default key event" grep -q "workspace.default_key_set" <("${U[@]}" events -w acme --type workspace.default_key_set)
  check "$m: default key reset" grep -q "platform root" <("${K[@]}" workspace set-default-key -w acme --reset)
}

scenario local --data-dir "$D"

# Interactive crypto-shred on a terminal: the name, then "shred"; a wrong answer destroys nothing.
if command -v script >/dev/null; then
  "$EKM" --data-dir "$D" environment create acme scratch >/dev/null
  echo -n "scratch data" | "$EKM" --data-dir "$D" encrypt -w acme -e scratch --text >"$T/scratch.ct"
  printf 'scratch\nno\n' | script -qec "$EKM --data-dir $D environment shred -w acme -e scratch" /dev/null >"$T/tty1" 2>&1
  check "interactive shred: a wrong second answer destroys nothing" grep -q "nothing was destroyed" "$T/tty1"
  check "interactive shred: still readable" grep -q "scratch data" <("$EKM" --data-dir "$D" decrypt -w acme -e scratch <"$T/scratch.ct")
  printf 'scratch\nshred\n' | script -qec "$EKM --data-dir $D environment shred -w acme -e scratch" /dev/null >"$T/tty2" 2>&1
  check "interactive shred asks for the name" grep -q "Type the environment's name" "$T/tty2"
  check "interactive shred done" grep -q "crypto-shredded environment acme/scratch" "$T/tty2"
  expect_error "interactive shred: unreadable" "can never be read" -- "$EKM" --data-dir "$D" decrypt -w acme -e scratch <"$T/scratch.ct"
fi
check "local: rotation --due with nothing scheduled" grep -q "nothing to rotate" <("$EKM" --data-dir "$D" key rotate --due)
expect_error "local: --due takes no environment" "takes no" -- "$EKM" --data-dir "$D" key rotate --due -w acme -e prod

# --- server mode ----------------------------------------------------------------------------
check "ekmd starts" start_ekmd ekmd --data-dir "$D" --rotation-check-interval 1
check "setup_tokens" setup_tokens "$D" "$S" acme
scenario server --server "$S"
# --due against a server runs the schedule now (POST /v1/rotations/run): the admin's.
check "server: rotation --due by the admin" grep -q "nothing to rotate" <(env EKM_TOKEN="$ADMIN_TOKEN" "$EKM" --server "$S" key rotate --due)
expect_error "server: --due is the admin's" "needs the role admin" -- env EKM_TOKEN="$KM_TOKEN" "$EKM" --server "$S" key rotate --due
# `repack run` against a server wakes ekmd's repack (POST …/repack/run): a key change's.
check "server: repack run wakes ekmd's repack" grep -qE "ekmd repacks acme/prod now|nothing to repack" <(env EKM_TOKEN="$KM_TOKEN" "$EKM" --server "$S" repack run -w acme -e prod 2>&1)
expect_error "server: repack run is a key change" "needs the role" -- env EKM_TOKEN="$AUDITOR_TOKEN" "$EKM" --server "$S" repack run -w acme -e prod

# The API directly: errors are 4xx with a message.
code=$(curl -s -o "$T/body" -w '%{http_code}' -X PATCH -H "Authorization: Bearer $KM_TOKEN" -H 'Content-Type: application/json' --data '{"nope": 1}' "$S/v1/workspaces/acme/environments/prod/settings")
check "API: unknown setting is 400 ($code)" test "$code" = 400
code=$(curl -s -o "$T/body" -w '%{http_code}' -H "Authorization: Bearer $AUDITOR_TOKEN" "$S/v1/workspaces/acme/events?limit=abc")
check "API: bad limit is 400 ($code)" test "$code" = 400
code=$(curl -s -o "$T/body" -w '%{http_code}' -X POST -H "Authorization: Bearer $APP_TOKEN" -H 'Content-Type: application/json' --data '{"ciphertext": "garbage"}' "$S/v1/workspaces/acme/environments/prod/rewrap")
check "API: garbage rewrap is 400 ($code)" test "$code" = 400
code=$(curl -s -o "$T/body" -w '%{http_code}' -X POST -H "Authorization: Bearer $OWNER_TOKEN" -H 'Content-Type: application/json' --data '{"confirmation": "made-up", "environment": "dev"}' "$S/v1/workspaces/acme/environments/dev/shred")
check "API: unknown shred token is 409 ($code)" test "$code" = 409

# Crypto-shred through the server: non-interactive needs both confirmations.
echo -n "doomed" | EKM_TOKEN=$APP_TOKEN "$EKM" --server "$S" encrypt -w acme -e dev >"$T/dev.ct"
expect_error "shred: a key-manager may not" "needs the role owner" -- env EKM_TOKEN="$KM_TOKEN" "$EKM" --server "$S" environment shred -w acme -e dev --confirm dev --yes-destroy-all-data
expect_error "shred needs both confirmations" "two confirmations" -- env EKM_TOKEN="$OWNER_TOKEN" "$EKM" --server "$S" environment shred -w acme -e dev --confirm dev
expect_error "shred: the name must match" "confirmation names" -- env EKM_TOKEN="$OWNER_TOKEN" "$EKM" --server "$S" environment shred -w acme -e dev --confirm prod --yes-destroy-all-data
check "shred" grep -q "crypto-shredded environment acme/dev" <(EKM_TOKEN=$OWNER_TOKEN "$EKM" --server "$S" environment shred -w acme -e dev --confirm dev --yes-destroy-all-data)
expect_error "shredded: decrypt refused" "was crypto-shredded at" -- env EKM_TOKEN="$APP_TOKEN" "$EKM" --server "$S" decrypt -w acme -e dev <"$T/dev.ct"
expect_error "shredded: local mode refuses too" "can never be read" -- "$EKM" --data-dir "$D" decrypt -w acme -e dev <"$T/dev.ct"
expect_error "shredded: the name stays taken" "crypto-shredded" -- env EKM_TOKEN="$OWNER_TOKEN" "$EKM" --server "$S" environment create acme dev
check "shred event" grep -q "environment.shredded" <(EKM_TOKEN=$AUDITOR_TOKEN "$EKM" --server "$S" events -w acme -e dev)
check "prod untouched" grep -q "before rotation" <(EKM_TOKEN=$APP_TOKEN "$EKM" --server "$S" decrypt -w acme -e prod <"$T/server.old.ct")

# Scheduled rotation in ekmd: a due DK rotates within a few checks, recorded as the schedule.
"$EKM" --data-dir "$D" environment set -w acme -e prod --dk-rotation-period 1h >/dev/null
sqlite3 "$D/ekm.db" "UPDATE data_keys SET created_at = created_at - 7200" 2>/dev/null || \
  python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('UPDATE data_keys SET created_at = created_at - 7200'); c.commit()" "$D/ekm.db"
rotated=""
for _ in $(seq 100); do
  if EKM_TOKEN=$AUDITOR_TOKEN "$EKM" --server "$S" events -w acme -e prod --type dk.rotated | grep -q "system:schedule"; then rotated=1; break; fi
  sleep 0.1
done
check "ekmd rotates what is due, as system:schedule" test -n "$rotated"
stop_ekmd  # its rotation thread stops on SIGTERM: exit status 0

summary
