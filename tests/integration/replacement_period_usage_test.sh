#!/usr/bin/env bash
# End-to-end through ekmd and the CLI (issue 12), on one customer key (uploaded material, so no
# KMS is needed; one RSA key generation for both parts):
#  - the once-per-period rule for replacing a CMK cannot be switched off: changing the period is
#    the owner's (a key-manager gets 403 naming the owner), it has a floor of 1 h (400 naming
#    it, in server and local mode, and for ekmd --key-replacement-period), and a shorter period
#    applies only once the period running since the last change has ended;
#  - the audit log's data-plane usage counts outcomes apart: decrypts refused while the CMK was
#    revoked and a tampered ciphertext are counted as refused and failed, never as decrypts
#    done, so an auditor sees that no decrypt succeeded while the key was revoked.
#   replacement_period_usage_test.sh EKM_BINARY EKMD_BINARY
set -uo pipefail
EKM=$1
EKMD=$2
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
setup_test period-usage-test

D="$T/data"
check "ekmd starts" start_ekmd ekmd --data-dir "$D" --key-cache-ttl 1 --audit-usage-interval 1 \
  --rotation-check-interval 0
check "setup_tokens" setup_tokens "$D" "$S" acme
R() { EKM_TOKEN=$1 "$EKM" --server "$S" "${@:2}"; }
# quiet COMMAND…: its output hidden, its errors shown only when it fails.
quiet() { "$@" >/dev/null 2>"$T/quiet.err" || { cat "$T/quiet.err" >&2; return 1; }; }
check "environment create" quiet R "$OWNER_TOKEN" environment create acme prod

# --- the replacement period -------------------------------------------------------------------
expect_error "a key-manager cannot switch the rule off" "needs the role owner" -- \
  R "$KM_TOKEN" environment set -w acme -e prod --replacement-period 0s
expect_error "…nor reset the period" "needs the role owner" -- \
  R "$KM_TOKEN" environment set -w acme -e prod --reset replacement-period
check "a key-manager still sets the other settings" quiet \
  R "$KM_TOKEN" environment set -w acme -e prod --grace-period 0s
expect_error "the owner neither: the floor" "at least 3600 seconds (1 h)" -- \
  R "$OWNER_TOKEN" environment set -w acme -e prod --replacement-period 0s
expect_error "local mode: the floor" "at least 3600 seconds (1 h)" -- \
  "$EKM" --data-dir "$D" environment set -w acme -e prod --replacement-period 59m
expect_error "ekmd --key-replacement-period below the floor" "3600 (1 h, the floor)" -- \
  timeout 10 "$EKMD" --data-dir "$T/other" --listen 127.0.0.1:0 --key-replacement-period 60

# A customer key: the 24 h period begins.
R "$KM_TOKEN" key import-params -w acme -e prod --out "$T/params" >/dev/null 2>&1 ||
  fail "import-params"
(
  cd "$T" || exit 1
  openssl rand -out material.bin 32
  openssl pkeyutl -encrypt -pubin -inkey params/wrapping-key.pem -in material.bin \
    -out material.wrapped -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 \
    -pkeyopt rsa_mgf1_md:sha256
) || fail "wrap the material"
check "import the material" quiet R "$KM_TOKEN" key import -w acme -e prod \
  --material "$T/material.wrapped" --token-file "$T/params/import-token"
check "the owner shortens the period to 1 h" quiet \
  R "$OWNER_TOKEN" environment set -w acme -e prod --replacement-period 1h
expect_error "a replacement now is still refused: the 24 h period that began runs on" \
  "the replacement period of 24 h" -- R "$KM_TOKEN" key set -w acme -e prod --platform
check "…and the settings change records when the next replacement is allowed" \
  grep -q next_replacement_allowed_at <(R "$AUDITOR_TOKEN" --json audit list -w acme -t environment.settings_changed)

# --- usage outcomes ---------------------------------------------------------------------------
echo "card 4242" >"$T/p"
R "$APP_TOKEN" encrypt -w acme -e prod <"$T/p" >"$T/ct" || fail "encrypt"
check "decrypt" cmp -s "$T/p" <(R "$APP_TOKEN" decrypt -w acme -e prod <"$T/ct")
cp "$T/ct" "$T/tampered"
# Flip every bit of one tag byte (writing a fixed value left it unchanged once in 256 runs).
python3 - "$T/tampered" <<'PY'
import sys
path = sys.argv[1]
data = bytearray(open(path, "rb").read())
data[-5] ^= 0xFF
open(path, "wb").write(bytes(data))
PY
expect_error "a tampered ciphertext is refused" "" -- R "$APP_TOKEN" decrypt -w acme -e prod <"$T/tampered"
check "delete the material: a revocation" quiet \
  R "$KM_TOKEN" key delete-material -w acme -e prod --confirm prod
# Decrypts go on until the cached keys expire (--key-cache-ttl 1), then are refused.
ok_decrypts=1
refused=0
for _ in $(seq 100); do
  if R "$APP_TOKEN" decrypt -w acme -e prod <"$T/ct" >/dev/null 2>"$T/err"; then
    ok_decrypts=$((ok_decrypts + 1))
    sleep 0.1
  else
    refused=1
    break
  fi
done
check "decrypts are refused once the keys expire" grep -q "imported key material" "$T/err"
for _ in 1 2; do
  expect_error "refused while revoked" "imported key material" -- R "$APP_TOKEN" decrypt -w acme -e prod <"$T/ct"
  refused=$((refused + 1))
done
expect_error "an encrypt is refused too" "imported key material" -- R "$APP_TOKEN" encrypt -w acme -e prod <"$T/p"
usage_seen() {
  for _ in $(seq 50); do
    R "$AUDITOR_TOKEN" --json audit list -w acme -t data_plane.usage >"$T/usage.jsonl" 2>/dev/null
    python3 - "$T/usage.jsonl" "$ok_decrypts" "$refused" <<'PY' >"$T/usage.txt" && return 0
import collections, json, sys
n = collections.Counter()
for line in open(sys.argv[1]):
    for c in json.loads(line)["detail"]["counts"]:
        n[(c["operation"], c.get("outcome", "none"))] += c["count"]
want = {("encrypt", "ok"): 1, ("encrypt", "refused"): 1, ("decrypt", "ok"): int(sys.argv[2]),
        ("decrypt", "failed"): 1, ("decrypt", "refused"): int(sys.argv[3])}
print(dict(n))
sys.exit(0 if n == want else 1)
PY
    sleep 0.1
  done
  return 1
}
usage_seen
seen=$?
check "usage counts each outcome apart: no decrypt done while revoked ($(cat "$T/usage.txt"))" test $seen -eq 0
stop_ekmd
summary
