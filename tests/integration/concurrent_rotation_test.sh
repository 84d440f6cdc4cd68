#!/usr/bin/env bash
# End-to-end (issue 12, defect 3): routine rotation under load. One ekmd on the platform key;
# for a few seconds at once: POST …/key/rotate every 50 ms, POST …/data-keys/rotate
# {"all_scopes": true} every 100 ms, four clients encrypting into a new scope each time (and
# decrypting it), and local `ekm --data-dir` processes beside ekmd rotating the EK, rotating
# every DK and running `ekm repack run` (so repacks finish, and destroy old EKs, all the time;
# ekmd learns of the local rotations only when its cached environment record expires). Then: no client saw a 409 or 5xx, no data key is under a destroyed environment key
# (sqlite3 on the store), `ekm repack run` finishes, and every ciphertext decrypts.
#   concurrent_rotation_test.sh EKM_BINARY EKMD_BINARY
set -uo pipefail
EKM=$1
EKMD=$2
SECONDS_UNDER_LOAD=${EKM_ROTATION_LOAD_SECONDS:-6}
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
setup_test concurrent-rotation
LOOPS=()
at_exit 'kill "${LOOPS[@]}" 2>/dev/null'

D="$T/data"
mkdir -p "$D"
start_ekmd ekmd --data-dir "$D" || { fail "ekmd did not start"; summary; exit 1; }
check "setup_tokens" setup_tokens "$D" "$S" acme
code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $OWNER_TOKEN" \
  -H 'Content-Type: application/json' --data '{"name":"prod"}' "$S/v1/workspaces/acme/environments")
check "create environment ($code)" test "$code" = 201
E="$S/v1/workspaces/acme/environments/prod"

# post TOKEN URL BODY: prints the HTTP status; the body goes to stdout's second line onwards.
post() {
  curl -sS -w '\n%{http_code}' -X POST -H "Authorization: Bearer $1" \
    -H 'Content-Type: application/json' --data "$3" "$2"
}
STOP="$T/stop"
# Rotations through ekmd: every answer's status is kept (never a 5xx).
rotate_loop() {  # NAME PAUSE PATH BODY
  local name=$1 pause=$2 path=$3 body=$4 out
  while [ ! -e "$STOP" ]; do
    out=$(post "$KM_TOKEN" "$E/$path" "$body")
    echo "${out##*$'\n'}" >>"$T/$name.codes"
    sleep "$pause"
  done
}
# Rotations by local `ekm` processes on the same data directory.
cli_loop() {  # NAME ARGS...
  local name=$1; shift
  while [ ! -e "$STOP" ]; do
    if ! "$EKM" --data-dir "$D" key rotate -w acme -e prod "$@" >/dev/null 2>>"$T/$name.err"; then
      echo x >>"$T/$name.failed"
    fi
  done
}
cli_repack_loop() {
  while [ ! -e "$STOP" ]; do
    if ! "$EKM" --data-dir "$D" repack run -w acme -e prod >/dev/null 2>>"$T/cli-repack.err"; then
      echo x >>"$T/cli-repack.failed"
    fi
  done
}
# A client: a new scope each round, encrypted then decrypted through the API.
client() {  # N
  local n=$1 i=0 scope out code ct plain
  while [ ! -e "$STOP" ]; do
    i=$((i + 1))
    scope="c$n-s$i"
    plain=$(printf 'message %s' "$scope" | base64)
    out=$(post "$APP_TOKEN" "$E/encrypt" "{\"scope\": \"$scope\", \"plaintext\": \"$plain\"}")
    code=${out##*$'\n'}
    if [ "$code" != 200 ]; then echo "encrypt $scope: $code ${out%$'\n'*}" >>"$T/client$n.fail"; continue; fi
    ct=$(printf '%s' "${out%$'\n'*}" | sed -n 's/.*"ciphertext": *"\([^"]*\)".*/\1/p')
    echo "$scope $ct" >>"$T/client$n.cts"
    out=$(post "$APP_TOKEN" "$E/decrypt" "{\"ciphertext\": \"$ct\"}")
    code=${out##*$'\n'}
    if [ "$code" != 200 ] || ! printf '%s' "${out%$'\n'*}" | grep -qF "\"$plain\""; then
      echo "decrypt $scope: $code ${out%$'\n'*}" >>"$T/client$n.fail"
    fi
  done
}

rotate_loop ek 0.05 key/rotate '{}' & LOOPS+=($!)
rotate_loop dk 0.1 data-keys/rotate '{"all_scopes": true}' & LOOPS+=($!)
cli_loop cli-ek & LOOPS+=($!)
cli_loop cli-dk --all-scopes & LOOPS+=($!)
cli_repack_loop & LOOPS+=($!)
for n in 1 2 3 4; do client "$n" & LOOPS+=($!); done
sleep "$SECONDS_UNDER_LOAD"
touch "$STOP"
for p in "${LOOPS[@]}"; do wait "$p"; done
LOOPS=()

encrypted=$(cat "$T"/client*.cts 2>/dev/null | wc -l)
check "the clients encrypted ($encrypted messages)" test "$encrypted" -gt 20
check "ekmd rotated the EK ($(grep -c '^200$' "$T/ek.codes") times)" grep -q '^200$' "$T/ek.codes"
check "the local processes rotated ($(cat "$T"/cli-*.err 2>/dev/null | head -c 300))" \
  test "$(cat "$T/cli-ek.failed" "$T/cli-dk.failed" 2>/dev/null | wc -l)" -eq 0
check "ekm repack run beside them never failed ($(head -c 300 "$T/cli-repack.err" 2>/dev/null))" \
  test ! -e "$T/cli-repack.failed"
# (The clients write a .fail file only when an answer is wrong; they did encrypt, above.)
check "no client saw a 409 or 5xx ($(cat "$T"/client*.fail 2>/dev/null | head -c 600))" \
  test -z "$(cat "$T"/client*.fail 2>/dev/null)"
absent "EK rotations through ekmd never answered 5xx ($(sort "$T/ek.codes" | uniq -c | tr '\n' ' '))" \
  "$T/ek.codes" -e '^5'
absent "DK rotations through ekmd never refused ($(sort "$T/dk.codes" | uniq -c | tr '\n' ' '))" \
  "$T/dk.codes" -v -e '^200$'

# The store: no data key under a destroyed environment key, then a repack that finishes.
under_destroyed() {
  sqlite3 "$D/ekm.db" "SELECT COUNT(*) FROM data_keys d JOIN environment_keys k ON \
    k.environment_id = d.environment_id AND k.version = d.ek_version \
    WHERE k.destroyed_at IS NOT NULL OR length(k.wrapped) = 0"
}
check "no data key under a destroyed environment key ($(under_destroyed))" test "$(under_destroyed)" = 0
timeout 120 "$EKM" --data-dir "$D" repack run -w acme -e prod >"$T/repack.out" 2>&1
check "ekm repack run finishes ($(tail -1 "$T/repack.out"))" test $? -eq 0
check "repack status: finished or nothing to do" grep -Eq "repack: *(finished|none)" \
  <("$EKM" --data-dir "$D" repack status -w acme -e prod)
old=$(sqlite3 "$D/ekm.db" "SELECT COUNT(*) FROM data_keys d JOIN environments e ON \
  e.id = d.environment_id WHERE d.ek_version <> e.current_ek_version")
check "every data key is under the current environment key ($old left)" test "$old" = 0
check "still none under a destroyed environment key" test "$(under_destroyed)" = 0

# Every ciphertext decrypts, through ekmd and in local mode.
bad=0
while read -r scope ct; do
  out=$(post "$APP_TOKEN" "$E/decrypt" "{\"ciphertext\": \"$ct\"}")
  [ "${out##*$'\n'}" = 200 ] || { bad=$((bad + 1)); echo "  ($scope: ${out%$'\n'*})"; }
done < <(cat "$T"/client*.cts)
check "every ciphertext decrypts through ekmd ($bad failed)" test "$bad" = 0
head -1 "$T/client1.cts" | cut -d' ' -f2 >"$T/one.ct"
check "and in local mode" grep -q "message c1-s" <("$EKM" --data-dir "$D" decrypt -w acme -e prod <"$T/one.ct")

stop_ekmd
summary
