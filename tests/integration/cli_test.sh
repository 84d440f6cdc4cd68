#!/usr/bin/env bash
# End-to-end: the ekm CLI in local mode and against a real ekmd, as a user would run them.
#   cli_test.sh EKM_BINARY EKMD_BINARY
set -uo pipefail
EKM=$1
EKMD=$2
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
setup_test cli-test

head -c 0 /dev/urandom >"$T/p0"
head -c 1 /dev/urandom >"$T/p1"
head -c $((1024 * 1024)) /dev/urandom >"$T/p1m"
head -c $((64 * 1024 * 1024)) /dev/urandom >"$T/p64m"
# The sanitizer build runs 10-20x slower: it streams 8 MiB (still many segments), the normal
# build the full 64 MiB.
# (Not `ldd | grep -q`: with pipefail, grep quitting early can fail the pipeline by SIGPIPE.)
SANITIZED=0
case "$(ldd "$EKM_BIN" 2>/dev/null)" in *libasan*) SANITIZED=1 ;; esac
SIZES="p0 p1 p1m p64m"
if [ "$SANITIZED" = 1 ]; then
  head -c $((8 * 1024 * 1024)) /dev/urandom >"$T/p8m"
  SIZES="p0 p1 p1m p8m"
fi

roundtrips() {  # MODE_ARGS...: every size, binary and text
  local label=$1; shift
  for f in $SIZES; do
    for form in binary text; do
      local flag=""; [ $form = text ] && flag=--text
      "$EKM" "$@" encrypt -w acme -e prod $flag <"$T/$f" >"$T/ct" || { fail "$label $f $form encrypt"; continue; }
      "$EKM" "$@" decrypt -w acme -e prod <"$T/ct" >"$T/back" || { fail "$label $f $form decrypt"; continue; }
      check "$label $f $form round trip" cmp -s "$T/$f" "$T/back"
    done
  done
}

# --- help and usage -------------------------------------------------------------------------
for sub in "" init "workspace" "workspace create" "workspace list" environment "environment create" \
  "environment list" encrypt decrypt; do
  # shellcheck disable=SC2086
  check "ekm $sub --help" "$EKM" $sub --help >/dev/null
done
check "ekmd --help" "$EKMD" --help >/dev/null
expect_error "missing --workspace" "--workspace is required" -- "$EKM" --data-dir "$T/d" encrypt -e prod
expect_error "not initialized" "ekm --data-dir $T/none init" -- "$EKM" --data-dir "$T/none" workspace list

# --- local mode -----------------------------------------------------------------------------
D="$T/data"
check "init" "$EKM" --data-dir "$D" init >"$T/init.out"
# The bootstrap admin token, printed once on its own line.
ADMIN_TOKEN=$(sed -n 's/^admin token: \(ekm_.*\)$/\1/p' "$T/init.out")
check "init prints the admin token" grep -Eq '^ekm_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$' <<<"$ADMIN_TOKEN"
check "init is idempotent" "$EKM" --data-dir "$D" init >"$T/init2.out"
check "init again says the directory is ready" grep -q "$D" "$T/init2.out"
absent "init prints no second admin token" "$T/init2.out" -e 'admin token'
check "root key mode 0600" test "$(stat -c %a "$D/root.key")" = 600
check "workspace create" "$EKM" --data-dir "$D" workspace create acme >/dev/null
check "workspace create 2" "$EKM" --data-dir "$D" workspace create globex >/dev/null
expect_error "duplicate workspace" "already exists" -- "$EKM" --data-dir "$D" workspace create acme
expect_error "bad workspace name" "position 5" -- "$EKM" --data-dir "$D" workspace create "acme corp"
check "environment create" "$EKM" --data-dir "$D" environment create acme prod >/dev/null
check "environment create 2" "$EKM" --data-dir "$D" environment create acme dev >/dev/null
check "environment create 3" "$EKM" --data-dir "$D" environment create globex prod >/dev/null
expect_error "environment in missing workspace" "initech" -- "$EKM" --data-dir "$D" environment create initech prod
check "workspace list" grep -q globex <("$EKM" --data-dir "$D" workspace list)
check "environment list" grep -q dev <("$EKM" --data-dir "$D" environment list acme)
check "environment list json" grep -q '"ek_version": 1' <("$EKM" --data-dir "$D" --json environment list acme)
EKM_DATA_DIR="$D" check "EKM_DATA_DIR" grep -q acme <(EKM_DATA_DIR="$D" "$EKM" workspace list)
roundtrips local --data-dir "$D"

# Bounded memory: a 64 MiB stream must not be held in memory (the sanitizer build skips this).
if [ -x /usr/bin/time ] && [ "$SANITIZED" = 0 ]; then
  /usr/bin/time -f %M -o "$T/rss" "$EKM" --data-dir "$D" encrypt -w acme -e prod <"$T/p64m" >"$T/ct64"
  check "encrypt 64 MiB in bounded memory ($(cat "$T/rss") KiB)" test "$(cat "$T/rss")" -lt 32768
  /usr/bin/time -f %M -o "$T/rss" "$EKM" --data-dir "$D" decrypt -w acme -e prod <"$T/ct64" >/dev/null
  check "decrypt 64 MiB in bounded memory ($(cat "$T/rss") KiB)" test "$(cat "$T/rss")" -lt 32768
fi

# Standard input from a regular file is mapped (from its current offset); from a pipe it is read.
# Both give what decrypts to the input, whichever way the ciphertext is fed back.
cat "$T/p1m" "$T/p1m" "$T/p1" >"$T/p2m"
tail -c +1001 "$T/p2m" >"$T/p2m.rest"
{ dd bs=1000 count=1 of=/dev/null status=none; "$EKM" --data-dir "$D" encrypt -w acme -e prod >"$T/off.ct"; } <"$T/p2m"
check "encrypt from a file read past its start: the rest" cmp -s "$T/p2m.rest" <("$EKM" --data-dir "$D" decrypt -w acme -e prod <"$T/off.ct")
{ "$EKM" --data-dir "$D" encrypt -w acme -e prod >"$T/whole.ct"; cat >"$T/after"; } <"$T/p2m"
check "encrypt from a file leaves it read to its end" test -s "$T/whole.ct" -a ! -s "$T/after"
cat "$T/p2m" | "$EKM" --data-dir "$D" encrypt -w acme -e prod >"$T/pipe.ct"
check "encrypt from a pipe, decrypt from a pipe" cmp -s "$T/p2m" <(cat "$T/pipe.ct" | "$EKM" --data-dir "$D" decrypt -w acme -e prod)
check "encrypt from a pipe, decrypt from a file" cmp -s "$T/p2m" <("$EKM" --data-dir "$D" decrypt -w acme -e prod <"$T/pipe.ct")

echo -n "secret" | "$EKM" --data-dir "$D" encrypt -w acme -e prod -s orders >"$T/small.ct"
expect_error "wrong workspace" 'belongs to workspace "acme"' -- "$EKM" --data-dir "$D" decrypt -w globex -e prod <"$T/small.ct"
"$EKM" --data-dir "$D" decrypt -w globex -e prod <"$T/small.ct" >"$T/out" 2>"$T/err"
check "wrong workspace: hint names the right flags" grep -q -- "--workspace acme --environment prod" "$T/err"
expect_error "wrong environment" 'environment "prod"' -- "$EKM" --data-dir "$D" decrypt -w acme -e dev <"$T/small.ct"
expect_error "garbage input" "not an ekm ciphertext" -- "$EKM" --data-dir "$D" decrypt -w acme -e prod < <(echo "hello")
expect_error "empty input" "ciphertext is empty" -- "$EKM" --data-dir "$D" decrypt -w acme -e prod </dev/null
# A key ARN pasted with a byte that is not UTF-8: a clear error, and `key show --json` still
# answers (it once aborted on the recorded attempt).
expect_error "key set: not UTF-8" "not valid UTF-8" -- env AWS_EC2_METADATA_DISABLED=true \
  "$EKM" --data-dir "$D" key set -w acme -e prod --aws-kms-arn "$(printf 'arn:aws:kms:\xff')"
check "key show --json after a garbled key id" grep -q '"last_validation"' <("$EKM" --data-dir "$D" --json key show -w acme -e prod)
size=$(stat -c %s "$T/small.ct")
for pos in 0 5 12 $((size / 2)) $((size - 1)); do
  cp "$T/small.ct" "$T/flip.ct"
  orig=$(xxd -p -s "$pos" -l 1 "$T/flip.ct")
  printf "$(printf '\\x%02x' $((0x$orig ^ 0x01)))" | dd of="$T/flip.ct" bs=1 seek="$pos" conv=notrunc status=none
  "$EKM" --data-dir "$D" decrypt -w acme -e prod <"$T/flip.ct" >"$T/out" 2>"$T/err"
  rc=$?
  if [ $rc -ne 0 ] && [ $rc -lt 128 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && [ ! -s "$T/out" ]; then pass; else fail "flipped byte $pos: rc=$rc $(cat "$T/err")"; fi
done
head -c $((size - 3)) "$T/small.ct" >"$T/trunc.ct"
expect_error "truncated ciphertext" "" -- "$EKM" --data-dir "$D" decrypt -w acme -e prod <"$T/trunc.ct"
if command -v script >/dev/null; then
  script -qec "$EKM --data-dir $D encrypt -w acme -e prod </dev/null" /dev/null >"$T/tty" 2>&1
  check "binary ciphertext refused on a terminal" grep -q "refusing to write binary" "$T/tty"
fi

# --- server mode ----------------------------------------------------------------------------
check "ekmd starts" start_ekmd ekmd --data-dir "$D"
check "ekmd wrote no bootstrap token (ekm init made one)" test ! -e "$D/bootstrap-admin-token"
check "setup_tokens" setup_tokens "$D" "$S" acme
export EKM_TOKEN=$APP_TOKEN  # the data plane's; each other call names its role
expect_error "server: no token" "needs an API token" -- env -u EKM_TOKEN "$EKM" --server "$S" workspace list
if [ "${ADMIN_TOKEN: -1}" = A ]; then WRONG="${ADMIN_TOKEN%?}Q"; else WRONG="${ADMIN_TOKEN%?}A"; fi
expect_error "server: wrong secret" "not valid" -- env EKM_TOKEN="$WRONG" "$EKM" --server "$S" workspace list
expect_error "server: malformed token" "malformed" -- env EKM_TOKEN=ekm_nonsense "$EKM" --server "$S" workspace list
expect_error "server: wrong role" "needs the role" -- "$EKM" --server "$S" workspace list
check "server: workspace list" grep -q acme <(EKM_TOKEN=$ADMIN_TOKEN "$EKM" --server "$S" workspace list)
check "server: workspace create" env EKM_TOKEN="$ADMIN_TOKEN" "$EKM" --server "$S" workspace create initech >/dev/null
check "server: environment create" env EKM_TOKEN="$ADMIN_TOKEN" "$EKM" --server "$S" environment create initech prod >/dev/null
check "EKM_SERVER" grep -q initech <(EKM_TOKEN=$ADMIN_TOKEN EKM_SERVER="$S" "$EKM" workspace list)
# Both variables exported (as scripts/quickstart.sh does): the server wins; a flag wins over
# the other mode's variable.
check "EKM_SERVER over EKM_DATA_DIR" grep -q initech <(EKM_TOKEN=$ADMIN_TOKEN EKM_DATA_DIR="$D" EKM_SERVER="$S" "$EKM" workspace list)
"$EKM" --data-dir "$T/other" init >/dev/null
"$EKM" --data-dir "$T/other" workspace create other-ws >/dev/null
EKM_SERVER="$S" "$EKM" --data-dir "$T/other" workspace list >"$T/other.out" 2>&1
check "--data-dir over EKM_SERVER: the local directory's workspaces" grep -q other-ws "$T/other.out"
absent "--data-dir over EKM_SERVER: not the server's" "$T/other.out" -e initech
roundtrips server --server "$S"
expect_error "server: wrong workspace" "own workspace" -- "$EKM" --server "$S" decrypt -w globex -e prod <"$T/small.ct"
expect_error "server: unknown workspace" "nope" -- env EKM_TOKEN="$ADMIN_TOKEN" "$EKM" --server "$S" environment list nope
expect_error "server: both modes" "both given" -- "$EKM" --server "$S" --data-dir "$D" workspace list

# Tokens through the CLI: an owner mints an app token restricted to one environment.
# A second owner: the first owner's to create (the admin creates only a workspace's first).
OWNER2=$(EKM_TOKEN=$OWNER_TOKEN "$EKM" --server "$S" token create --workspace acme --role owner --expires-in 1d 2>"$T/tk.err")
check "token create prints the token alone" grep -Eq '^ekm_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$' <<<"$OWNER2"
check "token create: metadata on stderr" grep -q "role owner" "$T/tk.err"
APP_DEV=$(EKM_TOKEN=$OWNER2 "$EKM" --server "$S" token create --workspace acme --role app --environment dev 2>/dev/null)
check "token show" grep -q "environments: dev" <(EKM_TOKEN=$APP_DEV "$EKM" --server "$S" token show)
expect_error "restricted app on another environment" "its own environments" -- env EKM_TOKEN="$APP_DEV" "$EKM" --server "$S" encrypt -w acme -e prod </dev/null
expect_error "owner cannot mint admin" "cannot create admin" -- env EKM_TOKEN="$OWNER2" "$EKM" --server "$S" token create --role admin
check "token list --json" grep -q '"role": "app"' <(EKM_TOKEN=$OWNER2 "$EKM" --server "$S" --json token list)
EKM_TOKEN=$OWNER2 "$EKM" --server "$S" --json token list >"$T/tokens.json"
check "token list --json lists the tokens" grep -q '"id"' "$T/tokens.json"
absent "token list shows no secret" "$T/tokens.json" -e '"token"' -e "${APP_DEV#ekm_*_}"
APP_DEV_ID=$(cut -d_ -f2 <<<"$APP_DEV")
check "token show ID" grep -q "state:        active" <(EKM_TOKEN=$OWNER2 "$EKM" --server "$S" token show "$APP_DEV_ID")
check "token show ID --json names no secret" grep -q '"role": "app"' <(EKM_TOKEN=$OWNER2 "$EKM" --server "$S" --json token show "$APP_DEV_ID")
expect_error "token show of an unknown id as owner: the same 403" "may act only on its own workspace" -- env EKM_TOKEN="$OWNER2" "$EKM" --server "$S" token show 00000000000000ff
check "token revoke" env EKM_TOKEN="$OWNER2" "$EKM" --server "$S" token revoke "$APP_DEV_ID"
check "token show ID after revoke" grep -q "state:        revoked" <(EKM_TOKEN=$OWNER2 "$EKM" --server "$S" token show "$APP_DEV_ID")
expect_error "revoked at once" "revoked" -- env EKM_TOKEN="$APP_DEV" "$EKM" --server "$S" token show
check "local mode: token list" grep -q "$APP_DEV_ID" <("$EKM" --data-dir "$D" token list --workspace acme)
check "local mode: token show" grep -q "local mode" <("$EKM" --data-dir "$D" token show)
check "local mode: token show ID" grep -q "state:        revoked" <("$EKM" --data-dir "$D" token show "$APP_DEV_ID")

# Local and server share one store: either decrypts what the other encrypted.
echo -n "crossover" | "$EKM" --server "$S" encrypt -w acme -e prod --text >"$T/cross.ct"
check "local decrypts server ciphertext" grep -q crossover <("$EKM" --data-dir "$D" decrypt -w acme -e prod <"$T/cross.ct")

# Restart: graceful (SIGTERM) and crash (kill -9); everything encrypted before still decrypts.
for p in p1 p1m; do "$EKM" --server "$S" encrypt -w acme -e prod -s "s-$p" <"$T/$p" >"$T/$p.ct"; done
stop_ekmd  # exits 0 on SIGTERM
check "ekmd restarts" start_ekmd ekmd --data-dir "$D"
for p in p1 p1m; do
  "$EKM" --server "$S" decrypt -w acme -e prod <"$T/$p.ct" >"$T/back"
  check "decrypt $p after SIGTERM restart" cmp -s "$T/$p" "$T/back"
done
"$EKM" --server "$S" encrypt -w acme -e prod -s after <"$T/p1m" >"$T/after.ct"
kill9_ekmd
check "ekmd restarts after kill -9" start_ekmd ekmd --data-dir "$D"
for f in p1.ct p1m.ct after.ct; do
  "$EKM" --server "$S" decrypt -w acme -e prod <"$T/$f" >"$T/back" || fail "decrypt $f after kill -9"
done
check "decrypt after kill -9" cmp -s "$T/p1m" "$T/back"
stop_ekmd
expect_error "server down" "cannot reach ekmd" -- "$EKM" --server "$S" workspace list
absent "ekmd's log holds no token secret" "$T/ekmd.log" -F -e "${ADMIN_TOKEN#ekm_*_}" -e "${APP_TOKEN#ekm_*_}"

summary
